/*
 * The batch APIs' pure parsers (tools/mock/mock_batch_parse.c): multipart
 * bodies, the JSON skipper and field finder, custom_id rules, Range values
 * and the id map. Hostile input is also fuzzed (tests/fuzz/fuzz_mock_batch.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mock_batch.h"

#define S(lit) lit, sizeof(lit) - 1
#define SE(lit) lit, &(lit)[sizeof(lit) - 1] /* [begin, end) */

static void boundary_is_found_plain_quoted_and_in_any_case(void **state)
{
	(void)state;
	const char *b;
	size_t bl;
	assert_int_equal(mock_mp_boundary(S("multipart/form-data; boundary=abc"), &b, &bl), 0);
	assert_int_equal(bl, 3);
	assert_memory_equal(b, "abc", 3);
	assert_int_equal(mock_mp_boundary(S("Multipart/Form-Data; charset=x; BOUNDARY=\"a b\""),
					  &b, &bl), 0);
	assert_int_equal(bl, 3);
	assert_memory_equal(b, "a b", 3);
	assert_int_equal(mock_mp_boundary(S("multipart/form-data;boundary=z;x=1"), &b, &bl), 0);
	assert_int_equal(bl, 1);
}

static void boundary_refuses_what_is_not_usable(void **state)
{
	(void)state;
	const char *b;
	size_t bl;
	char longb[120];
	snprintf(longb, sizeof(longb), "multipart/form-data; boundary=%071d", 0);
	assert_int_equal(mock_mp_boundary(longb, strlen(longb), &b, &bl), -1);
	assert_int_equal(mock_mp_boundary(S("application/json"), &b, &bl), -1);
	assert_int_equal(mock_mp_boundary(S("multipart/form-data"), &b, &bl), -1);
	assert_int_equal(mock_mp_boundary(S("multipart/form-data; boundary="), &b, &bl), -1);
	assert_int_equal(mock_mp_boundary(S("multipart/form-data; boundary=\"open"), &b, &bl), -1);
	assert_int_equal(mock_mp_boundary(S("multipart/form-data; xboundary=a"), &b, &bl), -1);
}

static const char upload[] =
	"--XY\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
	"--XY\r\ncontent-disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
	"Content-Type: application/octet-stream\r\n\r\nline1\n--XYnot\r\n--X\nline2\n\r\n"
	"--XY--\r\n";

static void multipart_gives_each_part_with_its_name_and_data(void **state)
{
	(void)state;
	size_t pos = 0;
	struct mock_mp_part p;
	assert_int_equal(mock_mp_next(S(upload), "XY", 2, &pos, &p), 1);
	assert_int_equal(p.name_len, 7);
	assert_memory_equal(p.name, "purpose", 7);
	assert_null(p.filename);
	assert_int_equal(p.len, 5);
	assert_memory_equal(p.data, "batch", 5);
	assert_int_equal(mock_mp_next(S(upload), "XY", 2, &pos, &p), 1);
	assert_memory_equal(p.name, "file", 4);
	assert_int_equal(p.filename_len, 8);
	assert_memory_equal(p.filename, "in.jsonl", 8);
	/* a boundary not after CRLF, or not whole, is data */
	assert_int_equal(p.len, strlen("line1\n--XYnot\r\n--X\nline2\n"));
	assert_int_equal(mock_mp_next(S(upload), "XY", 2, &pos, &p), 0);
}

static void multipart_skips_a_preamble_and_allows_empty_data(void **state)
{
	(void)state;
	static const char body[] = "ignored\r\n--b\r\nContent-Disposition: form-data; name=\"f\""
				   "\r\n\r\n\r\n--b--";
	size_t pos = 0;
	struct mock_mp_part p;
	assert_int_equal(mock_mp_next(S(body), "b", 1, &pos, &p), 1);
	assert_int_equal(p.len, 0);
	assert_int_equal(mock_mp_next(S(body), "b", 1, &pos, &p), 0);
}

static void multipart_refuses_malformed_bodies(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",                                       /* no delimiter */
		"--b",                                    /* nothing after it */
		"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nno end",
		"--b\r\nContent-Disposition: attachment; name=\"f\"\r\n\r\nx\r\n--b--",
		"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",  /* no name */
		"--b\r\nContent-Disposition: form-data; name=f\r\n\r\nx\r\n--b--", /* unquoted */
		"--bX\r\n\r\nx\r\n--b--",                 /* garbage after the delimiter */
		"--b\r\nContent-Disposition: form-data; name=\"f\"", /* head never ends */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t pos = 0;
		struct mock_mp_part p;
		int r = mock_mp_next(bad[i], strlen(bad[i]), "b", 1, &pos, &p);
		if (r == 1)
			r = mock_mp_next(bad[i], strlen(bad[i]), "b", 1, &pos, &p);
		assert_int_equal(r, -1);
	}
}

/* Every prefix of a valid body: never a part past the cut, never a crash
 * (each prefix in an exact allocation, for ASan). */
static void multipart_every_prefix_is_safe(void **state)
{
	(void)state;
	size_t n = sizeof(upload) - 1;
	for (size_t cut = 0; cut <= n; cut++) {
		char *b = malloc(cut ? cut : 1);
		assert_non_null(b);
		memcpy(b, upload, cut);
		size_t pos = 0;
		struct mock_mp_part p;
		int r, parts = 0;
		while ((r = mock_mp_next(b, cut, "XY", 2, &pos, &p)) == 1) {
			assert_true(p.data + p.len <= b + cut);
			parts++;
		}
		if (cut < n - 2) /* without "--XY--" whole, it is malformed... */
			assert_true(r == -1 || (r == 0 && parts == 2));
		free(b);
	}
}

static void json_skip_accepts_values_and_refuses_the_rest(void **state)
{
	(void)state;
	static const char *const good[] = {
		"{}", " [ ] ", "\"a\\u00e9\\n\\\"\"", "-0.5e+3", "0", "true", "null",
		"{\"a\":[1,{\"b\":false}],\"c\":\"\"}",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const char *e = mock_json_skip(good[i], good[i] + strlen(good[i]));
		assert_non_null(e);
	}
	static const char *const bad[] = {
		"", "{", "[1,]", "{\"a\"}", "{\"a\":}", "\"a", "\"\\x\"", "\"\\u12\"",
		"tru", "-", "1.", "1e", "{a:1}", "[1 2]", "\"tab\there\"",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(mock_json_skip(bad[i], bad[i] + strlen(bad[i])));
	/* deep nesting is refused, not a stack overflow */
	char deep[20001];
	memset(deep, '[', 10000);
	memset(deep + 10000, ']', 10000);
	assert_null(mock_json_skip(deep, deep + 20000));
	assert_non_null(mock_json_skip(deep + 10000 - 10, deep + 10010));
}

static void json_fields_finds_keys_and_kinds(void **state)
{
	(void)state;
	static const char line[] = " {\"custom_id\":\"r1\",\"x\":{\"url\":1},\"url\":\"/v1\","
				   "\"body\":{\"m\":[1]},\"custom_id\":\"dup\",\"n\":3} ";
	static const char *const keys[] = {"\"custom_id\"", "\"url\"", "\"body\"", "\"n\"",
					   "\"none\""};
	const char *v[5];
	size_t vl[5];
	char k[5];
	assert_int_equal(mock_json_fields(SE(line), keys, 5, v, vl, k), 0);
	assert_int_equal(k[0], 's');
	assert_int_equal(vl[0], 2);
	assert_memory_equal(v[0], "r1", 2); /* the first of a repeated key */
	assert_int_equal(k[1], 's');
	assert_memory_equal(v[1], "/v1", 3); /* top level only */
	assert_int_equal(k[2], 'o');
	assert_int_equal(vl[2], strlen("{\"m\":[1]}"));
	assert_int_equal(k[3], 'x');
	assert_null(v[4]);
	assert_int_equal(mock_json_fields(SE("[1]"), keys, 1, v, vl, k), -1);
	assert_int_equal(mock_json_fields(SE("{} {}"), keys, 1, v, vl, k), -1);
	assert_int_equal(mock_json_fields(SE("{\"a\":1"), keys, 1, v, vl, k), -1);
	assert_int_equal(mock_json_fields(SE("{}"), keys, 1, v, vl, k), 0);
	assert_null(v[0]);
}

static void custom_id_rule_is_anthropics(void **state)
{
	(void)state;
	assert_true(mock_custom_id_ok(S("a-Z_09")));
	char id[65];
	memset(id, 'a', 65);
	assert_true(mock_custom_id_ok(id, 64));
	assert_false(mock_custom_id_ok(id, 65));
	assert_false(mock_custom_id_ok(S("")));
	assert_false(mock_custom_id_ok(S("a b")));
	assert_false(mock_custom_id_ok(S("a\\u0041")));
	assert_false(mock_custom_id_ok(S("\xc3\xa9")));
}

static void range_takes_one_byte_range(void **state)
{
	(void)state;
	uint64_t f, t;
	assert_true(mock_parse_range(S("bytes=100-"), &f, &t));
	assert_int_equal(f, 100);
	assert_true(t == UINT64_MAX);
	assert_true(mock_parse_range(S("Bytes=0-9"), &f, &t));
	assert_int_equal(t, 9);
	assert_false(mock_parse_range(S("bytes=9-0"), &f, &t));
	assert_false(mock_parse_range(S("bytes=-5"), &f, &t));
	assert_false(mock_parse_range(S("bytes=1-2,4-5"), &f, &t));
	assert_false(mock_parse_range(S("items=1-"), &f, &t));
	assert_false(mock_parse_range(S("bytes=99999999999999999999-"), &f, &t));
}

static void idmap_counts_many_keys(void **state)
{
	(void)state;
	struct mock_idmap m = {0};
	char k[16];
	for (int round = 1; round <= 2; round++)
		for (int i = 0; i < 20000; i++) {
			int n = snprintf(k, sizeof(k), "id%d", i);
			assert_int_equal(mock_idmap_add(&m, k, (size_t)n, 1), (uint32_t)round);
		}
	assert_int_equal(m.n, 20000);
	assert_int_equal(mock_idmap_get(&m, S("id19999")), 2);
	assert_int_equal(mock_idmap_get(&m, S("id20000")), 0);
	assert_int_equal(mock_idmap_add(&m, "", 0, 3), 3);
	mock_idmap_free(&m);
	assert_int_equal(mock_idmap_get(&m, S("id1")), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(boundary_is_found_plain_quoted_and_in_any_case),
		cmocka_unit_test(boundary_refuses_what_is_not_usable),
		cmocka_unit_test(multipart_gives_each_part_with_its_name_and_data),
		cmocka_unit_test(multipart_skips_a_preamble_and_allows_empty_data),
		cmocka_unit_test(multipart_refuses_malformed_bodies),
		cmocka_unit_test(multipart_every_prefix_is_safe),
		cmocka_unit_test(json_skip_accepts_values_and_refuses_the_rest),
		cmocka_unit_test(json_fields_finds_keys_and_kinds),
		cmocka_unit_test(custom_id_rule_is_anthropics),
		cmocka_unit_test(range_takes_one_byte_range),
		cmocka_unit_test(idmap_counts_many_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * jcs.c: RFC 8785 canonical JSON, the form the response cache hashes.
 * Each case is a text and the canonical form it must have; texts that
 * mean the same request must come out the same bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format/jcs.h"
#include "llmring.h"

static char *canon(const char *text, const char *const *drop, int ndrop, int *ret)
{
	struct buf b = {0};
	*ret = jcs_canonicalize(text, strlen(text), drop, ndrop, &b);
	buf_append(&b, "", 1);
	char *s = strdup(b.data ? b.data : "");
	buf_free(&b);
	return s;
}

static void expect(const char *text, const char *want)
{
	int ret;
	char *got = canon(text, NULL, 0, &ret);
	if (ret != 0 || strcmp(got, want) != 0)
		print_error("text %s: got %s (%d), want %s\n", text, got, ret, want);
	assert_int_equal(ret, 0);
	assert_string_equal(got, want);
	free(got);
}

static void refused(const char *text)
{
	int ret;
	char *got = canon(text, NULL, 0, &ret);
	if (ret != LR_EPROTO)
		print_error("text %s: accepted as %s\n", text, got);
	assert_int_equal(ret, LR_EPROTO);
	free(got);
}

static void test_whitespace_goes(void **state)
{
	(void)state;
	expect(" { \"a\" : [ 1 , 2 ,\n\t3 ] , \"b\" : { } }\r\n", "{\"a\":[1,2,3],\"b\":{}}");
	expect("[ ]", "[]");
	expect(" true ", "true");
}

static void test_keys_sorted_at_every_level(void **state)
{
	(void)state;
	expect("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5}",
	       "{\"max_tokens\":5,\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],\"model\":\"m\"}");
	expect("{\"b\":1,\"a\":{\"z\":1,\"y\":2}}", "{\"a\":{\"y\":2,\"z\":1},\"b\":1}");
	/* Array order is meaning: kept. */
	expect("[3,1,2]", "[3,1,2]");
}

/* RFC 8785 3.2.3: UTF-16 code units, so U+1F600 (a surrogate pair,
 * D83D) sorts before U+FB33 although its code point is larger. */
static void test_keys_sort_by_utf16_units(void **state)
{
	(void)state;
	expect("{\"\xef\xac\xb3\":1,\"\xf0\x9f\x98\x80\":2,\"a\":3,\"\\u00e9\":4}",
	       "{\"a\":3,\"\xc3\xa9\":4,\"\xf0\x9f\x98\x80\":2,\"\xef\xac\xb3\":1}");
	/* The example of RFC 8785 3.2.3. */
	expect("{\"\\u20ac\":\"Euro Sign\",\"\\r\":\"Carriage Return\",\"\\ufb33\":\"Hebrew\","
	       "\"1\":\"One\",\"\\ud83d\\ude00\":\"Emoji\",\"\\u0080\":\"Control\",\"\\u00f6\":\"Latin\"}",
	       "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\",\"\xc3\xb6\":\"Latin\","
	       "\"\xe2\x82\xac\":\"Euro Sign\",\"\xf0\x9f\x98\x80\":\"Emoji\",\"\xef\xac\xb3\":\"Hebrew\"}");
}

/* Keys that share a prefix, keys past ASCII after a shared prefix, and an
 * object larger than the sort's small case: the same order throughout. */
static void test_keys_sort_whatever_their_count_and_prefixes(void **state)
{
	(void)state;
	expect("{\"ab\":1,\"a\":2,\"abc\":3,\"a\xef\xac\xb3\":4,\"a\xf0\x9f\x98\x80\":5,\"aB\":6}",
	       "{\"a\":2,\"aB\":6,\"ab\":1,\"abc\":3,\"a\xf0\x9f\x98\x80\":5,\"a\xef\xac\xb3\":4}");
	char text[2000], want[2000];
	size_t t = 0, w = 0;
	t += (size_t)snprintf(text + t, sizeof(text) - t, "{");
	w += (size_t)snprintf(want + w, sizeof(want) - w, "{");
	for (int i = 39; i >= 0; i--)
		t += (size_t)snprintf(text + t, sizeof(text) - t, "%s\"k%02d\" : \"v\\u00e9%d\"", i == 39 ? "" : ",", i, i);
	for (int i = 0; i < 40; i++)
		w += (size_t)snprintf(want + w, sizeof(want) - w, "%s\"k%02d\":\"v\xc3\xa9%d\"", i ? "," : "", i, i);
	snprintf(text + t, sizeof(text) - t, "}");
	snprintf(want + w, sizeof(want) - w, "}");
	expect(text, want);
	/* A string without escapes is copied; one with bad UTF-8 is still refused. */
	expect("[\"caf\xc3\xa9 \xe2\x82\xac\"]", "[\"caf\xc3\xa9 \xe2\x82\xac\"]");
	refused("[\"caf\xc3\"]");
	refused("[\"a\xed\xa0\x80\"]");
}

static void test_numbers_in_ecmascript_form(void **state)
{
	(void)state;
	expect("[1.0,1,1e0,10e-1,0.1e1]", "[1,1,1,1,1]");
	expect("[-0,0.0,-0.0]", "[0,0,0]");
	expect("[0.7,0.70,7e-1]", "[0.7,0.7,0.7]");
	expect("[1e21,1e20,123456789012345678901]", "[1e+21,100000000000000000000,123456789012345680000]");
	expect("[1e-6,1e-7,0.000001234,1.5e-10]", "[0.000001,1e-7,0.000001234,1.5e-10]");
	expect("[-1.5,3.14159,2.5e300]", "[-1.5,3.14159,2.5e+300]");
	/* The RFC's appendix B samples. */
	expect("[4.50,2e-3,0.000000000000000000000000001]", "[4.5,0.002,1e-27]");
	expect("[9007199254740992,333333333.33333329,1E30]",
	       "[9007199254740992,333333333.3333333,1e+30]");
}

static void test_number_helper(void **state)
{
	(void)state;
	char out[32];
	assert_int_equal(jcs_number(5e-324, out), strlen("5e-324"));
	assert_string_equal(out, "5e-324");
	jcs_number(1.7976931348623157e308, out);
	assert_string_equal(out, "1.7976931348623157e+308");
	jcs_number(0.1 + 0.2, out);
	assert_string_equal(out, "0.30000000000000004");
	jcs_number(-1e-7, out);
	assert_string_equal(out, "-1e-7");
}

/* Numbers without an exponent and with at most 15 significant digits take
 * a short path (no strtod): each must come out as the general path
 * (strtod, then the shortest form that reads back) writes it. */
static void test_short_numbers_equal_the_general_path(void **state)
{
	(void)state;
	uint32_t x = 2463534242u;
	char token[64], text[80], want[40];
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		/* -?, up to 22 integer digits (0 alone when 0), up to 25 decimals,
		 * zeros likely (they are where the short path counts). */
		size_t o = 0;
		if (x & 1)
			token[o++] = '-';
		int ints = (int)(x >> 1) % 23, decs = (int)(x >> 6) % 26;
		uint32_t y = x;
		for (int d = 0; d < (ints ? ints : 1); d++) {
			y = y * 1103515245u + 12345u;
			char c = (y >> 16) % 3 == 0 ? '0' : (char)('0' + (y >> 18) % 10);
			token[o++] = d == 0 && ints > 1 && c == '0' ? '1' : ints ? c : '0';
		}
		if (decs) {
			token[o++] = '.';
			for (int d = 0; d < decs; d++) {
				y = y * 1103515245u + 12345u;
				token[o++] = (y >> 16) % 2 ? '0' : (char)('0' + (y >> 18) % 10);
			}
		}
		token[o] = '\0';
		snprintf(text, sizeof(text), "[%s]", token);
		want[0] = '[';
		size_t n = jcs_number(strtod(token, NULL), want + 1);
		memcpy(want + 1 + n, "]", 2);
		expect(text, want);
	}
	expect("[0.000001,0.0000001,100000000000000000000,1000000000000000000000]",
	       "[0.000001,1e-7,100000000000000000000,1e+21]");
	expect("[-0.0,0.000,-0,10.050,123456789012345,1234567890123456]",
	       "[0,0,0,10.05,123456789012345,1234567890123456]");
}

static void test_strings_escaped_minimally(void **state)
{
	(void)state;
	/* \u escapes of printable characters become the characters. */
	expect("\"\\u0068\\u0069 \\/ \\u00e9\"", "\"hi / \xc3\xa9\"");
	/* Controls keep the short escapes JSON.stringify uses, else \u00xx. */
	expect("\"a\\nb\\tc\\u0001\\u001f\\b\\f\\r\"", "\"a\\nb\\tc\\u0001\\u001f\\b\\f\\r\"");
	expect("\"q\\\"b\\\\\"", "\"q\\\"b\\\\\"");
	/* U+2028 and DEL are written raw, as JSON.stringify does. */
	expect("\"\\u2028\\u007f\"", "\"\xe2\x80\xa8\x7f\"");
	expect("\"\\uD83D\\uDE00\"", "\"\xf0\x9f\x98\x80\"");
}

static void test_dropped_members_only_at_the_top(void **state)
{
	(void)state;
	static const char *const drop[] = {"user", "metadata", "stream", "stream_options"};
	int ret;
	char *got = canon("{\"user\":\"u1\",\"model\":\"m\",\"stream\":true,\"stream_options\":"
	                  "{\"include_usage\":true},\"metadata\":{\"a\":1},"
	                  "\"messages\":[{\"user\":\"kept\"}]}",
	                  drop, 4, &ret);
	assert_int_equal(ret, 0);
	assert_string_equal(got, "{\"messages\":[{\"user\":\"kept\"}],\"model\":\"m\"}");
	free(got);
	/* An escaped name is the same name. */
	got = canon("{\"us\\u0065r\":1,\"a\":2}", drop, 4, &ret);
	assert_int_equal(ret, 0);
	assert_string_equal(got, "{\"a\":2}");
	free(got);
}

static void test_invalid_text_refused(void **state)
{
	(void)state;
	refused("");
	refused("{");
	refused("{\"a\":1,}");
	refused("[1 2]");
	refused("{\"a\" 1}");
	refused("01");
	refused("1.");
	refused("-");
	refused("1e");
	refused("+1");
	refused("nul");
	refused("{} x");
	refused("\"tab\there\"");
	refused("\"\\x\"");
	refused("\"\\u12\"");
	refused("\"\xff\"");            /* not UTF-8 */
	refused("\"\\ud800\"");         /* a lone high surrogate */
	refused("\"\\udc00x\"");        /* a lone low surrogate */
	refused("\"\\ud800\\u0041\"");  /* a high one without its low one */
	refused("1e400");               /* past double's range */
	char deep[300];
	memset(deep, '[', 200);
	memset(deep + 200, ']', 99);
	deep[299] = '\0';
	refused(deep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whitespace_goes),
		cmocka_unit_test(test_keys_sorted_at_every_level),
		cmocka_unit_test(test_keys_sort_by_utf16_units),
		cmocka_unit_test(test_keys_sort_whatever_their_count_and_prefixes),
		cmocka_unit_test(test_numbers_in_ecmascript_form),
		cmocka_unit_test(test_number_helper),
		cmocka_unit_test(test_short_numbers_equal_the_general_path),
		cmocka_unit_test(test_strings_escaped_minimally),
		cmocka_unit_test(test_dropped_members_only_at_the_top),
		cmocka_unit_test(test_invalid_text_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

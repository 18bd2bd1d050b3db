/*
 * json.c: strict acceptance over jsmn, token navigation, unescaping and
 * escaping.
 *
 * Long (over 800 lines) on purpose: one specification, a table of short
 * independent cases over one parser; split, the cases would lose their order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "format/json.h"
#include "llmring.h"

static int parse_str(struct json_doc *d, const char *s)
{
	return json_parse(d, s, strlen(s));
}

/* ---- acceptance ------------------------------------------------------- */

static const char *const valid_docs[] = {
	"{}",
	"[]",
	" { } ",
	"\n[\t]\r\n",
	"{\"a\":1}",
	"{\"a\" : 1 , \"b\" :[ true , false , null ] }",
	"[1,-1,0,-0,1.5,-0.25,1e5,1E+5,1e-5,12.5e10,0.0]",
	"\"just a string\"",
	"\"\"",
	"123",
	"-0.5e-3",
	"true",
	"false",
	"null",
	"  42  ",
	"[[[[[]]]]]",
	"{\"a\":{\"b\":{\"c\":[{}]}}}",
	"[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"]",
	"{\"\":\"\"}",
	"[{\"a\":[1,{\"b\":2}],\"c\":\"d\"},[],{}]",
	"\"caf\xc3\xa9\"",
};

static const char *const invalid_docs[] = {
	"",
	"   ",
	"{",
	"}",
	"[",
	"]",
	"[1,]",
	"[,1]",
	"[1 2]",
	"[1,,2]",
	"{\"a\":1,}",
	"{,\"a\":1}",
	"{\"a\" 1}",
	"{\"a\":1 \"b\":2}",
	"{\"a\"}",
	"{\"a\",\"b\"}",
	"{\"a\"::1}",
	"{1:2}",
	"{\"a\":}",
	"[1:2]",
	"[\"a\":1]",
	"{}{}",
	"{} []",
	"[] x",
	"{}\"",
	"1 2",
	"\"a\" \"b\"",
	"tru",
	"truee",
	"nul",
	"True",
	"-",
	"01",
	"1.",
	".5",
	"1e",
	"1e+",
	"+1",
	"0x10",
	"[1.2.3]",
	"[--1]",
	"[NaN]",
	"[Infinity]",
	"['a']",
	"\"unterminated",
	"\"bad \\x escape\"",
	"\"bad \\u12G4\"",
	"\"raw\nnewline\"",
	"\"raw\ttab\"",
	"{\"a\":1}}",
	"[1]]",
	"[}",
	"{]",
	"[{]}",
};

static void test_accepts_valid_documents(void **state)
{
	(void)state;
	struct json_doc d = {0};
	for (size_t i = 0; i < sizeof valid_docs / sizeof valid_docs[0]; i++) {
		int rc = parse_str(&d, valid_docs[i]);
		if (rc != 0)
			fail_msg("rejected valid JSON: %s", valid_docs[i]);
		assert_true(d.count >= 1);
	}
	json_doc_free(&d);
}

static void test_rejects_invalid_documents(void **state)
{
	(void)state;
	struct json_doc d = {0};
	for (size_t i = 0; i < sizeof invalid_docs / sizeof invalid_docs[0]; i++) {
		int rc = parse_str(&d, invalid_docs[i]);
		if (rc != LR_EPROTO)
			fail_msg("accepted invalid JSON (rc %d): %s", rc, invalid_docs[i]);
	}
	json_doc_free(&d);
}

static void test_rejects_every_proper_prefix(void **state)
{
	(void)state;
	/* A document cut anywhere (a truncated body) is never accepted; the
	 * only prefixes that are themselves documents are numbers. */
	const char *doc = "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi \\u00e9\"}}],"
	                  "\"usage\":{\"prompt_tokens\":12,\"total\":[true,false,null]}}";
	struct json_doc d = {0};
	size_t n = strlen(doc);
	for (size_t cut = 0; cut < n; cut++) {
		if (json_parse(&d, doc, cut) != LR_EPROTO)
			fail_msg("accepted prefix of length %zu", cut);
	}
	assert_int_equal(json_parse(&d, doc, n), 0);
	json_doc_free(&d);
}

static void test_rejects_embedded_nul_and_trailing_garbage(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, "{}\0{}", 5), LR_EPROTO);
	assert_int_equal(json_parse(&d, "[\"a\0b\"]", 7), LR_EPROTO);
	assert_int_equal(json_parse(&d, "{\"a\":1}\n\nx", 10), LR_EPROTO);
	/* Only len bytes count: what follows is not looked at. */
	assert_int_equal(json_parse(&d, "{\"a\":1}garbage", 7), 0);
	json_doc_free(&d);
}

static void test_rejects_control_byte_at_any_position(void **state)
{
	(void)state;
	/* Raw bytes below 0x20 are invalid inside strings wherever they sit;
	 * bytes at or above 0x80 (UTF-8) are fine. */
	char doc[64];
	struct json_doc d = {0};
	for (size_t at = 0; at < 40; at++) {
		for (int bad = 0; bad < 0x20; bad += 0x1f) {
			memset(doc, 0, sizeof doc);
			doc[0] = '"';
			memset(doc + 1, 'a', 40);
			for (size_t k = 1; k + 1 <= 40; k += 3)
				doc[k] = (char)0xc3, doc[k + 1] = (char)0xa9;
			doc[41] = '"';
			assert_int_equal(json_parse(&d, doc, 42), 0);
			doc[1 + at] = (char)bad;
			if (json_parse(&d, doc, 42) != LR_EPROTO)
				fail_msg("byte 0x%02x at %zu accepted", bad, at);
		}
	}
	json_doc_free(&d);
}

static void test_rejects_excessive_depth(void **state)
{
	(void)state;
	/* Far too deep is refused at once; 128 levels are the limit. */
	size_t depth = 1000000;
	char *s = malloc(2 * depth);
	assert_non_null(s);
	memset(s, '[', depth);
	memset(s + depth, ']', depth);
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, s, 2 * depth), LR_EPROTO);
	assert_int_equal(json_parse(&d, s + depth - 128, 256), 0);
	assert_int_equal(json_parse(&d, s + depth - 129, 258), LR_EPROTO);
	/* Objects count as levels too; brackets inside strings do not. */
	char doc[4096];
	size_t len = 0;
	for (int k = 0; k < 128; k++)
		len += (size_t)sprintf(doc + len, "{\"k\":");
	len += (size_t)sprintf(doc + len, "\"[[[[{{{{\"");
	for (int k = 0; k < 128; k++)
		doc[len++] = '}';
	assert_int_equal(json_parse(&d, doc, len), 0);
	assert_int_equal(parse_str(&d, "{\"k\":[\"[[[[[[\"]}"), 0);
	/* Many brackets side by side are not depth. */
	size_t n = 5000;
	char *flat = malloc(3 * n + 2);
	assert_non_null(flat);
	size_t fl = 0;
	flat[fl++] = '[';
	for (size_t k = 0; k < n; k++) {
		flat[fl++] = '[';
		flat[fl++] = ']';
		flat[fl++] = ',';
	}
	flat[fl - 1] = ']';
	assert_int_equal(json_parse(&d, flat, fl), 0);
	json_doc_free(&d);
	free(flat);
	free(s);
}

static void test_grows_token_array(void **state)
{
	(void)state;
	/* Far more tokens than the initial array holds. */
	struct json_doc d = {0};
	size_t n = 50000;
	char *s = malloc(n * 2 + 3);
	assert_non_null(s);
	size_t len = 0;
	s[len++] = '[';
	for (size_t i = 0; i < n; i++) {
		if (i)
			s[len++] = ',';
		s[len++] = (char)('0' + i % 10);
	}
	s[len++] = ']';
	assert_int_equal(json_parse(&d, s, len), 0);
	assert_int_equal(d.count, (int)n + 1);
	assert_int_equal(d.tok[0].size, (int)n);
	assert_int_equal(json_skip(&d, 0), (int)n + 1);
	int64_t v;
	assert_true(json_get_int(&d, (int)n, &v));
	assert_int_equal(v, (int64_t)((n - 1) % 10));
	json_doc_free(&d);
	free(s);
}

static void test_doc_is_reusable(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(parse_str(&d, "[1,2,3,4,5,6,7,8,9]"), 0);
	assert_int_equal(d.count, 10);
	assert_int_equal(parse_str(&d, "[1,"), LR_EPROTO);
	assert_int_equal(parse_str(&d, "{\"k\":\"v\"}"), 0);
	assert_int_equal(d.count, 3);
	assert_true(json_string_eq(&d, json_object_get(&d, 0, "k"), "v"));
	json_doc_free(&d);
	json_doc_free(&d); /* twice is harmless */
}

/* An array of many objects (an embeddings response) parses in linear time. */
static void test_array_of_objects_is_linear(void **state)
{
	(void)state;
	size_t n = 20000;
	const char *item = "{\"object\":\"embedding\",\"index\":7,\"embedding\":[0.1,0.2,0.3]},";
	size_t item_len = strlen(item);
	char *s = malloc(n * item_len + 16);
	assert_non_null(s);
	size_t len = 0;
	s[len++] = '[';
	for (size_t i = 0; i < n; i++) {
		memcpy(s + len, item, item_len);
		len += item_len;
	}
	s[len - 1] = ']';
	struct json_doc d = {0};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(json_parse(&d, s, len), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s_taken = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* Quadratic scanning would take tens of seconds; linear is ~ms. */
	assert_true(s_taken < 2.0);
	assert_int_equal(d.tok[0].size, (int)n);
	/* The last item's index. */
	int last = 1;
	for (size_t i = 1; i < n; i++)
		last = json_skip(&d, last);
	int64_t v = 0;
	assert_true(json_get_int(&d, json_object_get(&d, last, "index"), &v));
	assert_int_equal(v, 7);
	json_doc_free(&d);
	free(s);
}

/* ---- tokens and navigation ---------------------------------------------- */

static const char *sample =
	"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
	"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello\"}}],"
	"\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"nested\":{\"deep\":-7}},"
	"\"flag\":true,\"none\":null}";

static void test_token_layout(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(parse_str(&d, sample), 0);
	assert_int_equal(d.tok[0].type, JSON_OBJECT);
	assert_int_equal(d.tok[0].start, 0);
	assert_int_equal(d.tok[0].end, (int)strlen(sample));
	assert_int_equal(d.tok[0].size, 6);
	/* Strings exclude their quotes. */
	assert_int_equal(d.tok[1].type, JSON_STRING);
	assert_int_equal(d.tok[1].start, 2);
	assert_int_equal(d.tok[1].end, 4);
	assert_int_equal(d.tok[1].size, 1);
	assert_int_equal(json_skip(&d, 0), d.count);
	json_doc_free(&d);
}

static void test_object_get_and_path(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(parse_str(&d, sample), 0);
	assert_true(json_string_eq(&d, json_object_get(&d, 0, "object"), "chat.completion"));
	assert_int_equal(json_object_get(&d, 0, "missing"), -1);
	assert_int_equal(json_object_get(&d, 0, "chat.completion"), -1); /* values are not keys */
	int choices = json_object_get(&d, 0, "choices");
	assert_int_equal(d.tok[choices].type, JSON_ARRAY);
	assert_int_equal(json_object_get(&d, choices, "index"), -1); /* not an object */
	int first = choices + 1;
	assert_true(json_string_eq(&d, json_path(&d, first, "message.content"), "Hello"));
	int64_t v = 0;
	assert_true(json_get_int(&d, json_path(&d, 0, "usage.prompt_tokens"), &v));
	assert_int_equal(v, 12);
	assert_true(json_get_int(&d, json_path(&d, 0, "usage.nested.deep"), &v));
	assert_int_equal(v, -7);
	assert_int_equal(json_path(&d, 0, "usage.nope"), -1);
	assert_int_equal(json_path(&d, 0, "usage.prompt_tokens.x"), -1);
	assert_int_equal(json_path(&d, 0, "flag.x"), -1);
	assert_int_equal(json_object_get(&d, -1, "id"), -1);
	assert_int_equal(json_object_get(&d, 10000, "id"), -1);
	/* The member after a nested object is still found. */
	assert_int_equal(d.tok[json_object_get(&d, 0, "flag")].type, JSON_PRIMITIVE);
	json_doc_free(&d);
}

static void test_string_eq_is_exact(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(parse_str(&d, "[\"abc\",\"ab\",\"a\\u0062c\",12]"), 0);
	assert_true(json_string_eq(&d, 1, "abc"));
	assert_false(json_string_eq(&d, 1, "ab"));
	assert_false(json_string_eq(&d, 1, "abcd"));
	assert_true(json_string_eq(&d, 2, "ab"));
	assert_false(json_string_eq(&d, 3, "abc")); /* raw bytes, no unescaping */
	assert_false(json_string_eq(&d, 4, "12"));  /* not a string */
	assert_false(json_string_eq(&d, 0, ""));
	json_doc_free(&d);
}

static void test_get_int(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(parse_str(&d, "[0,-0,42,-42,9223372036854775807,-9223372036854775808,"
	                                "9223372036854775808,-9223372036854775809,1.5,1e3,"
	                                "true,null,\"7\"]"), 0);
	int64_t v = 99;
	assert_true(json_get_int(&d, 1, &v));
	assert_int_equal(v, 0);
	assert_true(json_get_int(&d, 2, &v));
	assert_int_equal(v, 0);
	assert_true(json_get_int(&d, 3, &v));
	assert_int_equal(v, 42);
	assert_true(json_get_int(&d, 4, &v));
	assert_int_equal(v, -42);
	assert_true(json_get_int(&d, 5, &v));
	assert_true(v == INT64_MAX);
	assert_true(json_get_int(&d, 6, &v));
	assert_true(v == INT64_MIN);
	v = 5;
	assert_false(json_get_int(&d, 7, &v)); /* overflow */
	assert_false(json_get_int(&d, 8, &v));
	assert_false(json_get_int(&d, 9, &v));  /* fraction */
	assert_false(json_get_int(&d, 10, &v)); /* exponent */
	assert_false(json_get_int(&d, 11, &v));
	assert_false(json_get_int(&d, 12, &v));
	assert_false(json_get_int(&d, 13, &v)); /* a string */
	assert_false(json_get_int(&d, -1, &v));
	assert_int_equal(v, 5); /* untouched on failure */
	json_doc_free(&d);
}

/* ---- strings ------------------------------------------------------------ */

static void test_get_string_unescapes(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(parse_str(&d, "[\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"]"), 0);
	char out[64];
	long n = json_get_string(&d, 1, out, sizeof out);
	assert_int_equal(n, 17);
	assert_memory_equal(out, "a\"b\\c/d\be\ff\ng\rh\ti", 18);
	json_doc_free(&d);
}

static void test_get_string_unicode_escapes(void **state)
{
	(void)state;
	struct json_doc d = {0};
	/* U+0041, U+00E9 (2 bytes), U+20AC (3 bytes), U+1F600 as a surrogate pair. */
	assert_int_equal(parse_str(&d, "[\"\\u0041\\u00e9\\u20AC\\uD83D\\uDE00\"]"), 0);
	char out[64];
	long n = json_get_string(&d, 1, out, sizeof out);
	assert_int_equal(n, 1 + 2 + 3 + 4);
	assert_string_equal(out, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	json_doc_free(&d);
}

static void test_get_string_lone_surrogates_become_replacement(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(parse_str(&d, "[\"\\uD83Dx\",\"\\uDE00\",\"\\uD83D\\u0041\",\"\\uD83D\"]"), 0);
	char out[64];
	assert_int_equal(json_get_string(&d, 1, out, sizeof out), 4);
	assert_string_equal(out, "\xef\xbf\xbdx");
	assert_int_equal(json_get_string(&d, 2, out, sizeof out), 3);
	assert_string_equal(out, "\xef\xbf\xbd");
	assert_int_equal(json_get_string(&d, 3, out, sizeof out), 4);
	assert_string_equal(out, "\xef\xbf\xbd" "A");
	assert_int_equal(json_get_string(&d, 4, out, sizeof out), 3);
	assert_string_equal(out, "\xef\xbf\xbd");
	json_doc_free(&d);
}

static void test_get_string_truncates_and_reports_full_length(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(parse_str(&d, "{\"k\":\"hello\\nworld\"}"), 0);
	int v = json_object_get(&d, 0, "k");
	char out[6];
	memset(out, 'X', sizeof out);
	assert_int_equal(json_get_string(&d, v, out, sizeof out), 11);
	assert_string_equal(out, "hello");
	char one[1] = {'X'};
	assert_int_equal(json_get_string(&d, v, one, 1), 11);
	assert_int_equal(one[0], '\0');
	assert_int_equal(json_get_string(&d, v, NULL, 0), 11);
	assert_int_equal(json_get_string(&d, 0, out, sizeof out), -1); /* not a string */
	json_doc_free(&d);
}

static void test_dup_string(void **state)
{
	(void)state;
	struct json_doc d = {0};
	assert_int_equal(parse_str(&d, "{\"k\":\"x\\u00e9\\ty\",\"e\":\"\",\"n\":1}"), 0);
	char *s = json_dup_string(&d, json_object_get(&d, 0, "k"));
	assert_non_null(s);
	assert_string_equal(s, "x\xc3\xa9\ty");
	free(s);
	s = json_dup_string(&d, json_object_get(&d, 0, "e"));
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
	assert_null(json_dup_string(&d, json_object_get(&d, 0, "n")));
	assert_null(json_dup_string(&d, -1));
	json_doc_free(&d);
}

static void test_span_includes_quotes(void **state)
{
	(void)state;
	struct json_doc d = {0};
	const char *doc = "{\"s\":\"a\\\"b\",\"o\":{\"x\":[1, 2]},\"n\":-1.5}";
	assert_int_equal(parse_str(&d, doc), 0);
	const char *p;
	size_t n;
	json_span(&d, json_object_get(&d, 0, "s"), &p, &n);
	assert_int_equal(n, 6);
	assert_memory_equal(p, "\"a\\\"b\"", 6);
	json_span(&d, json_object_get(&d, 0, "o"), &p, &n);
	assert_int_equal(n, 12);
	assert_memory_equal(p, "{\"x\":[1, 2]}", 12);
	json_span(&d, json_object_get(&d, 0, "n"), &p, &n);
	assert_int_equal(n, 4);
	assert_memory_equal(p, "-1.5", 4);
	json_span(&d, 0, &p, &n);
	assert_int_equal(n, strlen(doc));
	json_doc_free(&d);
}

static void test_append_string_escapes(void **state)
{
	(void)state;
	struct buf b = {0};
	const char in[] = "plain \"q\" back\\ nl\n cr\r tab\t bs\b ff\f nul\0 x01\x01 x1f\x1f del\x7f \xc3\xa9";
	assert_int_equal(json_append_string(&b, in, sizeof in - 1), 0);
	const char want[] = "\"plain \\\"q\\\" back\\\\ nl\\n cr\\r tab\\t bs\\b ff\\f nul\\u0000"
	                    " x01\\u0001 x1f\\u001f del\x7f \xc3\xa9\"";
	assert_int_equal(b.len, sizeof want - 1);
	assert_memory_equal(b.data, want, b.len);
	buf_free(&b);
}

/* The escaping json_append_string must produce, a byte at a time (for
 * the special bytes the test below places). */
static void reference_escape(struct buf *b, const char *s, size_t len)
{
	buf_append(b, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"')
			buf_append(b, "\\\"", 2);
		else if (c == '\\')
			buf_append(b, "\\\\", 2);
		else if (c == '\n')
			buf_append(b, "\\n", 2);
		else if (c == 0x01)
			buf_append(b, "\\u0001", 6);
		else if (c == 0xff)
			buf_append(b, "\xef\xbf\xbd", 3);
		else if (c == 0xc3 && i + 1 < len && (unsigned char)s[i + 1] == 0xa9) {
			buf_append(b, s + i, 2);
			i++;
		} else
			buf_append(b, s + i, 1);
	}
	buf_append(b, "\"", 1);
}

/* The 16-byte copy-and-check steps: each kind of special byte (quote,
 * backslash, newline, a control character, a byte that is not UTF-8, a
 * two-byte UTF-8 sequence, DEL which is plain) at every offset of strings
 * up to 40 bytes, appended after prefixes that leave the buffer nearly
 * full, come out as the byte-at-a-time escaping says. */
static void test_append_string_specials_at_every_offset(void **state)
{
	(void)state;
	static const char *const specials[] = {"\"", "\\", "\n", "\x01", "\xff", "\xc3\xa9", "\x7f"};
	char in[48];
	for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
		size_t sl = strlen(specials[k]);
		for (size_t len = sl; len <= 40; len++) {
			for (size_t at = 0; at + sl <= len; at++) {
				for (size_t pre = 0; pre < 3; pre++) {
					memset(in, 'a' + (int)(len % 26), len);
					memcpy(in + at, specials[k], sl);
					struct buf got = {0}, want = {0}; /* owner: this block */
					for (size_t i = 0; i < pre * 7; i++) {
						buf_append(&got, "p", 1);
						buf_append(&want, "p", 1);
					}
					assert_int_equal(json_append_string(&got, in, len), 0);
					reference_escape(&want, in, len);
					assert_int_equal(got.len, want.len);
					assert_memory_equal(got.data, want.data, want.len);
					buf_free(&got);
					buf_free(&want);
				}
			}
		}
	}
	/* Plain strings of every length to 70: copied whole, closing quote last. */
	for (size_t len = 0; len <= 70; len++) {
		char plain[72];
		for (size_t i = 0; i < len; i++)
			plain[i] = (char)(' ' + (i * 7) % 60 + (i % 2)); /* no quote or backslash below */
		for (size_t i = 0; i < len; i++)
			if (plain[i] == '"' || plain[i] == '\\')
				plain[i] = 'x';
		struct buf got = {0}; /* owner: this block */
		assert_int_equal(json_append_string(&got, plain, len), 0);
		assert_int_equal(got.len, len + 2);
		assert_int_equal(got.data[0], '"');
		assert_memory_equal(got.data + 1, plain, len);
		assert_int_equal(got.data[len + 1], '"');
		buf_free(&got);
	}
}

static void test_append_string_round_trips(void **state)
{
	(void)state;
	/* Every ASCII byte and valid UTF-8 survive escaping and unescaping;
	 * bytes that are not UTF-8 become U+FFFD (what is written stays JSON). */
	char in[256];
	for (int i = 0; i < 128; i++)
		in[i] = (char)(i == 0 ? 1 : i);
	for (int i = 128; i + 1 < 256; i += 2) { /* U+0080..U+07FF as 2-byte sequences */
		unsigned cp = 0x80 + (unsigned)(i - 128) * 13;
		in[i] = (char)(0xc0 | (cp >> 6));
		in[i + 1] = (char)(0x80 | (cp & 0x3f));
	}
	struct buf b = {0};
	assert_int_equal(buf_append(&b, "[", 1), 0);
	assert_int_equal(json_append_string(&b, in, sizeof in), 0);
	assert_int_equal(buf_append(&b, ",", 1), 0);
	assert_int_equal(json_append_string(&b, "", 0), 0);
	assert_int_equal(buf_append(&b, "]", 1), 0);
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, b.data, b.len), 0);
	char out[300];
	assert_int_equal(json_get_string(&d, 1, out, sizeof out), 256);
	assert_memory_equal(out, in, 256);
	assert_int_equal(json_get_string(&d, 2, out, sizeof out), 0);
	/* Invalid bytes: replaced, and the result parses. */
	b.len = 0;
	assert_int_equal(json_append_string(&b, "a\xff" "b\xc3", 4), 0);
	assert_int_equal(json_parse(&d, b.data, b.len), 0);
	assert_int_equal(json_get_string(&d, 0, out, sizeof out), 8);
	assert_memory_equal(out, "a\xef\xbf\xbd" "b\xef\xbf\xbd", 8);
	json_doc_free(&d);
	buf_free(&b);
}

static void test_append_string_appends(void **state)
{
	(void)state;
	struct buf b = {0};
	assert_int_equal(buf_append(&b, "{\"k\":", 5), 0);
	assert_int_equal(json_append_string(&b, "v", 1), 0);
	assert_int_equal(buf_append(&b, "}", 1), 0);
	assert_int_equal(b.len, 9);
	assert_memory_equal(b.data, "{\"k\":\"v\"}", 9);
	buf_free(&b);
}


/* ---- json_scan: the single-pass validator of the hot path ---- */

static bool scan_str(const char *s)
{
	return json_scan(s, strlen(s), NULL, NULL);
}

static void test_scan_accepts_valid_documents(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof valid_docs / sizeof valid_docs[0]; i++)
		if (!scan_str(valid_docs[i]))
			fail_msg("json_scan rejected valid JSON: %s", valid_docs[i]);
}

static void test_scan_rejects_invalid_documents(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof invalid_docs / sizeof invalid_docs[0]; i++)
		if (scan_str(invalid_docs[i]))
			fail_msg("json_scan accepted invalid JSON: %s", invalid_docs[i]);
}

static void test_scan_rejects_every_proper_prefix(void **state)
{
	(void)state;
	const char *doc = "{\"a\":[1,2.5e3,{\"b\":\"x\\u00e9\"}],\"c\":true,\"d\":null}";
	size_t n = strlen(doc);
	assert_true(json_scan(doc, n, NULL, NULL));
	for (size_t cut = 0; cut < n; cut++)
		if (json_scan(doc, cut, NULL, NULL))
			fail_msg("accepted a prefix of %zu bytes", cut);
}

struct scan_capture {
	int64_t prompt, completion, cached;
	char model[64];
	int scalars, containers;
};

static void capture_field(void *ctx, const struct json_scan_path *p, enum json_type type,
                          const char *v, size_t len)
{
	struct scan_capture *c = ctx;
	if (type == JSON_OBJECT || type == JSON_ARRAY) {
		c->containers++;
		return;
	}
	c->scalars++;
	static const char *const prompt[] = {"usage", "prompt_tokens"};
	static const char *const completion[] = {"usage", "completion_tokens"};
	static const char *const cached[] = {"usage", "prompt_tokens_details", "cached_tokens"};
	static const char *const model[] = {"model"};
	char num[32];
	snprintf(num, sizeof num, "%.*s", (int)len, v);
	if (json_scan_path_is(p, prompt, 2))
		c->prompt = atoll(num);
	else if (json_scan_path_is(p, completion, 2))
		c->completion = atoll(num);
	else if (json_scan_path_is(p, cached, 3))
		c->cached = atoll(num);
	else if (type == JSON_STRING && json_scan_path_is(p, model, 1))
		snprintf(c->model, sizeof c->model, "%.*s", (int)len, v);
}

static void test_scan_reports_scalars_with_their_keys(void **state)
{
	(void)state;
	const char *doc =
		"{\"id\":\"x\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"message\":{\"content\":\"hi\"},"
		"\"usage\":{\"prompt_tokens\":99}}],"
		"\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,"
		"\"prompt_tokens_details\":{\"cached_tokens\":5}}}";
	struct scan_capture c = {0};
	assert_true(json_scan(doc, strlen(doc), capture_field, &c));
	/* The usage inside choices[0] sits at another path and is not taken. */
	assert_int_equal(c.prompt, 12);
	assert_int_equal(c.completion, 34);
	assert_int_equal(c.cached, 5);
	assert_string_equal(c.model, "gpt-4o-mini");
	assert_int_equal(c.scalars, 7);
	/* top, choices, choices[0], message, its usage, usage, details */
	assert_int_equal(c.containers, 7);
}

static void test_scan_rejects_excessive_depth(void **state)
{
	(void)state;
	char deep[2 * (JSON_SCAN_MAX_DEPTH + 1) + 1];
	size_t n = 0;
	for (int i = 0; i <= JSON_SCAN_MAX_DEPTH; i++)
		deep[n++] = '[';
	for (int i = 0; i <= JSON_SCAN_MAX_DEPTH; i++)
		deep[n++] = ']';
	assert_false(json_scan(deep, n, NULL, NULL));
	assert_true(json_scan(deep + 1, n - 2, NULL, NULL)); /* exactly the limit */
}

/* json_scan and json_parse must agree on every document: mutate a
 * response byte by byte (deterministically) and compare verdicts. */
static void test_scan_agrees_with_parse_on_mutations(void **state)
{
	(void)state;
	static const char seed[] =
		"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,"
		"\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
		"\"content\":\"a \\\"b\\\" \\u00e9\\n\",\"refusal\":null},\"finish_reason\":\"stop\"}],"
		"\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":-7.5e-3,\"x\":[true,false,[]]}}";
	static const char alphabet[] = "{}[]\",:\\ u0123456789abcdeflnrstE.-+\t\n\x01\x7f\xc3";
	struct json_doc d = {0};
	char buf[sizeof seed + 8];
	uint64_t rng = 0x9e3779b97f4a7c15u;
	int disagreements = 0, accepted = 0;
	for (int iter = 0; iter < 40000; iter++) {
		size_t n = sizeof seed - 1;
		memcpy(buf, seed, n);
		int edits = 1 + (int)(iter % 3);
		for (int e = 0; e < edits; e++) {
			rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
			size_t pos = (size_t)(rng % n);
			char c = alphabet[(rng >> 32) % (sizeof alphabet - 1)];
			switch ((rng >> 48) % 3) {
			case 0: buf[pos] = c; break;                                  /* replace */
			case 1: memmove(buf + pos, buf + pos + 1, n - pos - 1); n--; break; /* delete */
			default: memmove(buf + pos + 1, buf + pos, n - pos); buf[pos] = c; n++; break;
			}
		}
		bool by_scan = json_scan(buf, n, NULL, NULL);
		bool by_parse = json_parse(&d, buf, n) == 0;
		accepted += by_scan;
		if (by_scan != by_parse && disagreements++ < 5)
			print_message("disagree (scan %d, parse %d): %.*s\n", by_scan, by_parse, (int)n, buf);
	}
	json_doc_free(&d);
	assert_int_equal(disagreements, 0);
	assert_true(accepted > 100); /* the mutations left some documents valid */
}

/* The string scan goes 16 bytes a step: a quote, backslash or control byte
 * must be found at every offset, across block boundaries. */
static void test_scan_finds_specials_at_every_offset(void **state)
{
	(void)state;
	char buf[80];
	struct json_doc d = {0};
	for (int len = 0; len < 48; len++) {
		for (int k = 0; k < len; k++) {
			static const char specials[] = {'\x01', '\x1f', '\t', '\\', '"', '\x7f', '\xe9'};
			for (size_t s = 0; s < sizeof specials; s++) {
				buf[0] = '"';
				memset(buf + 1, 'a', (size_t)len);
				buf[1 + k] = specials[s];
				buf[1 + len] = '"';
				size_t n = (size_t)len + 2;
				bool by_scan = json_scan(buf, n, NULL, NULL);
				bool by_parse = json_parse(&d, buf, n) == 0;
				if (by_scan != by_parse)
					fail_msg("len %d, byte 0x%02x at %d: scan %d parse %d", len,
					         (unsigned char)specials[s], k, by_scan, by_parse);
				/* DEL is plain; a lone 0xe9 is not UTF-8; the rest end or
				 * break the string. */
				bool plain = specials[s] == '\x7f';
				assert_int_equal(by_scan, plain);
			}
		}
	}
	json_doc_free(&d);
}

/* JSON text is UTF-8: both parsers accept every valid sequence, at any
 * offset (the scanners work 8 and 16 bytes at a time), and refuse the rest. */
static void test_strings_must_be_utf8(void **state)
{
	(void)state;
	static const char *const good[] = {
		"caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf",
		"\xe0\xa0\x80", "\xed\x9f\xbf", "\xf0\x90\x80\x80",
	};
	static const char *const bad[] = {
		"\x80", "\xbf", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xed\xbf\xbf",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xe2\x82", "\xf0\x9f\x98", "\xc3",
		"\xc3\x28", "\xe2\x28\xa1",
	};
	for (int pad = 0; pad < 20; pad++) {
		for (size_t k = 0; k < sizeof(good) / sizeof(good[0]) + sizeof(bad) / sizeof(bad[0]); k++) {
			bool ok = k < sizeof(good) / sizeof(good[0]);
			const char *bytes = ok ? good[k] : bad[k - sizeof(good) / sizeof(good[0])];
			char text[128];
			/* ASCII padding before and after moves the sequence across
			 * the scanners' block boundaries. */
			int n = snprintf(text, sizeof(text), "{\"k\":\"%.*s%s%.*s\"}", pad,
			                 "abcdefghijklmnopqrstuvwxyz", bytes, pad % 7, "0123456");
			struct json_doc d = {0};
			bool parsed = json_parse(&d, text, (size_t)n) == 0;
			json_doc_free(&d);
			bool scanned = json_scan(text, (size_t)n, NULL, NULL);
			if (parsed != ok || scanned != ok)
				fail_msg("pad %d case %zu: parse %d scan %d, want %d", pad, k, parsed, scanned, ok);
		}
	}
	/* Keys too, and plain ASCII still fine. */
	assert_false(json_scan("{\"\xc0\":1}", 8, NULL, NULL));
	assert_true(json_scan("{\"a\":\"plain ascii only\"}", 24, NULL, NULL));
}

/* A string near the end of the text is checked with the text's last 16
 * bytes as one step: what lies before the string in that window (quotes,
 * backslashes, control bytes of nothing: escapes of the string before)
 * must not count, and what lies in it must. */
static void test_scan_strings_near_the_end(void **state)
{
	(void)state;
	struct json_doc d = {0};
	static const char *const before[] = {"\\\"\\\\\\n", "\\u00e9\\t", "caf\xc3\xa9", "\\\\"};
	static const char specials[] = {'a', '\x01', '\x1f', '\\', '"', '\x7f', '\xe9'};
	for (size_t b = 0; b < sizeof(before) / sizeof(before[0]); b++) {
		for (int len = 0; len < 20; len++) {
			for (int k = -1; k < len; k++) {
				for (size_t sp = 0; sp < sizeof specials; sp++) {
					char str[24], text[96];
					memset(str, 'x', (size_t)len);
					if (k >= 0)
						str[k] = specials[sp];
					int n = snprintf(text, sizeof(text), "[\"%s\",\"%.*s\"]", before[b], len, str);
					bool by_scan = json_scan(text, (size_t)n, NULL, NULL);
					bool by_parse = json_parse(&d, text, (size_t)n) == 0;
					if (by_scan != by_parse)
						fail_msg("before %zu, len %d, byte 0x%02x at %d: scan %d parse %d", b, len,
						         (unsigned char)specials[sp], k, by_scan, by_parse);
					/* Cut anywhere, it is not JSON. */
					for (int cut = n - 1; cut > n - 20 && cut > 0; cut--)
						if (json_scan(text, (size_t)cut, NULL, NULL))
							fail_msg("accepted %d of %d bytes: %.*s", cut, n, n, text);
				}
			}
		}
	}
	json_doc_free(&d);
}

/* Digits are skipped eight at a time: every run length, followed by every
 * kind of byte (the ones either side of '0'..'9' included), at every
 * alignment, is judged as json_parse judges it. */
static void test_scan_numbers_of_every_length(void **state)
{
	(void)state;
	struct json_doc d = {0};
	static const char *const after[] = {"", ",0", ".5", "e3", "E-2", "x", "/", ":", "\xba", "\x80",
	                                    " ", "]", "-", "+1", ".", "e", "0"};
	for (int pad = 0; pad < 9; pad++) {
		for (int digits = 1; digits < 26; digits++) {
			for (size_t a = 0; a < sizeof(after) / sizeof(after[0]); a++) {
				for (int lead = 0; lead < 3; lead++) {
					char num[40], text[128];
					for (int i = 0; i < digits; i++)
						num[i] = (char)('1' + (i * 7 + lead) % 9);
					if (lead == 2)
						num[0] = '0'; /* a leading zero: valid alone only */
					num[digits] = '\0';
					int n = snprintf(text, sizeof(text), "[%.*s%s%s%s]", pad, "         ",
					                 lead == 1 ? "-" : "", num, after[a]);
					bool by_scan = json_scan(text, (size_t)n, NULL, NULL);
					bool by_parse = json_parse(&d, text, (size_t)n) == 0;
					if (by_scan != by_parse)
						fail_msg("%s: scan %d parse %d", text, by_scan, by_parse);
					/* The same number as the whole text: nothing after it. */
					n = snprintf(text, sizeof(text), "%s%s%s", lead == 1 ? "-" : "", num, after[a]);
					by_scan = json_scan(text, (size_t)n, NULL, NULL);
					by_parse = json_parse(&d, text, (size_t)n) == 0;
					if (by_scan != by_parse)
						fail_msg("%s: scan %d parse %d", text, by_scan, by_parse);
				}
			}
		}
	}
	json_doc_free(&d);
}

/* What json_scan reports, as one line per value: depth, type, the keys
 * leading to it, its text (a container's without its whitespace, so a
 * spaced text logs as its compact form does). */
struct value_log {
	char text[4096];
	size_t len;
};

static void log_value(void *ctx, const struct json_scan_path *p, enum json_type type, const char *v,
                      size_t len)
{
	struct value_log *log = ctx;
	char *o = log->text;
	size_t cap = sizeof(log->text);
	log->len += (size_t)snprintf(o + log->len, cap - log->len, "%d %d", p->depth, (int)type);
	for (int i = 0; i < p->depth; i++)
		log->len += (size_t)snprintf(o + log->len, cap - log->len, " %.*s",
		                             p->key[i] ? (int)p->key_len[i] : 1, p->key[i] ? p->key[i] : "-");
	log->len += (size_t)snprintf(o + log->len, cap - log->len, " =");
	for (size_t i = 0; i < len && log->len + 2 < cap; i++)
		if (type == JSON_STRING || type == JSON_PRIMITIVE || !strchr(" \t\n\r", v[i]))
			o[log->len++] = v[i];
	o[log->len++] = '\n';
	o[log->len] = '\0';
}

/* Whitespace anywhere JSON allows it changes neither the verdict nor the
 * values reported; the reports are the ones json.h documents (a container
 * once closed, at its parent's depth and keys). */
static void test_scan_reports_the_same_with_whitespace(void **state)
{
	(void)state;
	const char *compact = "{\"a\":[1,{\"b\":\"x-y\"},[]],\"c\":{\"d\":null,\"e\":-2.5e3},\"f\":\"\"}";
	static struct value_log want, got;
	memset(&want, 0, sizeof(want));
	assert_true(json_scan(compact, strlen(compact), log_value, &want));
	assert_string_equal(want.text, "2 4 a - =1\n"
	                               "3 3 a - b =x-y\n"
	                               "2 1 a - ={\"b\":\"x-y\"}\n"
	                               "2 2 a - =[]\n"
	                               "1 2 a =[1,{\"b\":\"x-y\"},[]]\n"
	                               "2 4 c d =null\n"
	                               "2 4 c e =-2.5e3\n"
	                               "1 1 c ={\"d\":null,\"e\":-2.5e3}\n"
	                               "1 3 f =\n"
	                               "0 1 ={\"a\":[1,{\"b\":\"x-y\"},[]],\"c\":{\"d\":null,\"e\":-2.5e3},\"f\":\"\"}\n");
	static const char *const spaces[] = {" ", "\t", "\n", "\r", "\r\n \t  "};
	size_t n = strlen(compact);
	char text[512];
	for (size_t sp = 0; sp < sizeof(spaces) / sizeof(spaces[0]); sp++) {
		size_t all = 0; /* every place at once, too */
		for (size_t at = 0; at <= n; at++) {
			bool between = at == 0 || at == n || strchr("{}[]:,", compact[at - 1]) ||
			               strchr("{}[]:,", compact[at]);
			if (!between)
				continue;
			int len = snprintf(text, sizeof(text), "%.*s%s%s", (int)at, compact, spaces[sp], compact + at);
			memset(&got, 0, sizeof(got));
			if (!json_scan(text, (size_t)len, log_value, &got))
				fail_msg("rejected whitespace at %zu: %s", at, text);
			assert_string_equal(got.text, want.text);
			all++;
		}
		/* The whole document spaced out. */
		size_t w = 0;
		for (size_t at = 0; at <= n; at++) {
			if (at == 0 || at == n || strchr("{}[]:,", compact[at - 1]) || strchr("{}[]:,", compact[at]))
				w += (size_t)snprintf(text + w, sizeof(text) - w, "%s", spaces[sp]);
			if (at < n)
				text[w++] = compact[at];
		}
		memset(&got, 0, sizeof(got));
		assert_true(json_scan(text, w, log_value, &got));
		assert_string_equal(got.text, want.text);
		assert_true(all > 20);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts_valid_documents),
		cmocka_unit_test(test_rejects_invalid_documents),
		cmocka_unit_test(test_rejects_every_proper_prefix),
		cmocka_unit_test(test_rejects_embedded_nul_and_trailing_garbage),
		cmocka_unit_test(test_rejects_control_byte_at_any_position),
		cmocka_unit_test(test_rejects_excessive_depth),
		cmocka_unit_test(test_grows_token_array),
		cmocka_unit_test(test_doc_is_reusable),
		cmocka_unit_test(test_array_of_objects_is_linear),
		cmocka_unit_test(test_token_layout),
		cmocka_unit_test(test_object_get_and_path),
		cmocka_unit_test(test_string_eq_is_exact),
		cmocka_unit_test(test_get_int),
		cmocka_unit_test(test_get_string_unescapes),
		cmocka_unit_test(test_get_string_unicode_escapes),
		cmocka_unit_test(test_get_string_lone_surrogates_become_replacement),
		cmocka_unit_test(test_get_string_truncates_and_reports_full_length),
		cmocka_unit_test(test_dup_string),
		cmocka_unit_test(test_span_includes_quotes),
		cmocka_unit_test(test_append_string_escapes),
		cmocka_unit_test(test_append_string_round_trips),
		cmocka_unit_test(test_append_string_specials_at_every_offset),
		cmocka_unit_test(test_append_string_appends),
		cmocka_unit_test(test_scan_accepts_valid_documents),
		cmocka_unit_test(test_scan_rejects_invalid_documents),
		cmocka_unit_test(test_scan_rejects_every_proper_prefix),
		cmocka_unit_test(test_scan_reports_scalars_with_their_keys),
		cmocka_unit_test(test_scan_rejects_excessive_depth),
		cmocka_unit_test(test_scan_agrees_with_parse_on_mutations),
		cmocka_unit_test(test_scan_finds_specials_at_every_offset),
		cmocka_unit_test(test_strings_must_be_utf8),
		cmocka_unit_test(test_scan_strings_near_the_end),
		cmocka_unit_test(test_scan_numbers_of_every_length),
		cmocka_unit_test(test_scan_reports_the_same_with_whitespace),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The request serializer, as a specification: the exact bytes it writes,
 * and the inputs it refuses (header injection, non-token names) without
 * writing anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http_writer.h"
#include "http/http_reader.h"
#include "llmring.h"

static void assert_buf_equals(const struct buf *b, const char *expected, size_t len)
{
	assert_int_equal(b->len, len);
	assert_memory_equal(b->data, expected, len);
}

#define ASSERT_BUF(b, lit) assert_buf_equals((b), (lit), sizeof(lit) - 1)

static void request_is_serialized_exactly(void **state)
{
	struct buf b = { 0 };
	assert_int_equal(http_write_request_line(&b, "POST", "/v1/chat/completions",
	                                         "api.example.com:8443"), 0);
	assert_int_equal(http_write_header(&b, "Authorization", 13, "Bearer sk-123", 13), 0);
	assert_int_equal(http_write_header(&b, "Content-Type", 12, "application/json", 16), 0);
	assert_int_equal(http_write_body(&b, "{\"a\":1}", 7), 0);
	ASSERT_BUF(&b, "POST /v1/chat/completions HTTP/1.1\r\n"
	               "Host: api.example.com:8443\r\n"
	               "Authorization: Bearer sk-123\r\n"
	               "Content-Type: application/json\r\n"
	               "Content-Length: 7\r\n"
	               "\r\n"
	               "{\"a\":1}");
	buf_free(&b);
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	assert_int_equal(b.cap, 0);
}

static void empty_body_writes_content_length_zero(void **state)
{
	struct buf b = { 0 };
	assert_int_equal(http_write_request_line(&b, "GET", "/v1/models", "h"), 0);
	assert_int_equal(http_write_body(&b, NULL, 0), 0);
	ASSERT_BUF(&b, "GET /v1/models HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
	buf_free(&b);
}

static void content_length_matches_a_large_body(void **state)
{
	enum { LEN = 1234567 };
	char *body = malloc(LEN); /* owner: this test */
	assert_non_null(body);
	memset(body, 'x', LEN);
	struct buf b = { 0 };
	assert_int_equal(http_write_body(&b, body, LEN), 0);
	static const char head[] = "Content-Length: 1234567\r\n\r\n";
	assert_int_equal(b.len, sizeof(head) - 1 + LEN);
	assert_memory_equal(b.data, head, sizeof(head) - 1);
	assert_memory_equal(b.data + sizeof(head) - 1, body, LEN);
	free(body);
	buf_free(&b);
}

static void empty_and_tab_containing_values_are_allowed(void **state)
{
	struct buf b = { 0 };
	assert_int_equal(http_write_header(&b, "X-Empty", 7, "", 0), 0);
	assert_int_equal(http_write_header(&b, "X-Tab", 5, "a\tb", 3), 0);
	assert_int_equal(http_write_header(&b, "X-Utf8", 6, "caf\xc3\xa9", 5), 0);
	ASSERT_BUF(&b, "X-Empty: \r\nX-Tab: a\tb\r\nX-Utf8: caf\xc3\xa9\r\n");
	buf_free(&b);
}

/* Writes a known prefix, tries the bad header, and checks nothing changed. */
static void expect_header_rejected(const char *name, size_t name_len, const char *value,
                                   size_t value_len)
{
	struct buf b = { 0 };
	assert_int_equal(http_write_header(&b, "X-Ok", 4, "1", 1), 0);
	assert_int_equal(http_write_header(&b, name, name_len, value, value_len), LR_EINVAL);
	ASSERT_BUF(&b, "X-Ok: 1\r\n");
	buf_free(&b);
}

static void cr_lf_nul_in_header_value_are_rejected(void **state)
{
	expect_header_rejected("X-A", 3, "a\rb", 3);
	expect_header_rejected("X-A", 3, "a\nb", 3);
	expect_header_rejected("X-A", 3, "a\r\nEvil: 1", 10);
	expect_header_rejected("X-A", 3, "a\0b", 3);
	expect_header_rejected("X-A", 3, "\n", 1);
}

static void other_control_characters_in_header_value_are_rejected(void **state)
{
	expect_header_rejected("X-A", 3, "a\001b", 3);
	expect_header_rejected("X-A", 3, "a\177b", 3);
}

static void cr_lf_nul_in_header_name_are_rejected(void **state)
{
	expect_header_rejected("X-A\r", 4, "v", 1);
	expect_header_rejected("X-A\n", 4, "v", 1);
	expect_header_rejected("X\r\nEvil", 7, "v", 1);
	expect_header_rejected("X\0A", 3, "v", 1);
}

static void non_token_header_names_are_rejected(void **state)
{
	expect_header_rejected("", 0, "v", 1);
	expect_header_rejected("X A", 3, "v", 1);
	expect_header_rejected("X:A", 3, "v", 1);
	expect_header_rejected("X-A ", 4, "v", 1);
	expect_header_rejected("(X)", 3, "v", 1);
	expect_header_rejected("X\"A", 3, "v", 1);
	expect_header_rejected("X\tA", 3, "v", 1);
	expect_header_rejected("caf\xc3\xa9", 5, "v", 1);
}

static void token_punctuation_in_header_names_is_allowed(void **state)
{
	struct buf b = { 0 };
	assert_int_equal(http_write_header(&b, "!#$%&'*+-.^_`|~09az", 19, "v", 1), 0);
	ASSERT_BUF(&b, "!#$%&'*+-.^_`|~09az: v\r\n");
	buf_free(&b);
}

static void request_line_rejects_injection_and_bad_methods(void **state)
{
	static const char *const bad[][3] = {
		{ "GET", "/a\r\nX: 1", "h" },
		{ "GET", "/a b", "h" },
		{ "GET", "", "h" },
		{ "GET", "/", "h\r\nX: 1" },
		{ "GET", "/", "h h" },
		{ "GET", "/", "" },
		{ "G T", "/", "h" },
		{ "GET\r\n", "/", "h" },
		{ "", "/", "h" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct buf b = { 0 };
		assert_int_equal(http_write_request_line(&b, bad[i][0], bad[i][1], bad[i][2]),
		                 LR_EINVAL);
		assert_int_equal(b.len, 0);
		buf_free(&b);
	}
}

static void buffer_grows_by_doubling_and_keeps_its_bytes(void **state)
{
	struct buf b = { 0 };
	char expected[10000];
	for (size_t i = 0; i < sizeof(expected); i++) {
		expected[i] = (char)('a' + i % 26);
		size_t old_cap = b.cap;
		assert_int_equal(buf_append(&b, &expected[i], 1), 0);
		if (old_cap && b.cap != old_cap)
			assert_int_equal(b.cap, old_cap * 2);
	}
	assert_buf_equals(&b, expected, sizeof(expected));
	buf_free(&b);
}

static void impossible_reservation_is_out_of_memory(void **state)
{
	struct buf b = { 0 };
	assert_int_equal(buf_append(&b, "abc", 3), 0);
	assert_int_equal(buf_reserve(&b, SIZE_MAX), LR_ENOMEM);
	assert_int_equal(buf_reserve(&b, SIZE_MAX - 2), LR_ENOMEM);
	ASSERT_BUF(&b, "abc");
	buf_free(&b);
}

/* Every byte value at every position of targets and hosts of 1..40
 * bytes: refused exactly when it is a control, a space or DEL (the check
 * goes eight bytes a step, so each lane and the tail are tried). */
static void request_line_checks_each_byte_of_target_and_host(void **state)
{
	(void)state;
	char text[41];
	for (size_t len = 1; len <= 40; len++) {
		for (size_t at = 0; at < len; at++) {
			for (int c = 1; c < 256; c++) {
				memset(text, 'a', len);
				text[0] = '/';
				text[at] = (char)c;
				text[len] = '\0';
				bool bad = c <= 0x20 || c == 0x7f;
				struct buf b = {0};
				int rc = http_write_request_line(&b, "POST", text, "h");
				assert_int_equal(rc, bad ? LR_EINVAL : 0);
				buf_clear(&b);
				rc = http_write_request_line(&b, "POST", "/", text);
				assert_int_equal(rc, bad ? LR_EINVAL : 0);
				buf_free(&b);
			}
		}
	}
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(request_is_serialized_exactly),
		cmocka_unit_test(empty_body_writes_content_length_zero),
		cmocka_unit_test(content_length_matches_a_large_body),
		cmocka_unit_test(empty_and_tab_containing_values_are_allowed),
		cmocka_unit_test(cr_lf_nul_in_header_value_are_rejected),
		cmocka_unit_test(other_control_characters_in_header_value_are_rejected),
		cmocka_unit_test(cr_lf_nul_in_header_name_are_rejected),
		cmocka_unit_test(non_token_header_names_are_rejected),
		cmocka_unit_test(token_punctuation_in_header_names_is_allowed),
		cmocka_unit_test(request_line_rejects_injection_and_bad_methods),
		cmocka_unit_test(request_line_checks_each_byte_of_target_and_host),
		cmocka_unit_test(buffer_grows_by_doubling_and_keeps_its_bytes),
		cmocka_unit_test(impossible_reservation_is_out_of_memory),
	};
	return cmocka_run_group_tests_name("http_writer", tests, NULL, NULL);
}

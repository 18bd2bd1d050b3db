/*
 * Newline-delimited JSON framing, as a specification: every stream gives
 * the same lines whether it arrives whole, split in two at every byte, or
 * one byte per feed. Each feed gets a fresh allocation of exactly the
 * piece's size, so AddressSanitizer catches any read past the bytes fed.
 *
 * Lines are recorded as "line=TEXT\n" with LF, CR, NUL and backslash
 * escaped as \n, \r, \0, \\.
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

#include "llmring.h"
#include "format/ndjson.h"

#define LOG_MAX (16 * 1024)

struct log {
	char text[LOG_MAX];
	size_t len;
	int lines;
	int stop_at_line; /* 1-based line whose callback returns stop_rc; 0 never */
	int stop_rc;
};

static void log_raw(struct log *lg, const char *s, size_t n)
{
	assert_true(lg->len + n < LOG_MAX);
	memcpy(lg->text + lg->len, s, n);
	lg->len += n;
	lg->text[lg->len] = '\0';
}

static int log_line(void *ctx, const char *line, size_t len)
{
	struct log *lg = ctx;
	assert_true(len > 0);
	log_raw(lg, "line=", 5);
	for (size_t i = 0; i < len; i++) {
		switch (line[i]) {
		case '\n': log_raw(lg, "\\n", 2); break;
		case '\r': log_raw(lg, "\\r", 2); break;
		case '\0': log_raw(lg, "\\0", 2); break;
		case '\\': log_raw(lg, "\\\\", 2); break;
		default: log_raw(lg, line + i, 1); break;
		}
	}
	log_raw(lg, "\n", 1);
	lg->lines++;
	return lg->lines == lg->stop_at_line ? lg->stop_rc : 0;
}

/* Feeds a private copy of exactly n bytes (NULL when n is 0). */
static int feed_copy(struct ndjson_parser *p, const char *src, size_t n, struct log *lg)
{
	char *copy = NULL;
	if (n) {
		copy = malloc(n);
		assert_non_null(copy);
		memcpy(copy, src, n);
	}
	int rc = ndjson_parser_feed(p, copy, n, log_line, lg);
	free(copy);
	return rc;
}

enum mode { WHOLE, SPLIT, BYTES };

static int run(const char *in, size_t len, enum mode mode, size_t at, size_t max_line,
               struct log *lg)
{
	struct ndjson_parser p;
	ndjson_parser_init(&p, max_line);
	int rc = 0;
	size_t pos = 0;
	while (rc == 0 && pos < len) {
		size_t n = len - pos;
		if (mode == BYTES)
			n = 1;
		else if (mode == SPLIT && pos < at)
			n = at - pos;
		rc = feed_copy(&p, in + pos, n, lg);
		pos += n;
	}
	if (mode == SPLIT && at == len && rc == 0)
		rc = feed_copy(&p, NULL, 0, lg); /* an empty feed changes nothing */
	int frc = ndjson_parser_finish(&p, log_line, lg);
	if (rc == 0)
		rc = frc;
	else
		assert_int_equal(frc, rc); /* the error is sticky */
	ndjson_parser_free(&p);
	return rc;
}

static void check_run(const char *in, size_t len, enum mode mode, size_t at, size_t max_line,
                      int want_rc, const char *want)
{
	struct log lg;
	memset(&lg, 0, sizeof(lg));
	int rc = run(in, len, mode, at, max_line, &lg);
	if (rc != want_rc || strcmp(lg.text, want) != 0) {
		static const char *names[] = {"whole", "split", "byte by byte"};
		print_error("fed %s (split at %zu): rc %d, want %d\n", names[mode], at, rc, want_rc);
		assert_string_equal(lg.text, want);
		assert_int_equal(rc, want_rc);
	}
}

/* The stream gives want (and want_rc) fed whole, split in two at every
 * byte, and one byte per feed. */
static void expect_result(const char *in, size_t len, size_t max_line, int want_rc,
                          const char *want)
{
	check_run(in, len, WHOLE, 0, max_line, want_rc, want);
	for (size_t at = 0; at <= len; at++)
		check_run(in, len, SPLIT, at, max_line, want_rc, want);
	check_run(in, len, BYTES, 0, max_line, want_rc, want);
}

#define EXPECT(in, want) expect_result((in), sizeof(in) - 1, 0, 0, (want))
#define EXPECT_CAP(in, max_line, rc, want) expect_result((in), sizeof(in) - 1, (max_line), (rc), (want))

static void each_line_is_one_callback(void **state)
{
	EXPECT("{\"a\":1}\n{\"b\":2}\n", "line={\"a\":1}\nline={\"b\":2}\n");
}

static void crlf_line_ends_are_tolerated(void **state)
{
	EXPECT("{\"a\":1}\r\n{\"b\":2}\r\n", "line={\"a\":1}\nline={\"b\":2}\n");
}

static void only_one_cr_before_lf_is_dropped(void **state)
{
	EXPECT("x\r\r\n", "line=x\\r\n");
}

static void cr_alone_does_not_end_a_line(void **state)
{
	EXPECT("a\rb\n", "line=a\\rb\n");
}

static void blank_lines_are_skipped(void **state)
{
	EXPECT("\n\n{\"a\":1}\n\r\n  \t\n\r\r\n{\"b\":2}\n\n",
	       "line={\"a\":1}\nline={\"b\":2}\n");
}

static void spaces_around_a_line_are_kept(void **state)
{
	EXPECT(" {\"a\":1} \n", "line= {\"a\":1} \n");
}

static void bytes_pass_through_unchanged(void **state)
{
	EXPECT("a\0b\t\xC3\xA9\n", "line=a\\0b\t\xC3\xA9\n");
}

static void final_line_without_newline_is_delivered_at_finish(void **state)
{
	EXPECT("{\"a\":1}\n{\"done\":true}", "line={\"a\":1}\nline={\"done\":true}\n");
	EXPECT("{\"done\":true}\r", "line={\"done\":true}\n");
}

static void blank_final_line_is_not_delivered(void **state)
{
	EXPECT("{\"a\":1}\n \t\r", "line={\"a\":1}\n");
	EXPECT("", "");
}

#define OL1 "{\"model\":\"llama3.2\",\"created_at\":\"2024-07-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}"
#define OL2 "{\"model\":\"llama3.2\",\"created_at\":\"2024-07-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}"
#define OL3 "{\"model\":\"llama3.2\",\"created_at\":\"2024-07-01T00:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":4883583458,\"prompt_eval_count\":26,\"eval_count\":2}"

static void ollama_chat_stream(void **state)
{
	EXPECT(OL1 "\n" OL2 "\n" OL3 "\n", "line=" OL1 "\nline=" OL2 "\nline=" OL3 "\n");
}

static void line_within_one_feed_is_not_copied(void **state)
{
	static const char in[] = OL1 "\n" OL2 "\n";
	struct ndjson_parser p;
	struct log lg = {0};
	ndjson_parser_init(&p, 0);
	assert_int_equal(ndjson_parser_feed(&p, in, sizeof(in) - 1, log_line, &lg), 0);
	assert_int_equal(lg.lines, 2);
	assert_null(p.partial); /* nothing was ever allocated */
	ndjson_parser_free(&p);
}

static void split_lines_reuse_one_buffer(void **state)
{
	struct ndjson_parser p;
	struct log lg = {0};
	ndjson_parser_init(&p, 0);
	assert_int_equal(ndjson_parser_feed(&p, "{\"a\":", 5, log_line, &lg), 0);
	assert_int_equal(ndjson_parser_feed(&p, "1}\n", 3, log_line, &lg), 0);
	const char *buf = p.partial;
	size_t cap = p.partial_cap;
	for (int i = 0; i < 1000; i++) {
		lg.len = 0;
		assert_int_equal(ndjson_parser_feed(&p, "{\"a\":", 5, log_line, &lg), 0);
		assert_int_equal(ndjson_parser_feed(&p, "1}\n", 3, log_line, &lg), 0);
		assert_string_equal(lg.text, "line={\"a\":1}\n");
	}
	assert_ptr_equal(p.partial, buf);
	assert_int_equal(p.partial_cap, cap);
	ndjson_parser_free(&p);
}

static void partial_buffer_grows_geometrically(void **state)
{
	struct ndjson_parser p;
	struct log lg = {0};
	ndjson_parser_init(&p, 4 * 1024 * 1024);
	size_t last_cap = 0;
	int growths = 0;
	for (int i = 0; i < 100000; i++) {
		assert_int_equal(ndjson_parser_feed(&p, "0123456789", 10, log_line, &lg), 0);
		if (p.partial_cap != last_cap) {
			growths++;
			last_cap = p.partial_cap;
		}
	}
	assert_true(growths <= 24);
	assert_true(p.partial_cap <= 2 * p.partial_len);
	ndjson_parser_free(&p);
}

static void line_at_the_cap_is_accepted(void **state)
{
	EXPECT_CAP("12345678\n", 8, 0, "line=12345678\n");
	EXPECT_CAP("1234567\r\n", 8, 0, "line=1234567\n");
	EXPECT_CAP("12345678", 8, 0, "line=12345678\n");
}

static void line_over_the_cap_is_too_large(void **state)
{
	EXPECT_CAP("{}\n123456789\n{}\n", 8, LR_ETOOLARGE, "line={}\n");
	EXPECT_CAP("12345678\r\n", 8, LR_ETOOLARGE, "");
	EXPECT_CAP("123456789", 8, LR_ETOOLARGE, "");
}

static void long_line_never_grows_memory_past_the_cap(void **state)
{
	struct ndjson_parser p;
	struct log lg = {0};
	ndjson_parser_init(&p, 1000);
	int rc = 0;
	size_t fed = 0;
	while (rc == 0 && fed < 100000) {
		rc = ndjson_parser_feed(&p, "{\"x\":\"xxxx", 10, log_line, &lg);
		fed += 10;
		assert_true(p.partial_cap <= 1000);
	}
	assert_int_equal(rc, LR_ETOOLARGE);
	assert_int_equal(fed, 1010);
	ndjson_parser_free(&p);
}

static void error_is_sticky_until_reset(void **state)
{
	struct ndjson_parser p;
	struct log lg = {0};
	ndjson_parser_init(&p, 4);
	assert_int_equal(ndjson_parser_feed(&p, "12345\n", 6, log_line, &lg), LR_ETOOLARGE);
	assert_int_equal(ndjson_parser_feed(&p, "1\n", 2, log_line, &lg), LR_ETOOLARGE);
	assert_int_equal(ndjson_parser_finish(&p, log_line, &lg), LR_ETOOLARGE);
	assert_int_equal(lg.lines, 0);
	ndjson_parser_reset(&p);
	assert_int_equal(ndjson_parser_feed(&p, "1\n", 2, log_line, &lg), 0);
	assert_int_equal(lg.lines, 1);
	ndjson_parser_free(&p);
}

static void callback_error_stops_the_framer(void **state)
{
	struct ndjson_parser p;
	struct log lg = {.stop_at_line = 1, .stop_rc = LR_ECANCELLED};
	ndjson_parser_init(&p, 0);
	assert_int_equal(ndjson_parser_feed(&p, "1\n2\n", 4, log_line, &lg), LR_ECANCELLED);
	assert_string_equal(lg.text, "line=1\n");
	assert_int_equal(ndjson_parser_feed(&p, "3\n", 2, log_line, &lg), LR_ECANCELLED);
	assert_int_equal(lg.lines, 1);
	ndjson_parser_free(&p);
}

static void callback_error_at_finish_is_returned(void **state)
{
	struct ndjson_parser p;
	struct log lg = {.stop_at_line = 1, .stop_rc = LR_EPROTO};
	ndjson_parser_init(&p, 0);
	assert_int_equal(ndjson_parser_feed(&p, "{\"a\"", 4, log_line, &lg), 0);
	assert_int_equal(ndjson_parser_finish(&p, log_line, &lg), LR_EPROTO);
	ndjson_parser_free(&p);
}

static void missing_callback_is_skipped(void **state)
{
	struct ndjson_parser p;
	ndjson_parser_init(&p, 0);
	assert_int_equal(ndjson_parser_feed(&p, "1\n2", 3, NULL, NULL), 0);
	assert_int_equal(ndjson_parser_finish(&p, NULL, NULL), 0);
	ndjson_parser_free(&p);
}

static void mid_line_tells_a_truncated_stream(void **state)
{
	struct ndjson_parser p;
	struct log lg = {0};
	ndjson_parser_init(&p, 0);
	assert_false(ndjson_parser_mid_line(&p));
	assert_int_equal(ndjson_parser_feed(&p, "{}\n{", 4, log_line, &lg), 0);
	assert_true(ndjson_parser_mid_line(&p));
	assert_int_equal(ndjson_parser_feed(&p, "}\n", 2, log_line, &lg), 0);
	assert_false(ndjson_parser_mid_line(&p));
	assert_int_equal(ndjson_parser_finish(&p, log_line, &lg), 0);
	assert_int_equal(lg.lines, 2);
	ndjson_parser_free(&p);
}

static void reset_discards_a_pending_line(void **state)
{
	struct ndjson_parser p;
	struct log lg = {0};
	ndjson_parser_init(&p, 0);
	assert_int_equal(ndjson_parser_feed(&p, "{\"old\"", 6, log_line, &lg), 0);
	ndjson_parser_reset(&p);
	assert_int_equal(ndjson_parser_feed(&p, "{}\n", 3, log_line, &lg), 0);
	assert_string_equal(lg.text, "line={}\n");
	ndjson_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(each_line_is_one_callback),
		cmocka_unit_test(crlf_line_ends_are_tolerated),
		cmocka_unit_test(only_one_cr_before_lf_is_dropped),
		cmocka_unit_test(cr_alone_does_not_end_a_line),
		cmocka_unit_test(blank_lines_are_skipped),
		cmocka_unit_test(spaces_around_a_line_are_kept),
		cmocka_unit_test(bytes_pass_through_unchanged),
		cmocka_unit_test(final_line_without_newline_is_delivered_at_finish),
		cmocka_unit_test(blank_final_line_is_not_delivered),
		cmocka_unit_test(ollama_chat_stream),
		cmocka_unit_test(line_within_one_feed_is_not_copied),
		cmocka_unit_test(split_lines_reuse_one_buffer),
		cmocka_unit_test(partial_buffer_grows_geometrically),
		cmocka_unit_test(line_at_the_cap_is_accepted),
		cmocka_unit_test(line_over_the_cap_is_too_large),
		cmocka_unit_test(long_line_never_grows_memory_past_the_cap),
		cmocka_unit_test(error_is_sticky_until_reset),
		cmocka_unit_test(callback_error_stops_the_framer),
		cmocka_unit_test(callback_error_at_finish_is_returned),
		cmocka_unit_test(missing_callback_is_skipped),
		cmocka_unit_test(mid_line_tells_a_truncated_stream),
		cmocka_unit_test(reset_discards_a_pending_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

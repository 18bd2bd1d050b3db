/*
 * The server-sent events parser, as a specification (WHATWG HTML,
 * "Interpreting an event stream"; cases ported from eventsource-parser's
 * suite). Every stream must give the same callbacks, in the same order,
 * whether it arrives whole, split in two at every byte, or one byte per
 * feed. Each feed gets a fresh allocation of exactly the piece's size, so
 * AddressSanitizer catches any read past the bytes fed.
 *
 * Callbacks are recorded as one text line each:
 *   event=TYPE id=ID data=DATA   comment=TEXT   retry=N
 * with LF, CR, NUL and backslash escaped as \n, \r, \0, \\.
 *
 * Long (over 800 lines) on purpose: one subject's specification, a list of
 * short independent cases sharing one fixture and its helpers; the file is
 * read as a table, and a split would copy the fixture into each part.
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
#include "format/sse.h"

#define LOG_MAX (64 * 1024)

struct log {
	char text[LOG_MAX];
	size_t len;
	int events;
	int stop_at_event; /* 1-based event whose callback returns stop_rc; 0 never */
	int stop_rc;
	int comment_rc;
};

static void log_raw(struct log *lg, const char *s, size_t n)
{
	assert_true(lg->len + n < LOG_MAX);
	memcpy(lg->text + lg->len, s, n);
	lg->len += n;
	lg->text[lg->len] = '\0';
}

static void log_escaped(struct log *lg, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		switch (s[i]) {
		case '\n': log_raw(lg, "\\n", 2); break;
		case '\r': log_raw(lg, "\\r", 2); break;
		case '\0': log_raw(lg, "\\0", 2); break;
		case '\\': log_raw(lg, "\\\\", 2); break;
		default: log_raw(lg, s + i, 1); break;
		}
	}
}

static int log_event(void *ctx, const struct sse_event *ev)
{
	struct log *lg = ctx;
	assert_non_null(ev->type);
	assert_non_null(ev->data);
	assert_non_null(ev->id);
	log_raw(lg, "event=", 6);
	log_escaped(lg, ev->type, ev->type_len);
	log_raw(lg, " id=", 4);
	log_escaped(lg, ev->id, ev->id_len);
	log_raw(lg, " data=", 6);
	log_escaped(lg, ev->data, ev->data_len);
	log_raw(lg, "\n", 1);
	lg->events++;
	return lg->events == lg->stop_at_event ? lg->stop_rc : 0;
}

static int log_comment(void *ctx, const char *text, size_t len)
{
	struct log *lg = ctx;
	log_raw(lg, "comment=", 8);
	log_escaped(lg, text, len);
	log_raw(lg, "\n", 1);
	return lg->comment_rc;
}

static int log_retry(void *ctx, uint64_t ms)
{
	struct log *lg = ctx;
	char num[32];
	int n = snprintf(num, sizeof(num), "retry=%llu\n", (unsigned long long)ms);
	log_raw(lg, num, (size_t)n);
	return 0;
}

static const struct sse_callbacks log_callbacks = {
	.on_event = log_event,
	.on_comment = log_comment,
	.on_retry = log_retry,
};

/* Feeds a private copy of exactly n bytes (NULL when n is 0). */
static int feed_copy(struct sse_parser *p, const char *src, size_t n,
                     const struct sse_callbacks *cb, void *ctx)
{
	char *copy = NULL;
	if (n) {
		copy = malloc(n);
		assert_non_null(copy);
		memcpy(copy, src, n);
	}
	int rc = sse_parser_feed(p, copy, n, cb, ctx);
	free(copy);
	return rc;
}

enum mode { WHOLE, SPLIT, BYTES };

/* Feeds in (whole, split at `at`, or byte by byte) then finishes; returns
 * the first error, which stops the feeding. */
static int run(const char *in, size_t len, enum mode mode, size_t at, size_t max_line,
               size_t max_event, struct log *lg)
{
	struct sse_parser p;
	sse_parser_init(&p, max_line, max_event);
	int rc = 0;
	size_t pos = 0;
	while (rc == 0 && pos < len) {
		size_t n = len - pos;
		if (mode == BYTES)
			n = 1;
		else if (mode == SPLIT && pos < at)
			n = at - pos;
		rc = feed_copy(&p, in + pos, n, &log_callbacks, lg);
		pos += n;
	}
	if (mode == SPLIT && at == len && rc == 0)
		rc = feed_copy(&p, NULL, 0, &log_callbacks, lg); /* an empty feed changes nothing */
	int frc = sse_parser_finish(&p);
	if (rc == 0)
		rc = frc;
	else
		assert_int_equal(frc, rc); /* the error is sticky */
	sse_parser_free(&p);
	return rc;
}

static void check_run(const char *in, size_t len, enum mode mode, size_t at, size_t max_line,
                      size_t max_event, int want_rc, const char *want)
{
	static struct log lg; /* large: keep it off the stack */
	memset(&lg, 0, sizeof(lg));
	int rc = run(in, len, mode, at, max_line, max_event, &lg);
	if (rc != want_rc || strcmp(lg.text, want) != 0) {
		static const char *names[] = {"whole", "split", "byte by byte"};
		print_error("fed %s (split at %zu): rc %d, want %d\n", names[mode], at, rc, want_rc);
		assert_string_equal(lg.text, want);
		assert_int_equal(rc, want_rc);
	}
}

/* The stream gives want (and want_rc) fed whole, split in two at every
 * byte, and one byte per feed. */
static void expect_result(const char *in, size_t len, size_t max_line, size_t max_event,
                          int want_rc, const char *want)
{
	check_run(in, len, WHOLE, 0, max_line, max_event, want_rc, want);
	for (size_t at = 0; at <= len; at++)
		check_run(in, len, SPLIT, at, max_line, max_event, want_rc, want);
	check_run(in, len, BYTES, 0, max_line, max_event, want_rc, want);
}

#define EXPECT(in, want) expect_result((in), sizeof(in) - 1, 0, 0, 0, (want))
#define EXPECT_LIMITS(in, max_line, max_event, rc, want) \
	expect_result((in), sizeof(in) - 1, (max_line), (max_event), (rc), (want))

/* ---- events and data ---- */

static void single_data_line_is_a_message_event(void **state)
{
	EXPECT("data: hello\n\n", "event=message id= data=hello\n");
}

static void basic_unnamed_events_stream(void **state)
{
	EXPECT("data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\nevent: done\ndata: ✔\n\n",
	       "event=message id= data=0\n"
	       "event=message id= data=1\n"
	       "event=message id= data=2\n"
	       "event=message id= data=3\n"
	       "event=message id= data=4\n"
	       "event=done id= data=✔\n");
}

static void multi_line_data_is_joined_with_lf(void **state)
{
	EXPECT("event: stock\ndata: YHOO\ndata: +2\ndata: 10\n\n"
	       "event: stock\ndata: GOOG\ndata: -8\ndata: 1881\n\n",
	       "event=stock id= data=YHOO\\n+2\\n10\n"
	       "event=stock id= data=GOOG\\n-8\\n1881\n");
}

static void data_colon_alone_gives_an_event_with_empty_data(void **state)
{
	EXPECT("data:\n\ndata:test\n\n", "event=message id= data=\nevent=message id= data=test\n");
}

static void two_bare_data_lines_give_a_single_lf(void **state)
{
	EXPECT("data\ndata\n\n", "event=message id= data=\\n\n");
}

static void empty_data_lines_are_kept_inside_data(void **state)
{
	EXPECT("data: a\ndata:\ndata: b\n\n", "event=message id= data=a\\n\\nb\n");
}

static void block_without_data_dispatches_nothing(void **state)
{
	EXPECT("event: foo\n\nid: 1\n\nretry: 5\n\n\n\n", "retry=5\n");
}

static void event_type_without_data_is_forgotten(void **state)
{
	EXPECT("event: foo\n\ndata: x\n\n", "event=message id= data=x\n");
}

static void blank_lines_alone_dispatch_nothing(void **state)
{
	EXPECT("\n\n\r\n\r\r\n", "");
}

static void data_bytes_pass_through_unchanged(void **state)
{
	EXPECT("data: a\0b\tc \n\n", "event=message id= data=a\\0b\tc \n");
}

static void multibyte_utf8_data_after_blank_lines(void **state)
{
	EXPECT("\n\n\n\nid: 1\ndata: 我現在都看實況不玩遊戲\n\nevent: done\ndata: ✔\n\n",
	       "event=message id=1 data=我現在都看實況不玩遊戲\n"
	       "event=done id=1 data=✔\n");
}

/* ---- event types ---- */

static void event_field_sets_the_type(void **state)
{
	EXPECT("event: add\ndata: 1\n\n", "event=add id= data=1\n");
}

static void empty_event_field_means_message(void **state)
{
	EXPECT("event:\ndata: Hello 1\n\nevent:\n\nevent: done\ndata: ✔\n\n",
	       "event=message id= data=Hello 1\n"
	       "event=done id= data=✔\n");
}

static void event_type_resets_after_dispatch(void **state)
{
	EXPECT("event: a\ndata: 1\n\ndata: 2\n\n",
	       "event=a id= data=1\nevent=message id= data=2\n");
}

static void last_event_field_wins(void **state)
{
	EXPECT("event: a\nevent: b\ndata: 1\n\n", "event=b id= data=1\n");
}

/* ---- id ---- */

static void id_persists_across_events(void **state)
{
	EXPECT("id: 7\ndata: a\n\ndata: b\n\n",
	       "event=message id=7 data=a\nevent=message id=7 data=b\n");
}

static void id_with_nul_is_ignored(void **state)
{
	EXPECT("id: 123\nid: bad\0id\ndata: hello\n\n", "event=message id=123 data=hello\n");
}

static void empty_id_clears_the_last_event_id(void **state)
{
	EXPECT("id: 1\ndata: a\n\nid\ndata: b\n\n",
	       "event=message id=1 data=a\nevent=message id= data=b\n");
}

static void id_from_a_block_without_data_carries_to_the_next_event(void **state)
{
	EXPECT("id: 42\n\ndata: x\n\n", "event=message id=42 data=x\n");
}

static void identified_events_with_retry(void **state)
{
	EXPECT("event: tick\nid: 1337\ndata: 1337\nretry: 50\n\n"
	       "event: tick\nid: 1338\ndata: 1338\nretry: 50\n\n",
	       "retry=50\nevent=tick id=1337 data=1337\n"
	       "retry=50\nevent=tick id=1338 data=1338\n");
}

/* ---- retry ---- */

static void retry_with_only_digits_is_reported(void **state)
{
	EXPECT("retry:1000\nretry:2000x\ndata:x\n\n", "retry=1000\nevent=message id= data=x\n");
}

static void retry_that_is_not_all_digits_is_ignored(void **state)
{
	EXPECT("retry:\nretry: -5\nretry: 5 \nretry:+5\nretry:  5\nretry:5.0\nretry\n", "");
}

static void retry_past_uint64_saturates(void **state)
{
	EXPECT("retry: 99999999999999999999999\nretry: 18446744073709551615\n",
	       "retry=18446744073709551615\nretry=18446744073709551615\n");
}

static void empty_retry_between_events_changes_nothing(void **state)
{
	EXPECT("id: 1\nretry: 500\ndata: 🥌\n\nid:2\nretry:\ndata:🧹\n\nid: 3\ndata: ✅\n\n",
	       "retry=500\nevent=message id=1 data=🥌\n"
	       "event=message id=2 data=🧹\n"
	       "event=message id=3 data=✅\n");
}

/* ---- comments ---- */

static void comment_text_is_what_follows_the_colon(void **state)
{
	EXPECT(": ping\n:\n::x\n:data: no\n",
	       "comment= ping\ncomment=\ncomment=:x\ncomment=data: no\n");
}

static void comment_inside_an_event_does_not_end_it(void **state)
{
	EXPECT("data: a\n: keep-alive\ndata: b\n\n",
	       "comment= keep-alive\nevent=message id= data=a\\nb\n");
}

static void heartbeat_comments_between_events(void **state)
{
	EXPECT(": ♥\ndata: A\n\n: ♥\ndata: B\n\n: ♥\ndata: C\n\nevent: done\ndata: ✔\n\n",
	       "comment= ♥\nevent=message id= data=A\n"
	       "comment= ♥\nevent=message id= data=B\n"
	       "comment= ♥\nevent=message id= data=C\n"
	       "event=done id= data=✔\n");
}

static void odd_comments_with_nul_cr_and_long_lines(void **state)
{
	/* eventsource-parser's mixed comments fixture, with its 2049-byte comments. */
	static char in[8192], want[8192];
	char x[2050];
	memset(x, 'x', 2049);
	x[2049] = '\0';
	size_t n = 0;
	memcpy(in + n, "data:1\r\r:\0\n:\r\ndata:2\n\n:", 23);
	n += 23;
	n += (size_t)sprintf(in + n, "%s\rdata:3\n\n:data:fail\r:%s\ndata:4\n\ndata:5", x, x);
	snprintf(want, sizeof(want),
	         "event=message id= data=1\n"
	         "comment=\\0\n"
	         "comment=\n"
	         "event=message id= data=2\n"
	         "comment=%s\n"
	         "event=message id= data=3\n"
	         "comment=data:fail\n"
	         "comment=%s\n"
	         "event=message id= data=4\n", x, x);
	expect_result(in, n, 0, 0, 0, want);
}

/* ---- field syntax ---- */

static void line_without_colon_is_a_field_with_empty_value(void **state)
{
	EXPECT("event\ndata\n\n", "event=message id= data=\n");
}

static void only_one_leading_space_is_dropped(void **state)
{
	EXPECT("data:  two\n\ndata:\tx\n\nevent:  e\ndata: y \n\n",
	       "event=message id= data= two\n"
	       "event=message id= data=\tx\n"
	       "event= e id= data=y \n");
}

static void value_may_contain_colons(void **state)
{
	EXPECT("data: a:b: c\n\n", "event=message id= data=a:b: c\n");
}

static void unknown_fields_are_ignored(void **state)
{
	EXPECT("data:abc\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:123\n\n",
	       "comment=thisisacommentyay\nevent=message id= data=abc\\n\\n123\n");
}

static void field_names_are_case_sensitive(void **state)
{
	EXPECT("Data: x\nDATA: y\nEvent: e\nID: 9\nRetry: 5\ndata: z\n\n",
	       "event=message id= data=z\n");
}

static void field_name_with_trailing_space_is_unknown(void **state)
{
	EXPECT("data : x\ndata: y\n\n", "event=message id= data=y\n");
}

/* ---- line ends ---- */

static void lf_line_ends(void **state)
{
	EXPECT("data: cow\ndata: moo\n\ndata: horse\ndata: neigh\n\n",
	       "event=message id= data=cow\\nmoo\nevent=message id= data=horse\\nneigh\n");
}

static void cr_line_ends(void **state)
{
	EXPECT("data: dog\rdata: bark\r\rdata: cat\rdata: meow\r\r",
	       "event=message id= data=dog\\nbark\nevent=message id= data=cat\\nmeow\n");
}

static void crlf_line_ends(void **state)
{
	EXPECT("data: sheep\r\ndata: bleat\r\n\r\ndata: pig\r\ndata: oink\r\n\r\n",
	       "event=message id= data=sheep\\nbleat\nevent=message id= data=pig\\noink\n");
}

static void mixed_line_ends(void **state)
{
	EXPECT("data: a\rdata: b\ndata: c\r\n\ndata: d\n\r\n",
	       "event=message id= data=a\\nb\\nc\nevent=message id= data=d\n");
}

static void crlf_split_between_feeds_is_one_line_end(void **state)
{
	EXPECT("data: A\r\ndata: B\r\ndata: C\r\n\n", "event=message id= data=A\\nB\\nC\n");
}

static void cr_then_crlf_is_two_line_ends(void **state)
{
	EXPECT("data: abc\r\r\ndata: def\r\r\n",
	       "event=message id= data=abc\nevent=message id= data=def\n");
}

static void lf_then_cr_is_two_line_ends(void **state)
{
	EXPECT("data: a\n\rdata: b\n\n", "event=message id= data=a\nevent=message id= data=b\n");
}

static void explicit_feeds_with_cr_at_feed_end(void **state)
{
	/* eventsource-parser issue 17: a CR ending a feed may be half of CRLF. */
	static const char *feeds[] = {"data: A\r\n", "data: B\r", "\n", "data: C\r\n", "\n",
	                              "data: one\r", "\r", "\n"};
	struct sse_parser p;
	static struct log lg;
	memset(&lg, 0, sizeof(lg));
	sse_parser_init(&p, 0, 0);
	for (size_t i = 0; i < sizeof(feeds) / sizeof(feeds[0]); i++)
		assert_int_equal(feed_copy(&p, feeds[i], strlen(feeds[i]), &log_callbacks, &lg), 0);
	assert_string_equal(lg.text, "event=message id= data=A\\nB\\nC\nevent=message id= data=one\n");
	sse_parser_free(&p);
}

/* ---- byte order mark ---- */

static void bom_at_stream_start_is_stripped_once(void **state)
{
	EXPECT("\xEF\xBB\xBF" "data: bomful 1\n\n"
	       "\xEF\xBB\xBF" "data: bomful 2\n\n"
	       "data: bomless 3\n\nevent: done\ndata: ✔\n\n",
	       "event=message id= data=bomful 1\n"
	       "event=message id= data=bomless 3\n"
	       "event=done id= data=✔\n");
}

static void bom_split_across_three_feeds_is_stripped(void **state)
{
	static const char *feeds[] = {"\xEF", "\xBB", "\xBF", "data: x\n\n"};
	struct sse_parser p;
	static struct log lg;
	memset(&lg, 0, sizeof(lg));
	sse_parser_init(&p, 0, 0);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(feed_copy(&p, feeds[i], strlen(feeds[i]), &log_callbacks, &lg), 0);
	assert_string_equal(lg.text, "event=message id= data=x\n");
	sse_parser_free(&p);
}

static void partial_bom_is_part_of_the_first_line(void **state)
{
	EXPECT("\xEF\xBB" "data: x\n\ndata: y\n\n", "event=message id= data=y\n");
	EXPECT("\xEF\n" "data: y\n\n", "event=message id= data=y\n");
	EXPECT("\xEF\xBB\xBE" "data: x\n\n", "");
}

static void bom_without_a_line_is_just_stripped(void **state)
{
	EXPECT("\xEF\xBB\xBF", "");
	EXPECT("\xEF\xBB\xBF\n" "data: x\n\n", "event=message id= data=x\n");
}

/* ---- end of stream ---- */

static void half_event_is_discarded_at_finish(void **state)
{
	EXPECT("data: 1\n\ndata: 2\n", "event=message id= data=1\n");
	EXPECT("data: 1\n\ndata: 2\ndata: 3\r\n", "event=message id= data=1\n");
}

static void unterminated_last_line_is_discarded_at_finish(void **state)
{
	EXPECT("data: 1\n\ndata: 5", "event=message id= data=1\n");
	EXPECT(": no newline", "");
}

static void mid_event_tells_a_truncated_stream(void **state)
{
	struct sse_parser p;
	struct log lg = {0};
	sse_parser_init(&p, 0, 0);
	assert_false(sse_parser_mid_event(&p));
	assert_int_equal(sse_parser_feed(&p, "data: 1\n\n", 9, &log_callbacks, &lg), 0);
	assert_false(sse_parser_mid_event(&p));
	assert_int_equal(sse_parser_feed(&p, "data: 2\n", 8, &log_callbacks, &lg), 0);
	assert_true(sse_parser_mid_event(&p));
	assert_int_equal(sse_parser_feed(&p, "\n", 1, &log_callbacks, &lg), 0);
	assert_false(sse_parser_mid_event(&p));
	assert_int_equal(sse_parser_feed(&p, "da", 2, &log_callbacks, &lg), 0);
	assert_true(sse_parser_mid_event(&p));
	assert_int_equal(sse_parser_finish(&p), 0);
	assert_false(sse_parser_mid_event(&p));
	assert_int_equal(lg.events, 2);
	sse_parser_free(&p);
}

/* ---- real provider streams ---- */

#define OA1 "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}"
#define OA2 "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}"
#define OA3 "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10}}"

static void openai_stream_ends_with_done(void **state)
{
	EXPECT("data: " OA1 "\n\ndata: " OA2 "\n\n: OPENROUTER PROCESSING\n\ndata: " OA3
	       "\n\ndata: [DONE]\n\n",
	       "event=message id= data=" OA1 "\n"
	       "event=message id= data=" OA2 "\n"
	       "comment= OPENROUTER PROCESSING\n"
	       "event=message id= data=" OA3 "\n"
	       "event=message id= data=[DONE]\n");
}

#define AN_START "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}"
#define AN_BSTART "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}"
#define AN_PING "{\"type\": \"ping\"}"
#define AN_D1 "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}"
#define AN_D2 "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"!\"}}"
#define AN_BSTOP "{\"type\":\"content_block_stop\",\"index\":0}"
#define AN_MDELTA "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}"
#define AN_STOP "{\"type\":\"message_stop\"}"

static void anthropic_stream_pairs_event_and_data(void **state)
{
	EXPECT("event: message_start\ndata: " AN_START "\n\n"
	       "event: content_block_start\ndata: " AN_BSTART "\n\n"
	       "event: ping\ndata: " AN_PING "\n\n"
	       "event: content_block_delta\ndata: " AN_D1 "\n\n"
	       "event: content_block_delta\ndata: " AN_D2 "\n\n"
	       "event: content_block_stop\ndata: " AN_BSTOP "\n\n"
	       "event: message_delta\ndata: " AN_MDELTA "\n\n"
	       "event: message_stop\ndata: " AN_STOP "\n\n",
	       "event=message_start id= data=" AN_START "\n"
	       "event=content_block_start id= data=" AN_BSTART "\n"
	       "event=ping id= data=" AN_PING "\n"
	       "event=content_block_delta id= data=" AN_D1 "\n"
	       "event=content_block_delta id= data=" AN_D2 "\n"
	       "event=content_block_stop id= data=" AN_BSTOP "\n"
	       "event=message_delta id= data=" AN_MDELTA "\n"
	       "event=message_stop id= data=" AN_STOP "\n");
}

/* ---- zero copy and memory ---- */

struct span_check {
	const char *lo, *hi; /* the fed buffer */
	int inside, outside;
};

static int check_span(void *ctx, const struct sse_event *ev)
{
	struct span_check *s = ctx;
	bool in = ev->data >= s->lo && ev->data + ev->data_len <= s->hi;
	bool type_in = (ev->type >= s->lo && ev->type + ev->type_len <= s->hi) ||
	               (ev->type_len == 7 && memcmp(ev->type, "message", 7) == 0);
	if (in && type_in)
		s->inside++;
	else
		s->outside++;
	return 0;
}

static void event_within_one_feed_is_not_copied(void **state)
{
	static const char in[] = "event: content_block_delta\ndata: " AN_D1 "\n\ndata: " OA2 "\n\n";
	struct sse_parser p;
	struct span_check s = {in, in + sizeof(in) - 1, 0, 0};
	const struct sse_callbacks cb = {.on_event = check_span};
	sse_parser_init(&p, 0, 0);
	assert_int_equal(sse_parser_feed(&p, in, sizeof(in) - 1, &cb, &s), 0);
	assert_int_equal(s.inside, 2);
	assert_int_equal(s.outside, 0);
	/* Nothing was ever allocated. */
	assert_null(p.line.data);
	assert_null(p.data.data);
	assert_null(p.type.data);
	sse_parser_free(&p);
}

static void multi_line_data_is_joined_in_the_parser_buffer(void **state)
{
	static const char in[] = "data: a\ndata: b\n\n";
	struct sse_parser p;
	struct span_check s = {in, in + sizeof(in) - 1, 0, 0};
	const struct sse_callbacks cb = {.on_event = check_span};
	sse_parser_init(&p, 0, 0);
	assert_int_equal(sse_parser_feed(&p, in, sizeof(in) - 1, &cb, &s), 0);
	assert_int_equal(s.outside, 1);
	assert_non_null(p.data.data);
	sse_parser_free(&p);
}

static void steady_split_stream_stops_allocating(void **state)
{
	/* Each event split mid-data: after the first, buffers are reused. */
	static const char a[] = "event: content_block_delta\ndata: {\"type\":\"content_bl";
	static const char b[] = "ock_delta\",\"text\":\"x\"}\n\n";
	struct sse_parser p;
	struct log lg = {0};
	sse_parser_init(&p, 0, 0);
	assert_int_equal(sse_parser_feed(&p, a, sizeof(a) - 1, &log_callbacks, &lg), 0);
	assert_int_equal(sse_parser_feed(&p, b, sizeof(b) - 1, &log_callbacks, &lg), 0);
	const char *line = p.line.data, *data = p.data.data, *type = p.type.data;
	size_t caps = p.line.cap + p.data.cap + p.type.cap;
	for (int i = 0; i < 1000; i++) {
		lg.len = 0;
		assert_int_equal(sse_parser_feed(&p, a, sizeof(a) - 1, &log_callbacks, &lg), 0);
		assert_int_equal(sse_parser_feed(&p, b, sizeof(b) - 1, &log_callbacks, &lg), 0);
		assert_string_equal(lg.text, "event=content_block_delta id= data={\"type\":\"content_block_delta\",\"text\":\"x\"}\n");
	}
	assert_ptr_equal(p.line.data, line);
	assert_ptr_equal(p.data.data, data);
	assert_ptr_equal(p.type.data, type);
	assert_int_equal(p.line.cap + p.data.cap + p.type.cap, caps);
	sse_parser_free(&p);
}

static void data_buffer_grows_geometrically(void **state)
{
	/* 100000 data lines, each fed alone: few reallocations, not one per line. */
	struct sse_parser p;
	struct log lg = {0};
	sse_parser_init(&p, 0, 4 * 1024 * 1024);
	size_t last_cap = 0;
	int growths = 0;
	for (int i = 0; i < 100000; i++) {
		assert_int_equal(sse_parser_feed(&p, "data: 0123456789\n", 17, &log_callbacks, &lg), 0);
		if (p.data.cap != last_cap) {
			growths++;
			last_cap = p.data.cap;
		}
	}
	assert_true(growths <= 24);
	assert_true(p.data.cap <= 2 * p.data.len);
	sse_parser_free(&p);
}

/* ---- caps ---- */

static void line_at_the_cap_is_accepted(void **state)
{
	EXPECT_LIMITS("data: 0123456789\n\n", 16, 0, 0, "event=message id= data=0123456789\n");
	EXPECT_LIMITS(": 34567890123456\n", 16, 0, 0, "comment= 34567890123456\n");
}

static void line_over_the_cap_is_too_large(void **state)
{
	EXPECT_LIMITS("data: 1\n\ndata: 0123456789a\n\ndata: 2\n\n", 16, 0, LR_ETOOLARGE,
	              "event=message id= data=1\n");
	EXPECT_LIMITS(": 34567890123456789", 16, 0, LR_ETOOLARGE, "");
	EXPECT_LIMITS("\xEF\xBB" "3456789012345678", 16, 0, LR_ETOOLARGE, "");
}

static void event_at_the_cap_is_accepted(void **state)
{
	EXPECT_LIMITS("data: 12345\ndata: 6789\n\n", 0, 10, 0, "event=message id= data=12345\\n6789\n");
	EXPECT_LIMITS("data: 1234567890\n\n", 0, 10, 0, "event=message id= data=1234567890\n");
}

static void event_over_the_cap_is_too_large(void **state)
{
	EXPECT_LIMITS("data: 1\n\ndata: 12345\ndata: 67890\n\n", 0, 10, LR_ETOOLARGE,
	              "event=message id= data=1\n");
	EXPECT_LIMITS("data: 12345678901\n\n", 0, 10, LR_ETOOLARGE, "");
	EXPECT_LIMITS("data: 1234567890\ndata\n\n", 0, 10, LR_ETOOLARGE, "");
}

static void long_line_never_grows_memory_past_the_cap(void **state)
{
	struct sse_parser p;
	struct log lg = {0};
	sse_parser_init(&p, 1000, 0);
	int rc = 0;
	size_t fed = 0;
	while (rc == 0 && fed < 100000) {
		rc = sse_parser_feed(&p, "data: xxxxxxx", 13, &log_callbacks, &lg);
		fed += 13;
		assert_true(p.line.cap <= 1000);
	}
	assert_int_equal(rc, LR_ETOOLARGE);
	assert_true(fed <= 1013);
	sse_parser_free(&p);
}

static void long_event_never_grows_memory_past_the_cap(void **state)
{
	struct sse_parser p;
	struct log lg = {0};
	sse_parser_init(&p, 0, 1000);
	int rc = 0;
	int lines = 0;
	while (rc == 0 && lines < 10000) {
		rc = sse_parser_feed(&p, "data: 0123456789\n", 17, &log_callbacks, &lg);
		lines++;
		assert_true(p.data.cap <= 1001);
	}
	assert_int_equal(rc, LR_ETOOLARGE);
	/* 91 lines of 10 join to 91 * 11 - 1 = 1000 bytes; the 92nd is over. */
	assert_int_equal(lines, 92);
	assert_int_equal(lg.events, 0);
	sse_parser_free(&p);
}

/* ---- errors and reuse ---- */

static void error_is_sticky_until_reset(void **state)
{
	struct sse_parser p;
	struct log lg = {0};
	sse_parser_init(&p, 8, 0);
	assert_int_equal(sse_parser_feed(&p, "data: 123456\n", 13, &log_callbacks, &lg), LR_ETOOLARGE);
	assert_int_equal(sse_parser_feed(&p, "data: 1\n\n", 9, &log_callbacks, &lg), LR_ETOOLARGE);
	assert_int_equal(sse_parser_finish(&p), LR_ETOOLARGE);
	assert_int_equal(lg.events, 0);
	sse_parser_reset(&p);
	assert_int_equal(sse_parser_feed(&p, "data: 1\n\n", 9, &log_callbacks, &lg), 0);
	assert_int_equal(lg.events, 1);
	sse_parser_free(&p);
}

static void callback_error_stops_the_parser(void **state)
{
	struct sse_parser p;
	struct log lg = {.stop_at_event = 1, .stop_rc = LR_ECANCELLED};
	sse_parser_init(&p, 0, 0);
	assert_int_equal(sse_parser_feed(&p, "data: 1\n\ndata: 2\n\n", 18, &log_callbacks, &lg),
	                 LR_ECANCELLED);
	assert_string_equal(lg.text, "event=message id= data=1\n");
	assert_int_equal(sse_parser_feed(&p, "data: 3\n\n", 9, &log_callbacks, &lg), LR_ECANCELLED);
	assert_int_equal(lg.events, 1);
	sse_parser_free(&p);
}

static void comment_callback_error_stops_the_parser(void **state)
{
	struct sse_parser p;
	struct log lg = {.comment_rc = LR_ETIMEOUT};
	sse_parser_init(&p, 0, 0);
	assert_int_equal(sse_parser_feed(&p, ": x\ndata: 2\n\n", 13, &log_callbacks, &lg),
	                 LR_ETIMEOUT);
	assert_int_equal(lg.events, 0);
	sse_parser_free(&p);
}

static void missing_callbacks_are_skipped(void **state)
{
	struct sse_parser p;
	const struct sse_callbacks none = {0};
	sse_parser_init(&p, 0, 0);
	assert_int_equal(sse_parser_feed(&p, ": c\nretry: 1\ndata: x\n\n", 22, &none, NULL), 0);
	sse_parser_free(&p);
}

/* ---- the one-data-line fast path (fast_event) ---- */

/* Every pair of line ends for the data line and the blank line after it
 * (but CR then LF, which is one CRLF), around events the fast path must
 * leave to the general one; each stream fed whole, split at every byte
 * and byte by byte. */
static void fast_path_every_pair_of_line_ends(void **state)
{
	static const char *ends[] = {"\n", "\r", "\r\n"};
	char in[256], want[512];
	for (size_t a = 0; a < 3; a++) {
		for (size_t b = 0; b < 3; b++) {
			if (a == 1 && b == 0)
				continue;
			const char *t1 = ends[a], *t2 = ends[b];
			int n = snprintf(in, sizeof(in),
			                 "data: one%s%sdata:two%s%s: c\nevent: e\ndata: three%s%s"
			                 "data: 4%sdata: 5%s%sid: 7\ndata:  six%s%sdata%s%s",
			                 t1, t2, t1, t2, t1, t2, t1, t1, t2, t1, t2, t1, t2);
			assert_true(n > 0 && (size_t)n < sizeof(in));
			snprintf(want, sizeof(want), "%s",
			         "event=message id= data=one\nevent=message id= data=two\ncomment= c\n"
			         "event=e id= data=three\nevent=message id= data=4\\n5\n"
			         "event=message id=7 data= six\nevent=message id=7 data=\n");
			expect_result(in, (size_t)n, 0, 0, 0, want);
		}
	}
}

static void fast_path_leaves_events_with_more_lines(void **state)
{
	EXPECT("data: a\nid: 5\n\ndata: b\n: c\n\ndata: x\nevent: t\n\ndata: y\nretry: 9\n\n",
	       "event=message id=5 data=a\ncomment= c\nevent=message id=5 data=b\n"
	       "event=t id=5 data=x\nretry=9\nevent=message id=5 data=y\n");
	EXPECT("data: a\ndata\n\ndata: b\r\rdata: c\r\n\r\n",
	       "event=message id= data=a\\n\nevent=message id= data=b\n"
	       "event=message id= data=c\n");
	EXPECT("data: a\n\n\n\ndata: b\n\r\r\n",
	       "event=message id= data=a\nevent=message id= data=b\n");
	EXPECT("datax: a\n\ndata : b\n\nDATA: c\n\ndata: d\n\n", "event=message id= data=d\n");
}

static void fast_path_caps(void **state)
{
	EXPECT_LIMITS("data: 0123456789\r\n\r\ndata: 0123456789a\r\n\r\n", 16, 0, LR_ETOOLARGE,
	              "event=message id= data=0123456789\n");
	EXPECT_LIMITS("data: 1234567890\r\rdata: 12345678901\r\r", 0, 10, LR_ETOOLARGE,
	              "event=message id= data=1234567890\n");
}

static void fast_path_events_are_not_copied(void **state)
{
	static const char in[] = "data: a\r\n\r\nevent: t\rdata: b\r\rdata: c\n\r\ndata: d\r\n\n";
	struct sse_parser p;
	struct span_check s = {in, in + sizeof(in) - 1, 0, 0};
	const struct sse_callbacks cb = {.on_event = check_span};
	sse_parser_init(&p, 0, 0);
	assert_int_equal(sse_parser_feed(&p, in, sizeof(in) - 1, &cb, &s), 0);
	assert_int_equal(s.inside, 4);
	assert_int_equal(s.outside, 0);
	assert_null(p.line.data);
	assert_null(p.data.data);
	assert_null(p.type.data);
	assert_false(sse_parser_mid_event(&p));
	sse_parser_free(&p);
}

static void fast_path_callback_error_stops_the_parser(void **state)
{
	struct sse_parser p;
	struct log lg = {.stop_at_event = 2, .stop_rc = LR_ECANCELLED};
	sse_parser_init(&p, 0, 0);
	assert_int_equal(sse_parser_feed(&p, "data: 1\r\n\r\ndata: 2\r\rdata: 3\n\n", 29,
	                                 &log_callbacks, &lg),
	                 LR_ECANCELLED);
	assert_string_equal(lg.text, "event=message id= data=1\nevent=message id= data=2\n");
	assert_int_equal(sse_parser_feed(&p, "data: 4\n\n", 9, &log_callbacks, &lg), LR_ECANCELLED);
	assert_int_equal(lg.events, 2);
	sse_parser_free(&p);
}


static void reset_starts_a_new_stream(void **state)
{
	struct sse_parser p;
	struct log lg = {0};
	sse_parser_init(&p, 0, 0);
	assert_int_equal(sse_parser_feed(&p, "id: 5\ndata: a\n\ndata: half", 25, &log_callbacks, &lg), 0);
	sse_parser_reset(&p);
	/* A BOM opens the new stream; the old id and half line are gone. */
	assert_int_equal(sse_parser_feed(&p, "\xEF\xBB\xBF" "data: b\n\n", 12, &log_callbacks, &lg), 0);
	assert_string_equal(lg.text, "event=message id=5 data=a\nevent=message id= data=b\n");
	sse_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(single_data_line_is_a_message_event),
		cmocka_unit_test(basic_unnamed_events_stream),
		cmocka_unit_test(multi_line_data_is_joined_with_lf),
		cmocka_unit_test(data_colon_alone_gives_an_event_with_empty_data),
		cmocka_unit_test(two_bare_data_lines_give_a_single_lf),
		cmocka_unit_test(empty_data_lines_are_kept_inside_data),
		cmocka_unit_test(block_without_data_dispatches_nothing),
		cmocka_unit_test(event_type_without_data_is_forgotten),
		cmocka_unit_test(blank_lines_alone_dispatch_nothing),
		cmocka_unit_test(data_bytes_pass_through_unchanged),
		cmocka_unit_test(multibyte_utf8_data_after_blank_lines),
		cmocka_unit_test(event_field_sets_the_type),
		cmocka_unit_test(empty_event_field_means_message),
		cmocka_unit_test(event_type_resets_after_dispatch),
		cmocka_unit_test(last_event_field_wins),
		cmocka_unit_test(id_persists_across_events),
		cmocka_unit_test(id_with_nul_is_ignored),
		cmocka_unit_test(empty_id_clears_the_last_event_id),
		cmocka_unit_test(id_from_a_block_without_data_carries_to_the_next_event),
		cmocka_unit_test(identified_events_with_retry),
		cmocka_unit_test(retry_with_only_digits_is_reported),
		cmocka_unit_test(retry_that_is_not_all_digits_is_ignored),
		cmocka_unit_test(retry_past_uint64_saturates),
		cmocka_unit_test(empty_retry_between_events_changes_nothing),
		cmocka_unit_test(comment_text_is_what_follows_the_colon),
		cmocka_unit_test(comment_inside_an_event_does_not_end_it),
		cmocka_unit_test(heartbeat_comments_between_events),
		cmocka_unit_test(odd_comments_with_nul_cr_and_long_lines),
		cmocka_unit_test(line_without_colon_is_a_field_with_empty_value),
		cmocka_unit_test(only_one_leading_space_is_dropped),
		cmocka_unit_test(value_may_contain_colons),
		cmocka_unit_test(unknown_fields_are_ignored),
		cmocka_unit_test(field_names_are_case_sensitive),
		cmocka_unit_test(field_name_with_trailing_space_is_unknown),
		cmocka_unit_test(lf_line_ends),
		cmocka_unit_test(cr_line_ends),
		cmocka_unit_test(crlf_line_ends),
		cmocka_unit_test(mixed_line_ends),
		cmocka_unit_test(crlf_split_between_feeds_is_one_line_end),
		cmocka_unit_test(cr_then_crlf_is_two_line_ends),
		cmocka_unit_test(lf_then_cr_is_two_line_ends),
		cmocka_unit_test(explicit_feeds_with_cr_at_feed_end),
		cmocka_unit_test(bom_at_stream_start_is_stripped_once),
		cmocka_unit_test(bom_split_across_three_feeds_is_stripped),
		cmocka_unit_test(partial_bom_is_part_of_the_first_line),
		cmocka_unit_test(bom_without_a_line_is_just_stripped),
		cmocka_unit_test(half_event_is_discarded_at_finish),
		cmocka_unit_test(unterminated_last_line_is_discarded_at_finish),
		cmocka_unit_test(mid_event_tells_a_truncated_stream),
		cmocka_unit_test(openai_stream_ends_with_done),
		cmocka_unit_test(anthropic_stream_pairs_event_and_data),
		cmocka_unit_test(event_within_one_feed_is_not_copied),
		cmocka_unit_test(multi_line_data_is_joined_in_the_parser_buffer),
		cmocka_unit_test(steady_split_stream_stops_allocating),
		cmocka_unit_test(data_buffer_grows_geometrically),
		cmocka_unit_test(line_at_the_cap_is_accepted),
		cmocka_unit_test(line_over_the_cap_is_too_large),
		cmocka_unit_test(event_at_the_cap_is_accepted),
		cmocka_unit_test(event_over_the_cap_is_too_large),
		cmocka_unit_test(long_line_never_grows_memory_past_the_cap),
		cmocka_unit_test(long_event_never_grows_memory_past_the_cap),
		cmocka_unit_test(error_is_sticky_until_reset),
		cmocka_unit_test(callback_error_stops_the_parser),
		cmocka_unit_test(comment_callback_error_stops_the_parser),
		cmocka_unit_test(missing_callbacks_are_skipped),
		cmocka_unit_test(reset_starts_a_new_stream),
		cmocka_unit_test(fast_path_every_pair_of_line_ends),
		cmocka_unit_test(fast_path_leaves_events_with_more_lines),
		cmocka_unit_test(fast_path_caps),
		cmocka_unit_test(fast_path_events_are_not_copied),
		cmocka_unit_test(fast_path_callback_error_stops_the_parser),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

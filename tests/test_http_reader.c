/*
 * The HTTP/1.1 response reader, as a specification: every sample response
 * gives the same head and body whether it arrives whole, split in two at
 * every byte, or one byte per feed; every malformed one fails with its code.
 *
 * Each feed gets a fresh allocation of exactly the piece's size, so
 * AddressSanitizer catches any read past the bytes fed.
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

#include "http/http_reader.h"
#include "llmring.h"

#define COLLECT_BODY_MAX 8192
#define COLLECT_NAME_MAX 64
#define COLLECT_VALUE_MAX 256

/* Everything the callbacks saw, copied (head pointers die with on_head). */
struct collected {
	int heads, bodies, dones;
	int status, minor_version;
	char reason[128];
	int64_t content_length;
	unsigned chunked, conn_close, no_body, close_delimited;
	size_t num_headers;
	char names[HTTP_MAX_HEADERS][COLLECT_NAME_MAX];
	char values[HTTP_MAX_HEADERS][COLLECT_VALUE_MAX];
	char found_content_type[COLLECT_VALUE_MAX]; /* via http_head_find */
	char body[COLLECT_BODY_MAX];
	size_t body_len;
	/* Injected callback results, to test stopping the reader. */
	int head_rc, body_rc, done_rc;
};

static void copy_text(char *dst, size_t cap, const char *src, size_t len)
{
	assert_true(len < cap);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static int collect_head(void *ctx, const struct http_head *h)
{
	struct collected *c = ctx;
	assert_int_equal(c->heads, 0);
	assert_int_equal(c->dones, 0);
	c->heads++;
	c->status = h->status;
	c->minor_version = h->minor_version;
	copy_text(c->reason, sizeof(c->reason), h->reason, h->reason_len);
	c->content_length = h->content_length;
	c->chunked = h->chunked;
	c->conn_close = h->conn_close;
	c->no_body = h->no_body;
	c->close_delimited = h->close_delimited;
	c->num_headers = h->num_headers;
	for (size_t i = 0; i < h->num_headers; i++) {
		copy_text(c->names[i], COLLECT_NAME_MAX, h->headers[i].name, h->headers[i].name_len);
		copy_text(c->values[i], COLLECT_VALUE_MAX, h->headers[i].value,
		          h->headers[i].value_len);
	}
	const struct http_header *ct = http_head_find(h, "CONTENT-type");
	if (ct)
		copy_text(c->found_content_type, COLLECT_VALUE_MAX, ct->value, ct->value_len);
	return c->head_rc;
}

static int collect_body(void *ctx, const char *data, size_t len)
{
	struct collected *c = ctx;
	assert_int_equal(c->heads, 1);
	assert_int_equal(c->dones, 0);
	assert_true(len > 0);
	assert_true(c->body_len + len <= COLLECT_BODY_MAX);
	memcpy(c->body + c->body_len, data, len);
	c->body_len += len;
	c->bodies++;
	return c->body_rc;
}

static int collect_done(void *ctx)
{
	struct collected *c = ctx;
	assert_int_equal(c->heads, 1);
	assert_int_equal(c->dones, 0);
	c->dones++;
	return c->done_rc;
}

static const struct http_reader_callbacks collect = {
	.on_head = collect_head,
	.on_body = collect_body,
	.on_done = collect_done,
};

static long feed_piece(struct http_reader *r, const char *p, size_t n, struct collected *c)
{
	char *copy = malloc(n ? n : 1); /* owner: this function */
	assert_non_null(copy);
	memcpy(copy, p, n);
	long rc = http_reader_feed(r, copy, n, &collect, c);
	free(copy);
	return rc;
}

/*
 * Feeds text as a first piece of size first, then pieces of size rest.
 * Returns the bytes consumed (stopping at the end of the message) or the
 * first error.
 */
static long feed_pieces(struct http_reader *r, const char *text, size_t len, size_t first,
                        size_t rest, struct collected *c)
{
	size_t off = 0, piece = first;
	for (;;) {
		size_t n = piece < len - off ? piece : len - off;
		long rc = feed_piece(r, text + off, n, c);
		if (rc < 0)
			return rc;
		assert_true((size_t)rc <= n);
		off += (size_t)rc;
		if ((size_t)rc < n || off == len)
			return (long)off;
		piece = rest;
	}
}

static long feed_whole(struct http_reader *r, const char *text, struct collected *c)
{
	size_t len = strlen(text);
	return feed_pieces(r, text, len, len, len, c);
}

/* ---- sample responses ---- */

struct expected_header {
	const char *name, *value;
};

struct sample {
	const char *name;
	const char *text;
	unsigned request_was_head : 1;
	unsigned ends_at_eof : 1; /* close-delimited: complete only at EOF */
	int status;
	const char *reason;
	const char *body;
	int64_t content_length;
	unsigned chunked, conn_close, no_body, close_delimited;
	struct expected_header headers[8]; /* all headers, in order */
};

static const struct sample samples[] = {
	{
		.name = "content_length",
		.text = "HTTP/1.1 200 OK\r\n"
		        "Content-Type: application/json\r\n"
		        "Content-Length: 13\r\n"
		        "\r\n"
		        "hello, world!",
		.status = 200, .reason = "OK", .body = "hello, world!", .content_length = 13,
		.headers = { { "Content-Type", "application/json" }, { "Content-Length", "13" } },
	},
	{
		.name = "chunked_with_extensions_and_trailers",
		.text = "HTTP/1.1 200 OK\r\n"
		        "Transfer-Encoding: chunked\r\n"
		        "\r\n"
		        "5;foo=bar\r\n"
		        "hello\r\n"
		        "7 ; q=\"a;b\\\"c\\\\\" ;x\r\n"
		        ", world\r\n"
		        "a\r\n"
		        "0123456789\r\n"
		        "00;end=1\r\n"
		        "X-Trailer: yes\r\n"
		        "X-Other: 1\r\n"
		        "\r\n",
		.status = 200, .reason = "OK", .body = "hello, world0123456789", .content_length = -1,
		.chunked = 1,
		.headers = { { "Transfer-Encoding", "chunked" } },
	},
	{
		/* Sizes the one-pass chunk line takes (any case, leading zeros,
		 * the most digits allowed) next to ones it leaves to the byte
		 * walk (whitespace, an extension). */
		.name = "chunked_sizes_in_one_pass",
		.text = "HTTP/1.1 200 OK\r\n"
		        "Transfer-Encoding: chunked\r\n"
		        "\r\n"
		        "000A\r\n0123456789\r\n"
		        "b\r\nabcdefghijk\r\n"
		        "00000000000000C\r\nABCDEFGHIJKL\r\n"
		        "1 \r\n!\r\n"
		        "2;x\r\n?!\r\n"
		        "1\r\n.\r\n"
		        "0\r\n\r\n",
		.status = 200, .reason = "OK", .body = "0123456789abcdefghijkABCDEFGHIJKL!?!.",
		.content_length = -1, .chunked = 1,
		.headers = { { "Transfer-Encoding", "chunked" } },
	},
	{
		.name = "chunked_without_trailers",
		.text = "HTTP/1.1 200 OK\r\n"
		        "Transfer-Encoding: gzip, chunked\r\n"
		        "\r\n"
		        "3\r\nabc\r\n"
		        "0\r\n"
		        "\r\n",
		.status = 200, .reason = "OK", .body = "abc", .content_length = -1, .chunked = 1,
		.headers = { { "Transfer-Encoding", "gzip, chunked" } },
	},
	{
		.name = "interim_100_and_103_before_200",
		.text = "HTTP/1.1 100 Continue\r\n"
		        "\r\n"
		        "HTTP/1.1 103 Early Hints\r\n"
		        "Link: </style.css>; rel=preload\r\n"
		        "\r\n"
		        "HTTP/1.1 200 OK\r\n"
		        "Content-Length: 2\r\n"
		        "\r\n"
		        "ok",
		.status = 200, .reason = "OK", .body = "ok", .content_length = 2,
		.headers = { { "Content-Length", "2" } },
	},
	{
		.name = "no_content_204",
		.text = "HTTP/1.1 204 No Content\r\n"
		        "Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
		        "\r\n",
		.status = 204, .reason = "No Content", .body = "", .content_length = -1, .no_body = 1,
		.headers = { { "Date", "Mon, 01 Jan 2024 00:00:00 GMT" } },
	},
	{
		.name = "not_modified_304_with_content_length",
		.text = "HTTP/1.1 304 Not Modified\r\n"
		        "Content-Length: 50\r\n"
		        "\r\n",
		.status = 304, .reason = "Not Modified", .body = "", .content_length = 50,
		.no_body = 1,
		.headers = { { "Content-Length", "50" } },
	},
	{
		.name = "close_delimited_http10",
		.text = "HTTP/1.0 200 OK\r\n"
		        "Server: old\r\n"
		        "\r\n"
		        "everything until the connection closes",
		.ends_at_eof = 1,
		.status = 200, .reason = "OK", .body = "everything until the connection closes",
		.content_length = -1, .conn_close = 1, .close_delimited = 1,
		.headers = { { "Server", "old" } },
	},
	{
		.name = "close_delimited_non_chunked_coding",
		.text = "HTTP/1.1 200 OK\r\n"
		        "Transfer-Encoding: chunked, gzip\r\n"
		        "\r\n"
		        "raw bytes",
		.ends_at_eof = 1,
		.status = 200, .reason = "OK", .body = "raw bytes", .content_length = -1,
		.close_delimited = 1,
		.headers = { { "Transfer-Encoding", "chunked, gzip" } },
	},
	{
		.name = "head_response_with_content_length",
		.text = "HTTP/1.1 200 OK\r\n"
		        "Content-Length: 1234\r\n"
		        "\r\n",
		.request_was_head = 1,
		.status = 200, .reason = "OK", .body = "", .content_length = 1234, .no_body = 1,
		.headers = { { "Content-Length", "1234" } },
	},
	{
		.name = "multiple_headers",
		.text = "HTTP/1.1 429 Too Many Requests\r\n"
		        "content-type:text/plain\r\n"
		        "Retry-After: \t 7 \t\r\n"
		        "X-Empty:\r\n"
		        "X-Request-Id: abc-123\r\n"
		        "Set-Cookie: a=1\r\n"
		        "Set-Cookie: b=2\r\n"
		        "Connection: keep-alive, Close\r\n"
		        "Content-Length: 4\r\n"
		        "\r\n"
		        "slow",
		.status = 429, .reason = "Too Many Requests", .body = "slow", .content_length = 4,
		.conn_close = 1,
		.headers = { { "content-type", "text/plain" }, { "Retry-After", "7" },
		             { "X-Empty", "" }, { "X-Request-Id", "abc-123" },
		             { "Set-Cookie", "a=1" }, { "Set-Cookie", "b=2" },
		             { "Connection", "keep-alive, Close" }, { "Content-Length", "4" } },
	},
	{
		.name = "lf_only_head",
		.text = "HTTP/1.1 200 OK\n"
		        "Content-Type: text/plain\n"
		        "Content-Length: 3\n"
		        "\n"
		        "abc",
		.status = 200, .reason = "OK", .body = "abc", .content_length = 3,
		.headers = { { "Content-Type", "text/plain" }, { "Content-Length", "3" } },
	},
	{
		.name = "status_line_without_reason",
		.text = "HTTP/1.1 500\r\n"
		        "Content-Length: 0\r\n"
		        "\r\n",
		.status = 500, .reason = "", .body = "", .content_length = 0,
		.headers = { { "Content-Length", "0" } },
	},
};
#define NUM_SAMPLES (sizeof(samples) / sizeof(samples[0]))

static void check_sample(const struct sample *s, const struct collected *c)
{
	assert_int_equal(c->heads, 1);
	assert_int_equal(c->dones, 1);
	assert_int_equal(c->status, s->status);
	assert_string_equal(c->reason, s->reason);
	assert_int_equal(c->content_length, s->content_length);
	assert_int_equal(c->chunked, s->chunked);
	assert_int_equal(c->conn_close, s->conn_close);
	assert_int_equal(c->no_body, s->no_body);
	assert_int_equal(c->close_delimited, s->close_delimited);
	size_t n = 0;
	while (n < 8 && s->headers[n].name)
		n++;
	assert_int_equal(c->num_headers, n);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(c->names[i], s->headers[i].name);
		assert_string_equal(c->values[i], s->headers[i].value);
	}
	assert_int_equal(c->body_len, strlen(s->body));
	assert_memory_equal(c->body, s->body, c->body_len);
}

/* Feeds the sample in pieces (see feed_pieces) and checks all it produced. */
static void run_sample(const struct sample *s, size_t first, size_t rest)
{
	struct http_reader r;
	struct collected c = { 0 };
	size_t len = strlen(s->text);
	http_reader_init(&r, 0, 0);
	r.request_was_head = s->request_was_head;
	long rc = feed_pieces(&r, s->text, len, first, rest, &c);
	assert_int_equal(rc, (long)len);
	if (s->ends_at_eof) {
		assert_int_equal(c.dones, 0);
		assert_int_equal(http_reader_eof(&r, &collect, &c), 0);
	}
	assert_int_equal(r.state, HTTP_READ_DONE);
	check_sample(s, &c);
	http_reader_free(&r);
}

static void sample_fed_whole(void **state)
{
	const struct sample *s = *state;
	size_t len = strlen(s->text);
	run_sample(s, len, len);
}

static void sample_split_in_two_at_every_byte(void **state)
{
	const struct sample *s = *state;
	size_t len = strlen(s->text);
	for (size_t cut = 0; cut <= len; cut++)
		run_sample(s, cut, len);
}

static void sample_fed_one_byte_at_a_time(void **state)
{
	run_sample(*state, 1, 1);
}

/* ---- heads ---- */

static void whole_head_is_parsed_without_allocating(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, samples[0].text, &c), (long)strlen(samples[0].text));
	assert_null(r.partial);
	assert_int_equal(c.dones, 1);
	http_reader_free(&r);
}

static void header_lookup_ignores_case(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_true(feed_whole(&r, samples[0].text, &c) > 0);
	assert_string_equal(c.found_content_type, "application/json");
	http_reader_free(&r);
}

static void headers_past_the_stored_maximum_still_frame_the_body(void **state)
{
	char text[8192];
	size_t n = (size_t)snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\n");
	for (int i = 0; i < HTTP_MAX_HEADERS + 10; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "X-H%d: %d\r\n", i, i);
	snprintf(text + n, sizeof(text) - n, "Content-Length: 3\r\n\r\nxyz");
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, text, &c), (long)strlen(text));
	assert_int_equal(c.num_headers, HTTP_MAX_HEADERS);
	assert_int_equal(c.content_length, 3);
	assert_int_equal(c.body_len, 3);
	assert_int_equal(c.dones, 1);
	http_reader_free(&r);
}

static void identical_duplicate_content_length_is_accepted(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	const char *text = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nhi";
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, text, &c), (long)strlen(text));
	assert_int_equal(c.content_length, 2);
	assert_int_equal(c.dones, 1);
	http_reader_free(&r);
}

static void head_of_exactly_max_head_bytes_is_accepted(void **state)
{
	enum { CAP = 128 };
	char text[CAP + 1];
	const char *start = "HTTP/1.1 204 No Content\r\nX-Pad: ";
	size_t n = strlen(start);
	memcpy(text, start, n);
	memset(text + n, 'p', CAP - n - 4);
	memcpy(text + CAP - 4, "\r\n\r\n", 5);
	assert_int_equal(strlen(text), CAP);
	for (size_t piece = 1; piece <= CAP; piece += CAP - 1) {
		struct http_reader r;
		struct collected c = { 0 };
		http_reader_init(&r, CAP, 0);
		assert_int_equal(feed_pieces(&r, text, CAP, piece, piece, &c), CAP);
		assert_int_equal(c.dones, 1);
		http_reader_free(&r);
	}
}

/* ---- errors ---- */

/* The text fails with code whether fed whole or one byte at a time. */
static void expect_failure(const char *text, size_t max_head, uint64_t max_body, int code)
{
	size_t len = strlen(text);
	for (int bytewise = 0; bytewise <= 1; bytewise++) {
		struct http_reader r;
		struct collected c = { 0 };
		http_reader_init(&r, max_head, max_body);
		size_t piece = bytewise ? 1 : len;
		assert_int_equal(feed_pieces(&r, text, len, piece, piece, &c), code);
		assert_int_equal(r.state, HTTP_READ_ERROR);
		assert_non_null(r.error_message);
		assert_int_equal(c.dones, 0);
		/* The error sticks. */
		assert_int_equal(feed_piece(&r, "x", 1, &c), code);
		assert_int_equal(http_reader_eof(&r, &collect, &c), code);
		http_reader_free(&r);
	}
}

static void malformed_status_lines_are_rejected(void **state)
{
	static const char *const bad[] = {
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n",
		"HTTP/1.1 099 Nope\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"HTTP/2.0 200 OK\r\n\r\n",
		"HTTP/1.2 200 OK\r\n\r\n",
		"HTTX/1.1 200 OK\r\n\r\n",
		"http/1.1 200 OK\r\n\r\n",
		"HTTP/1.1\r\n\r\n",
		"garbage\r\n\r\n",
		"\r\n\r\n",
		"\r\nHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 O\001K\r\n\r\n",
		"HTTP/1.1 200 OK\rX: y\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_failure(bad[i], 0, 0, LR_EPROTO);
}

static void switching_protocols_101_is_rejected(void **state)
{
	expect_failure("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 0, 0, LR_EPROTO);
}

static void obsolete_line_folding_is_rejected(void **state)
{
	expect_failure("HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n", 0, 0,
	               LR_EPROTO);
	expect_failure("HTTP/1.1 200 OK\r\nX-A: one\r\n\ttwo\r\nContent-Length: 0\r\n\r\n", 0, 0,
	               LR_EPROTO);
}

static void header_without_colon_is_rejected(void **state)
{
	expect_failure("HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n", 0, 0,
	               LR_EPROTO);
}

static void invalid_header_name_is_rejected(void **state)
{
	expect_failure("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure("HTTP/1.1 200 OK\r\nName : x\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure("HTTP/1.1 200 OK\r\n: x\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure("HTTP/1.1 200 OK\r\nBad(Name): x\r\n\r\n", 0, 0, LR_EPROTO);
}

static void control_characters_in_header_values_are_rejected(void **state)
{
	expect_failure("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure("HTTP/1.1 200 OK\r\nX-A: a\001b\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure("HTTP/1.1 200 OK\r\nX-A: a\177b\r\n\r\n", 0, 0, LR_EPROTO);
}

static void nul_in_header_value_is_rejected(void **state)
{
	static const char text[] = "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n";
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_pieces(&r, text, sizeof(text) - 1, sizeof(text), sizeof(text), &c),
	                 LR_EPROTO);
	http_reader_free(&r);
}

/* RFC 9110's tchar, written out again here (not the reader's table). */
static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Parses "HTTP/1.1 200 OK\r\n" + name ": " + value + "\r\nContent-Length: 0\r\n\r\n"
 * fed whole (in a heap copy of exactly its size, so AddressSanitizer sees
 * a 16-byte step that reads past it); the result code, and what the reader
 * reported as the first header. */
static long parse_one_header(const char *name, size_t name_len, const char *value,
                             size_t value_len, struct collected *c)
{
	char text[256];
	size_t n = 0;
	memcpy(text, "HTTP/1.1 200 OK\r\n", 17);
	n = 17;
	memcpy(text + n, name, name_len);
	n += name_len;
	memcpy(text + n, ": ", 2);
	n += 2;
	memcpy(text + n, value, value_len);
	n += value_len;
	static const char tail[] = "\r\nContent-Length: 0\r\n\r\n";
	memcpy(text + n, tail, sizeof(tail) - 1);
	n += sizeof(tail) - 1;
	struct http_reader r;
	http_reader_init(&r, 0, 0);
	memset(c, 0, sizeof(*c));
	long rc = feed_pieces(&r, text, n, n, n, c);
	http_reader_free(&r);
	return rc;
}

/* The 16-byte steps of the name and value scans: every byte value at
 * every place of names and values up to 40 bytes long (the ends of a
 * step, and the byte-at-a-time tail), against the RFC's character sets. */
static void every_byte_at_every_offset_of_a_header_is_classified(void **state)
{
	char name[48], value[48];
	struct collected c;
	for (size_t len = 1; len <= 40; len++) {
		for (size_t at = 0; at < len; at++) {
			for (int b = 0; b < 256; b++) {
				if (b == '\r' || b == '\n')
					continue; /* they end the line: a different head */
				memset(name, 'N', len);
				name[at] = (char)b;
				long rc = parse_one_header(name, len, "v", 1, &c);
				/* ':' ends the name early: "N…:" then ": v" is a valid value
				 * unless the name before it is empty. */
				bool ok = is_tchar((unsigned char)b) || (b == ':' && at > 0);
				if (ok != (rc > 0))
					fail_msg("name of %zu bytes with 0x%02x at %zu: rc %ld", len, b, at, rc);
				if (rc > 0 && b != ':') {
					assert_int_equal(c.num_headers, 2);
					assert_int_equal(strlen(c.names[0]), len);
				}
				memset(value, 'v', len);
				value[at] = (char)b;
				rc = parse_one_header("X-A", 3, value, len, &c);
				ok = b == '\t' || (b >= 0x20 && b != 0x7f);
				if (ok != (rc > 0))
					fail_msg("value of %zu bytes with 0x%02x at %zu: rc %ld", len, b, at, rc);
				if (rc > 0) {
					/* Whitespace at either end is trimmed, elsewhere kept. */
					bool trimmed = (b == ' ' || b == '\t') && (at == 0 || at == len - 1);
					assert_int_equal(strlen(c.values[0]), trimmed ? len - 1 : len);
				}
			}
		}
	}
}

/* The framing headers are found in any case, and only by their exact name. */
static void framing_header_names_match_in_any_case_only_exactly(void **state)
{
	static const char *const close_names[] = {"connection", "CONNECTION", "Connection", "cOnNeCtIoN"};
	for (size_t i = 0; i < sizeof(close_names) / sizeof(close_names[0]); i++) {
		struct collected c;
		assert_true(parse_one_header(close_names[i], 10, "close", 5, &c) > 0);
		assert_true(c.conn_close);
	}
	static const char *const not_close[] = {"connectior", "xonnection", "connectio-", "Connect1on"};
	for (size_t i = 0; i < sizeof(not_close) / sizeof(not_close[0]); i++) {
		struct collected c;
		assert_true(parse_one_header(not_close[i], 10, "close", 5, &c) > 0);
		assert_false(c.conn_close);
	}
	struct collected c;
	assert_true(parse_one_header("TRANSFER-ENCODING", 17, "chunked", 7, &c) < 0 ||
	            c.chunked); /* with Content-Length: 0 too, it is refused */
	char text[] = "HTTP/1.1 200 OK\r\ncontent-LENGTH: 3\r\n\r\nabc";
	struct http_reader r;
	http_reader_init(&r, 0, 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(feed_pieces(&r, text, strlen(text), strlen(text), strlen(text), &c),
	                 (long)strlen(text));
	assert_int_equal(c.content_length, 3);
	assert_int_equal(c.body_len, 3);
	http_reader_free(&r);
}

static void oversized_header_block_fed_whole_is_rejected(void **state)
{
	char text[1024];
	snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nX-Pad: %0300d\r\n\r\n", 0);
	expect_failure(text, 256, 0, LR_ETOOLARGE);
}

static void oversized_header_block_fails_before_buffering_past_the_cap(void **state)
{
	enum { CAP = 256 };
	char text[1024];
	snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nX-Pad: %0900d\r\n\r\n", 0);
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, CAP, 0);
	size_t i;
	long rc = 0;
	for (i = 0; text[i]; i++) {
		rc = feed_piece(&r, text + i, 1, &c);
		assert_true(r.partial_cap <= CAP);
		assert_true(r.partial_len <= CAP);
		if (rc < 0)
			break;
	}
	assert_int_equal(rc, LR_ETOOLARGE);
	assert_true(i < CAP);
	assert_int_equal(c.heads, 0);
	http_reader_free(&r);

	/* Big pieces after a small one: the copy into partial stops at the cap. */
	http_reader_init(&r, CAP, 0);
	assert_int_equal(feed_piece(&r, text, 10, &c), 10);
	assert_int_equal(feed_piece(&r, text + 10, strlen(text) - 10, &c), LR_ETOOLARGE);
	assert_true(r.partial_cap <= CAP);
	http_reader_free(&r);
}

static void content_length_overflow_is_rejected(void **state)
{
	expect_failure("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", 0, 0,
	               LR_EPROTO);
	expect_failure("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n", 0, 0,
	               LR_EPROTO);
	expect_failure("HTTP/1.1 200 OK\r\nContent-Length: 000000000000000000001\r\n\r\n", 0, 0,
	               LR_EPROTO);
}

static void content_length_that_is_not_digits_is_rejected(void **state)
{
	static const char *const bad[] = { "-1", "+5", "5a", "0x10", "1 2", "", "1,1" };
	char text[256];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\n", bad[i]);
		expect_failure(text, 0, 0, LR_EPROTO);
	}
}

static void differing_duplicate_content_length_is_rejected(void **state)
{
	expect_failure("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 0, 0,
	               LR_EPROTO);
}

static void transfer_encoding_with_content_length_is_rejected(void **state)
{
	expect_failure("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
	               "5\r\nhello\r\n0\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
	               "5\r\nhello\r\n0\r\n\r\n", 0, 0, LR_EPROTO);
}

#define CHUNKED_HEAD "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

static void non_hex_chunk_size_is_rejected(void **state)
{
	expect_failure(CHUNKED_HEAD "zz\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD " 5\r\nhello\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "-5\r\nhello\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "5x\r\nhello\r\n", 0, 0, LR_EPROTO);
}

static void chunk_size_overflow_is_rejected(void **state)
{
	expect_failure(CHUNKED_HEAD "1000000000000000\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "ffffffffffffffffffff\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "000000000000000A\r\n0123456789\r\n", 0, 0, LR_EPROTO);
}

static void bare_lf_in_chunk_framing_is_rejected(void **state)
{
	expect_failure(CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "5;ext=1\nhello\r\n0\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "5\r\nhello\r\n0\n\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "5\r\nhello\r\n3\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "5\r\nhello\r\n3\r\r\nabc\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "5\r\nhello\n\r\n", 0, 0, LR_EPROTO);
}

static void missing_crlf_after_chunk_data_is_rejected(void **state)
{
	expect_failure(CHUNKED_HEAD "5\r\nhelloX\r\n0\r\n\r\n", 0, 0, LR_EPROTO);
	expect_failure(CHUNKED_HEAD "5\r\nhello\rX0\r\n\r\n", 0, 0, LR_EPROTO);
}

static void unterminated_quoted_chunk_extension_is_rejected(void **state)
{
	expect_failure(CHUNKED_HEAD "5;a=\"open\r\nhello\r\n0\r\n\r\n", 0, 0, LR_EPROTO);
}

static void oversized_trailer_section_is_rejected(void **state)
{
	char text[2048];
	snprintf(text, sizeof(text), CHUNKED_HEAD "0\r\nX-Trailer: %0600d\r\n\r\n", 0);
	expect_failure(text, 256, 0, LR_ETOOLARGE);
}

static void content_length_over_max_body_is_rejected_before_the_head(void **state)
{
	expect_failure("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 0, 10, LR_ETOOLARGE);
	/* expect_failure checked no on_done; check no on_head either. */
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 10);
	assert_int_equal(feed_whole(&r, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", &c),
	                 LR_ETOOLARGE);
	assert_int_equal(c.heads, 0);
	http_reader_free(&r);
}

static void chunked_body_over_max_body_is_rejected(void **state)
{
	expect_failure(CHUNKED_HEAD "6\r\nhello!\r\n5\r\nworld\r\n0\r\n\r\n", 0, 10, LR_ETOOLARGE);
	expect_failure(CHUNKED_HEAD "b\r\nhello world\r\n0\r\n\r\n", 0, 10, LR_ETOOLARGE);
	expect_failure(CHUNKED_HEAD "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 0, 10, LR_ETOOLARGE);
}

static void close_delimited_body_over_max_body_is_rejected(void **state)
{
	expect_failure("HTTP/1.1 200 OK\r\n\r\n0123456789A", 0, 10, LR_ETOOLARGE);
}

static void body_of_exactly_max_body_is_accepted(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	const char *text = CHUNKED_HEAD "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
	http_reader_init(&r, 0, 10);
	assert_int_equal(feed_whole(&r, text, &c), (long)strlen(text));
	assert_int_equal(c.body_len, 10);
	http_reader_free(&r);
}

static void eof_mid_body_is_a_protocol_error(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_true(feed_whole(&r, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", &c) > 0);
	assert_int_equal(http_reader_eof(&r, &collect, &c), LR_EPROTO);
	assert_int_equal(r.state, HTTP_READ_ERROR);
	assert_int_equal(c.dones, 0);
	http_reader_free(&r);
}

static void eof_mid_chunked_body_is_a_protocol_error(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_true(feed_whole(&r, CHUNKED_HEAD "5\r\nhello\r\n", &c) > 0);
	assert_int_equal(http_reader_eof(&r, &collect, &c), LR_EPROTO);
	http_reader_free(&r);
}

static void eof_mid_head_is_a_protocol_error(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	const char *text = "HTTP/1.1 200 OK\r\nContent-";
	assert_int_equal(feed_whole(&r, text, &c), (long)strlen(text));
	assert_int_equal(http_reader_eof(&r, &collect, &c), LR_EPROTO);
	http_reader_free(&r);
}

static void eof_after_only_an_interim_response_is_a_protocol_error(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, "HTTP/1.1 100 Continue\r\n\r\n", &c), 25);
	assert_int_equal(c.heads, 0);
	assert_int_equal(http_reader_eof(&r, &collect, &c), LR_EPROTO);
	http_reader_free(&r);
}

static void eof_before_any_byte_is_a_connection_reset(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_int_equal(http_reader_eof(&r, &collect, &c), LR_ECONNRESET);
	assert_int_equal(r.state, HTTP_READ_ERROR);
	assert_non_null(r.error_message);
	http_reader_free(&r);
}

/* ---- message boundaries and reuse ---- */

static void bytes_after_the_message_are_not_consumed(void **state)
{
	const char *msg = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	char text[256];
	snprintf(text, sizeof(text), "%sHTTP/1.1 204 No Content\r\n\r\n", msg);
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, text, &c), (long)strlen(msg));
	assert_int_equal(c.dones, 1);
	/* Done: further feeds consume nothing. */
	assert_int_equal(feed_piece(&r, "xyz", 3, &c), 0);
	http_reader_free(&r);
}

static void bytes_after_a_chunked_message_are_not_consumed(void **state)
{
	const char *msg = CHUNKED_HEAD "2\r\nok\r\n0\r\nT: 1\r\n\r\n";
	char text[256];
	snprintf(text, sizeof(text), "%sEXTRA", msg);
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, text, &c), (long)strlen(msg));
	http_reader_free(&r);
}

static void reset_reader_reads_the_next_response_on_the_connection(void **state)
{
	const char *first = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst";
	const char *second = CHUNKED_HEAD "6\r\nsecond\r\n0\r\n\r\n";
	char text[512];
	snprintf(text, sizeof(text), "%s%s", first, second);
	size_t len = strlen(text);
	/* Split mid-head of the first so partial gets used, then reused. */
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_piece(&r, text, 10, &c), 10);
	long rc = feed_piece(&r, text + 10, len - 10, &c);
	assert_int_equal(rc, (long)strlen(first) - 10);
	assert_int_equal(c.body_len, 5);
	assert_memory_equal(c.body, "first", 5);

	http_reader_reset(&r);
	assert_int_equal(r.state, HTTP_READ_HEAD);
	struct collected c2 = { 0 };
	size_t off = strlen(first);
	assert_int_equal(feed_pieces(&r, text + off, len - off, 3, 3, &c2), (long)(len - off));
	assert_int_equal(c2.dones, 1);
	assert_int_equal(c2.body_len, 6);
	assert_memory_equal(c2.body, "second", 6);
	http_reader_free(&r);
}

static void reset_clears_an_error(void **state)
{
	struct http_reader r;
	struct collected c = { 0 };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, "junk\r\n\r\n", &c), LR_EPROTO);
	http_reader_reset(&r);
	assert_int_equal(feed_whole(&r, samples[0].text, &c), (long)strlen(samples[0].text));
	assert_int_equal(c.dones, 1);
	http_reader_free(&r);
}

/* ---- callbacks ---- */

static void negative_on_head_result_stops_the_reader(void **state)
{
	struct http_reader r;
	struct collected c = { .head_rc = LR_ECANCELLED };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, samples[0].text, &c), LR_ECANCELLED);
	assert_int_equal(c.bodies, 0);
	assert_int_equal(r.state, HTTP_READ_ERROR);
	assert_null(r.error_message); /* the callback's error, not the reader's */
	assert_int_equal(feed_piece(&r, "x", 1, &c), LR_ECANCELLED);
	http_reader_free(&r);
}

static void negative_on_body_result_stops_the_reader(void **state)
{
	struct http_reader r;
	struct collected c = { .body_rc = LR_ENOMEM };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, samples[1].text, &c), LR_ENOMEM);
	assert_int_equal(c.bodies, 1);
	assert_int_equal(c.dones, 0);
	http_reader_free(&r);
}

static void negative_on_done_result_is_returned(void **state)
{
	struct http_reader r;
	struct collected c = { .done_rc = LR_EPROTO };
	http_reader_init(&r, 0, 0);
	assert_int_equal(feed_whole(&r, samples[0].text, &c), LR_EPROTO);
	assert_int_equal(c.dones, 1);
	http_reader_free(&r);
}

int main(void)
{
	static const struct {
		const char *suffix;
		CMUnitTestFunction fn;
	} modes[] = {
		{ "fed_whole", sample_fed_whole },
		{ "split_in_two_at_every_byte", sample_split_in_two_at_every_byte },
		{ "fed_one_byte_at_a_time", sample_fed_one_byte_at_a_time },
	};
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(whole_head_is_parsed_without_allocating),
		cmocka_unit_test(header_lookup_ignores_case),
		cmocka_unit_test(headers_past_the_stored_maximum_still_frame_the_body),
		cmocka_unit_test(identical_duplicate_content_length_is_accepted),
		cmocka_unit_test(head_of_exactly_max_head_bytes_is_accepted),
		cmocka_unit_test(malformed_status_lines_are_rejected),
		cmocka_unit_test(switching_protocols_101_is_rejected),
		cmocka_unit_test(obsolete_line_folding_is_rejected),
		cmocka_unit_test(header_without_colon_is_rejected),
		cmocka_unit_test(invalid_header_name_is_rejected),
		cmocka_unit_test(control_characters_in_header_values_are_rejected),
		cmocka_unit_test(nul_in_header_value_is_rejected),
		cmocka_unit_test(every_byte_at_every_offset_of_a_header_is_classified),
		cmocka_unit_test(framing_header_names_match_in_any_case_only_exactly),
		cmocka_unit_test(oversized_header_block_fed_whole_is_rejected),
		cmocka_unit_test(oversized_header_block_fails_before_buffering_past_the_cap),
		cmocka_unit_test(content_length_overflow_is_rejected),
		cmocka_unit_test(content_length_that_is_not_digits_is_rejected),
		cmocka_unit_test(differing_duplicate_content_length_is_rejected),
		cmocka_unit_test(transfer_encoding_with_content_length_is_rejected),
		cmocka_unit_test(non_hex_chunk_size_is_rejected),
		cmocka_unit_test(chunk_size_overflow_is_rejected),
		cmocka_unit_test(bare_lf_in_chunk_framing_is_rejected),
		cmocka_unit_test(missing_crlf_after_chunk_data_is_rejected),
		cmocka_unit_test(unterminated_quoted_chunk_extension_is_rejected),
		cmocka_unit_test(oversized_trailer_section_is_rejected),
		cmocka_unit_test(content_length_over_max_body_is_rejected_before_the_head),
		cmocka_unit_test(chunked_body_over_max_body_is_rejected),
		cmocka_unit_test(close_delimited_body_over_max_body_is_rejected),
		cmocka_unit_test(body_of_exactly_max_body_is_accepted),
		cmocka_unit_test(eof_mid_body_is_a_protocol_error),
		cmocka_unit_test(eof_mid_chunked_body_is_a_protocol_error),
		cmocka_unit_test(eof_mid_head_is_a_protocol_error),
		cmocka_unit_test(eof_after_only_an_interim_response_is_a_protocol_error),
		cmocka_unit_test(eof_before_any_byte_is_a_connection_reset),
		cmocka_unit_test(bytes_after_the_message_are_not_consumed),
		cmocka_unit_test(bytes_after_a_chunked_message_are_not_consumed),
		cmocka_unit_test(reset_reader_reads_the_next_response_on_the_connection),
		cmocka_unit_test(reset_clears_an_error),
		cmocka_unit_test(negative_on_head_result_stops_the_reader),
		cmocka_unit_test(negative_on_body_result_stops_the_reader),
		cmocka_unit_test(negative_on_done_result_is_returned),
	};
	enum { NUM_MODES = sizeof(modes) / sizeof(modes[0]) };
	enum { NUM_FIXED = sizeof(fixed) / sizeof(fixed[0]) };
	enum { NUM_TESTS = NUM_SAMPLES * NUM_MODES + NUM_FIXED };

	/* One named test per sample and feeding mode; names owned here. */
	static struct CMUnitTest tests[NUM_TESTS];
	static char names[NUM_SAMPLES * NUM_MODES][128];
	size_t n = 0;
	for (size_t s = 0; s < NUM_SAMPLES; s++) {
		for (size_t m = 0; m < NUM_MODES; m++) {
			snprintf(names[n], sizeof(names[n]), "%s_response_%s", samples[s].name,
			         modes[m].suffix);
			tests[n] = (struct CMUnitTest){
				.name = names[n],
				.test_func = modes[m].fn,
				.initial_state = (void *)&samples[s],
			};
			n++;
		}
	}
	for (size_t i = 0; i < NUM_FIXED; i++)
		tests[n++] = fixed[i];
	return _cmocka_run_group_tests("http_reader", tests, n, NULL, NULL);
}

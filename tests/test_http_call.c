/*
 * Plain HTTP calls (lr_request_new_http) through the public API, against
 * the scripted test server: methods and targets, bodies from bytes and
 * files, responses buffered or streamed to a sink past max_body_bytes, a
 * cut download resumed with Range (206), retries, the key only for its own
 * origin and never in a message, cancel mid-download, hostile responses.
 *
 * Long (over 800 lines) on purpose, as test_engine.c: one subject's
 * specification, short independent cases sharing one fixture.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "llmring.h"
#include "test_server.h"

#define KEY "sk-test-SECRET-4242"

/* What the server saw and how it answers; one per test. */
struct answer {
	struct answer *next;
	char bytes[];
};

struct srv {
	pthread_mutex_t mu;
	unsigned requests;
	char *head;                /* owned: the last request's head */
	char *body;                /* owned: the last request's body */
	size_t body_len;
	/* How to answer request number n (0-based). */
	void (*answer)(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out);
	/* owned: every answer's bytes, newest first, kept until the server
	 * stops: another connection may still be sending an older one. */
	struct answer *replies;
	size_t big;                /* a body size the answer uses */
};

struct fx {
	struct srv srv, other;     /* the engine's origin, and another one */
	struct test_server *ts, *ts_other; /* owned: stopped in teardown */
	lr_engine *eng;            /* owned: destroyed in teardown */
	lr_config cfg;
	char url[80];
	lr_future *futs[16];       /* owned: released in teardown */
	int nfuts;
	char tmp[64];              /* a temporary file to unlink, or "" */
};

static void handler(void *ctx, const struct ts_request *rq, struct ts_reply *out)
{
	struct srv *s = ctx;
	pthread_mutex_lock(&s->mu);
	unsigned n = s->requests++;
	free(s->head);
	free(s->body);
	s->head = strdup(rq->head);
	s->body = malloc(rq->body_len + 1);
	memcpy(s->body, rq->body, rq->body_len + 1);
	s->body_len = rq->body_len;
	s->answer(s, n, rq, out);
	pthread_mutex_unlock(&s->mu);
}

/* Sets the answer's bytes (kept until the server stops). */
static void reply_with(struct srv *s, struct ts_reply *out, const char *head, const char *body,
                       size_t body_len, enum ts_action action)
{
	size_t hl = strlen(head);
	struct answer *a = malloc(sizeof(*a) + hl + body_len + 1);
	assert_non_null(a);
	a->next = s->replies;
	s->replies = a;
	memcpy(a->bytes, head, hl);
	memcpy(a->bytes + hl, body, body_len);
	out->data = a->bytes;
	out->len = hl + body_len;
	out->action = action;
}

static void answer_ok(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	(void)n;
	(void)rq;
	reply_with(s, out, "HTTP/1.1 200 OK\r\nContent-Length: 15\r\nX-Request-Id: req-7\r\n"
	                   "X-Thing: one\r\nx-thing: two\r\n\r\n", "{\"id\":\"file-1\"}", 15, TS_SEND);
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	pthread_mutex_init(&fx->srv.mu, NULL);
	pthread_mutex_init(&fx->other.mu, NULL);
	fx->srv.answer = fx->other.answer = answer_ok;
	fx->cfg = lr_config_default();
	fx->cfg.max_retries = 0;
	fx->cfg.api_key = KEY;
	*state = fx;
	return 0;
}

static void srv_free(struct srv *s)
{
	free(s->head);
	free(s->body);
	while (s->replies) {
		struct answer *next = s->replies->next;
		free(s->replies);
		s->replies = next;
	}
	pthread_mutex_destroy(&s->mu);
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;
	for (int i = 0; i < fx->nfuts; i++)
		lr_future_release(fx->futs[i]);
	if (fx->eng)
		lr_engine_destroy(fx->eng);
	test_server_stop(fx->ts);
	test_server_stop(fx->ts_other);
	srv_free(&fx->srv);
	srv_free(&fx->other);
	if (fx->tmp[0])
		unlink(fx->tmp);
	free(fx);
	return 0;
}

/* Starts the server and an engine whose base URL is it (path suffix). */
static void fx_start(struct fx *fx, const char *path)
{
	assert_int_equal(test_server_start(handler, &fx->srv, &fx->ts), 0);
	snprintf(fx->url, sizeof fx->url, "http://127.0.0.1:%u%s", test_server_port(fx->ts), path);
	fx->cfg.base_url = fx->url;
	assert_int_equal(lr_engine_new(&fx->cfg, &fx->eng), 0);
}

static lr_future *fx_submit(struct fx *fx, lr_request *rq)
{
	assert_non_null(rq);
	lr_future *f = lr_submit(fx->eng, rq);
	assert_non_null(f);
	fx->futs[fx->nfuts++] = f;
	return f;
}

static const lr_result *fx_wait(lr_future *f)
{
	assert_int_equal(lr_future_wait(f, 10000), 1);
	return lr_future_result(f);
}

static void assert_code(const lr_result *r, int code)
{
	if (r->error != code)
		fail_msg("expected %s, got %s (%s), status %d", lr_error_name(code), lr_error_name(r->error),
		         r->error_message ? r->error_message : "-", r->http_status);
}

static bool head_has(const char *head, const char *line)
{
	return strcasestr(head, line) != NULL;
}

/* ---- requests --------------------------------------------------------- */

static void test_get_buffers_the_body_and_keeps_the_headers(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, "/v1");
	lr_future *f = fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "files/file-1/content"));
	const lr_result *r = fx_wait(f);
	assert_code(r, 0);
	assert_int_equal(r->http_status, 200);
	assert_string_equal(r->body, "{\"id\":\"file-1\"}");
	assert_int_equal(r->body_len, 15);
	assert_int_equal(r->body_is_json, 0);
	assert_string_equal(r->request_id, "req-7");
	assert_int_equal(lr_future_response_bytes(f), 15);
	assert_string_equal(lr_future_response_header(f, "x-THING"), "two"); /* the last of a name */
	assert_null(lr_future_response_header(f, "Retry-After"));
	assert_true(head_has(fx->srv.head, "GET /v1/files/file-1/content HTTP/1.1\r\n"));
	assert_true(head_has(fx->srv.head, "Authorization: Bearer " KEY "\r\n"));
	assert_false(head_has(fx->srv.head, "Content-Length"));
	assert_false(head_has(fx->srv.head, "Content-Type"));
	assert_int_equal(fx->srv.body_len, 0);
	/* Not a model's request: no usage row. */
	lr_usage_report u;
	assert_int_equal(lr_engine_usage(fx->eng, &u, NULL, 0), 0);
	assert_int_equal(u.models, 0);
}

static void test_post_sends_copied_bytes_as_json(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, "/v1");
	lr_request *rq = lr_request_new_http(NULL, LR_METHOD_POST, "/batches?x=1");
	char body[] = "{\"input_file_id\":\"file-1\",\"endpoint\":\"/v1/chat/completions\"}";
	assert_int_equal(lr_request_add_body_bytes(rq, body, strlen(body), NULL, NULL), 0);
	memset(body, 'X', sizeof body - 1); /* copied: the caller's memory is free again */
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	assert_code(r, 0);
	assert_true(head_has(fx->srv.head, "POST /v1/batches?x=1 HTTP/1.1\r\n"));
	assert_true(head_has(fx->srv.head, "Content-Type: application/json\r\n"));
	assert_true(head_has(fx->srv.head, "Content-Length: 60\r\n"));
	assert_string_equal(fx->srv.body, "{\"input_file_id\":\"file-1\",\"endpoint\":\"/v1/chat/completions\"}");
}

static void test_post_without_body_sends_content_length_zero(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, "/v1");
	const lr_result *r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_POST,
	                                                               "batches/b1/cancel")));
	assert_code(r, 0);
	assert_true(head_has(fx->srv.head, "POST /v1/batches/b1/cancel HTTP/1.1\r\n"));
	assert_true(head_has(fx->srv.head, "Content-Length: 0\r\n"));
	assert_false(head_has(fx->srv.head, "Content-Type"));
}

static void answer_204(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	(void)n;
	(void)rq;
	reply_with(s, out, "HTTP/1.1 204 No Content\r\n\r\n", "", 0, TS_SEND);
}

static void test_delete_has_no_body_and_a_204_is_success(void **state)
{
	struct fx *fx = *state;
	fx->srv.answer = answer_204;
	fx_start(fx, "/v1");
	for (int i = 0; i < 2; i++) {
		lr_future *f = fx_submit(fx, lr_request_new_http("openai", LR_METHOD_DELETE, "files/file-1"));
		const lr_result *r = fx_wait(f);
		assert_code(r, 0);
		assert_int_equal(r->http_status, 204);
		assert_null(r->body);
		assert_int_equal(lr_future_response_bytes(f), 0);
	}
	assert_true(head_has(fx->srv.head, "DELETE /v1/files/file-1 HTTP/1.1\r\n"));
	assert_false(head_has(fx->srv.head, "Content-Length"));
	lr_engine_stats st;
	lr_engine_get_stats(fx->eng, &st);
	assert_int_equal(st.connections_opened, 1);
}

static atomic_int released;
static void count_release(void *user, const void *data)
{
	assert_ptr_equal(user, &released);
	assert_non_null(data);
	atomic_fetch_add(&released, 1);
}

/* A file of n pattern bytes; its fd (the fixture unlinks it). */
static int temp_file(struct fx *fx, size_t n)
{
	snprintf(fx->tmp, sizeof fx->tmp, "/tmp/lr-http-call-XXXXXX");
	int fd = mkstemp(fx->tmp);
	assert_true(fd >= 0);
	char *data = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)('a' + i % 23);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	free(data);
	return fd;
}

static void test_post_streams_a_multipart_body_from_a_file(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, "/v1");
	size_t n = 700000; /* three file pieces of 256 KiB */
	int fd = temp_file(fx, n);
	static const char pre[] = "--B\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
	                          "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
	                          "Content-Type: application/jsonl\r\n\r\n";
	static const char post[] = "\r\n--B--\r\n";
	atomic_store(&released, 0);
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_POST, "files");
	assert_int_equal(lr_request_add_header(rq, "Content-Type", "multipart/form-data; boundary=B"), 0);
	assert_int_equal(lr_request_add_body_bytes(rq, pre, strlen(pre), NULL, NULL), 0);
	assert_int_equal(lr_request_add_body_file(rq, fd, 0, -1), 0);
	assert_int_equal(lr_request_add_body_bytes(rq, post, strlen(post), count_release, &released), 0);
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	close(fd);
	assert_code(r, 0);
	assert_int_equal(atomic_load(&released), 1);
	char cl[64];
	snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", strlen(pre) + n + strlen(post));
	assert_true(head_has(fx->srv.head, cl));
	assert_true(head_has(fx->srv.head, "Content-Type: multipart/form-data; boundary=B\r\n"));
	assert_false(head_has(fx->srv.head, "application/json"));
	assert_int_equal(fx->srv.body_len, strlen(pre) + n + strlen(post));
	assert_memory_equal(fx->srv.body, pre, strlen(pre));
	for (size_t i = 0; i < n; i++)
		if (fx->srv.body[strlen(pre) + i] != (char)('a' + i % 23))
			fail_msg("file byte %zu differs", i);
	assert_string_equal(fx->srv.body + strlen(pre) + n, post);
}

/* Request 0 is answered; request 1, on the kept connection, is met with a
 * close (a server dropping an idle connection): the pool sends it again on
 * a fresh connection, body from its first byte. */
static void answer_ok_then_drop(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	if (n == 1) {
		out->action = TS_CLOSE;
		return;
	}
	answer_ok(s, n, rq, out);
}

static void test_a_stale_resend_sends_the_file_body_again_whole(void **state)
{
	struct fx *fx = *state;
	fx->srv.answer = answer_ok_then_drop;
	fx_start(fx, "/v1");
	assert_code(fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "warm"))), 0);
	size_t n = 600000;
	int fd = temp_file(fx, n);
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_POST, "files");
	assert_int_equal(lr_request_add_body_file(rq, fd, 0, -1), 0);
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	close(fd);
	assert_code(r, 0);
	assert_int_equal(fx->srv.requests, 3);
	assert_int_equal(fx->srv.body_len, n);
	for (size_t i = 0; i < n; i++)
		if (fx->srv.body[i] != (char)('a' + i % 23))
			fail_msg("file byte %zu differs", i);
	lr_engine_stats st;
	lr_engine_get_stats(fx->eng, &st);
	assert_int_equal(st.stale_resends, 1);
}

static void test_a_file_that_shrank_fails_with_io_error(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, "/v1");
	int fd = temp_file(fx, 600000);
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_POST, "files");
	assert_int_equal(lr_request_add_body_file(rq, fd, 0, -1), 0);
	assert_int_equal(ftruncate(fd, 1000), 0);
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	close(fd);
	assert_code(r, LR_EIO);
	assert_non_null(strstr(r->error_message, "ended"));
}

/* ---- responses to a sink ---------------------------------------------- */

struct sink {
	char *data;                /* owned */
	size_t len, cap;
	atomic_size_t seen;
};

static int collect(void *user, const char *data, size_t len)
{
	struct sink *s = user;
	if (s->len + len > s->cap) {
		s->cap = (s->len + len) * 2;
		s->data = realloc(s->data, s->cap);
	}
	memcpy(s->data + s->len, data, len);
	s->len += len;
	atomic_store(&s->seen, s->len);
	return 0;
}

static char pattern(size_t i)
{
	return (char)('A' + i % 26);
}

/* 200 (or 206 from byte `from`) with s->big bytes of pattern; request
 * 0 is cut after `cut` bytes when s->reply... see the tests. */
static void send_pattern(struct srv *s, struct ts_reply *out, size_t from, size_t to, size_t total,
                         size_t send_upto, enum ts_action action)
{
	char head[256];
	if (from)
		snprintf(head, sizeof head, "HTTP/1.1 206 Partial Content\r\nContent-Length: %zu\r\n"
		                            "Content-Range: bytes %zu-%zu/%zu\r\n\r\n", to - from, from, to - 1, total);
	else
		snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", to);
	size_t n = send_upto - from;
	char *body = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		body[i] = pattern(from + i);
	reply_with(s, out, head, body, n, action);
	free(body);
}

static void answer_big(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	(void)n;
	(void)rq;
	send_pattern(s, out, 0, s->big, s->big, s->big, TS_SEND);
}

static void test_a_sink_takes_a_body_past_max_body_bytes(void **state)
{
	struct fx *fx = *state;
	fx->cfg.max_body_bytes = 4096;
	fx->srv.answer = answer_big;
	fx->srv.big = 3u << 20;
	fx_start(fx, "/v1");
	struct sink s = {0};
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	lr_future *f = fx_submit(fx, rq);
	const lr_result *r = fx_wait(f);
	assert_code(r, 0);
	assert_null(r->body);
	assert_int_equal(s.len, fx->srv.big);
	assert_int_equal(lr_future_response_bytes(f), fx->srv.big);
	for (size_t i = 0; i < s.len; i++)
		if (s.data[i] != pattern(i))
			fail_msg("byte %zu differs", i);
	free(s.data);
	/* Without a sink the cap still holds. */
	r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "files/f/content")));
	assert_code(r, LR_ETOOLARGE);
}

static void test_a_response_fd_gets_the_body_written(void **state)
{
	struct fx *fx = *state;
	fx->cfg.max_body_bytes = 4096;
	fx->srv.answer = answer_big;
	fx->srv.big = 1u << 20;
	fx_start(fx, "/v1");
	int fd = temp_file(fx, 0);
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_set_response_fd(rq, fd), 0);
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	assert_code(r, 0);
	char *back = malloc(fx->srv.big + 1);
	assert_int_equal(pread(fd, back, fx->srv.big + 1, 0), (ssize_t)fx->srv.big);
	for (size_t i = 0; i < fx->srv.big; i++)
		if (back[i] != pattern(i))
			fail_msg("byte %zu differs", i);
	free(back);
	close(fd);
}

static void answer_error_json(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	(void)n;
	(void)rq;
	static const char body[] = "{\"error\":{\"message\":\"No such File object: f\",\"type\":"
	                           "\"invalid_request_error\"}}";
	char head[128];
	snprintf(head, sizeof head, "HTTP/1.1 404 Not Found\r\nContent-Length: %zu\r\n\r\n", strlen(body));
	reply_with(s, out, head, body, strlen(body), TS_SEND);
}

static void test_an_error_status_is_buffered_not_sunk(void **state)
{
	struct fx *fx = *state;
	fx->srv.answer = answer_error_json;
	fx_start(fx, "/v1");
	struct sink s = {0};
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	assert_code(r, LR_ENOTFOUND);
	assert_int_equal(r->http_status, 404);
	assert_non_null(strstr(r->error_message, "No such File object"));
	assert_non_null(strstr(r->body, "invalid_request_error"));
	assert_int_equal(s.len, 0);
}

/* Request 0: the whole length announced, 40 % sent, then close (or a
 * chunked body cut mid-chunk); request 1: the rest as a 206. */
static void answer_cut_then_range(struct srv *s, unsigned n, const struct ts_request *rq,
                                  struct ts_reply *out)
{
	size_t cut = s->big * 2 / 5;
	if (n == 0) {
		send_pattern(s, out, 0, s->big, s->big, cut, TS_SEND_CLOSE);
		return;
	}
	const char *range = strcasestr(rq->head, "\r\nRange: bytes=");
	size_t from = range ? strtoul(range + 15, NULL, 10) : 0;
	send_pattern(s, out, from, s->big, s->big, s->big, TS_SEND);
}

static void test_a_cut_download_resumes_with_range_and_206(void **state)
{
	struct fx *fx = *state;
	fx->cfg.max_retries = 2; /* a sink that got bytes is never retried anyway */
	fx->srv.answer = answer_cut_then_range;
	fx->srv.big = 500000;
	fx_start(fx, "/v1");
	struct sink s = {0};
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	lr_future *f = fx_submit(fx, rq);
	const lr_result *r = fx_wait(f);
	assert_code(r, LR_ECONNRESET);
	assert_int_equal(r->attempts, 1);
	assert_int_equal(r->http_status, 200);
	uint64_t got = lr_future_response_bytes(f);
	assert_int_equal(got, 200000);
	assert_int_equal(s.len, got);
	assert_non_null(strstr(r->error_message, "200000 of 500000"));

	char range[64];
	snprintf(range, sizeof range, "bytes=%llu-", (unsigned long long)got);
	rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_add_header(rq, "Range", range), 0);
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	f = fx_submit(fx, rq);
	r = fx_wait(f);
	assert_code(r, 0);
	assert_int_equal(r->http_status, 206);
	assert_string_equal(lr_future_response_header(f, "content-range"), "bytes 200000-499999/500000");
	assert_int_equal(s.len, fx->srv.big);
	for (size_t i = 0; i < s.len; i++)
		if (s.data[i] != pattern(i))
			fail_msg("byte %zu differs", i);
	free(s.data);
}

static void answer_chunked_cut(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	(void)n;
	(void)rq;
	reply_with(s, out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\n8\r\nwor",
	           strlen("5\r\nhello\r\n8\r\nwor"), TS_SEND_CLOSE);
}

static void test_a_chunked_body_cut_mid_chunk_is_connection_reset(void **state)
{
	struct fx *fx = *state;
	fx->srv.answer = answer_chunked_cut;
	fx_start(fx, "/v1");
	struct sink s = {0};
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	lr_future *f = fx_submit(fx, rq);
	const lr_result *r = fx_wait(f);
	assert_code(r, LR_ECONNRESET);
	assert_int_equal(lr_future_response_bytes(f), s.len);
	assert_true(s.len >= 5);
	assert_memory_equal(s.data, "hellowor", s.len);
	free(s.data);
}

static void answer_chunked(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	(void)n;
	(void)rq;
	static const char body[] = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
	reply_with(s, out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", body, strlen(body),
	           TS_SEND);
}

static void test_a_chunked_body_reaches_the_sink_decoded(void **state)
{
	struct fx *fx = *state;
	fx->srv.answer = answer_chunked;
	fx_start(fx, "/v1");
	struct sink s = {0};
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	lr_future *f = fx_submit(fx, rq);
	assert_code(fx_wait(f), 0);
	assert_int_equal(s.len, 11);
	assert_memory_equal(s.data, "hello world", 11);
	assert_int_equal(lr_future_response_bytes(f), 11);
	free(s.data);
	/* The connection was kept: the next call reuses it. */
	assert_code(fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "x"))), 0);
	lr_engine_stats st;
	lr_engine_get_stats(fx->eng, &st);
	assert_int_equal(st.connections_opened, 1);
}

static void test_a_caller_driven_engine_downloads_to_a_sink(void **state)
{
	struct fx *fx = *state;
	fx->cfg.drive_from_caller = 1;
	fx->cfg.max_body_bytes = 4096;
	fx->srv.answer = answer_big;
	fx->srv.big = 2u << 20;
	fx_start(fx, "/v1");
	struct sink s = {0};
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	lr_future *f = fx_submit(fx, rq);
	assert_code(fx_wait(f), 0);
	assert_int_equal(s.len, fx->srv.big);
	free(s.data);
}

static int refuse_after_first(void *user, const char *data, size_t len)
{
	(void)data;
	size_t *n = user;
	*n += len;
	return *n > 100000 ? LR_ECANCELLED : 0;
}

static void test_a_sink_that_refuses_ends_the_request_with_its_code(void **state)
{
	struct fx *fx = *state;
	fx->cfg.max_retries = 2;
	fx->srv.answer = answer_big;
	fx->srv.big = 4u << 20;
	fx_start(fx, "/v1");
	size_t n = 0;
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_on_response_body(rq, refuse_after_first, &n), 0);
	lr_future *f = fx_submit(fx, rq);
	const lr_result *r = fx_wait(f);
	assert_code(r, LR_ECANCELLED);
	assert_int_equal(r->attempts, 1);
	assert_non_null(strstr(r->error_message, "callback"));
	assert_int_equal(lr_future_response_bytes(f), n);
	/* A pipe whose reader left is an I/O error naming it, not SIGPIPE
	 * (this program does not ignore it). */
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	close(fds[0]);
	rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_set_response_fd(rq, fds[1]), 0);
	r = fx_wait(fx_submit(fx, rq));
	close(fds[1]);
	assert_code(r, LR_EIO);
	assert_non_null(strstr(r->error_message, "Broken pipe"));
}

/* ---- retries, origins, keys ------------------------------------------- */

static void answer_429_then_ok(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	if (n == 0) {
		static const char body[] = "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}";
		char head[160];
		snprintf(head, sizeof head, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0.2\r\n"
		                            "Content-Length: %zu\r\n\r\n", strlen(body));
		reply_with(s, out, head, body, strlen(body), TS_SEND);
		return;
	}
	answer_ok(s, n, rq, out);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_a_429_post_is_retried_after_retry_after(void **state)
{
	struct fx *fx = *state;
	fx->cfg.max_retries = 2;
	fx->srv.answer = answer_429_then_ok;
	fx_start(fx, "/v1");
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_POST, "batches");
	assert_int_equal(lr_request_add_body_bytes(rq, "{}", 2, NULL, NULL), 0);
	double t0 = now_s();
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	assert_code(r, 0);
	assert_int_equal(r->attempts, 2);
	assert_true(now_s() - t0 >= 0.18);
	assert_int_equal(fx->srv.requests, 2);
	assert_string_equal(fx->srv.body, "{}"); /* the body went again */
	/* Without retries the 429 is the outcome, with its wait. */
	fx->srv.requests = 0;
	rq = lr_request_new_http("openai", LR_METHOD_POST, "batches");
	assert_int_equal(lr_request_set_max_retries(rq, 0), 0);
	r = fx_wait(fx_submit(fx, rq));
	assert_code(r, LR_ERATELIMIT);
	assert_true(r->retry_after_s > 0.19 && r->retry_after_s < 0.21);
}

static void test_an_absolute_url_on_another_origin_gets_no_key(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, "/v1");
	assert_int_equal(test_server_start(handler, &fx->other, &fx->ts_other), 0);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%u/results/b1?page=2", test_server_port(fx->ts_other));
	const lr_result *r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, url)));
	assert_code(r, 0);
	assert_true(head_has(fx->other.head, "GET /results/b1?page=2 HTTP/1.1\r\n"));
	assert_false(head_has(fx->other.head, "Authorization"));
	assert_false(head_has(fx->other.head, KEY));
	/* A per-request base URL elsewhere: its path, and no key either. */
	snprintf(url, sizeof url, "http://127.0.0.1:%u/api/", test_server_port(fx->ts_other));
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "batches");
	assert_int_equal(lr_request_set_base_url(rq, url), 0);
	r = fx_wait(fx_submit(fx, rq));
	assert_code(r, 0);
	assert_true(head_has(fx->other.head, "GET /api/batches HTTP/1.1\r\n"));
	assert_false(head_has(fx->other.head, "Authorization"));
	/* The engine's own origin, written absolute, gets it. */
	snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/batches/b1", test_server_port(fx->ts));
	r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, url)));
	assert_code(r, 0);
	assert_true(head_has(fx->srv.head, "GET /v1/batches/b1 HTTP/1.1\r\n"));
	assert_true(head_has(fx->srv.head, "Authorization: Bearer " KEY "\r\n"));
}

static void test_anthropic_gets_its_key_header_and_version(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, ""); /* Anthropic's base has no /v1: targets carry it */
	lr_request *rq = lr_request_new_http("anthropic", LR_METHOD_POST, "v1/messages/batches");
	assert_int_equal(lr_request_add_body_bytes(rq, "{\"requests\":[]}", 15, NULL, NULL), 0);
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	assert_code(r, 0);
	assert_true(head_has(fx->srv.head, "POST /v1/messages/batches HTTP/1.1\r\n"));
	assert_true(head_has(fx->srv.head, "x-api-key: " KEY "\r\n"));
	assert_true(head_has(fx->srv.head, "anthropic-version: 2023-06-01\r\n"));
	assert_false(head_has(fx->srv.head, "Authorization"));
}

static void test_a_version_the_base_ends_in_is_not_repeated(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, "/v1");
	const lr_result *r = fx_wait(fx_submit(fx, lr_request_new_http("anthropic", LR_METHOD_GET,
	                                                               "/v1/messages/batches/b1")));
	assert_code(r, 0);
	assert_true(head_has(fx->srv.head, "GET /v1/messages/batches/b1 HTTP/1.1\r\n"));
	r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "v1/files")));
	assert_code(r, 0);
	assert_true(head_has(fx->srv.head, "GET /v1/files HTTP/1.1\r\n"));
	r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "v1")));
	assert_code(r, 0);
	assert_true(head_has(fx->srv.head, "GET /v1/ HTTP/1.1\r\n"));
	/* Only a whole segment: "v10/x" is not "v1" repeated. */
	r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "v10/x")));
	assert_code(r, 0);
	assert_true(head_has(fx->srv.head, "GET /v1/v10/x HTTP/1.1\r\n"));
}

static void answer_401_or_close(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	(void)rq;
	if (n == 0) {
		static const char body[] = "{\"error\":{\"message\":\"Incorrect API key provided\","
		                           "\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}";
		char head[128];
		snprintf(head, sizeof head, "HTTP/1.1 401 Unauthorized\r\nContent-Length: %zu\r\n\r\n",
		         strlen(body));
		reply_with(s, out, head, body, strlen(body), TS_SEND);
		return;
	}
	out->action = TS_CLOSE;
}

static void test_the_key_never_appears_in_an_error_message(void **state)
{
	struct fx *fx = *state;
	fx->srv.answer = answer_401_or_close;
	fx_start(fx, "/v1");
	const lr_result *r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "files")));
	assert_code(r, LR_EAUTH);
	assert_null(strstr(r->error_message, KEY));
	assert_true(head_has(fx->srv.head, "Authorization: Bearer " KEY "\r\n"));
	r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "files")));
	assert_code(r, LR_ECONNRESET);
	assert_null(strstr(r->error_message, KEY));
}

static void test_the_rate_limits_neither_hold_nor_count_http_calls(void **state)
{
	struct fx *fx = *state;
	fx->cfg.requests_per_minute = 1; /* a second chat request would wait a minute */
	fx_start(fx, "/v1");
	lr_future *fs[4];
	for (int i = 0; i < 4; i++)
		fs[i] = fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "batches"));
	for (int i = 0; i < 4; i++)
		assert_code(fx_wait(fs[i]), 0);
}

/* ---- cancel, hostile responses, refusals ------------------------------ */

static void answer_part_then_hang(struct srv *s, unsigned n, const struct ts_request *rq,
                                  struct ts_reply *out)
{
	(void)n;
	(void)rq;
	send_pattern(s, out, 0, s->big, s->big, 50000, TS_HANG);
}

static void test_cancel_mid_download_keeps_what_arrived(void **state)
{
	struct fx *fx = *state;
	fx->srv.answer = answer_part_then_hang;
	fx->srv.big = 10u << 20;
	fx_start(fx, "/v1");
	struct sink s = {0};
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "files/f/content");
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	lr_future *f = fx_submit(fx, rq);
	for (int i = 0; i < 1000 && atomic_load(&s.seen) < 50000; i++)
		usleep(5000);
	assert_int_equal(atomic_load(&s.seen), 50000);
	lr_future_cancel(f);
	const lr_result *r = fx_wait(f);
	assert_code(r, LR_ECANCELLED);
	assert_int_equal(lr_future_response_bytes(f), 50000);
	free(s.data);
}

static void answer_hostile(struct srv *s, unsigned n, const struct ts_request *rq, struct ts_reply *out)
{
	if (n == 0) {
		char *head = malloc(9000);
		strcpy(head, "HTTP/1.1 200 OK\r\nX-Big: ");
		size_t at = strlen(head);
		memset(head + at, 'x', 8000);
		strcpy(head + at + 8000, "\r\nContent-Length: 2\r\n\r\n");
		reply_with(s, out, head, "{}", 2, TS_SEND);
		free(head);
	} else if (n == 1) {
		reply_with(s, out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "zz\r\nhello\r\n0\r\n\r\n",
		           strlen("zz\r\nhello\r\n0\r\n\r\n"), TS_SEND);
	} else {
		answer_ok(s, n, rq, out);
	}
}

static void test_hostile_responses_end_only_their_request(void **state)
{
	struct fx *fx = *state;
	fx->cfg.max_header_bytes = 4096;
	fx->srv.answer = answer_hostile;
	fx_start(fx, "/v1");
	struct sink s = {0};
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_GET, "a");
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	assert_code(r, LR_ETOOLARGE);
	rq = lr_request_new_http("openai", LR_METHOD_GET, "b");
	assert_int_equal(lr_request_on_response_body(rq, collect, &s), 0);
	r = fx_wait(fx_submit(fx, rq));
	assert_code(r, LR_EPROTO);
	assert_int_equal(s.len, 0);
	r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "c")));
	assert_code(r, 0);
	free(s.data);
}

static void test_bad_arguments_are_refused(void **state)
{
	(void)state;
	assert_null(lr_request_new_http("nosuch", LR_METHOD_GET, "files"));
	assert_null(lr_request_new_http("openai", (enum lr_method)7, "files"));
	assert_null(lr_request_new_http("openai", LR_METHOD_GET, "files x"));
	assert_null(lr_request_new_http("openai", LR_METHOD_GET, ""));
	assert_null(lr_request_new_http("openai", LR_METHOD_GET, NULL));
	lr_request *chat = lr_request_new("gpt-4o-mini");
	assert_int_equal(lr_request_add_body_bytes(chat, "x", 1, NULL, NULL), LR_EINVAL);
	assert_int_equal(lr_request_on_response_body(chat, collect, NULL), LR_EINVAL);
	lr_request_free(chat);
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_POST, "files");
	assert_int_equal(lr_request_add_body_file(rq, -1, 0, 10), LR_EINVAL);
	assert_int_equal(lr_request_add_body_file(rq, 0, -1, 10), LR_EINVAL);
	for (int i = 0; i < 8; i++)
		assert_int_equal(lr_request_add_body_bytes(rq, "x", 1, NULL, NULL), 0);
	assert_int_equal(lr_request_add_body_bytes(rq, "x", 1, NULL, NULL), LR_EINVAL); /* 8 parts */
	lr_request_free(rq);
	/* Borrowed bytes go back when a request is freed unsent. */
	atomic_store(&released, 0);
	rq = lr_request_new_http("openai", LR_METHOD_POST, "files");
	assert_int_equal(lr_request_add_body_bytes(rq, "abc", 3, count_release, &released), 0);
	lr_request_free(rq);
	assert_int_equal(atomic_load(&released), 1);
}

static void test_chat_fields_on_an_http_request_are_refused(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, "/v1");
	atomic_store(&released, 0);
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_POST, "files");
	assert_int_equal(lr_request_add_body_bytes(rq, "abc", 3, count_release, &released), 0);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "hi"), 0);
	const lr_result *r = fx_wait(fx_submit(fx, rq));
	assert_code(r, LR_EINVAL);
	assert_int_equal(atomic_load(&released), 1);
	assert_int_equal(fx->srv.requests, 0);
}

static void test_a_bad_absolute_url_is_refused_naming_it(void **state)
{
	struct fx *fx = *state;
	fx_start(fx, "/v1");
	const lr_result *r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET,
	                                                               "http://127.0.0.1:99999/x")));
	assert_code(r, LR_EINVAL);
	assert_non_null(strstr(r->error_message, "request URL http://127.0.0.1:99999"));
	r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET,
	                                              "http://user:hunter2@127.0.0.1:99999/x")));
	assert_code(r, LR_EINVAL);
	assert_null(strstr(r->error_message, "hunter2"));
	assert_int_equal(fx->srv.requests, 0);
}

static void test_a_missing_key_for_the_public_endpoint_is_auth_error(void **state)
{
	struct fx *fx = *state;
	(void)fx;
	unsetenv("OPENAI_API_KEY");
	unsetenv("OPENAI_BASE_URL");
	lr_config cfg = lr_config_default();
	assert_int_equal(lr_engine_new(&cfg, &fx->eng), 0);
	const lr_result *r = fx_wait(fx_submit(fx, lr_request_new_http("openai", LR_METHOD_GET, "files")));
	assert_code(r, LR_EAUTH);
	assert_non_null(strstr(r->error_message, "OPENAI_API_KEY"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
		T(test_get_buffers_the_body_and_keeps_the_headers),
		T(test_post_sends_copied_bytes_as_json),
		T(test_post_without_body_sends_content_length_zero),
		T(test_delete_has_no_body_and_a_204_is_success),
		T(test_post_streams_a_multipart_body_from_a_file),
		T(test_a_stale_resend_sends_the_file_body_again_whole),
		T(test_a_file_that_shrank_fails_with_io_error),
		T(test_a_sink_takes_a_body_past_max_body_bytes),
		T(test_a_response_fd_gets_the_body_written),
		T(test_an_error_status_is_buffered_not_sunk),
		T(test_a_cut_download_resumes_with_range_and_206),
		T(test_a_chunked_body_cut_mid_chunk_is_connection_reset),
		T(test_a_chunked_body_reaches_the_sink_decoded),
		T(test_a_caller_driven_engine_downloads_to_a_sink),
		T(test_a_sink_that_refuses_ends_the_request_with_its_code),
		T(test_a_429_post_is_retried_after_retry_after),
		T(test_an_absolute_url_on_another_origin_gets_no_key),
		T(test_anthropic_gets_its_key_header_and_version),
		T(test_a_version_the_base_ends_in_is_not_repeated),
		T(test_the_key_never_appears_in_an_error_message),
		T(test_the_rate_limits_neither_hold_nor_count_http_calls),
		T(test_cancel_mid_download_keeps_what_arrived),
		T(test_hostile_responses_end_only_their_request),
		T(test_bad_arguments_are_refused),
		T(test_chat_fields_on_an_http_request_are_refused),
		T(test_a_bad_absolute_url_is_refused_naming_it),
		T(test_a_missing_key_for_the_public_endpoint_is_auth_error),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

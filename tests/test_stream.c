/*
 * Streaming through the engine: SSE responses in OpenAI's shape, the
 * per-delta callback, the assembled result, the idle deadline that
 * comments do not reset, cancellation mid-stream, mid-stream errors;
 * OpenAI's text completions, streamed and whole, as they go on the wire.
 */
#include <poll.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "format/json.h"
#include "llmring.h"
#include "mock_server.h"
#include "test_server.h"

struct collected {
	char text[8192];
	size_t len;
	int deltas;
	int finishes;
	char finish[32];
	pthread_t thread;
	_Atomic int cancel_after; /* cancel the future after this many deltas (0: never) */
	lr_future *_Atomic future;
};

static void collect(void *user, const lr_delta *d)
{
	struct collected *c = user;
	c->thread = pthread_self();
	if (d->text_len && c->len + d->text_len < sizeof(c->text)) {
		memcpy(c->text + c->len, d->text, d->text_len);
		c->len += d->text_len;
	}
	c->deltas++;
	if (d->finish_reason) {
		c->finishes++;
		snprintf(c->finish, sizeof(c->finish), "%s", d->finish_reason);
	}
	int after = atomic_load(&c->cancel_after);
	lr_future *f = atomic_load(&c->future);
	if (after && c->deltas == after && f)
		lr_future_cancel(f);
}

static lr_engine *engine_at(const char *url, double idle_s)
{
	lr_config cfg = lr_config_default();
	cfg.max_retries = 0; /* one attempt: these tests time its deadlines */
	cfg.base_url = url;
	if (idle_s > 0)
		cfg.idle_timeout_s = idle_s;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	return e;
}

static struct mock_server *start_mock(unsigned tokens, unsigned itl_ms)
{
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = tokens;
	o.itl_ms = itl_ms;
	struct mock_server *s = NULL;
	assert_int_equal(mock_server_start(&o, &s), 0);
	return s;
}

static size_t count_words(const char *s, size_t n)
{
	size_t words = 0;
	bool in = false;
	for (size_t i = 0; i < n; i++) {
		bool space = s[i] == ' ' || s[i] == '\n';
		if (!space && !in)
			words++;
		in = !space;
	}
	return words;
}

static void test_streamed_reply_arrives_as_deltas_and_as_a_whole(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(24, 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", mock_server_port(s));
	lr_engine *e = engine_at(url, 0);
	struct collected c = {0};
	lr_request *rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "tell me a story");
	assert_int_equal(lr_request_on_delta(rq, collect, &c), 0);
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	const lr_result *r = lr_future_result(f);
	assert_int_equal(r->error, LR_OK);
	assert_true(r->streamed);
	/* One delta per token event, plus the finishing one. */
	assert_true(c.deltas >= 24);
	assert_int_equal(c.finishes, 1);
	assert_string_equal(c.finish, "stop");
	assert_string_equal(r->finish_reason, "stop");
	assert_int_equal(r->text_len, c.len);
	assert_memory_equal(r->text, c.text, c.len);
	assert_int_equal(count_words(r->text, r->text_len), 24);
	assert_int_equal(r->usage.output_tokens, 24);
	assert_int_equal(r->usage.input_tokens, 4);
	/* The body is a chat.completion assembled from the events. */
	assert_true(r->body_is_json);
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, r->body, r->body_len), 0);
	int content = json_path(&d, 0, "choices");
	assert_true(content >= 0);
	assert_non_null(strstr(r->body, "\"object\":\"chat.completion\""));
	char *text = NULL;
	int msg = json_path(&d, content + 1, "message.content");
	assert_true(msg >= 0);
	text = json_dup_string(&d, msg);
	assert_string_equal(text, r->text);
	free(text);
	json_doc_free(&d);
	lr_future_release(f);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_non_streamed_reply_has_text_and_finish_reason(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(8, 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", mock_server_port(s));
	lr_engine *e = engine_at(url, 0);
	lr_request *rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "hi");
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	const lr_result *r = lr_future_result(f);
	assert_int_equal(r->error, LR_OK);
	assert_false(r->streamed);
	assert_non_null(r->text);
	assert_int_equal(count_words(r->text, r->text_len), 8);
	assert_string_equal(r->finish_reason, "stop");
	lr_future_release(f);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_cancel_mid_stream_completes_once(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(200, 20);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", mock_server_port(s));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.reap_completions = 1;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	struct collected c = {0};
	atomic_store(&c.cancel_after, 3);
	lr_request *rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "long");
	lr_request_on_delta(rq, collect, &c);
	lr_future *f = lr_submit(e, rq);
	atomic_store(&c.future, f);
	lr_future *out[4];
	assert_int_equal(lr_engine_reap(e, out, 4, 10000), 1);
	assert_ptr_equal(out[0], f);
	const lr_result *r = lr_future_result(f);
	assert_int_equal(r->error, LR_ECANCELLED);
	assert_true(c.deltas >= 3 && c.deltas < 200);
	/* The text that arrived stays in the result. */
	assert_true(r->text_len > 0);
	lr_future_release(out[0]);
	assert_int_equal(lr_engine_reap(e, out, 4, 300), 0); /* never a second completion */
	lr_future_release(f);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* Scripted SSE responses from the test server. */
static const char *scripted_reply;
static unsigned scripted_byte_delay;

static void scripted(void *ctx, const struct ts_request *rq, struct ts_reply *reply)
{
	(void)ctx;
	(void)rq;
	reply->data = scripted_reply;
	reply->len = strlen(scripted_reply);
	reply->action = TS_SEND_CLOSE;
	reply->byte_delay_ms = scripted_byte_delay;
}

static int scripted_request(const char *reply, unsigned byte_delay, double idle_s, const lr_result **out,
                            lr_future **fut, lr_engine **eng, struct test_server **srv)
{
	scripted_reply = reply;
	scripted_byte_delay = byte_delay;
	assert_int_equal(test_server_start(scripted, NULL, srv), 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", test_server_port(*srv));
	*eng = engine_at(url, idle_s);
	lr_request *rq = lr_request_new("m");
	lr_request_add_message(rq, LR_ROLE_USER, "x");
	*fut = lr_submit(*eng, rq);
	assert_int_equal(lr_future_wait(*fut, 20000), 1);
	*out = lr_future_result(*fut);
	return (*out)->error;
}

static void scripted_done(lr_future *f, lr_engine *e, struct test_server *s)
{
	lr_future_release(f);
	lr_engine_destroy(e);
	test_server_stop(s);
}

#define SSE_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"

static void test_comments_do_not_hold_off_the_idle_deadline(void **state)
{
	(void)state;
	/* A byte every 40 ms forever, but only comments: no progress. */
	static char reply[8192];
	snprintf(reply, sizeof(reply), "%s", SSE_HEAD);
	size_t n = strlen(reply);
	while (n + 3 < sizeof(reply)) {
		memcpy(reply + n, ":\n\n", 3);
		n += 3;
	}
	reply[n] = '\0';
	const lr_result *r;
	lr_future *f;
	lr_engine *e;
	struct test_server *s;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(scripted_request(reply, 40, 0.5, &r, &f, &e, &s), LR_ETIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(secs < 5);
	assert_non_null(strstr(r->error_message, "idle"));
	scripted_done(f, e, s);
}

static void test_error_event_mid_stream_fails_the_request(void **state)
{
	(void)state;
	const char *reply = SSE_HEAD
		"data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
		"data: {\"error\":{\"message\":\"the model crashed\",\"type\":\"server_error\"}}\n\n";
	const lr_result *r;
	lr_future *f;
	lr_engine *e;
	struct test_server *s;
	assert_int_equal(scripted_request(reply, 0, 0, &r, &f, &e, &s), LR_ESERVER);
	assert_non_null(strstr(r->error_message, "the model crashed"));
	assert_string_equal(r->text, "Hel");
	scripted_done(f, e, s);
}

static void test_stream_cut_before_its_end_is_a_protocol_error(void **state)
{
	(void)state;
	const char *reply = SSE_HEAD
		"data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
	const lr_result *r;
	lr_future *f;
	lr_engine *e;
	struct test_server *s;
	assert_int_equal(scripted_request(reply, 0, 0, &r, &f, &e, &s), LR_EPROTO);
	scripted_done(f, e, s);
}

static void test_escapes_and_unicode_in_deltas_are_decoded(void **state)
{
	(void)state;
	const char *reply = SSE_HEAD
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"caf\\u00e9 \\\"q\\\"\\n\"}}]}\n\n"
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\ud83d\\ude00\"}}]}\n\n"
		"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n"
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\n\n"
		"data: [DONE]\n\n";
	const lr_result *r;
	lr_future *f;
	lr_engine *e;
	struct test_server *s;
	assert_int_equal(scripted_request(reply, 0, 0, &r, &f, &e, &s), LR_OK);
	assert_string_equal(r->text, "caf\xc3\xa9 \"q\"\n\xf0\x9f\x98\x80");
	assert_string_equal(r->finish_reason, "length");
	assert_int_equal(r->usage.input_tokens, 3);
	assert_int_equal(r->usage.output_tokens, 5);
	scripted_done(f, e, s);
}

/* ---- text completions ---- */

/* What the scripted server was sent, copied on its thread. */
static pthread_mutex_t sent_lock = PTHREAD_MUTEX_INITIALIZER;
static char sent_head[4096], sent_body[4096];

static void scripted_capture(void *ctx, const struct ts_request *rq, struct ts_reply *reply)
{
	pthread_mutex_lock(&sent_lock);
	snprintf(sent_head, sizeof(sent_head), "%s", rq->head);
	snprintf(sent_body, sizeof(sent_body), "%s", rq->body);
	pthread_mutex_unlock(&sent_lock);
	scripted(ctx, rq, reply);
}

/* A completions request for prompt (streamed into c when c is given)
 * answered with reply; the sent head and body land in sent_head and
 * sent_body. */
static int completion_exchange(const char *reply, const char *prompt, struct collected *c,
                               const lr_result **out, lr_future **fut, lr_engine **eng,
                               struct test_server **srv)
{
	scripted_reply = reply;
	scripted_byte_delay = 0;
	assert_int_equal(test_server_start(scripted_capture, NULL, srv), 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", test_server_port(*srv));
	*eng = engine_at(url, 0);
	lr_request *rq = lr_request_new("meta-llama/Llama-3.1-8B");
	assert_int_equal(lr_request_set_endpoint(rq, LR_ENDPOINT_COMPLETIONS), 0);
	assert_int_equal(lr_request_set_prompt(rq, prompt), 0);
	assert_int_equal(lr_request_set_max_tokens(rq, 5), 0);
	if (c)
		assert_int_equal(lr_request_on_delta(rq, collect, c), 0);
	*fut = lr_submit(*eng, rq);
	assert_int_equal(lr_future_wait(*fut, 20000), 1);
	*out = lr_future_result(*fut);
	return (*out)->error;
}

static bool sent_head_starts(const char *prefix)
{
	pthread_mutex_lock(&sent_lock);
	bool yes = strncmp(sent_head, prefix, strlen(prefix)) == 0;
	pthread_mutex_unlock(&sent_lock);
	return yes;
}

static void expect_sent_body(const char *want)
{
	pthread_mutex_lock(&sent_lock);
	char got[sizeof(sent_body)];
	memcpy(got, sent_body, sizeof(got));
	pthread_mutex_unlock(&sent_lock);
	assert_string_equal(got, want);
}

#define TC_EVENT(text, finish)                                                                     \
	"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"llama\","        \
	"\"choices\":[{\"index\":0,\"text\":\"" text "\",\"logprobs\":null,\"finish_reason\":" finish "}]}\n\n"

static void test_completions_stream_assembles_a_text_completion(void **state)
{
	(void)state;
	const char *reply = SSE_HEAD
		TC_EVENT(" upon", "null")
		TC_EVENT(" a", "null")
		TC_EVENT(" time", "\"length\"")
		"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"llama\","
		"\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}\n\n"
		"data: [DONE]\n\n";
	struct collected c = {0};
	const lr_result *r;
	lr_future *f;
	lr_engine *e;
	struct test_server *s;
	assert_int_equal(completion_exchange(reply, "Once", &c, &r, &f, &e, &s), LR_OK);
	assert_true(sent_head_starts("POST /v1/completions HTTP/1.1\r\n"));
	expect_sent_body("{\"model\":\"meta-llama/Llama-3.1-8B\",\"prompt\":\"Once\",\"max_tokens\":5,"
	                 "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
	assert_true(r->streamed);
	assert_string_equal(r->text, " upon a time");
	assert_string_equal(r->finish_reason, "length");
	assert_string_equal(r->model, "llama");
	assert_int_equal(r->usage.input_tokens, 2);
	assert_int_equal(r->usage.output_tokens, 3);
	/* One delta per event, the finish on the last (with its text). */
	assert_int_equal(c.deltas, 3);
	assert_int_equal(c.finishes, 1);
	assert_int_equal(c.len, r->text_len);
	assert_memory_equal(c.text, r->text, c.len);
	/* The body is the text_completion the events make. */
	assert_true(r->body_is_json);
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, r->body, r->body_len), 0);
	int object = json_path(&d, 0, "object");
	int text = json_path(&d, 0, "choices");
	assert_true(object >= 0 && text >= 0);
	text = json_path(&d, text + 1, "text");
	assert_true(text >= 0);
	char *object_s = json_dup_string(&d, object), *text_s = json_dup_string(&d, text);
	json_doc_free(&d);
	bool ok = object_s && text_s && !strcmp(object_s, "text_completion") && !strcmp(text_s, r->text);
	free(object_s);
	free(text_s);
	assert_true(ok);
	scripted_done(f, e, s);
}

static void test_completions_whole_reply_fills_the_result(void **state)
{
	(void)state;
	const char *reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-request-id: req-9\r\n"
		"Connection: close\r\n\r\n"
		"{\"id\":\"cmpl-2\",\"object\":\"text_completion\",\"created\":1,\"model\":\"llama\","
		"\"choices\":[{\"index\":0,\"text\":\" Paris.\",\"logprobs\":null,\"finish_reason\":\"stop\"}],"
		"\"usage\":{\"prompt_tokens\":6,\"completion_tokens\":3,\"total_tokens\":9}}";
	const lr_result *r;
	lr_future *f;
	lr_engine *e;
	struct test_server *s;
	assert_int_equal(completion_exchange(reply, "The capital of France is", NULL, &r, &f, &e, &s), LR_OK);
	assert_true(sent_head_starts("POST /v1/completions HTTP/1.1\r\n"));
	expect_sent_body("{\"model\":\"meta-llama/Llama-3.1-8B\",\"prompt\":\"The capital of France is\","
	                 "\"max_tokens\":5}");
	assert_false(r->streamed);
	assert_int_equal(r->http_status, 200);
	assert_string_equal(r->text, " Paris.");
	assert_string_equal(r->finish_reason, "stop");
	assert_string_equal(r->model, "llama");
	assert_string_equal(r->request_id, "req-9");
	assert_int_equal(r->usage.input_tokens, 6);
	assert_int_equal(r->usage.output_tokens, 3);
	assert_true(r->body_is_json);
	assert_non_null(strstr(r->body, "\"object\":\"text_completion\""));
	scripted_done(f, e, s);
}

static void test_completions_error_body_maps_as_chat_does(void **state)
{
	(void)state;
	const char *reply = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
		"{\"error\":{\"message\":\"Invalid value for 'max_tokens'.\",\"type\":\"invalid_request_error\","
		"\"param\":\"max_tokens\",\"code\":null}}";
	const lr_result *r;
	lr_future *f;
	lr_engine *e;
	struct test_server *s;
	assert_int_equal(completion_exchange(reply, "x", NULL, &r, &f, &e, &s), LR_EBADREQUEST);
	assert_int_equal(r->http_status, 400);
	assert_non_null(strstr(r->error_message, "Invalid value for 'max_tokens'."));
	assert_true(r->body_is_json);
	assert_non_null(strstr(r->body, "invalid_request_error"));
	scripted_done(f, e, s);
}

static void test_caller_driven_engine_streams_on_the_owner_thread(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(12, 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", mock_server_port(s));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.drive_from_caller = 1;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	struct collected c = {0};
	lr_request *rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "x");
	lr_request_on_delta(rq, collect, &c);
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	assert_int_equal(lr_future_result(f)->error, LR_OK);
	assert_true(pthread_equal(c.thread, pthread_self()));
	assert_int_equal(count_words(c.text, c.len), 12);
	lr_future_release(f);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* A host loop (epoll, libuv, bench's ppoll) waits on the completion fd and
 * runs the engine only when it is readable. Under DEFER_TASKRUN the kernel
 * signals that eventfd only when the owner next enters the ring (10-17 ms
 * late on Linux 6.18), so a caller-driven ring must be set up without it. */
static void test_caller_driven_engine_is_polled_through_its_completion_fd(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(12, 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", mock_server_port(s));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.drive_from_caller = 1;
	cfg.reap_completions = 1;
	unsetenv("LLMRING_RING_PLAIN");
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	const char *mode = lr_engine_ring_mode(e);
	assert_non_null(mode);
	assert_null(strstr(mode, "defer_taskrun"));
	int fd = lr_engine_completion_fd(e);
	assert_true(fd >= 0);
	enum { N = 8 };
	struct collected c[N];
	memset(c, 0, sizeof(c));
	for (int i = 0; i < N; i++) {
		lr_request *rq = lr_request_new("gpt-4o-mini");
		lr_request_add_message(rq, LR_ROLE_USER, "x");
		lr_request_set_stream(rq, 1);
		lr_request_on_delta(rq, collect, &c[i]);
		lr_future_release(lr_submit(e, rq));
	}
	int done = 0, turns = 0;
	while (done < N && turns++ < 10000) {
		assert_int_equal(lr_engine_run(e, 0), 0);
		lr_future *got[N];
		int n = lr_engine_reap(e, got, N, 0);
		assert_true(n >= 0);
		for (int k = 0; k < n; k++) {
			assert_int_equal(lr_future_result(got[k])->error, LR_OK);
			lr_future_release(got[k]);
		}
		done += n;
		if (done < N) {
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			assert_true(poll(&pfd, 1, 10000) >= 0);
		}
	}
	assert_int_equal(done, N);
	for (int i = 0; i < N; i++)
		assert_int_equal(count_words(c[i].text, c[i].len), 12);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_streamed_reply_arrives_as_deltas_and_as_a_whole),
		cmocka_unit_test(test_non_streamed_reply_has_text_and_finish_reason),
		cmocka_unit_test(test_cancel_mid_stream_completes_once),
		cmocka_unit_test(test_comments_do_not_hold_off_the_idle_deadline),
		cmocka_unit_test(test_error_event_mid_stream_fails_the_request),
		cmocka_unit_test(test_stream_cut_before_its_end_is_a_protocol_error),
		cmocka_unit_test(test_escapes_and_unicode_in_deltas_are_decoded),
		cmocka_unit_test(test_completions_stream_assembles_a_text_completion),
		cmocka_unit_test(test_completions_whole_reply_fills_the_result),
		cmocka_unit_test(test_completions_error_body_maps_as_chat_does),
		cmocka_unit_test(test_caller_driven_engine_streams_on_the_owner_thread),
		cmocka_unit_test(test_caller_driven_engine_is_polled_through_its_completion_fd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

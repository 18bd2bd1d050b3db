/*
 * Every provider end to end through the engine: routing by model prefix,
 * the headers each provider needs, streamed and whole replies from the
 * mock's dialects normalised into one result shape, tool calls assembled
 * from deltas, mid-stream errors, the pull iterator, missing keys.
 */
#include <pthread.h>
#include <time.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format/json.h"
#include "llmring.h"
#include "mock_server.h"
#include "test_server.h"

static const char *const chat_models[] = {
	"gpt-4o-mini", "mock/any", "anthropic/claude-haiku-4-5", "ollama/qwen3:4b",
	"gemini/gemini-2.0-flash",
};
static const char *const provider_names[] = {"openai", "mock", "anthropic", "ollama", "gemini"};
#define NMODELS (sizeof(chat_models) / sizeof(chat_models[0]))

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

/* The mock with no path in its URL: each dialect adds its own. */
static lr_engine *engine_for(struct mock_server *s, int drive_from_caller)
{
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", mock_server_port(s));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.drive_from_caller = drive_from_caller;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	return e;
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

struct collected {
	char text[8192];
	size_t len;
	int text_deltas, tool_deltas, finishes;
	char tool_name[64], tool_id[64];
	char args[512];
	size_t args_len;
};

static void collect(void *user, const lr_delta *d)
{
	struct collected *c = user;
	if (d->tool_index >= 0) {
		c->tool_deltas++;
		if (d->tool_name)
			snprintf(c->tool_name, sizeof(c->tool_name), "%s", d->tool_name);
		if (d->tool_id)
			snprintf(c->tool_id, sizeof(c->tool_id), "%s", d->tool_id);
		if (c->args_len + d->tool_arguments_len < sizeof(c->args)) {
			memcpy(c->args + c->args_len, d->tool_arguments, d->tool_arguments_len);
			c->args_len += d->tool_arguments_len;
		}
		return;
	}
	if (d->text_len && c->len + d->text_len < sizeof(c->text)) {
		memcpy(c->text + c->len, d->text, d->text_len);
		c->len += d->text_len;
		c->text_deltas++;
	}
	if (d->finish_reason)
		c->finishes++;
}

/* The result body is an OpenAI chat.completion holding the same text. */
static void assert_openai_body(const lr_result *r)
{
	assert_true(r->body_is_json);
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, r->body, r->body_len), 0);
	int choices = json_object_get(&d, 0, "choices");
	assert_true(choices >= 0);
	int finish = json_path(&d, choices + 1, "finish_reason");
	assert_true(finish >= 0);
	assert_true(json_string_eq(&d, finish, r->finish_reason));
	int usage = json_path(&d, 0, "usage.completion_tokens");
	int64_t n = -1;
	assert_true(json_get_int(&d, usage, &n));
	assert_int_equal(n, r->usage.output_tokens);
	json_doc_free(&d);
}

static void run_chat(lr_engine *e, const char *model, bool stream, const char *provider)
{
	struct collected c = {0};
	lr_request *rq = lr_request_new(model);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_SYSTEM, "be brief"), 0);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "tell me a story"), 0);
	assert_int_equal(lr_request_set_max_tokens(rq, 100), 0);
	if (stream)
		assert_int_equal(lr_request_on_delta(rq, collect, &c), 0);
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	const lr_result *r = lr_future_result(f);
	if (r->error)
		fail_msg("%s stream=%d: %s", model, stream, r->error_message);
	assert_string_equal(r->provider, provider);
	assert_int_equal(r->streamed, stream);
	assert_int_equal(count_words(r->text, r->text_len), 12);
	assert_string_equal(r->finish_reason, "stop");
	assert_int_equal(r->usage.output_tokens, 12);
	/* prompt tokens: the words of both messages, in every dialect */
	assert_int_equal(r->usage.input_tokens, 6);
	assert_int_equal(r->tool_call_count, 0);
	assert_openai_body(r);
	if (stream) {
		assert_true(c.text_deltas >= 12);
		assert_int_equal(c.finishes, 1);
		assert_int_equal(c.len, r->text_len);
		assert_memory_equal(c.text, r->text, r->text_len);
	}
	lr_future_release(f);
}

static void test_every_provider_streamed_and_whole(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(12, 0);
	lr_engine *e = engine_for(s, 0);
	for (size_t i = 0; i < NMODELS; i++) {
		run_chat(e, chat_models[i], false, provider_names[i]);
		run_chat(e, chat_models[i], true, provider_names[i]);
	}
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void run_tool_call(lr_engine *e, const char *model, bool stream)
{
	struct collected c = {0};
	lr_request *rq = lr_request_new(model);
	lr_request_add_message(rq, LR_ROLE_USER, "weather in Paris?");
	assert_int_equal(lr_request_add_tool(rq, "get_weather", "Forecast for a city",
	                                     "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
	                                     "\"days\":{\"type\":\"integer\"}},\"required\":[\"city\"]}"),
	                 0);
	assert_int_equal(lr_request_set_tool_choice(rq, "auto"), 0);
	lr_request_set_max_tokens(rq, 50);
	if (stream)
		lr_request_on_delta(rq, collect, &c);
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	const lr_result *r = lr_future_result(f);
	if (r->error)
		fail_msg("%s stream=%d: %s", model, stream, r->error_message);
	assert_int_equal(r->tool_call_count, 1);
	assert_string_equal(r->tool_calls[0].name, "get_weather");
	assert_true(r->tool_calls[0].id[0] != '\0');
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, r->tool_calls[0].arguments, r->tool_calls[0].arguments_len), 0);
	int city = json_object_get(&d, 0, "city");
	assert_true(json_string_eq(&d, city, "Paris"));
	int64_t days = 0;
	assert_true(json_get_int(&d, json_object_get(&d, 0, "days"), &days));
	assert_int_equal(days, 3);
	json_doc_free(&d);
	assert_string_equal(r->finish_reason, "tool_calls");
	/* The OpenAI-shaped body carries the call too. */
	assert_non_null(strstr(r->body, "\"tool_calls\":[{"));
	assert_non_null(strstr(r->body, "get_weather"));
	if (stream) {
		assert_true(c.tool_deltas >= 1);
		assert_string_equal(c.tool_name, "get_weather");
		assert_int_equal(c.args_len, r->tool_calls[0].arguments_len);
		assert_memory_equal(c.args, r->tool_calls[0].arguments, c.args_len);
	}
	lr_future_release(f);
}

static void test_tool_calls_in_every_dialect(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(12, 0);
	lr_engine *e = engine_for(s, 0);
	for (size_t i = 0; i < NMODELS; i++) {
		run_tool_call(e, chat_models[i], false);
		run_tool_call(e, chat_models[i], true);
	}
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* Anthropic has no response_format: a forced tool stands in for it and its
 * input comes back as the reply text (the mock answers any tools with a
 * call to the first one). */
static void test_anthropic_json_output_comes_back_as_text(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(12, 0);
	lr_engine *e = engine_for(s, 0);
	for (int stream = 0; stream < 2; stream++) {
		struct collected c = {0};
		lr_request *rq = lr_request_new("anthropic/claude-haiku-4-5");
		lr_request_add_message(rq, LR_ROLE_USER, "weather as JSON");
		assert_int_equal(lr_request_set_response_format(
		                         rq, "{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"w\",\"schema\":"
		                             "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}"),
		                 0);
		if (stream)
			lr_request_on_delta(rq, collect, &c);
		lr_future *f = lr_submit(e, rq);
		assert_int_equal(lr_future_wait(f, 10000), 1);
		const lr_result *r = lr_future_result(f);
		if (r->error)
			fail_msg("stream=%d: %s", stream, r->error_message);
		assert_int_equal(r->tool_call_count, 0);
		assert_string_equal(r->finish_reason, "stop");
		struct json_doc d = {0};
		assert_int_equal(json_parse(&d, r->text, r->text_len), 0);
		assert_true(json_string_eq(&d, json_object_get(&d, 0, "city"), "Paris"));
		json_doc_free(&d);
		if (stream) {
			assert_int_equal(c.tool_deltas, 0);
			assert_int_equal(c.len, r->text_len);
		}
		lr_future_release(f);
	}
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_mid_stream_errors_in_every_dialect(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(12, 0);
	lr_engine *e = engine_for(s, 0);
	for (size_t i = 0; i < NMODELS; i++) {
		struct collected c = {0};
		lr_request *rq = lr_request_new(chat_models[i]);
		lr_request_add_message(rq, LR_ROLE_USER, "hi");
		lr_request_add_header(rq, "x-mock-fault", "stream-error");
		lr_request_on_delta(rq, collect, &c);
		lr_future *f = lr_submit(e, rq);
		assert_int_equal(lr_future_wait(f, 10000), 1);
		const lr_result *r = lr_future_result(f);
		/* Anthropic's overloaded_error is its own code; the others are
		 * server errors. */
		int want = strncmp(chat_models[i], "anthropic/", 10) == 0 ? LR_EOVERLOADED : LR_ESERVER;
		if (r->error != want)
			fail_msg("%s: %s (%s)", chat_models[i], lr_error_name(r->error), r->error_message);
		assert_true(c.text_deltas >= 1); /* what came before the error was delivered */
		assert_true(r->text_len > 0);
		lr_future_release(f);
	}
	/* The engine goes on serving. */
	run_chat(e, "anthropic/claude-haiku-4-5", true, "anthropic");
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* A stream's head comes at once; its first token after ttft_ms. */
static void test_timings_tell_first_byte_from_first_token(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = 3;
	o.ttft_ms = 150;
	struct mock_server *s = NULL;
	assert_int_equal(mock_server_start(&o, &s), 0);
	lr_engine *e = engine_for(s, 0);
	for (size_t i = 0; i < NMODELS; i++) {
		struct collected c = {0};
		lr_request *rq = lr_request_new(chat_models[i]);
		lr_request_add_message(rq, LR_ROLE_USER, "hi");
		lr_request_on_delta(rq, collect, &c);
		lr_future *f = lr_submit(e, rq);
		assert_int_equal(lr_future_wait(f, 10000), 1);
		const lr_result *r = lr_future_result(f);
		assert_int_equal(r->error, LR_OK);
		const lr_timings *t = &r->timings;
		if (!(t->ttft_ms >= 150 && t->ttfb_ms < t->ttft_ms && t->ttft_ms <= t->total_ms))
			fail_msg("%s: ttfb %.1f ttft %.1f total %.1f", chat_models[i], t->ttfb_ms, t->ttft_ms,
			         t->total_ms);
		lr_future_release(f);
	}
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_overloaded_529_maps_to_overloaded(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(4, 0);
	lr_engine *e = engine_for(s, 0);
	lr_request *rq = lr_request_new("anthropic/claude-haiku-4-5");
	lr_request_add_message(rq, LR_ROLE_USER, "hi");
	lr_request_add_header(rq, "x-mock-fault", "529");
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	const lr_result *r = lr_future_result(f);
	assert_int_equal(r->error, LR_EOVERLOADED);
	assert_int_equal(r->http_status, 529);
	/* The provider's error body is kept as it came. */
	assert_non_null(strstr(r->body, "overloaded_error"));
	lr_future_release(f);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_embeddings_openai_and_ollama(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(4, 0);
	lr_engine *e = engine_for(s, 0);
	const char *models[] = {"text-embedding-3-small", "ollama/nomic-embed-text"};
	for (int i = 0; i < 2; i++) {
		lr_request *rq = lr_request_new(models[i]);
		lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS);
		assert_int_equal(lr_request_add_input(rq, "first text"), 0);
		assert_int_equal(lr_request_add_input(rq, "second one here"), 0);
		lr_future *f = lr_submit(e, rq);
		assert_int_equal(lr_future_wait(f, 10000), 1);
		const lr_result *r = lr_future_result(f);
		if (r->error)
			fail_msg("%s: %s", models[i], r->error_message);
		struct json_doc d = {0};
		assert_int_equal(json_parse(&d, r->body, r->body_len), 0);
		int data = json_object_get(&d, 0, "data");
		assert_true(data >= 0 && d.tok[data].type == JSON_ARRAY && d.tok[data].size == 2);
		assert_true(json_path(&d, data + 1, "embedding") >= 0);
		assert_int_equal(r->usage.input_tokens, 5);
		json_doc_free(&d);
		lr_future_release(f);
	}
	/* Anthropic has no embeddings: refused before sending. */
	lr_request *rq = lr_request_new("anthropic/claude-haiku-4-5");
	lr_request_set_endpoint(rq, LR_ENDPOINT_EMBEDDINGS);
	lr_request_add_input(rq, "x");
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 1000), 1);
	assert_int_equal(lr_future_result(f)->error, LR_EUNSUPPORTED);
	lr_future_release(f);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* ---- the pull iterator ---- */

static void pull_all(lr_engine *e, const char *model, int tokens)
{
	lr_request *rq = lr_request_new(model);
	lr_request_add_message(rq, LR_ROLE_USER, "stream please");
	assert_int_equal(lr_request_set_stream(rq, 1), 0);
	lr_future *f = lr_submit(e, rq);
	char text[8192];
	size_t len = 0;
	int finishes = 0, rc;
	lr_delta d;
	while ((rc = lr_future_next_delta(f, &d, 10000)) == 1) {
		assert_true(len + d.text_len < sizeof(text));
		memcpy(text + len, d.text, d.text_len);
		len += d.text_len;
		if (d.finish_reason)
			finishes++;
	}
	assert_int_equal(rc, 0);
	/* Ended: the result is there, with the same text. */
	const lr_result *r = lr_future_result(f);
	assert_non_null(r);
	assert_int_equal(r->error, LR_OK);
	assert_true(r->streamed);
	assert_int_equal(finishes, 1);
	assert_int_equal(len, r->text_len);
	assert_memory_equal(text, r->text, len);
	assert_int_equal((int)count_words(text, len), tokens);
	assert_int_equal(lr_future_next_delta(f, &d, 0), 0); /* stays ended */
	lr_future_release(f);
}


/* Issue 9: the delta is queued for the pull iterator before the callback
 * runs, so "notify from the callback, then next_delta(f, &d, 0)" never
 * misses it. The callback holds the engine thread until the consumer
 * has looked. */
struct notify_pull {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int notified, looked;
};
static void notify_on_first_delta(void *user, const lr_delta *d)
{
	struct notify_pull *np = user;
	pthread_mutex_lock(&np->lock);
	if (np->notified++ == 0) {
		pthread_cond_broadcast(&np->cond);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 10;
		while (!np->looked && pthread_cond_timedwait(&np->cond, &np->lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&np->lock);
}

static void test_delta_is_pullable_when_its_callback_runs(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(12, 0);
	lr_engine *e = engine_for(s, 0);
	static struct notify_pull np = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	lr_request *rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "stream please");
	assert_int_equal(lr_request_set_stream(rq, 1), 0);
	assert_int_equal(lr_request_on_delta(rq, notify_on_first_delta, &np), 0);
	lr_future *f = lr_submit(e, rq);
	pthread_mutex_lock(&np.lock);
	while (!np.notified)
		pthread_cond_wait(&np.cond, &np.lock);
	pthread_mutex_unlock(&np.lock);
	lr_delta d;
	int first = lr_future_next_delta(f, &d, 0);
	pthread_mutex_lock(&np.lock);
	np.looked = 1;
	pthread_cond_broadcast(&np.cond);
	pthread_mutex_unlock(&np.lock);
	assert_int_equal(first, 1);
	while (lr_future_next_delta(f, &d, 10000) == 1)
		;
	assert_int_equal(lr_future_result(f)->error, LR_OK);
	lr_future_release(f);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_pull_iterator_hands_out_every_delta(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(30, 1);
	lr_engine *e = engine_for(s, 0);
	for (size_t i = 0; i < NMODELS; i++)
		pull_all(e, chat_models[i], 30);
	lr_engine_destroy(e);
	/* A caller-driven engine moves while the caller pulls. */
	e = engine_for(s, 1);
	pull_all(e, "anthropic/claude-haiku-4-5", 30);
	pull_all(e, "gpt-4o-mini", 30);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_pull_iterator_times_out_and_resumes(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(3, 300);
	lr_engine *e = engine_for(s, 0);
	lr_request *rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "slow");
	lr_request_set_stream(rq, 1);
	lr_future *f = lr_submit(e, rq);
	lr_delta d;
	int timeouts = 0, deltas = 0, rc;
	while ((rc = lr_future_next_delta(f, &d, 50)) != 0) {
		if (rc == LR_ETIMEOUT)
			timeouts++;
		else
			deltas += rc == 1;
		assert_true(rc == 1 || rc == LR_ETIMEOUT);
	}
	assert_true(timeouts >= 2); /* tokens are 300 ms apart */
	assert_true(deltas >= 3);
	assert_int_equal(lr_future_result(f)->error, LR_OK);
	lr_future_release(f);
	/* Not a pull stream: refused. */
	rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "x");
	f = lr_submit(e, rq);
	assert_int_equal(lr_future_next_delta(f, &d, 0), LR_EINVAL);
	lr_future_wait(f, 10000);
	lr_future_release(f);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* ---- headers, keys and routing ---- */

static char seen_head[4096];
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static void capture(void *ctx, const struct ts_request *rq, struct ts_reply *reply)
{
	(void)ctx;
	pthread_mutex_lock(&seen_lock);
	snprintf(seen_head, sizeof(seen_head), "%s", rq->head);
	pthread_mutex_unlock(&seen_lock);
	reply->data = ts_ok_response;
	reply->len = strlen(ts_ok_response);
	reply->action = TS_SEND;
}

static void head_for(const char *base_url, const char *key, const char *model, char *out, size_t cap)
{
	struct test_server *srv = NULL;
	assert_int_equal(test_server_start(capture, NULL, &srv), 0);
	char url[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", test_server_port(srv), base_url);
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.api_key = key;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	lr_request *rq = lr_request_new(model);
	lr_request_add_message(rq, LR_ROLE_USER, "hi");
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	pthread_mutex_lock(&seen_lock);
	snprintf(out, cap, "%s", seen_head);
	pthread_mutex_unlock(&seen_lock);
	lr_future_release(f);
	lr_engine_destroy(e);
	test_server_stop(srv);
}


/* Issue 9: under one base URL, a mixed batch sends each provider its own
 * key from its own variable, never another provider's. */
static void test_each_provider_gets_its_own_key_under_a_base_url(void **state)
{
	(void)state;
	setenv("OPENAI_API_KEY", "sk-openai-AAA", 1);
	setenv("ANTHROPIC_API_KEY", "sk-ant-BBB", 1);
	setenv("GEMINI_API_KEY", "g-CCC", 1);
	char head[4096];
	head_for("/v1", NULL, "gpt-4o-mini", head, sizeof(head));
	assert_non_null(strstr(head, "Authorization: Bearer sk-openai-AAA\r\n"));
	assert_null(strstr(head, "BBB"));
	assert_null(strstr(head, "CCC"));
	head_for("/v1", NULL, "anthropic/claude-haiku-4-5", head, sizeof(head));
	assert_non_null(strstr(head, "x-api-key: sk-ant-BBB\r\n"));
	assert_null(strstr(head, "AAA"));
	assert_null(strstr(head, "Authorization"));
	head_for("/v1", NULL, "gemini/gemini-2.0-flash", head, sizeof(head));
	assert_non_null(strstr(head, "x-goog-api-key: g-CCC\r\n"));
	assert_null(strstr(head, "AAA"));
	assert_null(strstr(head, "BBB"));
	head_for("/v1", NULL, "ollama/qwen3:4b", head, sizeof(head));
	assert_null(strstr(head, "AAA"));
	assert_null(strstr(head, "BBB"));
	assert_null(strstr(head, "CCC"));
	unsetenv("OPENAI_API_KEY");
	unsetenv("ANTHROPIC_API_KEY");
	unsetenv("GEMINI_API_KEY");
}


/* Issue 9: userinfo in a base URL is refused with that reason, and the
 * message never shows the password. */
static void test_credentials_in_a_base_url_are_refused_and_never_echoed(void **state)
{
	(void)state;
	lr_config cfg = lr_config_default();
	cfg.base_url = "http://alice:hunter2-secret@127.0.0.1:8000/v1";
	char why[512];
	assert_int_equal(lr_config_check_model(&cfg, "gpt-4o-mini", why, sizeof(why)), LR_EINVAL);
	assert_non_null(strstr(why, "credentials"));
	assert_non_null(strstr(why, "http://***@127.0.0.1:8000/v1"));
	assert_null(strstr(why, "hunter2"));
	assert_null(strstr(why, "alice"));
	assert_null(strstr(why, "invalid port"));
	lr_engine *e = NULL;
	assert_true(lr_engine_new(&cfg, &e) < 0);
	/* An @ after the path is not userinfo. */
	cfg.base_url = "http://127.0.0.1:8000/v1/@x";
	assert_int_equal(lr_config_check_model(&cfg, "gpt-4o-mini", why, sizeof(why)), 0);
}

static void test_each_provider_gets_its_path_and_key_header(void **state)
{
	(void)state;
	char head[4096];
	head_for("/v1", "sk-test-1", "openai/gpt-4o", head, sizeof(head));
	assert_true(strncmp(head, "POST /v1/chat/completions ", 26) == 0);
	assert_non_null(strstr(head, "Authorization: Bearer sk-test-1\r\n"));

	head_for("", "sk-ant-2", "anthropic/claude-haiku-4-5", head, sizeof(head));
	assert_true(strncmp(head, "POST /v1/messages ", 18) == 0);
	assert_non_null(strstr(head, "x-api-key: sk-ant-2\r\n"));
	assert_non_null(strstr(head, "anthropic-version: 2023-06-01\r\n"));
	assert_null(strstr(head, "Authorization"));
	/* A base URL that already ends in the version is not doubled. */
	head_for("/v1", NULL, "anthropic/claude-haiku-4-5", head, sizeof(head));
	assert_true(strncmp(head, "POST /v1/messages ", 18) == 0);
	assert_null(strstr(head, "x-api-key"));
	assert_non_null(strstr(head, "anthropic-version: 2023-06-01\r\n"));

	head_for("", "g-key-3", "gemini/gemini-2.0-flash", head, sizeof(head));
	assert_true(strncmp(head, "POST /v1beta/models/gemini-2.0-flash:generateContent ", 53) == 0);
	assert_non_null(strstr(head, "x-goog-api-key: g-key-3\r\n"));

	head_for("", NULL, "ollama/qwen3:4b", head, sizeof(head));
	assert_true(strncmp(head, "POST /api/chat ", 15) == 0);
	assert_null(strstr(head, "Authorization"));

	/* vLLM-style names are not provider prefixes. */
	head_for("/v1", NULL, "meta-llama/Llama-3.1-8B-Instruct", head, sizeof(head));
	assert_true(strncmp(head, "POST /v1/chat/completions ", 26) == 0);
}

static void test_missing_keys_fail_before_sending(void **state)
{
	(void)state;
	unsetenv("ANTHROPIC_API_KEY");
	unsetenv("ANTHROPIC_BASE_URL");
	unsetenv("GEMINI_API_KEY");
	unsetenv("GEMINI_BASE_URL");
	unsetenv("OPENAI_API_KEY");
	unsetenv("OPENAI_BASE_URL");
	unsetenv("LLMRING_MOCK_URL");
	char why[256];
	assert_int_equal(lr_config_check_model(NULL, "anthropic/claude-haiku-4-5", why, sizeof(why)), LR_EAUTH);
	assert_non_null(strstr(why, "ANTHROPIC_API_KEY"));
	assert_int_equal(lr_config_check_model(NULL, "gemini/gemini-2.0-flash", why, sizeof(why)), LR_EAUTH);
	assert_non_null(strstr(why, "GEMINI_API_KEY"));
	assert_int_equal(lr_config_check_model(NULL, "gpt-4o", why, sizeof(why)), LR_EAUTH);
	assert_int_equal(lr_config_check_model(NULL, "ollama/qwen3:4b", why, sizeof(why)), 0);
	assert_int_equal(lr_config_check_model(NULL, "mock/any", why, sizeof(why)), LR_EINVAL);
	assert_int_equal(lr_config_check_model(NULL, "anthropic/", why, sizeof(why)), LR_EINVAL);
	setenv("ANTHROPIC_API_KEY", "sk-ant-secret-value", 1);
	assert_int_equal(lr_config_check_model(NULL, "anthropic/claude-haiku-4-5", why, sizeof(why)), 0);
	/* A server named by the variable may take no key. */
	setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1", 1);
	assert_int_equal(lr_config_check_model(NULL, "gpt-4o", why, sizeof(why)), 0);
	unsetenv("OPENAI_BASE_URL");
	unsetenv("ANTHROPIC_API_KEY");

	/* Through the engine: the request fails at once, naming the variable
	 * and never a key. */
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(NULL, &e), 0);
	lr_request *rq = lr_request_new("gemini/gemini-2.0-flash");
	lr_request_add_message(rq, LR_ROLE_USER, "hi");
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 1000), 1);
	const lr_result *r = lr_future_result(f);
	assert_int_equal(r->error, LR_EAUTH);
	assert_non_null(strstr(r->error_message, "GEMINI_API_KEY"));
	assert_string_equal(r->provider, "gemini");
	lr_future_release(f);
	lr_engine_destroy(e);
}

static void test_model_provider_names(void **state)
{
	(void)state;
	const char *m = NULL;
	assert_string_equal(lr_model_provider("anthropic/claude-haiku-4-5", &m), "anthropic");
	assert_string_equal(m, "claude-haiku-4-5");
	assert_string_equal(lr_model_provider("ollama/qwen3:4b", &m), "ollama");
	assert_string_equal(m, "qwen3:4b");
	assert_string_equal(lr_model_provider("openai/gpt-4o", &m), "openai");
	assert_string_equal(m, "gpt-4o");
	assert_string_equal(lr_model_provider("meta-llama/Llama-3.1-8B-Instruct", &m), "openai");
	assert_string_equal(m, "meta-llama/Llama-3.1-8B-Instruct");
	assert_string_equal(lr_model_provider("gpt-4o-mini", NULL), "openai");
	assert_null(lr_model_provider(NULL, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_provider_streamed_and_whole),
		cmocka_unit_test(test_tool_calls_in_every_dialect),
		cmocka_unit_test(test_anthropic_json_output_comes_back_as_text),
		cmocka_unit_test(test_mid_stream_errors_in_every_dialect),
		cmocka_unit_test(test_timings_tell_first_byte_from_first_token),
		cmocka_unit_test(test_overloaded_529_maps_to_overloaded),
		cmocka_unit_test(test_embeddings_openai_and_ollama),
		cmocka_unit_test(test_delta_is_pullable_when_its_callback_runs),
		cmocka_unit_test(test_pull_iterator_hands_out_every_delta),
		cmocka_unit_test(test_pull_iterator_times_out_and_resumes),
		cmocka_unit_test(test_each_provider_gets_its_path_and_key_header),
		cmocka_unit_test(test_credentials_in_a_base_url_are_refused_and_never_echoed),
		cmocka_unit_test(test_each_provider_gets_its_own_key_under_a_base_url),
		cmocka_unit_test(test_missing_keys_fail_before_sending),
		cmocka_unit_test(test_model_provider_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

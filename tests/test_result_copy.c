/*
 * lr_result_copy / lr_result_free: a result kept without its future.
 * Linked with the allocation-failure wrappers (tests/alloc_fail.h), so the
 * out-of-memory path is tested too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_fail.h"
#include "llmring.h"
#include "mock_server.h"

/* s lies inside the copy's one block [c, c + size), or is NULL. */
static void assert_inside(const lr_result *c, const void *s, size_t size)
{
	if (!s)
		return;
	assert_true((const char *)s >= (const char *)c && (const char *)s < (const char *)c + size);
}

static void assert_same_string(const char *copy, const char *orig)
{
	if (!orig) {
		assert_null(copy);
		return;
	}
	assert_non_null(copy);
	assert_ptr_not_equal(copy, orig);
	assert_string_equal(copy, orig);
}

/* Every field of c equals orig's, every pointer points into c's block. */
static void assert_copy_of(const lr_result *c, const lr_result *orig)
{
	size_t block = 1 << 20; /* an upper bound: the pointers must be near c */
	assert_int_equal(c->error, orig->error);
	assert_same_string(c->error_message, orig->error_message);
	assert_int_equal(c->http_status, orig->http_status);
	assert_int_equal(c->body_len, orig->body ? orig->body_len : 0);
	if (orig->body) {
		assert_ptr_not_equal(c->body, orig->body);
		assert_memory_equal(c->body, orig->body, orig->body_len);
		assert_int_equal(c->body[c->body_len], '\0');
	} else {
		assert_null(c->body);
	}
	assert_int_equal(c->body_is_json, orig->body_is_json);
	assert_int_equal(c->text_len, orig->text ? orig->text_len : 0);
	if (orig->text) {
		assert_ptr_not_equal(c->text, orig->text);
		assert_memory_equal(c->text, orig->text, orig->text_len);
		assert_int_equal(c->text[c->text_len], '\0');
	} else {
		assert_null(c->text);
	}
	assert_same_string(c->finish_reason, orig->finish_reason);
	assert_int_equal(c->streamed, orig->streamed);
	assert_same_string(c->request_id, orig->request_id);
	assert_same_string(c->model, orig->model);
	assert_memory_equal(&c->usage, &orig->usage, sizeof(lr_usage));
	assert_memory_equal(&c->timings, &orig->timings, sizeof(lr_timings));
	assert_int_equal(c->attempts, orig->attempts);
	assert_true(c->retry_after_s == orig->retry_after_s);
	assert_same_string(c->provider, orig->provider);
	assert_true(c->cost_usd == orig->cost_usd);
	assert_int_equal(c->cached, orig->cached);
	assert_true(c->cost_saved_usd == orig->cost_saved_usd);
	assert_int_equal(c->tool_call_count, orig->tool_call_count);
	if (orig->tool_call_count == 0) {
		assert_null(c->tool_calls);
		return;
	}
	assert_ptr_not_equal(c->tool_calls, orig->tool_calls);
	assert_inside(c, c->tool_calls, block);
	for (int i = 0; i < orig->tool_call_count; i++) {
		const lr_tool_call *a = &c->tool_calls[i], *b = &orig->tool_calls[i];
		assert_same_string(a->id, b->id);
		assert_same_string(a->name, b->name);
		assert_int_equal(a->arguments_len, b->arguments ? b->arguments_len : 0);
		if (b->arguments) {
			assert_memory_equal(a->arguments, b->arguments, b->arguments_len);
			assert_int_equal(a->arguments[a->arguments_len], '\0');
		} else {
			assert_null(a->arguments);
		}
		assert_inside(c, a->id, block);
		assert_inside(c, a->name, block);
		assert_inside(c, a->arguments, block);
	}
}

/* s put at *p in the scratch buffer the test wipes later. */
static const char *keep(char **p, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = memcpy(*p, s, n);
	*p += n;
	return d;
}

static void test_copy_holds_every_field_and_tool_call(void **state)
{
	(void)state;
	char buf[512], saved[512];
	char *p = buf;
	const char *body = keep(&p, "{\"id\":\"chatcmpl-1\",\"choices\":[]}");
	const char *args0 = keep(&p, "{\"city\":\"Paris\"}");
	lr_tool_call calls[2] = {
		{keep(&p, "call_0"), keep(&p, "get_weather"), args0, strlen(args0)},
		{keep(&p, ""), keep(&p, "noop"), keep(&p, "{}"), 2},
	};
	lr_result r = {
		.error = LR_OK, .http_status = 200, .body = body, .body_len = strlen(body),
		.body_is_json = 1, .text = keep(&p, "hello"), .text_len = 5,
		.finish_reason = keep(&p, "tool_calls"), .streamed = 1, .request_id = keep(&p, "req-7"),
		.model = keep(&p, "gpt-4o-mini-2024"), .usage = {11, 22, 3},
		.timings = {1.5, 2.5, 3.5, 2.75}, .attempts = 2, .retry_after_s = 0.25,
		.tool_calls = calls, .tool_call_count = 2, .provider = keep(&p, "openai"),
		.cost_usd = 0.000123, .cached = 0, .cost_saved_usd = 0,
	};
	lr_result *c = lr_result_copy(&r);
	assert_non_null(c);
	/* Nothing of the copy points back into the original's memory. */
	memcpy(saved, buf, sizeof(buf));
	memset(buf, 'X', sizeof(buf));
	lr_tool_call wiped[2];
	memcpy(wiped, calls, sizeof(calls));
	memset(calls, 0, sizeof(calls));
	assert_string_equal(c->body, "{\"id\":\"chatcmpl-1\",\"choices\":[]}");
	assert_string_equal(c->text, "hello");
	assert_string_equal(c->finish_reason, "tool_calls");
	assert_string_equal(c->request_id, "req-7");
	assert_string_equal(c->model, "gpt-4o-mini-2024");
	assert_string_equal(c->provider, "openai");
	assert_string_equal(c->tool_calls[0].id, "call_0");
	assert_string_equal(c->tool_calls[0].name, "get_weather");
	assert_string_equal(c->tool_calls[0].arguments, "{\"city\":\"Paris\"}");
	assert_string_equal(c->tool_calls[1].id, "");
	assert_string_equal(c->tool_calls[1].name, "noop");
	assert_int_equal(c->tool_calls[1].arguments_len, 2);
	/* And every field equals the original's. */
	memcpy(buf, saved, sizeof(buf));
	memcpy(calls, wiped, sizeof(calls));
	assert_copy_of(c, &r);
	lr_result_free(c);
}

static void test_copy_of_an_error_keeps_status_message_and_body(void **state)
{
	(void)state;
	const char *err_body = "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit\"}}";
	lr_result r = {
		.error = LR_ERATELIMIT, .error_message = "HTTP 429: slow down", .http_status = 429,
		.body = err_body, .body_len = strlen(err_body), .body_is_json = 1,
		.request_id = "req-429", .attempts = 3, .retry_after_s = 1.5, .provider = "openai",
		.cost_usd = -1, .cost_saved_usd = -1,
	};
	lr_result *c = lr_result_copy(&r);
	assert_non_null(c);
	assert_copy_of(c, &r);
	assert_null(c->text);
	assert_null(c->tool_calls);
	lr_result_free(c);
}

static void test_copy_of_a_cached_result_keeps_cached_and_saved_cost(void **state)
{
	(void)state;
	lr_result r = {
		.error = LR_OK, .http_status = 200, .body = "{}", .body_len = 2, .body_is_json = 1,
		.text = "again", .text_len = 5, .finish_reason = "stop", .model = "gpt-4o-mini",
		.usage = {9, 4, 0}, .attempts = 1, .retry_after_s = -1, .provider = "openai",
		.cost_usd = 0, .cached = 1, .cost_saved_usd = 0.0042,
	};
	lr_result *c = lr_result_copy(&r);
	assert_non_null(c);
	assert_copy_of(c, &r);
	assert_int_equal(c->cached, 1);
	assert_true(c->cost_saved_usd == 0.0042);
	lr_result_free(c);
}

static void test_null_strings_stay_null(void **state)
{
	(void)state;
	lr_result r = {.error = LR_ECONNECT, .error_message = "connection refused",
	               .retry_after_s = -1, .cost_usd = -1, .cost_saved_usd = -1};
	lr_result *c = lr_result_copy(&r);
	assert_non_null(c);
	assert_copy_of(c, &r);
	assert_null(c->body);
	assert_null(c->text);
	assert_null(c->finish_reason);
	assert_null(c->request_id);
	assert_null(c->model);
	assert_null(c->provider);
	lr_result_free(c);
	/* A tool call's NULL strings too; a count without an array is none. */
	lr_tool_call tc = {NULL, NULL, NULL, 5};
	lr_result t = {.tool_calls = &tc, .tool_call_count = 1};
	c = lr_result_copy(&t);
	assert_non_null(c);
	assert_int_equal(c->tool_call_count, 1);
	assert_null(c->tool_calls[0].id);
	assert_null(c->tool_calls[0].arguments);
	assert_int_equal(c->tool_calls[0].arguments_len, 0);
	lr_result_free(c);
	lr_result none = {.tool_calls = NULL, .tool_call_count = 3};
	c = lr_result_copy(&none);
	assert_non_null(c);
	assert_int_equal(c->tool_call_count, 0);
	assert_null(c->tool_calls);
	lr_result_free(c);
}

static void test_body_and_text_are_copied_by_length(void **state)
{
	(void)state;
	const char body[] = {'a', '\0', 'b', 'c'};
	lr_result r = {.body = body, .body_len = sizeof(body), .text = "abcdef", .text_len = 3};
	lr_result *c = lr_result_copy(&r);
	assert_non_null(c);
	assert_int_equal(c->body_len, 4);
	assert_memory_equal(c->body, body, 4);
	assert_int_equal(c->text_len, 3);
	assert_string_equal(c->text, "abc");
	lr_result_free(c);
}

static void test_null_and_out_of_memory_give_null(void **state)
{
	(void)state;
	assert_null(lr_result_copy(NULL));
	lr_result_free(NULL);
	lr_result r = {.text = "x", .text_len = 1};
	alloc_fail_arm(1, false);
	lr_result *c = lr_result_copy(&r);
	assert_int_equal(alloc_fail_failed(), 1);
	alloc_fail_reset();
	assert_null(c);
	c = lr_result_copy(&r); /* the next one succeeds */
	assert_non_null(c);
	lr_result_free(c);
}

/* A real result (the mock's tool call) outlives its future and its engine. */
static void test_copy_outlives_the_future_and_the_engine(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	o.port = 0;
	struct mock_server *mock = NULL;
	alloc_fail_exempt_begin();
	assert_int_equal(mock_server_start(&o, &mock), 0);
	alloc_fail_exempt_end();
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%u/v1", (unsigned)mock_server_port(mock));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	lr_engine *eng = NULL;
	assert_int_equal(lr_engine_new(&cfg, &eng), 0);
	lr_request *rq = lr_request_new("gpt-4o-mini");
	assert_non_null(rq);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "weather in Paris?"), 0);
	assert_int_equal(lr_request_add_tool(rq, "get_weather", "the weather",
	                                     "{\"type\":\"object\",\"properties\":{}}"), 0);
	lr_future *f = lr_submit(eng, rq);
	assert_non_null(f);
	assert_int_equal(lr_future_wait(f, 10000), 1);
	const lr_result *r = lr_future_result(f);
	assert_int_equal(r->error, LR_OK);
	assert_true(r->tool_call_count >= 1);
	lr_result *c = lr_result_copy(r);
	assert_non_null(c);
	assert_copy_of(c, r);
	lr_future_release(f);
	lr_engine_destroy(eng);
	alloc_fail_exempt_begin();
	mock_server_stop(mock);
	alloc_fail_exempt_end();
	assert_int_equal(c->http_status, 200);
	assert_string_equal(c->provider, "openai");
	assert_string_equal(c->finish_reason, "tool_calls");
	assert_string_equal(c->tool_calls[0].name, "get_weather");
	assert_non_null(c->body);
	assert_non_null(strstr(c->body, "get_weather"));
	assert_true(c->usage.output_tokens > 0);
	lr_result_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy_holds_every_field_and_tool_call),
		cmocka_unit_test(test_copy_of_an_error_keeps_status_message_and_body),
		cmocka_unit_test(test_copy_of_a_cached_result_keeps_cached_and_saved_cost),
		cmocka_unit_test(test_null_strings_stay_null),
		cmocka_unit_test(test_body_and_text_are_copied_by_length),
		cmocka_unit_test(test_null_and_out_of_memory_give_null),
		cmocka_unit_test(test_copy_outlives_the_future_and_the_engine),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

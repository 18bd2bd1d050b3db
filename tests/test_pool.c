/*
 * The keep-alive pool, seen through the public API against the scripted
 * test server: reuse, the per-origin cap, Connection: close, and the one
 * transport-level resend on a pooled connection the server had closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llmring.h"
#include "test_server.h"

/* ---- fixture ---------------------------------------------------------- */

/* Everything a test starts; teardown frees it even after a failed assert. */
struct fx {
	struct test_server *srv;   /* owned: stopped in teardown */
	lr_engine *eng;            /* owned: destroyed in teardown */
	lr_config cfg;             /* adjusted by the test before fx_engine() */
	char url[64];
	lr_future **futs;          /* owned: every handle, released in teardown */
	size_t nfuts, cap;
	char *scratch;             /* owned: a response the test built */
};

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	if (!fx)
		return -1;
	fx->cfg = lr_config_default();
	fx->cfg.max_retries = 0;   /* only transport resends under test */
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;
	if (fx->eng)
		lr_engine_destroy(fx->eng);
	for (size_t i = 0; i < fx->nfuts; i++)
		lr_future_release(fx->futs[i]);
	free(fx->futs);
	test_server_stop(fx->srv);
	free(fx->scratch);
	free(fx);
	return 0;
}

static void fx_server(struct fx *fx, ts_handler h, void *ctx)
{
	assert_int_equal(test_server_start(h, ctx, &fx->srv), 0);
	snprintf(fx->url, sizeof fx->url, "http://127.0.0.1:%u/v1",
		 (unsigned)test_server_port(fx->srv));
}

static void fx_engine(struct fx *fx)
{
	fx->cfg.base_url = fx->url;
	assert_int_equal(lr_engine_new(&fx->cfg, &fx->eng), 0);
	assert_non_null(fx->eng);
}

static lr_future *fx_submit(struct fx *fx)
{
	lr_request *rq = lr_request_new("gpt-4o-mini");
	assert_non_null(rq);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "hi"), 0);
	if (fx->nfuts == fx->cap) {
		fx->cap = fx->cap ? fx->cap * 2 : 16;
		fx->futs = realloc(fx->futs, fx->cap * sizeof *fx->futs);
		assert_non_null(fx->futs);
	}
	lr_future *f = lr_submit(fx->eng, rq);
	assert_non_null(f);
	fx->futs[fx->nfuts++] = f;
	return f;
}

/* Waits (bounded, so a hung engine fails instead of hanging the suite). */
static const lr_result *fx_wait(lr_future *f)
{
	assert_int_equal(lr_future_wait(f, 10000), 1);
	const lr_result *r = lr_future_result(f);
	assert_non_null(r);
	return r;
}

static void assert_ok(const lr_result *r)
{
	if (r->error != 0)
		fprintf(stderr, "request failed: %s (%s) status %d\n",
			lr_error_name(r->error),
			r->error_message ? r->error_message : "-", r->http_status);
	assert_int_equal(r->error, 0);
	assert_int_equal(r->http_status, 200);
	assert_int_equal(r->usage.input_tokens, 5);
	assert_int_equal(r->usage.output_tokens, 7);
}

static lr_engine_stats fx_stats(struct fx *fx)
{
	lr_engine_stats st;
	memset(&st, 0xff, sizeof st);
	lr_engine_get_stats(fx->eng, &st);
	return st;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* ts_ok_response with one more header line before the blank line. */
static char *ok_response_with(const char *header_line)
{
	const char *blank = strstr(ts_ok_response, "\r\n\r\n");
	size_t head = (size_t)(blank - ts_ok_response) + 2;
	size_t total = strlen(ts_ok_response), extra = strlen(header_line);
	char *out = malloc(total + extra + 1);  /* owned: the caller */
	assert_non_null(out);
	memcpy(out, ts_ok_response, head);
	memcpy(out + head, header_line, extra);
	memcpy(out + head + extra, ts_ok_response + head, total - head + 1);
	return out;
}

/* ---- handlers --------------------------------------------------------- */

static void reply_ok(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	r->data = ts_ok_response;
	r->len = strlen(ts_ok_response);
	r->delay_ms = ctx ? *(const unsigned *)ctx : 0;
}

/* Every third response on a connection says Connection: close and closes. */
static void reply_close_every_third(void *ctx, const struct ts_request *rq,
				    struct ts_reply *r)
{
	if (rq->index_on_conn % 3 == 2) {
		r->data = ctx;
		r->action = TS_SEND_CLOSE;
	} else {
		r->data = ts_ok_response;
	}
	r->len = strlen(r->data);
}

/* The second request on any connection finds it closed (ctx: the action). */
static void reply_drop_second_on_conn(void *ctx, const struct ts_request *rq,
				      struct ts_reply *r)
{
	if (rq->index_on_conn == 1) {
		r->action = *(const enum ts_action *)ctx;
		return;
	}
	reply_ok(NULL, rq, r);
}

/* The first request on any connection finds it closed (ctx: the action). */
static void reply_drop_first_on_conn(void *ctx, const struct ts_request *rq,
				     struct ts_reply *r)
{
	r->action = *(const enum ts_action *)ctx;
}

/* Answers, then closes without saying Connection: close. */
static void reply_ok_then_close(void *ctx, const struct ts_request *rq,
				struct ts_reply *r)
{
	reply_ok(NULL, rq, r);
	r->action = TS_SEND_CLOSE;
}

/* The second request on a connection gets a partial head, then a close. */
static void reply_cut_second_on_conn(void *ctx, const struct ts_request *rq,
				     struct ts_reply *r)
{
	if (rq->index_on_conn == 1) {
		r->data = "HTTP/1.1 200 OK\r\nContent-Ty";
		r->len = strlen(r->data);
		r->action = TS_SEND_CLOSE;
		return;
	}
	reply_ok(NULL, rq, r);
}

/* Connection 0 serves one request, then drops the next; every later
 * connection drops its first request too. */
static void reply_drop_all_after_first(void *ctx, const struct ts_request *rq,
				       struct ts_reply *r)
{
	if (rq->conn_id == 0 && rq->index_on_conn == 0) {
		reply_ok(NULL, rq, r);
		return;
	}
	r->action = TS_CLOSE;
}

/* Every response is a 429 with an error body, connection kept. */
#define ERR429_BODY "{\"error\":{\"code\":\"rate_limit_exceeded\",\"m\":1}}"
_Static_assert(sizeof ERR429_BODY - 1 == 46, "fix the Content-Length below");

static void reply_429(void *ctx, const struct ts_request *rq, struct ts_reply *r)
{
	static const char resp[] =
		"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
		"Content-Length: 46\r\n\r\n" ERR429_BODY;
	r->data = resp;
	r->len = sizeof resp - 1;
}

/* The first request the server sees gets ctx's action; the rest succeed. */
static void reply_first_request_fails(void *ctx, const struct ts_request *rq,
				      struct ts_reply *r)
{
	if (rq->global_index == 0) {
		r->action = *(const enum ts_action *)ctx;
		return;
	}
	reply_ok(NULL, rq, r);
}

/* ---- tests ------------------------------------------------------------ */

static void test_sequential_requests_reuse_one_connection(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx_engine(fx);

	for (int i = 0; i < 10; i++)
		assert_ok(fx_wait(fx_submit(fx)));

	lr_engine_stats st = fx_stats(fx);
	assert_int_equal(st.connections_opened, 1);
	assert_int_equal(st.connections_reused, 9);
	assert_int_equal(st.requests_completed, 10);
	assert_int_equal(test_server_connections(fx->srv), 1);
	assert_int_equal(test_server_requests(fx->srv), 10);
}

static void test_concurrent_requests_open_at_most_max_conns_per_origin(void **state)
{
	struct fx *fx = *state;
	static const unsigned delay_ms = 50;  /* keeps requests overlapping */
	fx_server(fx, reply_ok, (void *)&delay_ms);
	fx->cfg.max_conns_per_origin = 4;
	fx->cfg.max_in_flight = 64;
	fx_engine(fx);

	lr_future *f[32];
	for (int i = 0; i < 32; i++)
		f[i] = fx_submit(fx);
	for (int i = 0; i < 32; i++)
		assert_ok(fx_wait(f[i]));

	assert_in_range(test_server_connections(fx->srv), 1, 4);
	assert_in_range(fx_stats(fx).connections_opened, 1, 4);
	assert_int_equal(test_server_requests(fx->srv), 32);
}

static void test_connection_close_every_third_response_opens_new_connections(void **state)
{
	struct fx *fx = *state;
	fx->scratch = ok_response_with("Connection: close\r\n");
	fx_server(fx, reply_close_every_third, fx->scratch);
	fx_engine(fx);

	const unsigned n = 10;
	for (unsigned i = 0; i < n; i++)
		assert_ok(fx_wait(fx_submit(fx)));

	unsigned expect = (n + 2) / 3;
	assert_int_equal(test_server_connections(fx->srv), expect);
	lr_engine_stats st = fx_stats(fx);
	assert_int_equal(st.connections_opened, expect);
	assert_int_equal(st.connections_reused, n - expect);
	assert_int_equal(st.stale_resends, 0);
}

static void test_stale_pooled_connection_closed_is_resent_once(void **state)
{
	struct fx *fx = *state;
	static const enum ts_action act = TS_CLOSE;
	fx_server(fx, reply_drop_second_on_conn, (void *)&act);
	fx_engine(fx);

	assert_ok(fx_wait(fx_submit(fx)));
	assert_ok(fx_wait(fx_submit(fx)));  /* reused, found closed, resent */

	lr_engine_stats st = fx_stats(fx);
	assert_int_equal(st.stale_resends, 1);
	assert_int_equal(st.connections_opened, 2);
	assert_int_equal(st.requests_completed, 2);
	assert_int_equal(test_server_connections(fx->srv), 2);
	assert_int_equal(test_server_requests(fx->srv), 3);
	assert_int_equal(lr_future_result(fx->futs[1])->attempts, 1);
}

static void test_stale_pooled_connection_reset_is_resent_once(void **state)
{
	struct fx *fx = *state;
	static const enum ts_action act = TS_RESET;
	fx_server(fx, reply_drop_second_on_conn, (void *)&act);
	fx_engine(fx);

	assert_ok(fx_wait(fx_submit(fx)));
	assert_ok(fx_wait(fx_submit(fx)));

	assert_int_equal(fx_stats(fx).stale_resends, 1);
	assert_int_equal(test_server_connections(fx->srv), 2);
	assert_int_equal(test_server_requests(fx->srv), 3);
}

static void test_fresh_connection_closed_before_response_is_not_resent(void **state)
{
	struct fx *fx = *state;
	static const enum ts_action act = TS_CLOSE;
	fx_server(fx, reply_drop_first_on_conn, (void *)&act);
	fx_engine(fx);

	const lr_result *r = fx_wait(fx_submit(fx));
	if (r->error != LR_ECONNRESET && r->error != LR_EPROTO)
		fail_msg("expected connection_reset or protocol_error, got %s",
			 lr_error_name(r->error));
	assert_int_equal(r->http_status, 0);

	/* Give a wrongful resend time to reach the server before counting. */
	sleep_ms(200);
	assert_int_equal(test_server_connections(fx->srv), 1);
	assert_int_equal(test_server_requests(fx->srv), 1);
	assert_int_equal(fx_stats(fx).stale_resends, 0);
}

static void test_fresh_connection_reset_before_response_is_not_resent(void **state)
{
	struct fx *fx = *state;
	static const enum ts_action act = TS_RESET;
	fx_server(fx, reply_drop_first_on_conn, (void *)&act);
	fx_engine(fx);

	const lr_result *r = fx_wait(fx_submit(fx));
	assert_int_equal(r->error, LR_ECONNRESET);

	sleep_ms(200);
	assert_int_equal(test_server_connections(fx->srv), 1);
	assert_int_equal(test_server_requests(fx->srv), 1);
	assert_int_equal(fx_stats(fx).stale_resends, 0);
}

static void test_server_closing_idle_pooled_connection_does_not_fail_next_request(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok_then_close, NULL);
	fx_engine(fx);

	assert_ok(fx_wait(fx_submit(fx)));
	sleep_ms(100);  /* the FIN reaches the idle pooled connection */
	assert_ok(fx_wait(fx_submit(fx)));

	/* Noticed while idle (no resend) or on reuse (one resend); never more. */
	assert_int_equal(test_server_connections(fx->srv), 2);
	assert_in_range(fx_stats(fx).stale_resends, 0, 1);
}

static void test_server_closing_pooled_connection_right_after_response_does_not_fail_next_request(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok_then_close, NULL);
	fx_engine(fx);

	/* No pause: the next request races the server's FIN. */
	for (int i = 0; i < 5; i++)
		assert_ok(fx_wait(fx_submit(fx)));
	assert_int_equal(test_server_connections(fx->srv), 5);
}

static void test_failure_after_a_response_byte_on_reused_connection_is_not_resent(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_cut_second_on_conn, NULL);
	fx_engine(fx);

	assert_ok(fx_wait(fx_submit(fx)));
	const lr_result *r = fx_wait(fx_submit(fx));
	assert_int_equal(r->error, LR_EPROTO);

	sleep_ms(200);
	assert_int_equal(test_server_requests(fx->srv), 2);
	assert_int_equal(test_server_connections(fx->srv), 1);
	assert_int_equal(fx_stats(fx).stale_resends, 0);
}

static void test_stale_resend_happens_at_most_once(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_drop_all_after_first, NULL);
	fx_engine(fx);

	assert_ok(fx_wait(fx_submit(fx)));
	const lr_result *r = fx_wait(fx_submit(fx));
	if (r->error != LR_ECONNRESET && r->error != LR_EPROTO)
		fail_msg("expected connection_reset or protocol_error, got %s",
			 lr_error_name(r->error));

	sleep_ms(200);
	assert_int_equal(fx_stats(fx).stale_resends, 1);
	assert_int_equal(test_server_connections(fx->srv), 2);
	assert_int_equal(test_server_requests(fx->srv), 3);
}

static void test_idle_connection_past_pool_idle_is_not_reused(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_ok, NULL);
	fx->cfg.pool_idle_s = 0.2;
	fx_engine(fx);

	assert_ok(fx_wait(fx_submit(fx)));
	sleep_ms(600);
	assert_ok(fx_wait(fx_submit(fx)));

	lr_engine_stats st = fx_stats(fx);
	assert_int_equal(st.connections_opened, 2);
	assert_int_equal(st.connections_reused, 0);
	assert_int_equal(st.stale_resends, 0);
	assert_int_equal(test_server_connections(fx->srv), 2);
}

static void test_http_error_response_keeps_connection_for_reuse(void **state)
{
	struct fx *fx = *state;
	fx_server(fx, reply_429, NULL);
	fx_engine(fx);

	for (int i = 0; i < 3; i++) {
		const lr_result *r = fx_wait(fx_submit(fx));
		assert_int_equal(r->error, LR_ERATELIMIT);
		assert_int_equal(r->http_status, 429);
	}
	lr_engine_stats st = fx_stats(fx);
	assert_int_equal(st.connections_opened, 1);
	assert_int_equal(st.connections_reused, 2);
	assert_int_equal(test_server_connections(fx->srv), 1);
}

/* With one connection allowed, the first request's connection dies
 * (act) while two more wait for it: they must get a new one. */
static void check_queue_survives_failed_connection(struct fx *fx, enum ts_action act,
						   double total_s, int expect)
{
	static enum ts_action action;
	action = act;
	fx_server(fx, reply_first_request_fails, &action);
	fx->cfg.max_conns_per_origin = 1;
	fx_engine(fx);

	lr_request *rq = lr_request_new("gpt-4o-mini");
	assert_non_null(rq);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "hi"), 0);
	if (total_s > 0)
		assert_int_equal(lr_request_set_timeouts(rq, 0, 0, total_s), 0);
	if (fx->nfuts == fx->cap) {
		fx->cap = fx->cap ? fx->cap * 2 : 16;
		fx->futs = realloc(fx->futs, fx->cap * sizeof *fx->futs);
		assert_non_null(fx->futs);
	}
	lr_future *first = lr_submit(fx->eng, rq);
	assert_non_null(first);
	fx->futs[fx->nfuts++] = first;
	lr_future *later[2] = { fx_submit(fx), fx_submit(fx) };

	assert_int_equal(fx_wait(first)->error, expect);
	assert_ok(fx_wait(later[0]));
	assert_ok(fx_wait(later[1]));
	assert_int_equal(test_server_connections(fx->srv), 2);
}

static void test_queued_requests_proceed_after_connection_reset(void **state)
{
	check_queue_survives_failed_connection(*state, TS_RESET, 0, LR_ECONNRESET);
}

static void test_queued_requests_proceed_after_deadline_on_connection(void **state)
{
	check_queue_survives_failed_connection(*state, TS_HANG, 0.3, LR_ETIMEOUT);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_sequential_requests_reuse_one_connection),
		T(test_concurrent_requests_open_at_most_max_conns_per_origin),
		T(test_connection_close_every_third_response_opens_new_connections),
		T(test_stale_pooled_connection_closed_is_resent_once),
		T(test_stale_pooled_connection_reset_is_resent_once),
		T(test_fresh_connection_closed_before_response_is_not_resent),
		T(test_fresh_connection_reset_before_response_is_not_resent),
		T(test_server_closing_idle_pooled_connection_does_not_fail_next_request),
		T(test_server_closing_pooled_connection_right_after_response_does_not_fail_next_request),
		T(test_failure_after_a_response_byte_on_reused_connection_is_not_resent),
		T(test_stale_resend_happens_at_most_once),
		T(test_idle_connection_past_pool_idle_is_not_reused),
		T(test_http_error_response_keeps_connection_for_reuse),
		T(test_queued_requests_proceed_after_connection_reset),
		T(test_queued_requests_proceed_after_deadline_on_connection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

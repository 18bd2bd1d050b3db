/*
 * Retries as the official SDKs do them: which failures are tried again,
 * how long the engine waits (Retry-After, retry-after-ms, HTTP dates,
 * backoff), x-should-retry, streams only before their first delta, and
 * cancellation or shutdown while a retry waits.
 */
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

#include "llmring.h"
#include "test_server.h"

/* The server answers the first `failures` requests with `fail_reply`
 * (then what fail_action says), the rest with a 200. */
struct script {
	const char *fail_reply;
	enum ts_action fail_action;
	_Atomic unsigned failures;
	_Atomic unsigned seen;
};

static void scripted(void *ctx, const struct ts_request *rq, struct ts_reply *reply)
{
	(void)rq;
	struct script *sc = ctx;
	unsigned n = atomic_fetch_add(&sc->seen, 1);
	if (n < atomic_load(&sc->failures)) {
		reply->data = sc->fail_reply;
		reply->len = strlen(sc->fail_reply);
		reply->action = sc->fail_action;
		return;
	}
	reply->data = ts_ok_response;
	reply->len = strlen(ts_ok_response);
	reply->action = TS_SEND;
}

struct fixture {
	struct script sc;
	struct test_server *srv;
	lr_engine *eng;
};

static struct fixture *fixture_new(const char *fail_reply, enum ts_action action, unsigned failures,
                                   int max_retries)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	fx->sc.fail_reply = fail_reply;
	fx->sc.fail_action = action;
	atomic_store(&fx->sc.failures, failures);
	assert_int_equal(test_server_start(scripted, &fx->sc, &fx->srv), 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", test_server_port(fx->srv));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.max_retries = max_retries;
	assert_int_equal(lr_engine_new(&cfg, &fx->eng), 0);
	return fx;
}

static void fixture_free(struct fixture *fx)
{
	lr_engine_destroy(fx->eng);
	test_server_stop(fx->srv);
	free(fx);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static lr_future *submit(lr_engine *e)
{
	lr_request *rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "hi");
	return lr_submit(e, rq);
}

/* One request; its error, attempts and how long it took. */
static int one(struct fixture *fx, int *attempts, double *secs)
{
	double t0 = now_s();
	lr_future *f = submit(fx->eng);
	assert_int_equal(lr_future_wait(f, 30000), 1);
	const lr_result *r = lr_future_result(f);
	int err = r->error;
	*attempts = r->attempts;
	*secs = now_s() - t0;
	lr_future_release(f);
	return err;
}

#define ERR_BODY(msg) "{\"error\":{\"message\":\"" msg "\",\"type\":\"x\",\"code\":null}}"
/* Replies close the connection, so they need no Content-Length. */
#define CLOSE_REPLY(status, extra, body)                                                       \
	"HTTP/1.1 " status "\r\nContent-Type: application/json\r\nConnection: close\r\n" extra "\r\n" body

static void test_429_with_retry_after_is_retried_after_the_wait(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(CLOSE_REPLY("429 Too Many Requests", "Retry-After: 0.3\r\n",
	                                             ERR_BODY("slow down")),
	                                 TS_SEND_CLOSE, 1, 2);
	int attempts;
	double secs;
	assert_int_equal(one(fx, &attempts, &secs), LR_OK);
	assert_int_equal(attempts, 2);
	assert_true(secs >= 0.3);
	lr_engine_stats st;
	lr_engine_get_stats(fx->eng, &st);
	assert_int_equal(st.retries, 1);
	fixture_free(fx);
}

static void test_retry_after_ms_wins_and_http_dates_work(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(CLOSE_REPLY("503 Service Unavailable",
	                                             "retry-after-ms: 150\r\nRetry-After: 30\r\n",
	                                             ERR_BODY("busy")),
	                                 TS_SEND_CLOSE, 2, 2);
	int attempts;
	double secs;
	assert_int_equal(one(fx, &attempts, &secs), LR_OK);
	assert_int_equal(attempts, 3);
	assert_true(secs >= 0.3 && secs < 20); /* 2 x 150 ms, not 2 x 30 s */
	fixture_free(fx);
	/* A date in the past: no wait at all. */
	fx = fixture_new(CLOSE_REPLY("429 Too Many Requests", "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n",
	                             ERR_BODY("later")),
	                 TS_SEND_CLOSE, 3, 3);
	assert_int_equal(one(fx, &attempts, &secs), LR_OK);
	assert_int_equal(attempts, 4);
	/* Three retries: the default backoff would take at least 2.6 s
	 * (0.5 + 1 + 2 s, less 25 % jitter), so a loaded machine still
	 * tells "no wait" from it. */
	assert_true(secs < 2);
	fixture_free(fx);
}

static void test_backoff_without_retry_after_starts_near_half_a_second(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(CLOSE_REPLY("500 Internal Server Error", "", ERR_BODY("oops")),
	                                 TS_SEND_CLOSE, 1, 2);
	int attempts;
	double secs;
	assert_int_equal(one(fx, &attempts, &secs), LR_OK);
	assert_int_equal(attempts, 2);
	assert_true(secs >= 0.37); /* 0.5 s less at most 25% jitter */
	fixture_free(fx);
}

static void test_gives_up_after_max_retries_with_the_last_error(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(CLOSE_REPLY("502 Bad Gateway", "retry-after-ms: 10\r\n",
	                                             ERR_BODY("gateway")),
	                                 TS_SEND_CLOSE, 100, 2);
	int attempts;
	double secs;
	assert_int_equal(one(fx, &attempts, &secs), LR_ESERVER);
	assert_int_equal(attempts, 3);
	assert_int_equal(atomic_load(&fx->sc.seen), 3);
	fixture_free(fx);
	/* max_retries 0: one attempt. */
	fx = fixture_new(CLOSE_REPLY("502 Bad Gateway", "", ERR_BODY("gateway")), TS_SEND_CLOSE, 100, 0);
	assert_int_equal(one(fx, &attempts, &secs), LR_ESERVER);
	assert_int_equal(attempts, 1);
	fixture_free(fx);
}

static void test_client_errors_and_quota_are_never_retried(void **state)
{
	(void)state;
	static const char *const replies[] = {
		CLOSE_REPLY("400 Bad Request", "", ERR_BODY("bad")),
		CLOSE_REPLY("401 Unauthorized", "", ERR_BODY("who")),
		CLOSE_REPLY("404 Not Found", "", ERR_BODY("where")),
		CLOSE_REPLY("429 Too Many Requests", "Retry-After: 0\r\n",
		            "{\"error\":{\"message\":\"quota\",\"type\":\"insufficient_quota\","
		            "\"code\":\"insufficient_quota\"}}"),
		CLOSE_REPLY("500 Internal Server Error", "x-should-retry: false\r\n", ERR_BODY("final")),
	};
	static const int codes[] = {LR_EBADREQUEST, LR_EAUTH, LR_ENOTFOUND, LR_EQUOTA, LR_ESERVER};
	for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
		struct fixture *fx = fixture_new(replies[i], TS_SEND_CLOSE, 100, 2);
		int attempts;
		double secs;
		assert_int_equal(one(fx, &attempts, &secs), codes[i]);
		assert_int_equal(attempts, 1);
		assert_int_equal(atomic_load(&fx->sc.seen), 1);
		fixture_free(fx);
	}
}

static void test_should_retry_true_retries_even_a_400(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(CLOSE_REPLY("400 Bad Request",
	                                             "x-should-retry: true\r\nretry-after-ms: 1\r\n", ERR_BODY("b")),
	                                 TS_SEND_CLOSE, 1, 2);
	int attempts;
	double secs;
	assert_int_equal(one(fx, &attempts, &secs), LR_OK);
	assert_int_equal(attempts, 2);
	fixture_free(fx);
}

static void test_408_409_and_529_are_retried(void **state)
{
	(void)state;
	static const char *const replies[] = {
		CLOSE_REPLY("408 Request Timeout", "retry-after-ms: 1\r\n", ERR_BODY("t")),
		CLOSE_REPLY("409 Conflict", "retry-after-ms: 1\r\n", ERR_BODY("c")),
		CLOSE_REPLY("529 Overloaded", "retry-after-ms: 1\r\n", ERR_BODY("o")),
	};
	for (size_t i = 0; i < 3; i++) {
		struct fixture *fx = fixture_new(replies[i], TS_SEND_CLOSE, 1, 2);
		int attempts;
		double secs;
		assert_int_equal(one(fx, &attempts, &secs), LR_OK);
		assert_int_equal(attempts, 2);
		fixture_free(fx);
	}
}

static void test_connection_resets_are_retried(void **state)
{
	(void)state;
	/* Reset before any response byte, twice, then an answer. */
	struct fixture *fx = fixture_new("", TS_RESET, 2, 2);
	int attempts;
	double secs;
	assert_int_equal(one(fx, &attempts, &secs), LR_OK);
	assert_int_equal(attempts, 3);
	fixture_free(fx);
	/* Reset in the middle of a body: nothing reached the caller yet. */
	fx = fixture_new("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\":",
	                 TS_RESET, 1, 2);
	assert_int_equal(one(fx, &attempts, &secs), LR_OK);
	assert_int_equal(attempts, 2);
	fixture_free(fx);
}

/* ---- streams ---- */

#define SSE_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
#define SSE_DELTA "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
#define SSE_ERROR "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n"

static void count_delta(void *user, const lr_delta *d)
{
	(void)d;
	atomic_fetch_add((_Atomic int *)user, 1);
}

static int one_stream(struct fixture *fx, _Atomic int *deltas, int *attempts)
{
	lr_request *rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "hi");
	lr_request_on_delta(rq, count_delta, deltas);
	lr_future *f = lr_submit(fx->eng, rq);
	assert_int_equal(lr_future_wait(f, 30000), 1);
	int err = lr_future_result(f)->error;
	*attempts = lr_future_result(f)->attempts;
	lr_future_release(f);
	return err;
}

static void test_stream_error_before_the_first_delta_is_retried(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(SSE_HEAD SSE_ERROR, TS_SEND_CLOSE, 1, 2);
	_Atomic int deltas = 0;
	int attempts;
	/* The retry gets the plain 200 (not a stream): a whole reply. */
	assert_int_equal(one_stream(fx, &deltas, &attempts), LR_OK);
	assert_int_equal(attempts, 2);
	fixture_free(fx);
}

static void test_stream_error_after_a_delta_is_not_retried(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(SSE_HEAD SSE_DELTA SSE_ERROR, TS_SEND_CLOSE, 1, 2);
	_Atomic int deltas = 0;
	int attempts;
	assert_int_equal(one_stream(fx, &deltas, &attempts), LR_ESERVER);
	assert_int_equal(attempts, 1);
	assert_int_equal(atomic_load(&deltas), 1); /* never delivered twice */
	assert_int_equal(atomic_load(&fx->sc.seen), 1);
	fixture_free(fx);
}

/* ---- waiting retries ---- */

static void test_cancel_while_waiting_to_retry(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(CLOSE_REPLY("429 Too Many Requests", "Retry-After: 30\r\n", ERR_BODY("x")),
	                                 TS_SEND_CLOSE, 100, 2);
	lr_future *f = submit(fx->eng);
	/* Wait until the first attempt was answered, then cancel. */
	for (int i = 0; i < 500 && atomic_load(&fx->sc.seen) == 0; i++)
		nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
	nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
	double t0 = now_s();
	lr_future_cancel(f);
	assert_int_equal(lr_future_wait(f, 5000), 1);
	assert_true(now_s() - t0 < 15); /* a hang guard: the wait was 30 s */
	assert_int_equal(lr_future_result(f)->error, LR_ECANCELLED);
	lr_future_release(f);
	/* And a retry still waiting when the engine goes away. */
	f = submit(fx->eng);
	for (int i = 0; i < 500 && atomic_load(&fx->sc.seen) < 2; i++)
		nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
	nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
	t0 = now_s();
	lr_engine_destroy(fx->eng);
	fx->eng = NULL;
	assert_true(now_s() - t0 < 15); /* a hang guard: the wait was 30 s */
	assert_int_equal(lr_future_result(f)->error, LR_ECANCELLED);
	lr_future_release(f);
	test_server_stop(fx->srv);
	free(fx);
}

static void test_429_storm_ends_with_every_request_succeeded(void **state)
{
	(void)state;
	/* The first 120 answers are 429 with a short Retry-After. */
	struct fixture *fx = fixture_new(CLOSE_REPLY("429 Too Many Requests", "retry-after-ms: 20\r\n",
	                                             ERR_BODY("storm")),
	                                 TS_SEND_CLOSE, 120, 5);
	enum { N = 100 };
	lr_future *fs[N];
	for (int i = 0; i < N; i++)
		fs[i] = submit(fx->eng);
	int retried = 0;
	for (int i = 0; i < N; i++) {
		assert_int_equal(lr_future_wait(fs[i], 30000), 1);
		const lr_result *r = lr_future_result(fs[i]);
		if (r->error)
			fail_msg("request %d: %s after %d attempts", i, r->error_message, r->attempts);
		retried += r->attempts - 1;
		lr_future_release(fs[i]);
	}
	lr_engine_stats st;
	lr_engine_get_stats(fx->eng, &st);
	assert_int_equal(retried, 120);
	assert_int_equal(st.retries, 120);
	assert_int_equal(atomic_load(&fx->sc.seen), N + 120);
	fixture_free(fx);
}

static void test_per_request_max_retries(void **state)
{
	(void)state;
	struct fixture *fx = fixture_new(CLOSE_REPLY("500 Internal Server Error", "retry-after-ms: 1\r\n",
	                                             ERR_BODY("x")),
	                                 TS_SEND_CLOSE, 100, 2);
	lr_request *rq = lr_request_new("gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "hi");
	assert_int_equal(lr_request_set_max_retries(rq, 4), 0);
	assert_int_equal(lr_request_set_max_retries(rq, -1), LR_EINVAL);
	lr_future *f = lr_submit(fx->eng, rq);
	assert_int_equal(lr_future_wait(f, 30000), 1);
	assert_int_equal(lr_future_result(f)->attempts, 5);
	lr_future_release(f);
	fixture_free(fx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_429_with_retry_after_is_retried_after_the_wait),
		cmocka_unit_test(test_retry_after_ms_wins_and_http_dates_work),
		cmocka_unit_test(test_backoff_without_retry_after_starts_near_half_a_second),
		cmocka_unit_test(test_gives_up_after_max_retries_with_the_last_error),
		cmocka_unit_test(test_client_errors_and_quota_are_never_retried),
		cmocka_unit_test(test_should_retry_true_retries_even_a_400),
		cmocka_unit_test(test_408_409_and_529_are_retried),
		cmocka_unit_test(test_connection_resets_are_retried),
		cmocka_unit_test(test_stream_error_before_the_first_delta_is_retried),
		cmocka_unit_test(test_stream_error_after_a_delta_is_not_retried),
		cmocka_unit_test(test_cancel_while_waiting_to_retry),
		cmocka_unit_test(test_429_storm_ends_with_every_request_succeeded),
		cmocka_unit_test(test_per_request_max_retries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

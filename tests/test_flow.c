/*
 * The engine as bulk jobs and servers use it: rate limits (asserting the
 * bound over a window, not a duration), the concurrency cap, usage and
 * cost totals, then-callbacks, gather, the blocking helpers, sessions,
 * progress, and the host-loop mode driven from a poll loop.
 */
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
#include <unistd.h>

#include <cmocka.h>

#include "format/json.h"
#include "llmring.h"
#include "mock_server.h"
#include "test_server.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct mock_server *start_mock(unsigned tokens, unsigned ttft_ms)
{
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = tokens;
	o.ttft_ms = ttft_ms;
	struct mock_server *s = NULL;
	assert_int_equal(mock_server_start(&o, &s), 0);
	return s;
}

static lr_config mock_config(struct mock_server *s, char *url, size_t cap)
{
	snprintf(url, cap, "http://127.0.0.1:%u", mock_server_port(s));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	return cfg;
}

static lr_request *chat(const char *model, const char *text)
{
	lr_request *rq = lr_request_new(model);
	lr_request_add_message(rq, LR_ROLE_USER, text);
	return rq;
}

/* ---- rate limits ---- */

/* With rpm R the engine may send at most R/60 at once and R/60 a second
 * after that: n requests need at least (n - R/60) / (R/60) seconds. */
static void test_requests_per_minute_bound_holds(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(2, 0);
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	cfg.requests_per_minute = 1200; /* 20 a second, a burst of 20 */
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	enum { N = 50 };
	lr_future *fs[N];
	double t0 = now_s();
	for (int i = 0; i < N; i++)
		fs[i] = lr_submit(e, chat("gpt-4o-mini", "hi"));
	assert_int_equal(lr_wait_all(fs, N, 30000), N);
	double secs = now_s() - t0;
	assert_true(secs >= (N - 20) / 20.0 * 0.95);
	for (int i = 0; i < N; i++) {
		assert_int_equal(lr_future_result(fs[i])->error, LR_OK);
		/* Waiting for the bucket counts as queueing. */
		lr_future_release(fs[i]);
	}
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_tokens_per_minute_bound_holds(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(500, 0); /* replies of 500 tokens */
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	cfg.tokens_per_minute = 60000; /* 1,000 tokens a second, a burst of 1,000 */
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	enum { N = 12 };
	lr_future *fs[N];
	double t0 = now_s();
	for (int i = 0; i < N; i++) {
		lr_request *rq = chat("gpt-4o-mini", "hi");
		lr_request_set_max_tokens(rq, 500); /* estimated at ~500 tokens each */
		fs[i] = lr_submit(e, rq);
	}
	assert_int_equal(lr_wait_all(fs, N, 30000), N);
	double secs = now_s() - t0;
	/* Each request uses ~501 tokens (estimated ~520, corrected with the
	 * usage): ~6,000 in all at 1,000 a second after a 1,000 burst. */
	int64_t used = 0;
	for (int i = 0; i < N; i++)
		used += lr_future_result(fs[i])->usage.input_tokens + lr_future_result(fs[i])->usage.output_tokens;
	assert_true(used >= N * 500);
	assert_true(secs >= (double)(used - 1000 - 520) / 1000 * 0.95);
	for (int i = 0; i < N; i++) {
		assert_int_equal(lr_future_result(fs[i])->error, LR_OK);
		lr_future_release(fs[i]);
	}
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* ---- the concurrency cap, measured at the server ---- */

static _Atomic int at_server, most_at_server;

static void slow_ok(void *ctx, const struct ts_request *rq, struct ts_reply *reply)
{
	(void)ctx;
	(void)rq;
	int now = atomic_fetch_add(&at_server, 1) + 1;
	int most = atomic_load(&most_at_server);
	while (now > most && !atomic_compare_exchange_weak(&most_at_server, &most, now))
		;
	nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
	atomic_fetch_sub(&at_server, 1);
	reply->data = ts_ok_response;
	reply->len = strlen(ts_ok_response);
	reply->action = TS_SEND;
}

static void test_never_more_in_flight_than_the_cap(void **state)
{
	(void)state;
	struct test_server *srv = NULL;
	assert_int_equal(test_server_start(slow_ok, NULL, &srv), 0);
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", test_server_port(srv));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.max_in_flight = 5;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	enum { N = 40 };
	lr_future *fs[N];
	for (int i = 0; i < N; i++)
		fs[i] = lr_submit(e, chat("gpt-4o-mini", "hi"));
	assert_int_equal(lr_wait_all(fs, N, 30000), N);
	assert_true(atomic_load(&most_at_server) <= 5);
	assert_true(atomic_load(&most_at_server) >= 2); /* and it did run requests side by side */
	/* The last ones waited for a slot: it shows in their queueing time. */
	assert_true(lr_future_result(fs[N - 1])->timings.queued_ms >= 20);
	for (int i = 0; i < N; i++)
		lr_future_release(fs[i]);
	lr_engine_destroy(e);
	test_server_stop(srv);
}

/* ---- usage and cost ---- */

static void test_usage_totals_equal_the_sum_of_results(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(7, 0);
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	cfg.max_retries = 0;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	const char *models[] = {"gpt-4o-mini", "anthropic/claude-haiku-4-5", "mock/any", "gpt-4o-mini"};
	enum { N = 40 };
	lr_future *fs[N];
	for (int i = 0; i < N; i++) {
		lr_request *rq = chat(models[i % 4], "one two three");
		lr_request_set_max_tokens(rq, 50);
		if (i == 7)
			lr_request_add_header(rq, "x-mock-fault", "500"); /* one failure */
		fs[i] = lr_submit(e, rq);
	}
	assert_int_equal(lr_wait_all(fs, N, 30000), N);
	int64_t in = 0, out = 0;
	double cost = 0;
	int ok = 0;
	for (int i = 0; i < N; i++) {
		const lr_result *r = lr_future_result(fs[i]);
		in += r->usage.input_tokens;
		out += r->usage.output_tokens;
		ok += r->error == LR_OK;
		if (r->cost_usd > 0)
			cost += r->cost_usd;
		if (r->error == LR_OK && strcmp(r->provider, "mock") == 0)
			assert_true(r->cost_usd < 0); /* "any" has no price */
		if (r->error == LR_OK && strcmp(r->provider, "openai") == 0)
			assert_true(r->cost_usd > 0);
		lr_future_release(fs[i]);
	}
	assert_int_equal(ok, N - 1); /* one failure never fails the others */
	lr_usage_report rep;
	lr_model_usage mu[8];
	int n = lr_engine_usage(e, &rep, mu, 8);
	assert_int_equal(rep.requests, N);
	assert_int_equal(rep.succeeded, N - 1);
	assert_int_equal(rep.failed, 1);
	assert_int_equal(rep.input_tokens, in);
	assert_int_equal(rep.output_tokens, out);
	assert_true(rep.cost_usd > 0);
	assert_true(rep.cost_usd > cost * 0.999999 && rep.cost_usd < cost * 1.000001);
	assert_true(n >= 3);
	assert_int_equal(rep.unpriced_models, 1 + (n > 3)); /* "any", and "(unknown)" for the failure */
	/* gpt-4o-mini: 20 requests less the failure, 3 prompt words each. */
	bool found = false;
	for (int i = 0; i < n && i < 8; i++) {
		if (strcmp(mu[i].model, "gpt-4o-mini") == 0) {
			found = true;
			assert_true(mu[i].priced);
			assert_int_equal(mu[i].provider[0] != '\0', 1);
			double pin, pcached, pout;
			assert_int_equal(lr_engine_price(e, "gpt-4o-mini-2024-07-18", &pin, &pcached, &pout), 0);
			double want = ((double)mu[i].input_tokens * pin + (double)mu[i].output_tokens * pout) / 1e6;
			assert_true(mu[i].cost_usd > want * 0.999999 && mu[i].cost_usd < want * 1.000001);
		}
	}
	assert_true(found);
	assert_int_equal(lr_engine_price(e, "no-such-model", NULL, NULL, NULL), LR_ENOTFOUND);
	/* Batch rates: the batch API's half; none for a model without one. */
	double bin = -1, bcached = -1, bout = -1;
	assert_int_equal(lr_engine_batch_price(e, "openai/gpt-4o-mini-2024-07-18", &bin, &bcached,
	                                       &bout), 0);
	assert_float_equal(bin, 0.075, 1e-12);
	assert_float_equal(bcached, 0.0375, 1e-12);
	assert_float_equal(bout, 0.30, 1e-12);
	assert_int_equal(lr_engine_batch_price(e, "chatgpt-4o-latest", NULL, NULL, NULL),
	                 LR_ENOTFOUND);
	assert_int_equal(lr_engine_price(e, "chatgpt-4o-latest", NULL, NULL, NULL), 0);
	assert_int_equal(lr_engine_batch_price(e, "no-such-model", NULL, NULL, NULL), LR_ENOTFOUND);
	assert_int_equal(lr_engine_batch_price(NULL, "gpt-4o", NULL, NULL, NULL), LR_EINVAL);
	assert_int_equal(lr_engine_batch_price(e, NULL, NULL, NULL, NULL), LR_EINVAL);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

struct reader_arg {
	lr_engine *e;
	_Atomic int stop;
	int inconsistent;
	int reads;
};

/* Reads while the engine writes: every report must add up. */
static void *usage_reader(void *arg)
{
	struct reader_arg *ra = arg;
	while (!atomic_load(&ra->stop)) {
		lr_usage_report rep;
		lr_model_usage mu[4];
		int n = lr_engine_usage(ra->e, &rep, mu, 4);
		int64_t in = 0;
		uint64_t req = 0;
		for (int i = 0; i < n && i < 4; i++) {
			in += mu[i].input_tokens;
			req += mu[i].requests;
		}
		if (n <= 4 && (in != rep.input_tokens || req != rep.requests))
			ra->inconsistent++;
		ra->reads++;
	}
	return NULL;
}

static void test_usage_is_consistent_while_written(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(3, 0);
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	struct reader_arg ra = {.e = e};
	pthread_t t;
	pthread_create(&t, NULL, usage_reader, &ra);
	enum { N = 2000 };
	lr_future **fs = calloc(N, sizeof(*fs));
	for (int i = 0; i < N; i++)
		fs[i] = lr_submit(e, chat(i % 2 ? "gpt-4o" : "gpt-4o-mini", "a b"));
	assert_int_equal(lr_wait_all(fs, N, 60000), N);
	atomic_store(&ra.stop, 1);
	pthread_join(t, NULL);
	assert_int_equal(ra.inconsistent, 0);
	assert_true(ra.reads > 0);
	for (int i = 0; i < N; i++)
		lr_future_release(fs[i]);
	free(fs);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_prices_file_replaces_the_table(void **state)
{
	(void)state;
	char path[] = "/tmp/llmring-prices-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *json = "{\"version\":1,\"prices\":{\"any\":{\"input\":1000,\"output\":2000}}}";
	assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
	close(fd);
	struct mock_server *s = start_mock(4, 0);
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	cfg.prices_file = path;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	lr_future *f = lr_complete(e, chat("mock/any", "x y"), 10000);
	const lr_result *r = lr_future_result(f);
	assert_int_equal(r->error, LR_OK);
	/* 2 prompt tokens at $1000/M + 4 completion tokens at $2000/M */
	assert_true(r->cost_usd > 0.00999 && r->cost_usd < 0.01001);
	lr_future_release(f);
	assert_int_equal(lr_engine_price(e, "gpt-4o-mini", NULL, NULL, NULL), LR_ENOTFOUND);
	lr_engine_destroy(e);
	/* A file that cannot be used stops the engine from starting. */
	cfg.prices_file = "/nonexistent/prices.json";
	assert_int_equal(lr_engine_new(&cfg, &e), LR_EINVAL);
	unlink(path);
	mock_server_stop(s);
}

/* ---- then, gather, blocking helpers ---- */

struct then_seen {
	_Atomic int calls;
	_Atomic int error;
};

static void on_then(void *user, lr_future *f)
{
	struct then_seen *t = user;
	atomic_store(&t->error, lr_future_result(f)->error);
	atomic_fetch_add(&t->calls, 1);
}

static void test_then_runs_once_before_or_after_completion(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(2, 100);
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	/* Registered while in flight: runs on completion. */
	struct then_seen a = {0};
	lr_future *f = lr_submit(e, chat("gpt-4o-mini", "x"));
	assert_int_equal(lr_future_then(f, on_then, &a), 0);
	assert_int_equal(lr_future_then(f, on_then, &a), LR_EINVAL); /* one per future */
	lr_future_wait(f, 10000);
	for (int i = 0; i < 100 && atomic_load(&a.calls) == 0; i++)
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	assert_int_equal(atomic_load(&a.calls), 1);
	/* Registered after completion: runs at once, here. */
	struct then_seen b = {0};
	lr_future *g = lr_submit(e, chat("gpt-4o-mini", "x"));
	lr_future_wait(g, 10000);
	assert_int_equal(lr_future_then(g, on_then, &b), 0);
	assert_int_equal(atomic_load(&b.calls), 1);
	/* A request refused at submission: the callback still runs once. */
	struct then_seen c = {0};
	lr_request *bad = lr_request_new(NULL);
	lr_future *h = lr_submit(e, bad);
	assert_int_equal(lr_future_then(h, on_then, &c), 0);
	assert_int_equal(atomic_load(&c.calls), 1);
	assert_int_equal(atomic_load(&c.error), LR_EINVAL);
	lr_future_release(f);
	lr_future_release(g);
	lr_future_release(h);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_run_batch_and_complete(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(3, 0);
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	cfg.max_retries = 0;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	lr_request *rqs[6];
	lr_future *out[6];
	for (int i = 0; i < 6; i++) {
		rqs[i] = chat("gpt-4o-mini", "hello");
		if (i == 2)
			lr_request_add_header(rqs[i], "x-mock-fault", "503");
	}
	assert_int_equal(lr_run_batch(e, rqs, 6, out, 10000), 5);
	assert_int_equal(lr_future_result(out[2])->error, LR_EOVERLOADED);
	for (int i = 0; i < 6; i++)
		lr_future_release(out[i]);
	lr_future *f = lr_complete(e, chat("gpt-4o-mini", "hello"), 10000);
	assert_non_null(f);
	assert_true(lr_future_done(f));
	assert_int_equal(lr_future_result(f)->error, LR_OK);
	lr_future_release(f);
	lr_engine_destroy(e);
	/* Out of time: handed back cancelled. */
	mock_server_stop(s);
	s = start_mock(3, 3000);
	cfg = mock_config(s, url, sizeof(url));
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	f = lr_complete(e, chat("gpt-4o-mini", "hello"), 100);
	assert_int_equal(lr_future_result(f)->error, LR_ECANCELLED);
	lr_future_release(f);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* ---- sessions ---- */

static void test_sessions_keep_history(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(3, 100); /* turns stay in flight a while */
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	cfg.max_retries = 0;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	lr_session *a = lr_session_new(e, "anthropic/claude-haiku-4-5", "be brief");
	lr_session *b = lr_session_new(e, "gpt-4o-mini", NULL);
	assert_non_null(a);
	assert_non_null(b);
	int64_t prompt_before = 0;
	for (int turn = 0; turn < 3; turn++) {
		lr_future *fa = lr_session_send(a, "one two");
		lr_future *fb = lr_session_send(b, "three");
		/* One turn at a time per session. */
		lr_future *busy = lr_session_send(a, "too soon");
		assert_int_equal(lr_future_wait(busy, 1000), 1);
		assert_int_equal(lr_future_result(busy)->error, LR_EINVAL);
		lr_future_release(busy);
		assert_int_equal(lr_future_wait(fa, 10000), 1);
		assert_int_equal(lr_future_wait(fb, 10000), 1);
		const lr_result *ra = lr_future_result(fa);
		assert_int_equal(ra->error, LR_OK);
		/* Each turn sends the whole history: the prompt grows. */
		assert_true(ra->usage.input_tokens > prompt_before);
		prompt_before = ra->usage.input_tokens;
		lr_future_release(fa);
		lr_future_release(fb);
		/* The history is appended from the completion callback. */
		for (int i = 0; i < 100 && lr_session_turns(a) < turn + 1; i++)
			nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
		assert_int_equal(lr_session_turns(a), turn + 1);
	}
	/* A failed turn leaves the history as it was. */
	for (int i = 0; i < 100 && lr_session_turns(b) < 3; i++)
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	lr_future *bad = lr_session_send(b, "mock-fault:malformed");
	lr_future_wait(bad, 10000);
	assert_int_not_equal(lr_future_result(bad)->error, LR_OK);
	lr_future_release(bad);
	nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
	assert_int_equal(lr_session_turns(b), 3);
	char *h = lr_session_history(a);
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, h, strlen(h)), 0);
	assert_int_equal(d.tok[0].type, JSON_ARRAY);
	assert_int_equal(d.tok[0].size, 1 + 3 * 2); /* system + 3 x (user, assistant) */
	json_doc_free(&d);
	free(h);
	/* Freed with a turn in flight: the turn completes without it. */
	lr_future *last = lr_session_send(a, "bye");
	lr_session_free(a);
	lr_future_wait(last, 10000);
	lr_future_release(last);
	lr_session_free(b);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* ---- progress ---- */

struct progress_seen {
	_Atomic int calls;
	pthread_mutex_t mu; /* last is written on the engine thread, read here */
	lr_progress last;
};

static lr_progress progress_last(struct progress_seen *ps)
{
	pthread_mutex_lock(&ps->mu);
	lr_progress p = ps->last;
	pthread_mutex_unlock(&ps->mu);
	return p;
}

static void on_progress(void *user, const lr_progress *p)
{
	struct progress_seen *ps = user;
	pthread_mutex_lock(&ps->mu);
	ps->last = *p;
	pthread_mutex_unlock(&ps->mu);
	atomic_fetch_add(&ps->calls, 1);
}

static void test_progress_reports_counts(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(2, 0);
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	struct progress_seen ps = {.mu = PTHREAD_MUTEX_INITIALIZER};
	cfg.on_progress = on_progress;
	cfg.progress_user = &ps;
	cfg.progress_interval_ms = -1; /* every change */
	cfg.max_retries = 1;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	enum { N = 20 };
	lr_future *fs[N];
	for (int i = 0; i < N; i++) {
		lr_request *rq = chat("gpt-4o-mini", "p");
		if (i == 3) {
			lr_request_add_header(rq, "x-mock-fault", "500");
			lr_request_set_max_retries(rq, 1);
		}
		fs[i] = lr_submit(e, rq);
	}
	assert_int_equal(lr_wait_all(fs, N, 30000), N);
	for (int i = 0; i < 200 && progress_last(&ps).succeeded + progress_last(&ps).failed < N; i++)
		nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
	lr_engine_destroy(e); /* the last report has happened by now */
	assert_true(atomic_load(&ps.calls) > 1);
	assert_int_equal(ps.last.submitted, N);
	assert_int_equal(ps.last.succeeded, N - 1);
	assert_int_equal(ps.last.failed, 1);
	assert_int_equal(ps.last.retried, 1);
	assert_int_equal(ps.last.in_flight, 0);
	assert_true(ps.last.cost_usd > 0);
	for (int i = 0; i < N; i++)
		lr_future_release(fs[i]);
	mock_server_stop(s);
}

/* ---- the host loop ---- */

static void test_host_loop_with_poll_and_next_deadline(void **state)
{
	(void)state;
	struct mock_server *s = start_mock(2, 50);
	char url[64];
	lr_config cfg = mock_config(s, url, sizeof(url));
	cfg.drive_from_caller = 1;
	cfg.reap_completions = 1;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	enum { N = 10 };
	for (int i = 0; i < N; i++)
		lr_future_release(lr_submit(e, chat("gpt-4o-mini", "x")));
	int done = 0, loops = 0;
	int fd = lr_engine_completion_fd(e);
	assert_true(fd >= 0);
	while (done < N && loops++ < 10000) {
		/* The program's own loop: poll its fds and ours, with our
		 * deadline, then let the engine move without blocking. */
		int wait = lr_engine_next_deadline_ms(e);
		assert_true(wait >= -1);
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		poll(&pfd, 1, wait < 0 || wait > 100 ? 100 : wait);
		assert_int_equal(lr_engine_run(e, 0), 0);
		lr_future *out[N];
		int n = lr_engine_reap(e, out, N, 0);
		assert_true(n >= 0);
		for (int k = 0; k < n; k++) {
			assert_int_equal(lr_future_result(out[k])->error, LR_OK);
			lr_future_release(out[k]);
		}
		done += n;
	}
	assert_int_equal(done, N);
	/* Everything done: no timer left but the pool's idle ones. */
	assert_true(lr_engine_next_deadline_ms(e) != 0);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests_per_minute_bound_holds),
		cmocka_unit_test(test_tokens_per_minute_bound_holds),
		cmocka_unit_test(test_never_more_in_flight_than_the_cap),
		cmocka_unit_test(test_usage_totals_equal_the_sum_of_results),
		cmocka_unit_test(test_usage_is_consistent_while_written),
		cmocka_unit_test(test_prices_file_replaces_the_table),
		cmocka_unit_test(test_then_runs_once_before_or_after_completion),
		cmocka_unit_test(test_run_batch_and_complete),
		cmocka_unit_test(test_sessions_keep_history),
		cmocka_unit_test(test_progress_reports_counts),
		cmocka_unit_test(test_host_loop_with_poll_and_next_deadline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

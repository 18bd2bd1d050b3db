/*
 * A ring the kernel refuses for good (an io_uring enter that fails with
 * neither EINTR, EAGAIN, EBUSY nor ETIME) never aborts the process: every
 * request the engine holds (on the wire, queued for a slot) ends with
 * LR_ESYSTEM and a message, later submissions fail the same way, the log
 * callback hears of it once, and lr_engine_destroy returns with nothing
 * leaked. The refusal comes from the library's ring_enter_fault seam
 * (util/test_hooks.h).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmring.h"
#include "test_server.h"
#include "util/test_hooks.h"

static _Atomic int enter_fault;      /* every enter, from when it is set */
static _Atomic int enter_fault_once; /* the next enter only */

int ring_enter_fault(void)
{
	int once = atomic_exchange(&enter_fault_once, 0);
	return once ? once : atomic_load(&enter_fault);
}

static _Atomic int log_lines;
static char last_log[256];

static void on_log(void *user, const char *line)
{
	(void)user;
	snprintf(last_log, sizeof(last_log), "%s", line);
	atomic_fetch_add(&log_lines, 1);
}

/* Answers nothing: requests stay on the wire until the engine ends them. */
static void never_answer(void *ctx, const struct ts_request *rq, struct ts_reply *reply)
{
	(void)ctx;
	(void)rq;
	reply->action = TS_HANG;
}

static lr_future *submit_one(lr_engine *e)
{
	lr_request *rq = lr_request_new("gpt-4o-mini");
	assert_non_null(rq);
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "hi"), 0);
	lr_future *f = lr_submit(e, rq);
	assert_non_null(f);
	return f;
}

static void assert_failed_by_the_ring(lr_future *f)
{
	assert_int_equal(lr_future_wait(f, 10000), 1);
	const lr_result *r = lr_future_result(f);
	assert_int_equal(r->error, LR_ESYSTEM);
	assert_non_null(r->error_message);
	assert_non_null(strstr(r->error_message, "io_uring failed"));
	assert_non_null(strstr(r->error_message, strerror(EBADF)));
	lr_future_release(f);
}

static lr_engine *engine_for(struct test_server *srv, int caller_driven)
{
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", test_server_port(srv));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.max_in_flight = 2; /* the rest wait for a slot */
	cfg.max_retries = 0;
	cfg.drive_from_caller = caller_driven;
	cfg.on_log = on_log;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	return e;
}

static void threaded_engine_fails_every_request_and_stops_cleanly(void **state)
{
	(void)state;
	struct test_server *srv = NULL;
	assert_int_equal(test_server_start(never_answer, NULL, &srv), 0);
	atomic_store(&enter_fault, 0);
	atomic_store(&log_lines, 0);
	lr_engine *e = engine_for(srv, 0);
	lr_future *held[5];
	for (int i = 0; i < 5; i++)
		held[i] = submit_one(e);
	/* Two on the wire, three queued: wait until the server has both. */
	for (int i = 0; i < 1000 && test_server_requests(srv) < 2; i++)
		usleep(2000);
	assert_int_equal(test_server_requests(srv), 2);
	atomic_store(&enter_fault, -EBADF);
	lr_future *wake = submit_one(e); /* its wake-up makes the loop enter again */
	for (int i = 0; i < 5; i++)
		assert_failed_by_the_ring(held[i]);
	assert_failed_by_the_ring(wake);
	/* Later submissions fail at once, the same way. */
	for (int i = 0; i < 3; i++)
		assert_failed_by_the_ring(submit_one(e));
	assert_int_equal(atomic_load(&log_lines), 1);
	assert_non_null(strstr(last_log, "io_uring failed"));
	lr_engine_destroy(e);
	atomic_store(&enter_fault, 0);
	test_server_stop(srv);
}

static void caller_driven_engine_reports_the_failure_from_run(void **state)
{
	(void)state;
	struct test_server *srv = NULL;
	assert_int_equal(test_server_start(never_answer, NULL, &srv), 0);
	atomic_store(&enter_fault, 0);
	lr_engine *e = engine_for(srv, 1);
	lr_future *held[3];
	for (int i = 0; i < 3; i++)
		held[i] = submit_one(e);
	for (int i = 0; i < 1000 && test_server_requests(srv) < 2; i++)
		lr_engine_run(e, 5);
	assert_int_equal(test_server_requests(srv), 2);
	atomic_store(&enter_fault, -EBADF);
	assert_int_equal(lr_engine_run(e, 100), LR_ESYSTEM);
	for (int i = 0; i < 3; i++)
		assert_failed_by_the_ring(held[i]);
	assert_int_equal(lr_engine_run(e, 0), LR_ESYSTEM);
	assert_failed_by_the_ring(submit_one(e)); /* lr_future_wait drives the turn */
	lr_engine_destroy(e);
	atomic_store(&enter_fault, 0);
	test_server_stop(srv);
}

static void a_transient_refusal_is_not_a_failure(void **state)
{
	(void)state;
	struct test_server *srv = NULL;
	assert_int_equal(test_server_start(never_answer, NULL, &srv), 0);
	lr_engine *e = engine_for(srv, 1);
	static const int transient[] = {-EINTR, -EAGAIN, -EBUSY, -ETIME};
	for (int i = 0; i < 4; i++) {
		atomic_store(&enter_fault_once, transient[i]);
		assert_int_equal(lr_engine_run(e, 0), 0);
	}
	/* the engine still works: a request reaches the server */
	lr_future *f = submit_one(e);
	for (int i = 0; i < 1000 && test_server_requests(srv) < 1; i++)
		lr_engine_run(e, 5);
	assert_int_equal(test_server_requests(srv), 1);
	lr_future_cancel(f);
	assert_int_equal(lr_future_wait(f, 5000), 1);
	assert_int_equal(lr_future_result(f)->error, LR_ECANCELLED);
	lr_future_release(f);
	lr_engine_destroy(e);
	test_server_stop(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(threaded_engine_fails_every_request_and_stops_cleanly),
		cmocka_unit_test(caller_driven_engine_reports_the_failure_from_run),
		cmocka_unit_test(a_transient_refusal_is_not_a_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

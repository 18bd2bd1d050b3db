/*
 * The loop: setup and teardown of the ring, the pool and the resolver on
 * the thread that drives them, one turn of the loop, the engine thread,
 * and driving from the caller's thread (drive_from_caller).
 *
 * Other threads hand requests in through a lock-free stack (Treiber push,
 * the engine takes the whole stack at once) and wake the engine with an
 * eventfd whose read is armed on the ring; the write happens only when the
 * stack was empty, so a busy engine costs submitters no syscall. The same
 * trick in the other direction feeds lr_engine_reap() (reap.c).
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/cache.h"
#include "core/engine_internal.h"
#include "util/errors.h"
#include "core/ratelimit.h"
#include "format/json.h"
#include "io/resolve.h"
#include "util/clock.h"
#include "llmring.h"

static void on_wake(struct ring_op *op, int res, unsigned flags)
{
	struct lr_engine *e = container_of(op, struct lr_engine, op_wake);
	e->wake_armed = false;
}

static void engine_arm_wake(struct lr_engine *e)
{
	struct io_uring_sqe *sqe = ring_sqe(&e->ring, &e->op_wake);
	io_uring_prep_read(sqe, e->wake_fd, &e->wake_value, sizeof(e->wake_value), 0);
	e->wake_armed = true;
}

/* Creates the ring and the pool on the thread that will drive them
 * (SINGLE_ISSUER ties a ring to its creator). 0, or an LR_E* with the
 * failed step in e->setup_error. */
int engine_setup(struct lr_engine *e)
{
	/* LLMRING_RING_PLAIN was read by lr_engine_create. */
	/* A caller-driven ring may be polled through the completion fd by a
	 * host loop (lr_engine_completion_fd), which DEFER_TASKRUN would
	 * signal late. Measured alike in CPU: 100,000-line batch, 0.65 s of
	 * user+system either way. */
	enum ring_kind kind = e->cfg.ring_plain         ? RING_PLAIN
	                      : e->cfg.drive_from_caller ? RING_POLLABLE
	                                                 : RING_DEFERRED;
	unsigned entries = e->cfg.ring_entries ? e->cfg.ring_entries : 256;
	/* Receive buffers for twice the requests in flight, 64 to 1,024: a
	 * buffer goes back to the ring as soon as its completion is read, and
	 * the ring hands them out in turn, so every buffer gets touched; at
	 * 64 requests 1,024 of them kept 4 MiB of pages resident (peak RSS
	 * 10.0 MiB, 6.4 with 128). Running short is handled (ENOBUFS: the
	 * receive is armed again next turn). */
	unsigned bufs = 64;
	while (bufs < 1024 && bufs < 2 * e->cfg.max_in_flight)
		bufs *= 2;
	int ret = ring_init(&e->ring, entries, bufs, 16384, kind);
	if (ret < 0)
		return error_set(&e->setup_error, error_from_errno(ret), -ret,
		                 "io_uring setup failed (%u entries, %u receive buffers): %s%s", entries, bufs,
		                 strerror(-ret),
		                 ret == -EPERM || ret == -ENOSYS
		                     ? " (io_uring is disabled here: kernel.io_uring_disabled, seccomp or a container)"
		                     : ret == -ENOMEM ? " (the locked-memory limit, ulimit -l, may be too low)" : "");
	/* The resolver's answers wake the loop through the same eventfd. */
	ret = resolver_new(e->wake_fd, 4, clock_seconds_to_ns(e->cfg.dns_ttl_s), &e->resolver);
	if (ret < 0) {
		ring_exit(&e->ring);
		return error_set(&e->setup_error, error_from_errno(ret), -ret,
		                 "starting the name resolver's threads failed: %s", strerror(-ret));
	}
	struct pool_config pc = {
		.resolver = e->resolver,
		.dns_ttl_ns = clock_seconds_to_ns(e->cfg.dns_ttl_s),
		.ca_file = e->ca_file,
		.insecure = e->cfg.insecure,
		.no_resumption = e->cfg.tls_no_resumption,
		.max_per_origin = e->cfg.max_conns_per_origin ? e->cfg.max_conns_per_origin
		                                              : e->cfg.max_in_flight,
		.idle_ns = clock_seconds_to_ns(e->cfg.pool_idle_s),
		.max_head_bytes = e->cfg.max_header_bytes,
		.max_body_bytes = e->cfg.max_body_bytes,
	};
	pool_init(&e->pool, &e->ring, &pc);
	e->op_wake.complete = on_wake;
	ring_timer_init(&e->limit_timer, limit_timer_fired);
	limits_init(&e->limits, e->cfg.requests_per_minute, e->cfg.tokens_per_minute, clock_now_ns());
	atomic_store(&e->ring_mode, e->ring.mode);
	return 0;
}

void engine_teardown(struct lr_engine *e)
{
	ring_timer_cancel(&e->ring, &e->limit_timer);
	engine_flush_reaped(e);
	engine_publish_stats(e);
	resolver_free(e->resolver);
	e->resolver = NULL;
	if (e->ring.failed)
		pool_abandon(&e->pool); /* their closes will never complete */
	pool_free(&e->pool);
	json_doc_free(&e->doc);
	ring_exit(&e->ring);
}

/*
 * One turn of the loop: take in submissions and cancels, wait for the
 * ring (at most max_wait_ns), dispatch, publish completions. Returns 1 to
 * go on, 0 once a requested shutdown has finished, or -errno when the
 * ring failed.
 */
/* The engine whose turn this thread is running: callbacks (on_delta,
 * then, on_progress) run inside one, and API calls that would wait for
 * that same turn to finish refuse instead of deadlocking. */
static __thread const struct lr_engine *tl_turn_engine;

bool in_engine_callback(const struct lr_engine *e)
{
	return e && tl_turn_engine == e;
}

/* The library never prints: what it has to say goes to cfg.on_log. */
__attribute__((format(printf, 2, 3))) static void engine_log(const struct lr_engine *e, const char *fmt, ...)
{
	if (!e->cfg.on_log)
		return;
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	e->cfg.on_log(e->cfg.log_user, line);
}

static int engine_turn_inner(struct lr_engine *e, uint64_t max_wait_ns);
int engine_turn(struct lr_engine *e, uint64_t max_wait_ns)
{
	const struct lr_engine *outer = tl_turn_engine;
	tl_turn_engine = e;
	int ret = engine_turn_inner(e, max_wait_ns);
	tl_turn_engine = outer;
	return ret;
}

/*
 * A turn after the ring broke (ring.failed: the kernel refused a submit or
 * an enter for good), when nothing on it will ever complete. The first
 * fails everything the engine holds with LR_ESYSTEM; later submissions
 * fail the same way (engine_accept); the loop waits on the wake eventfd
 * itself until the engine is destroyed. The library never aborts.
 */
static int engine_turn_broken(struct lr_engine *e, uint64_t max_wait_ns)
{
	if (!e->ring_broken) {
		e->ring_broken = true;
		error_set(&e->broken, LR_ESYSTEM, -e->ring.failed,
		          "the engine's io_uring failed: %s; every request fails until the engine is destroyed",
		          strerror(-e->ring.failed));
		engine_log(e, "%s", e->broken.message);
		engine_fail_held(e, e->broken.code, e->broken.message);
	}
	engine_drain_inbox(e);
	engine_flush_reaped(e);
	engine_report_progress(e);
	if (atomic_load_explicit(&e->stopping, memory_order_acquire))
		return 0;
	if (e->cfg.drive_from_caller)
		return -1; /* lr_engine_run reports LR_ESYSTEM; waits return */
	if (max_wait_ns == 0)
		return 1;
	int ms = max_wait_ns == UINT64_MAX ? -1 : (int)(max_wait_ns / 1000000u);
	struct pollfd pfd = {.fd = e->wake_fd, .events = POLLIN};
	if (poll(&pfd, 1, ms) > 0) {
		uint64_t v;
		ssize_t n = read(e->wake_fd, &v, sizeof(v));
		(void)n; /* only clears the signal: the inbox is looked at next turn */
	}
	return 1;
}

static int engine_turn_inner(struct lr_engine *e, uint64_t max_wait_ns)
{
	cache_kick(e); /* lookups submitted from this thread between turns */
	if (e->ring.failed)
		return engine_turn_broken(e, max_wait_ns);
	uint64_t completions_before = e->completions;
	/* One reading for all that this part of the turn starts: requests
	 * submitted since the last turn go on the wire stamped with it
	 * (pconn_send_request) instead of a reading each. */
	e->ring.now_ns = clock_now_ns();
	engine_drain_inbox(e);
	resolver_drain(e->resolver, e->ring.now_ns);
	if (!e->shutting_down && atomic_load_explicit(&e->stopping, memory_order_acquire)) {
		e->shutting_down = true;
		engine_shutdown(e);
	}
	if (e->shutting_down) {
		/* Abort whatever is still on the wire. */
		while (e->active.head)
			pool_abort(&e->pool, &e->active.head->ex, LR_ECANCELLED,
			           "the engine is shutting down");
		pool_close_idle(&e->pool);
		if (e->pool.open_conns == 0 && !e->wake_armed)
			return 0;
		if (e->wake_armed && e->pool.open_conns == 0) {
			struct io_uring_sqe *sqe = ring_sqe(&e->ring, NULL);
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)&e->op_wake, 0);
		}
	} else if (!e->wake_armed) {
		engine_arm_wake(e);
	}
	engine_flush_reaped(e);
	engine_report_progress(e);
	/* Futures completed without I/O this turn (a refused submission, a
	 * name that does not resolve, a bad CA bundle): nothing on the ring
	 * may ever wake the wait, and a caller-driven owner must get back to
	 * its caller to see them. */
	if (e->completions != completions_before)
		max_wait_ns = 0;
	cache_kick(e);
	if (ring_run_once(&e->ring, max_wait_ns))
		return engine_turn_broken(e, 0);
	engine_flush_reaped(e);
	cache_kick(e);
	return 1;
}

void *engine_thread(void *arg)
{
	struct lr_engine *e = arg;
	pthread_setname_np(pthread_self(), "llmring-engine");
	int ret = engine_setup(e);
	atomic_store(&e->start_result, ret < 0 ? ret : 1); /* after setup_error: seq_cst */
	futex((_Atomic uint32_t *)&e->start_result, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	if (ret < 0)
		return NULL;
	while (engine_turn(e, UINT64_MAX) > 0)
		;
	engine_teardown(e);
	if (e->self_free)
		engine_free_after_stop(e); /* lr_engine_destroy was called from a callback */
	return NULL;
}

/* In caller-driven mode, whether this thread drives the ring. */
bool engine_on_owner(const struct lr_engine *e)
{
	return e->cfg.drive_from_caller && pthread_equal(pthread_self(), e->owner);
}

/* Turns the loop on the caller's thread until done() or the timeout
 * (ms; <0 forever, 0 one turn without waiting). */
void engine_drive(struct lr_engine *e, int timeout_ms, bool (*done)(void *), void *arg)
{
	uint64_t deadline = timeout_ms > 0 ? clock_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
	for (;;) {
		if (done(arg))
			return;
		uint64_t wait = UINT64_MAX;
		if (timeout_ms == 0) {
			wait = 0;
		} else if (timeout_ms > 0) {
			uint64_t now = clock_now_ns();
			wait = now < deadline ? deadline - now : 0;
		}
		if (engine_turn(e, wait) <= 0 || wait == 0)
			return;
	}
}

LR_API int lr_engine_run(lr_engine *e, int timeout_ms)
{
	if (!e || !engine_on_owner(e) || in_engine_callback(e))
		return LR_EINVAL;
	/* The kernel's signals on the completion fd are consumed here: this
	 * turn handles whatever they announced. */
	uint64_t drained;
	while (read(e->completion_fd, &drained, sizeof(drained)) > 0)
		;
	/* One turn, waiting at most timeout_ms for the first completion. */
	uint64_t wait = timeout_ms < 0 ? UINT64_MAX : (uint64_t)timeout_ms * 1000000u;
	int ret = engine_turn(e, wait);
	return ret < 0 ? LR_ESYSTEM : 0;
}

LR_API int lr_engine_next_deadline_ms(lr_engine *e)
{
	if (!e || !e->cfg.drive_from_caller || !engine_on_owner(e))
		return LR_EINVAL;
	if (atomic_load_explicit(&e->submit_head, memory_order_acquire) ||
	    atomic_load_explicit(&e->cancel_head, memory_order_acquire) || e->reap_pending)
		return 0;
	if (!e->ring.heap_len)
		return -1;
	uint64_t at = e->ring.heap[0].deadline_ns, now = clock_now_ns();
	if (at <= now)
		return 0;
	uint64_t ms = (at - now + 999999u) / 1000000u;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

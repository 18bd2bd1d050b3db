/*
 * Scheduling on the engine thread: deadlines, admission over max_in_flight
 * and the rate limits, the submit and cancel inbox, shutdown, progress.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/cache.h"
#include "core/engine_internal.h"
#include "core/ratelimit.h"
#include "core/usage.h"
#include "util/clock.h"
#include "llmring.h"

static void wait_unlink(struct lr_engine *e, struct lr_future *f);
static void engine_requeue(struct lr_engine *e, struct lr_future *f);

/* One timer per future, re-armed lazily: progress only moves a
 * timestamp, and the timer checks it when it fires. */
void future_deadline_fired(struct ring_timer *t)
{
	struct lr_future *f = container_of(t, struct lr_future, deadline);
	struct lr_engine *e = f->eng;
	uint64_t now = e->ring.now_ns;
	struct http_exchange *ex = &f->ex;
	uint64_t total_at = f->attempt_ns + f->total_ns;
	if (f->state == F_BACKOFF) {
		/* Its backoff is over: back into the queue for a slot. */
		flist_unlink(&e->backoff, f);
		engine_requeue(e, f);
		return;
	}
	if (f->state == F_WAITING) {
		/* Still in the engine's queue: never sent, so nothing to abort. */
		wait_unlink(e, f);
		error_set(&f->err, LR_ETIMEOUT, 0,
		          "request exceeded its total timeout of %.3g s while queued for a slot",
		          (double)f->total_ns / 1e9);
		future_complete(f, f->err.code, f->err.message);
		return;
	}
	if (e->cfg.queue_wait_untimed) {
		/* Waiting for a socket (fd back-pressure) does not count
		 * either: the attempt's clock restarts when it gets one. */
		if (ex->phase == EX_QUEUED) {
			/* Looks again as the other phases do, so the connect
			 * deadline after the wait is checked in time. */
			if (ring_timer_set(&e->ring, &f->deadline,
			                   now + min_u64(f->total_ns, min_u64(f->connect_ns, f->idle_ns))))
				pool_abort(&e->pool, ex, LR_ENOMEM, NULL);
			return;
		}
		if (ex->dequeued_ns > f->attempt_ns)
			total_at = ex->dequeued_ns + f->total_ns;
	}
	if (now >= total_at) {
		error_set(&f->err, LR_ETIMEOUT, 0, "request exceeded its total timeout of %.3g s",
		          (double)f->total_ns / 1e9);
		pool_abort(&e->pool, ex, f->err.code, f->err.message);
		return;
	}
	/* The next look: exact for the phase we are in, and never later
	 * than the earliest a later phase's deadline could expire. */
	uint64_t next = total_at;
	uint64_t soonest_idle = now + f->idle_ns;
	if (ex->phase == EX_CONNECTING || ex->phase == EX_HANDSHAKE) {
		/* One connect deadline for each step of opening: the name, TCP,
		 * then TLS (which gets its own code: the peer answered TCP). */
		uint64_t at = ex->phase_start_ns + f->connect_ns;
		if (now >= at) {
			bool tls = ex->phase == EX_HANDSHAKE;
			error_set(&f->err, tls ? LR_ETLS_HANDSHAKE : LR_ETIMEOUT, 0,
			          "%s %s port %u timed out after %.3g s%s",
			          tls ? "TLS handshake with" : "connect to", origin_url(ex->origin)->host,
			          origin_url(ex->origin)->port, (double)f->connect_ns / 1e9,
			          tls ? " (the server accepted the connection but did not complete the handshake)"
			              : "");
			pool_abort(&e->pool, ex, f->err.code, f->err.message);
			return;
		}
		next = min_u64(next, min_u64(at, soonest_idle));
	} else if (ex->phase == EX_RECEIVING) {
		uint64_t at = ex->last_byte_ns + f->idle_ns;
		if (now >= at) {
			error_set(&f->err, LR_ETIMEOUT, 0, "no response data for %.3g s (idle timeout)",
			          (double)f->idle_ns / 1e9);
			pool_abort(&e->pool, ex, f->err.code, f->err.message);
			return;
		}
		next = min_u64(next, at);
	} else {
		next = min_u64(next, now + min_u64(f->connect_ns, f->idle_ns));
	}
	/* The timer has just left the heap, so there is room for it. */
	if (ring_timer_set(&e->ring, &f->deadline, next))
		pool_abort(&e->pool, ex, LR_ENOMEM, NULL);
}

static void future_start(struct lr_engine *e, struct lr_future *f)
{
	const struct url *u = f->own_url ? f->own_url : &e->ep[f->provider].url;
	struct origin *o = pool_origin(&e->pool, u);
	if (!o) {
		future_complete(f, LR_ENOMEM, NULL);
		return;
	}
	if (e->cfg.queue_wait_untimed)
		f->attempt_ns = e->ring.now_ns; /* the queue did not count */
	if (e->ring.now_ns >= f->attempt_ns + f->total_ns) {
		error_set(&f->err, LR_ETIMEOUT, 0,
		          "request exceeded its total timeout of %.3g s before it could be sent",
		          (double)f->total_ns / 1e9);
		future_complete(f, f->err.code, f->err.message);
		return;
	}
	/* First, so that a failure leaves nothing to undo. */
	if (ring_timer_set(&e->ring, &f->deadline,
	                   min_u64(f->attempt_ns + f->total_ns,
	                           e->ring.now_ns + min_u64(f->connect_ns, f->idle_ns)))) {
		future_complete(f, LR_ENOMEM, NULL);
		return;
	}
	f->attempts++;
	e->starts++;
	f->state = F_ACTIVE;
	f->start_ns = e->ring.now_ns;
	f->ex.h = &future_exchange_handler;
	f->ex.origin = o;
	f->ex.not_before_ns = f->submit_ns; /* queued_ms is never negative */
	f->ex.req = f->req_bytes.data;
	f->ex.req_len = f->req_bytes.len;
	f->ex.body_len = f->call ? f->call->send_len : 0;
	/* A body going to a sink is not held: only the buffered error body
	 * is capped (response.c). */
	f->ex.max_body_bytes = f->call && (f->call->sink || f->call->sink_fd >= 0) ? UINT64_MAX : 0;
	e->active_count++;
	flist_push_back(&e->active, f);
	pool_start(&e->pool, &f->ex);
}

/* Into the queue for a slot; the total deadline runs while it waits. */
static void engine_queue(struct lr_engine *e, struct lr_future *f)
{
	/* The total deadline runs while it waits for a slot (unless the
	 * owner asked for queue_wait_untimed). */
	if (!e->cfg.queue_wait_untimed &&
	    ring_timer_set(&e->ring, &f->deadline, f->attempt_ns + f->total_ns)) {
		future_complete(f, LR_ENOMEM, NULL);
		return;
	}
	f->state = F_WAITING;
	flist_push_back(&e->waiting, f);
	engine_start_waiting(e);
}

/* A retry whose backoff is over: a new attempt, with a fresh total
 * deadline, behind whatever already waits for a slot. */
static void engine_requeue(struct lr_engine *e, struct lr_future *f)
{
	f->attempt_ns = e->ring.now_ns;
	if (e->active_count < e->cfg.max_in_flight && !e->waiting.head && !limits_enabled(&e->limits)) {
		future_start(e, f);
		return;
	}
	engine_queue(e, f);
}

static void wait_unlink(struct lr_engine *e, struct lr_future *f)
{
	flist_unlink(&e->waiting, f);
}

void engine_start_waiting(struct lr_engine *e)
{
	while (e->waiting.head && e->active_count < e->cfg.max_in_flight) {
		struct lr_future *f = e->waiting.head;
		/* An HTTP call (files, batches) is no model request: the
		 * buckets neither hold it nor count it. */
		if (limits_enabled(&e->limits) && !f->call) {
			/* First come, first served: the head waits for the buckets
			 * and everything behind it waits for the head. */
			uint64_t wait = limits_admit(&e->limits, e->ring.now_ns, f->est_tokens);
			if (wait && ring_timer_set(&e->ring, &e->limit_timer, e->ring.now_ns + wait) == 0)
				return;
			if (wait) {
				/* No room for the timer that would wake the queue: the
				 * head fails, and its deadline's slot is the next try's. */
				wait_unlink(e, f);
				future_complete(f, LR_ENOMEM, NULL);
				continue;
			}
		}
		wait_unlink(e, f);
		future_start(e, f);
	}
}

void limit_timer_fired(struct ring_timer *t)
{
	struct lr_engine *e = container_of(t, struct lr_engine, limit_timer);
	engine_start_waiting(e);
}

static void engine_accept(struct lr_engine *e, struct lr_future *f)
{
	if (atomic_load_explicit(&e->stopping, memory_order_relaxed) || e->ring_broken) {
		if (e->ring_broken)
			future_complete(f, e->broken.code, e->broken.message);
		else
			future_complete(f, LR_ECANCELLED, "the engine is shutting down");
		return;
	}
	e->submitted++;
	if (e->cache && cache_take(e, f))
		return; /* answered from the cache */
	if (e->active_count < e->cfg.max_in_flight && !e->waiting.head && !limits_enabled(&e->limits)) {
		future_start(e, f);
		return;
	}
	engine_queue(e, f);
}

void engine_drain_inbox(struct lr_engine *e)
{
	cache_flush_log(e);
	struct lr_future *f = stack_take_fifo(&e->submit_head, offsetof(struct lr_future, next));
	while (f) {
		struct lr_future *next = f->next;
		f->next = NULL;
		engine_accept(e, f);
		f = next;
	}
	f = stack_take_fifo(&e->cancel_head, offsetof(struct lr_future, next_cancel));
	while (f) {
		struct lr_future *next = f->next_cancel;
		if (f->state == F_WAITING) {
			wait_unlink(e, f);
			future_complete(f, LR_ECANCELLED, "cancelled by the caller");
		} else if (f->state == F_BACKOFF) {
			flist_unlink(&e->backoff, f);
			future_complete(f, LR_ECANCELLED, "cancelled by the caller (while waiting to retry)");
		} else if (f->state == F_ACTIVE) {
			pool_abort(&e->pool, &f->ex, LR_ECANCELLED, "cancelled by the caller");
		}
		future_unref(f); /* the cancel request's reference */
		f = next;
	}
}

/* Ends every future the engine holds (waiting, backing off, on the wire)
 * with err: the waiting first, so none starts as an active one ends. */
void engine_fail_held(struct lr_engine *e, int err, const char *msg)
{
	while (e->waiting.head) {
		struct lr_future *f = e->waiting.head;
		wait_unlink(e, f);
		future_complete(f, err, msg);
	}
	while (e->backoff.head) {
		struct lr_future *f = e->backoff.head;
		flist_unlink(&e->backoff, f);
		future_complete(f, err, msg);
	}
	while (e->active.head)
		pool_abort(&e->pool, &e->active.head->ex, err, msg);
}

void engine_shutdown(struct lr_engine *e)
{
	while (e->waiting.head) {
		struct lr_future *f = e->waiting.head;
		wait_unlink(e, f);
		future_complete(f, LR_ECANCELLED, "the engine is shutting down");
	}
	while (e->backoff.head) {
		struct lr_future *f = e->backoff.head;
		flist_unlink(&e->backoff, f);
		future_complete(f, LR_ECANCELLED, "the engine is shutting down");
	}
	pool_close_idle(&e->pool);
}

/* on_progress, when counts moved and the interval has passed. */
void engine_report_progress(struct lr_engine *e)
{
	if (!e->cfg.on_progress)
		return;
	uint64_t retries = atomic_load_explicit(&e->stat_retries, memory_order_relaxed);
	/* A sum of counters that only grow: any event changes it. */
	uint64_t seen = e->completions + e->submitted + retries + e->starts;
	if (seen == e->progress_seen)
		return;
	uint64_t now = clock_now_ns();
	int interval = e->cfg.progress_interval_ms;
	if (interval >= 0 && now - e->progress_ns < (uint64_t)(interval ? interval : 100) * 1000000u &&
	    e->progress_ns)
		return;
	e->progress_ns = now;
	e->progress_seen = seen;
	lr_usage_report u;
	usage_read(&e->usage, &u, NULL, 0);
	uint64_t queued = 0;
	for (struct lr_future *f = e->waiting.head; f; f = f->wait_next)
		queued++;
	for (struct lr_future *f = e->backoff.head; f; f = f->wait_next)
		queued++;
	lr_progress p = {
		.submitted = e->submitted,
		.queued = queued,
		.in_flight = e->active_count,
		.succeeded = u.succeeded,
		.failed = u.failed,
		.retried = retries,
		.input_tokens = u.input_tokens,
		.output_tokens = u.output_tokens,
		.cost_usd = u.cost_usd,
	};
	e->cfg.on_progress(e->cfg.progress_user, &p);
}

/*
 * The engine: one thread, one ring, futures.
 *
 * Other threads hand requests in through a lock-free stack (Treiber push,
 * the engine takes the whole stack at once) and wake the engine with an
 * eventfd whose read is armed on the ring; the write happens only when the
 * stack was empty, so a busy engine costs submitters no syscall. The same
 * trick in the other direction feeds lr_engine_reap().
 *
 * A future is shared by the caller and the engine through a reference
 * count: lr_submit returns one reference, the engine holds one until the
 * future completes (then it is dropped, or moved into the reap queue).
 * The engine completes each future exactly once; `done` is the futex word
 * waiters sleep on.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"
#include "http_reader.h"
#include "json.h"
#include "llmring.h"
#include "openai.h"
#include "pool.h"
#include "request.h"
#include "resolve.h"
#include "ring.h"
#include "url.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum future_state { F_SUBMITTED = 0, F_WAITING, F_ACTIVE, F_DONE };

struct lr_future {
	_Atomic int refs;
	_Atomic uint32_t done;          /* futex word: 0 pending, 1 complete */
	_Atomic int waiters;
	_Atomic int cancel_pushed;
	struct lr_engine *eng;
	void *user_data;
	lr_result result;

	/* Result storage, owner: the future. */
	struct http_buf resp_body;
	struct http_buf text;           /* the reply text */
	char finish_reason[32];
	struct openai_stream *stream;   /* owner: future; while an SSE response is read */
	lr_delta_fn on_delta;           /* borrowed from the request */
	void *on_delta_user;
	char request_id[128];
	char model[128];
	char message[400];

	/* Engine-side state. */
	enum future_state state;
	struct url *own_url;            /* owner: future; NULL uses the engine's URL */
	struct http_buf req_bytes;      /* owner: future; the whole request */
	struct http_exchange ex;
	struct ring_timer deadline;
	uint64_t submit_ns, start_ns;
	uint64_t connect_ns, idle_ns, total_ns;
	struct lr_future *next;         /* submit stack, then reap stack */
	struct lr_future *next_cancel;  /* cancel stack */
	/* Engine queue (over max_in_flight) while F_WAITING, the active
	 * list while F_ACTIVE. */
	struct lr_future *wait_prev, *wait_next;
};

/* A doubly linked list through lr_future.wait_prev/wait_next: a future is
 * on at most one (waiting or active) at a time. */
struct future_list {
	struct lr_future *head, *tail;
};

static void flist_push(struct future_list *l, struct lr_future *f)
{
	f->wait_prev = l->tail;
	f->wait_next = NULL;
	if (l->tail)
		l->tail->wait_next = f;
	else
		l->head = f;
	l->tail = f;
}

static void flist_unlink(struct future_list *l, struct lr_future *f)
{
	if (f->wait_prev)
		f->wait_prev->wait_next = f->wait_next;
	else
		l->head = f->wait_next;
	if (f->wait_next)
		f->wait_next->wait_prev = f->wait_prev;
	else
		l->tail = f->wait_prev;
	f->wait_prev = f->wait_next = NULL;
}

struct lr_engine {
	lr_config cfg;
	struct url base_url;
	struct http_buf fixed_headers;  /* owner: engine; Host/auth/content type for base_url */
	pthread_t thread;
	int wake_fd;                    /* eventfd: submitters -> engine */
	int completion_fd;              /* eventfd: engine -> reaper */
	_Atomic(struct lr_future *) submit_head;
	_Atomic(struct lr_future *) cancel_head;
	_Atomic(struct lr_future *) reap_head;
	_Atomic int reap_ready;         /* futures on reap_head (may dip below 0 briefly) */
	_Atomic int reap_want;          /* the reaper sleeps until this many are ready */
	struct lr_future *reap_local;   /* reaper's private leftovers, FIFO */
	int reap_local_count;
	_Atomic int stopping;
	_Atomic(const char *) ring_mode;
	_Atomic int start_result;       /* 1 running, <0 setup error (futex word) */

	pthread_t owner;                /* drive_from_caller: the thread that drives the ring */

	char *ca_file;                  /* owner: engine; copy of cfg.ca_file */

	/* Engine-thread (or owner-thread) only. */
	bool shutting_down;
	uint64_t completions;           /* futures completed by this loop */
	struct resolver *resolver;      /* owner: engine */
	struct ring ring;
	struct pool pool;
	struct json_doc doc;            /* owner: engine; scratch for response parsing */
	struct ring_op op_wake;
	uint64_t wake_value;
	bool wake_armed;
	unsigned active_count;
	struct future_list waiting;     /* over max_in_flight, FIFO */
	struct future_list active;      /* on the wire (for shutdown) */
	struct lr_future *reap_pending, *reap_pending_last; /* newest first */
	int reap_pending_count;

	/* Statistics, written by the engine thread, read by anyone. */
	_Atomic uint64_t stat_opened, stat_reused, stat_resends, stat_completed;
	_Atomic uint64_t stat_tls_full, stat_tls_resumed;
};

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

static void eventfd_signal(int fd)
{
	uint64_t one = 1;
	ssize_t n;
	do {
		n = write(fd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
}

/* ---- futures ---- */

static void future_free(struct lr_future *f)
{
	if (f->stream) {
		openai_stream_free(f->stream);
		free(f->stream);
	}
	http_buf_free(&f->text);
	http_buf_free(&f->resp_body);
	http_buf_free(&f->req_bytes);
	free(f->own_url);
	free(f);
}

static void future_unref(struct lr_future *f)
{
	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
		future_free(f);
}

static double ns_to_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void engine_publish_stats(struct lr_engine *e)
{
	atomic_store_explicit(&e->stat_opened, e->pool.stats.connections_opened, memory_order_relaxed);
	atomic_store_explicit(&e->stat_reused, e->pool.stats.connections_reused, memory_order_relaxed);
	atomic_store_explicit(&e->stat_resends, e->pool.stats.stale_resends, memory_order_relaxed);
	atomic_store_explicit(&e->stat_tls_full, e->pool.stats.tls_full_handshakes, memory_order_relaxed);
	atomic_store_explicit(&e->stat_tls_resumed, e->pool.stats.tls_resumed_handshakes,
	                      memory_order_relaxed);
}

/* The one place a future completes. */
static void future_complete(struct lr_future *f, int err, const char *msg)
{
	struct lr_engine *e = f->eng;
	uint64_t now = clock_now_ns();
	f->state = F_DONE;
	e->completions++;
	ring_timer_cancel(&e->ring, &f->deadline);
	lr_result *r = &f->result;
	r->error = err;
	if (err) {
		if (msg != f->message)
			snprintf(f->message, sizeof(f->message), "%s", msg ? msg : lr_strerror(err));
		r->error_message = f->message;
	}
	if (f->resp_body.data) {
		r->body = f->resp_body.data;
		r->body_len = f->resp_body.len;
	}
	r->request_id = f->request_id[0] ? f->request_id : NULL;
	if (f->text.data) {
		r->text = f->text.data;
		r->text_len = f->text.len;
	}
	r->finish_reason = f->finish_reason[0] ? f->finish_reason : NULL;
	r->streamed = f->stream != NULL;
	r->model = f->model[0] ? f->model : NULL;
	r->attempts = 1;
	r->timings.total_ms = now > f->submit_ns ? ns_to_ms(now - f->submit_ns) : 0;
	if (f->ex.sent_ns > f->submit_ns)
		r->timings.queued_ms = ns_to_ms(f->ex.sent_ns - f->submit_ns);
	if (f->ex.first_byte_ns > f->submit_ns)
		r->timings.ttfb_ms = ns_to_ms(f->ex.first_byte_ns - f->submit_ns);
	/* The request bytes are no longer needed. */
	http_buf_free(&f->req_bytes);
	atomic_fetch_add_explicit(&e->stat_completed, 1, memory_order_relaxed);
	engine_publish_stats(e);

	atomic_store_explicit(&f->done, 1, memory_order_release);
	if (atomic_load_explicit(&f->waiters, memory_order_acquire))
		futex(&f->done, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	if (e->cfg.reap_completions) {
		/* The engine's reference moves into the reap queue; the
		 * turn's completions are published together (engine_flush_reaped). */
		f->next = e->reap_pending;
		if (!e->reap_pending)
			e->reap_pending_last = f;
		e->reap_pending = f;
		e->reap_pending_count++;
	} else {
		future_unref(f);
	}
}

/* ---- deadlines ---- */

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* One timer per future, re-armed lazily: progress only moves a
 * timestamp, and the timer checks it when it fires. */
static void wait_unlink(struct lr_engine *e, struct lr_future *f);

static void future_deadline_fired(struct ring_timer *t)
{
	struct lr_future *f = container_of(t, struct lr_future, deadline);
	struct lr_engine *e = f->eng;
	uint64_t now = e->ring.now_ns;
	struct http_exchange *ex = &f->ex;
	uint64_t total_at = f->submit_ns + f->total_ns;
	if (f->state == F_WAITING) {
		/* Still in the engine's queue: never sent, so nothing to abort. */
		wait_unlink(e, f);
		snprintf(f->message, sizeof(f->message),
		         "request exceeded its total timeout of %.3g s while queued for a slot",
		         (double)f->total_ns / 1e9);
		future_complete(f, LR_ETIMEOUT, f->message);
		return;
	}
	if (now >= total_at) {
		snprintf(f->message, sizeof(f->message), "request exceeded its total timeout of %.3g s",
		         (double)f->total_ns / 1e9);
		pool_abort(&e->pool, ex, LR_ETIMEOUT, f->message);
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
			snprintf(f->message, sizeof(f->message), "%s %s port %u timed out after %.3g s%s",
			         tls ? "TLS handshake with" : "connect to", origin_url(ex->origin)->host,
			         origin_url(ex->origin)->port, (double)f->connect_ns / 1e9,
			         tls ? " (the server accepted the connection but did not complete the handshake)"
			             : "");
			pool_abort(&e->pool, ex, tls ? LR_ETLS_HANDSHAKE : LR_ETIMEOUT, f->message);
			return;
		}
		next = min_u64(next, min_u64(at, soonest_idle));
	} else if (ex->phase == EX_RECEIVING) {
		uint64_t at = ex->last_byte_ns + f->idle_ns;
		if (now >= at) {
			snprintf(f->message, sizeof(f->message),
			         "no response data for %.3g s (idle timeout)", (double)f->idle_ns / 1e9);
			pool_abort(&e->pool, ex, LR_ETIMEOUT, f->message);
			return;
		}
		next = min_u64(next, at);
	} else {
		next = min_u64(next, now + min_u64(f->connect_ns, f->idle_ns));
	}
	ring_timer_set(&e->ring, &f->deadline, next);
}

/* ---- exchange callbacks ---- */

static size_t header_copy(char *dst, size_t cap, const struct http_header *h)
{
	size_t n = h->value_len < cap - 1 ? h->value_len : cap - 1;
	memcpy(dst, h->value, n);
	dst[n] = '\0';
	return n;
}

static int future_on_head(struct http_exchange *ex, const struct http_head *h)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	f->result.http_status = h->status;
	const struct http_header *rid = http_head_find(h, "x-request-id");
	if (!rid)
		rid = http_head_find(h, "request-id");
	if (rid)
		header_copy(f->request_id, sizeof(f->request_id), rid);
	f->result.retry_after_s = -1;
	const struct http_header *ra = http_head_find(h, "retry-after-ms");
	char num[32];
	if (ra) {
		header_copy(num, sizeof(num), ra);
		char *end;
		double ms = strtod(num, &end);
		if (end != num && ms >= 0)
			f->result.retry_after_s = ms / 1000.0;
	} else if ((ra = http_head_find(h, "retry-after"))) {
		header_copy(num, sizeof(num), ra);
		char *end;
		double s = strtod(num, &end);
		if (end != num && s >= 0)
			f->result.retry_after_s = s;
	}
	f->resp_body.len = 0;
	const struct http_header *ct = http_head_find(h, "content-type");
	if (h->status >= 200 && h->status < 300 && ct && ct->value_len >= 17 &&
	    strncasecmp(ct->value, "text/event-stream", 17) == 0 && !f->stream) {
		f->stream = malloc(sizeof(*f->stream)); /* owner: the future */
		if (!f->stream)
			return LR_ENOMEM;
		openai_stream_init(f->stream, f->on_delta, f->on_delta_user);
		/* Only events count as progress for the idle deadline. */
		ex->owner_tracks_progress = true;
		return 0;
	}
	if (h->content_length > 0 && (uint64_t)h->content_length <= f->eng->cfg.max_body_bytes)
		return http_buf_reserve(&f->resp_body, (size_t)h->content_length + 1);
	return 0;
}

static int future_on_body(struct http_exchange *ex, const char *data, size_t len)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	if (!f->stream)
		return http_buf_append(&f->resp_body, data, len);
	unsigned long before = f->stream->events;
	int r = openai_stream_feed(f->stream, data, len);
	if (f->stream->events != before)
		ex->last_byte_ns = f->eng->ring.now_ns;
	/* An error event from the provider still lets the response end
	 * normally (the connection stays reusable); anything else stops it. */
	return r == LR_ESERVER ? 0 : r;
}

static void engine_start_waiting(struct lr_engine *e);

static void active_unlink(struct lr_engine *e, struct lr_future *f)
{
	flist_unlink(&e->active, f);
	e->active_count--;
}

static void future_on_done(struct http_exchange *ex, int err, const char *msg)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	struct lr_engine *e = f->eng;
	active_unlink(e, f);
	if (err == 0 || f->result.http_status) {
		/* NUL-terminate the body so callers may treat it as a string. */
		if (http_buf_reserve(&f->resp_body, 1) == 0)
			f->resp_body.data[f->resp_body.len] = '\0';
	}
	if (f->stream) {
		struct openai_stream *st = f->stream;
		int r = err ? err : openai_stream_finish(st);
		f->resp_body.len = 0;
		if (openai_stream_body(st, &f->resp_body) == 0 && http_buf_reserve(&f->resp_body, 1) == 0) {
			f->resp_body.data[f->resp_body.len] = '\0';
			f->result.body_is_json = 1;
		}
		/* The text so far is the result's, complete or not. */
		struct http_buf t = f->text;
		f->text = st->text;
		st->text = t;
		if (http_buf_reserve(&f->text, 1) == 0)
			f->text.data[f->text.len] = '\0';
		memcpy(f->finish_reason, st->finish_reason, sizeof(f->finish_reason));
		memcpy(f->model, st->model, sizeof(f->model));
		f->result.usage = st->usage;
		if (!err && r)
			memcpy(f->message, st->message, sizeof(f->message));
		future_complete(f, r, err ? msg : (r ? f->message : NULL));
		engine_start_waiting(e);
		return;
	}
	if (err == 0) {
		struct openai_outcome out;
		openai_parse_response(&e->doc, f->result.http_status, f->resp_body.data, f->resp_body.len,
		                      &out, &f->text);
		memcpy(f->finish_reason, out.finish_reason, sizeof(f->finish_reason));
		f->result.usage = out.usage;
		f->result.body_is_json = out.body_is_json;
		memcpy(f->model, out.model, sizeof(f->model));
		if (out.error)
			memcpy(f->message, out.message, sizeof(f->message));
		future_complete(f, out.error, out.error ? f->message : NULL);
	} else {
		future_complete(f, err, msg);
	}
	engine_start_waiting(e);
}

static const struct http_exchange_handler future_exchange_handler = {
	.on_head = future_on_head,
	.on_body = future_on_body,
	.on_done = future_on_done,
};

/* ---- scheduling on the engine thread ---- */

static void future_start(struct lr_engine *e, struct lr_future *f)
{
	const struct url *u = f->own_url ? f->own_url : &e->base_url;
	struct origin *o = pool_origin(&e->pool, u);
	if (!o) {
		future_complete(f, LR_ENOMEM, NULL);
		return;
	}
	if (e->ring.now_ns >= f->submit_ns + f->total_ns) {
		snprintf(f->message, sizeof(f->message),
		         "request exceeded its total timeout of %.3g s before it could be sent",
		         (double)f->total_ns / 1e9);
		future_complete(f, LR_ETIMEOUT, f->message);
		return;
	}
	f->state = F_ACTIVE;
	f->start_ns = e->ring.now_ns;
	f->ex.h = &future_exchange_handler;
	f->ex.origin = o;
	f->ex.req = f->req_bytes.data;
	f->ex.req_len = f->req_bytes.len;
	e->active_count++;
	flist_push(&e->active, f);
	ring_timer_set(&e->ring, &f->deadline,
	               min_u64(f->submit_ns + f->total_ns,
	                       e->ring.now_ns + min_u64(f->connect_ns, f->idle_ns)));
	pool_start(&e->pool, &f->ex);
}

static void wait_unlink(struct lr_engine *e, struct lr_future *f)
{
	flist_unlink(&e->waiting, f);
}

static void engine_start_waiting(struct lr_engine *e)
{
	while (e->waiting.head && e->active_count < e->cfg.max_in_flight) {
		struct lr_future *f = e->waiting.head;
		wait_unlink(e, f);
		future_start(e, f);
	}
}

static void engine_accept(struct lr_engine *e, struct lr_future *f)
{
	if (atomic_load_explicit(&e->stopping, memory_order_relaxed)) {
		future_complete(f, LR_ECANCELLED, "the engine is shutting down");
		return;
	}
	if (e->active_count < e->cfg.max_in_flight && !e->waiting.head) {
		future_start(e, f);
		return;
	}
	f->state = F_WAITING;
	/* The total deadline runs while it waits for a slot. */
	ring_timer_set(&e->ring, &f->deadline, f->submit_ns + f->total_ns);
	flist_push(&e->waiting, f);
}

static struct lr_future *stack_take_fifo(_Atomic(struct lr_future *) *head, size_t link_offset)
{
	struct lr_future *f = atomic_exchange_explicit(head, NULL, memory_order_acquire);
	struct lr_future *fifo = NULL;
	while (f) {
		struct lr_future **link = (struct lr_future **)((char *)f + link_offset);
		struct lr_future *next = *link;
		*link = fifo;
		fifo = f;
		f = next;
	}
	return fifo;
}

static void engine_drain_inbox(struct lr_engine *e)
{
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
		} else if (f->state == F_ACTIVE) {
			pool_abort(&e->pool, &f->ex, LR_ECANCELLED, "cancelled by the caller");
		}
		future_unref(f); /* the cancel request's reference */
		f = next;
	}
}

/*
 * Pushes a chain (newest first, last->next free) onto the reap stack and
 * signals the completion fd when the count of ready futures reaches what
 * the reaper waits for (1 unless it asked for more: lr_engine_reap_batch).
 * The count and the threshold are sequentially consistent, so either the
 * reaper sees the new count or this sees its threshold: no lost wake-up.
 */
static void reap_push(struct lr_engine *e, struct lr_future *first, struct lr_future *last, int n)
{
	struct lr_future *old = atomic_load_explicit(&e->reap_head, memory_order_relaxed);
	do {
		last->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&e->reap_head, &old, first,
	                                                memory_order_release, memory_order_relaxed));
	int after = atomic_fetch_add(&e->reap_ready, n) + n;
	int want = atomic_load(&e->reap_want);
	if (after >= want && after - n < want && !e->cfg.drive_from_caller)
		eventfd_signal(e->completion_fd);
}

/* One CAS and at most one eventfd write per loop turn, however many
 * futures completed in it. */
static void engine_flush_reaped(struct lr_engine *e)
{
	if (!e->reap_pending)
		return;
	reap_push(e, e->reap_pending, e->reap_pending_last, e->reap_pending_count);
	e->reap_pending = e->reap_pending_last = NULL;
	e->reap_pending_count = 0;
}

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

static void engine_shutdown(struct lr_engine *e)
{
	while (e->waiting.head) {
		struct lr_future *f = e->waiting.head;
		wait_unlink(e, f);
		future_complete(f, LR_ECANCELLED, "the engine is shutting down");
	}
	pool_close_idle(&e->pool);
}

/* Creates the ring and the pool on the thread that will drive them
 * (SINGLE_ISSUER ties a ring to its creator). */
static int engine_setup(struct lr_engine *e)
{
	bool plain = e->cfg.ring_plain;
	const char *env = getenv("LLMRING_RING_PLAIN");
	if (env && env[0] == '1')
		plain = true;
	unsigned entries = e->cfg.ring_entries ? e->cfg.ring_entries : 256;
	int ret = ring_init(&e->ring, entries, 1024, 16384, plain);
	if (ret < 0)
		return ret;
	/* The resolver's answers wake the loop through the same eventfd. */
	ret = resolver_new(e->wake_fd, 4, clock_seconds_to_ns(e->cfg.dns_ttl_s), &e->resolver);
	if (ret < 0) {
		ring_exit(&e->ring);
		return ret;
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
	atomic_store(&e->ring_mode, e->ring.mode);
	return 0;
}

static void engine_teardown(struct lr_engine *e)
{
	engine_flush_reaped(e);
	engine_publish_stats(e);
	resolver_free(e->resolver);
	e->resolver = NULL;
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
static int engine_turn(struct lr_engine *e, uint64_t max_wait_ns)
{
	uint64_t completions_before = e->completions;
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
	/* Futures completed without I/O this turn (a refused submission, a
	 * name that does not resolve, a bad CA bundle): nothing on the ring
	 * may ever wake the wait, and a caller-driven owner must get back to
	 * its caller to see them. */
	if (e->completions != completions_before)
		max_wait_ns = 0;
	int ret = ring_run_once(&e->ring, max_wait_ns);
	if (ret < 0 && ret != -EINTR) {
		fprintf(stderr, "llmring: io_uring enter failed: %s\n", strerror(-ret));
		return ret;
	}
	engine_flush_reaped(e);
	return 1;
}

static void *engine_thread(void *arg)
{
	struct lr_engine *e = arg;
	pthread_setname_np(pthread_self(), "llmring-engine");
	int ret = engine_setup(e);
	atomic_store(&e->start_result, ret < 0 ? ret : 1);
	futex((_Atomic uint32_t *)&e->start_result, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	if (ret < 0)
		return NULL;
	while (engine_turn(e, UINT64_MAX) > 0)
		;
	engine_teardown(e);
	return NULL;
}

/* In caller-driven mode, whether this thread drives the ring. */
static bool engine_on_owner(const struct lr_engine *e)
{
	return e->cfg.drive_from_caller && pthread_equal(pthread_self(), e->owner);
}

/* Turns the loop on the caller's thread until done() or the timeout
 * (ms; <0 forever, 0 one turn without waiting). */
static void engine_drive(struct lr_engine *e, int timeout_ms, bool (*done)(void *), void *arg)
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

/* ---- public API ---- */

LR_API lr_config lr_config_default(void)
{
	lr_config c;
	memset(&c, 0, sizeof(c));
	c.max_in_flight = 64;
	c.connect_timeout_s = 10;
	c.idle_timeout_s = 60;
	c.total_timeout_s = 600;
	c.pool_idle_s = 90;
	c.max_header_bytes = 64 * 1024;
	c.max_body_bytes = 64 * 1024 * 1024;
	c.ring_entries = 256;
	c.max_retries = 0;
	c.dns_ttl_s = 60;
	return c;
}

static int append_header(struct http_buf *b, const char *name, const char *value)
{
	return http_write_header(b, name, strlen(name), value, strlen(value));
}

/* Host, authorization and content headers of one base URL. */
static int build_fixed_headers(struct http_buf *b, const struct url *u, const char *api_key)
{
	int ret = append_header(b, "Host", u->host_header);
	if (!ret && api_key && api_key[0]) {
		size_t klen = strlen(api_key);
		char *auth = malloc(klen + 8); /* owner: this function */
		if (!auth)
			return LR_ENOMEM;
		memcpy(auth, "Bearer ", 7);
		memcpy(auth + 7, api_key, klen + 1);
		ret = append_header(b, "Authorization", auth);
		memset(auth, 0, klen + 7); /* keys do not linger in freed memory */
		free(auth);
	}
	if (!ret)
		ret = append_header(b, "Content-Type", "application/json");
	if (!ret)
		ret = append_header(b, "Accept", "application/json");
	if (!ret)
		ret = append_header(b, "User-Agent", "llmring/" LR_VERSION_STRING);
	return ret;
}

LR_API int lr_engine_new(const lr_config *cfg, lr_engine **out)
{
	if (!out)
		return LR_EINVAL;
	*out = NULL;
	lr_engine *e = calloc(1, sizeof(*e)); /* owner: the caller, via lr_engine_destroy */
	if (!e)
		return LR_ENOMEM;
	e->cfg = cfg ? *cfg : lr_config_default();
	lr_config d = lr_config_default();
	if (e->cfg.max_in_flight == 0)
		e->cfg.max_in_flight = d.max_in_flight;
	if (!(e->cfg.connect_timeout_s > 0))
		e->cfg.connect_timeout_s = d.connect_timeout_s;
	if (!(e->cfg.idle_timeout_s > 0))
		e->cfg.idle_timeout_s = d.idle_timeout_s;
	if (!(e->cfg.total_timeout_s > 0))
		e->cfg.total_timeout_s = d.total_timeout_s;
	if (!(e->cfg.pool_idle_s > 0))
		e->cfg.pool_idle_s = d.pool_idle_s;
	if (e->cfg.max_header_bytes == 0)
		e->cfg.max_header_bytes = d.max_header_bytes;
	if (e->cfg.max_body_bytes == 0)
		e->cfg.max_body_bytes = d.max_body_bytes;
	if (!(e->cfg.dns_ttl_s > 0))
		e->cfg.dns_ttl_s = d.dns_ttl_s;
	if (e->cfg.ca_file && !(e->ca_file = strdup(e->cfg.ca_file))) {
		free(e);
		return LR_ENOMEM;
	}
	e->cfg.ca_file = NULL; /* the caller may free theirs */
	e->wake_fd = e->completion_fd = -1;
	atomic_init(&e->reap_want, 1);

	const char *base = e->cfg.base_url;
	const char *key = e->cfg.api_key;
	if (!base || !base[0]) {
		base = getenv("OPENAI_BASE_URL");
		if (!base || !base[0])
			base = "https://api.openai.com/v1";
		if (!key)
			key = getenv("OPENAI_API_KEY");
	}
	const char *why = NULL;
	int ret = url_parse(base, &e->base_url, &why);
	if (!ret)
		ret = build_fixed_headers(&e->fixed_headers, &e->base_url, key);
	/* The config must not keep pointers the caller may free. */
	e->cfg.base_url = NULL;
	e->cfg.api_key = NULL;
	if (ret)
		goto fail;

	e->wake_fd = eventfd(0, EFD_CLOEXEC);
	e->completion_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->wake_fd < 0 || e->completion_fd < 0) {
		ret = LR_ESYSTEM;
		goto fail;
	}
	if (e->cfg.drive_from_caller) {
		/* No thread: the ring is this thread's, and moves when this
		 * thread reaps, waits or calls lr_engine_run. */
		e->owner = pthread_self();
		ret = engine_setup(e);
		if (ret < 0) {
			ret = LR_ESYSTEM;
			goto fail;
		}
		*out = e;
		return 0;
	}
	if (pthread_create(&e->thread, NULL, engine_thread, e) != 0) {
		ret = LR_ESYSTEM;
		goto fail;
	}
	int s;
	while ((s = atomic_load(&e->start_result)) == 0)
		futex((_Atomic uint32_t *)&e->start_result, FUTEX_WAIT_PRIVATE, 0, NULL);
	if (s < 0) {
		pthread_join(e->thread, NULL);
		ret = LR_ESYSTEM;
		goto fail;
	}
	*out = e;
	return 0;
fail:
	if (e->wake_fd >= 0)
		close(e->wake_fd);
	if (e->completion_fd >= 0)
		close(e->completion_fd);
	if (e->fixed_headers.data)
		memset(e->fixed_headers.data, 0, e->fixed_headers.cap);
	http_buf_free(&e->fixed_headers);
	free(e->ca_file);
	free(e);
	return ret;
}

LR_API void lr_engine_destroy(lr_engine *e)
{
	if (!e)
		return;
	atomic_store_explicit(&e->stopping, 1, memory_order_release);
	if (e->cfg.drive_from_caller) {
		/* Must be the owner thread (documented): finish the shutdown here. */
		while (engine_turn(e, UINT64_MAX) > 0)
			;
		engine_teardown(e);
	} else {
		eventfd_signal(e->wake_fd);
		pthread_join(e->thread, NULL);
	}
	/* Submissions that raced with the stop: complete them here. */
	struct lr_future *f = stack_take_fifo(&e->submit_head, offsetof(struct lr_future, next));
	while (f) {
		struct lr_future *next = f->next;
		f->result.error = LR_ECANCELLED;
		f->result.error_message = "the engine is shutting down";
		atomic_store(&f->done, 1);
		futex(&f->done, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
		future_unref(f);
		f = next;
	}
	f = stack_take_fifo(&e->cancel_head, offsetof(struct lr_future, next_cancel));
	while (f) {
		struct lr_future *next = f->next_cancel;
		future_unref(f);
		f = next;
	}
	/* Unreaped completions: the queue's references are dropped. */
	f = e->reap_local;
	while (f) {
		struct lr_future *next = f->next;
		future_unref(f);
		f = next;
	}
	f = atomic_exchange(&e->reap_head, NULL);
	while (f) {
		struct lr_future *next = f->next;
		future_unref(f);
		f = next;
	}
	close(e->wake_fd);
	close(e->completion_fd);
	memset(e->fixed_headers.data, 0, e->fixed_headers.cap);
	http_buf_free(&e->fixed_headers);
	free(e->ca_file);
	free(e);
}

LR_API int lr_engine_run(lr_engine *e, int timeout_ms)
{
	if (!e || !engine_on_owner(e))
		return LR_EINVAL;
	/* One turn, waiting at most timeout_ms for the first completion. */
	uint64_t wait = timeout_ms < 0 ? UINT64_MAX : (uint64_t)timeout_ms * 1000000u;
	int ret = engine_turn(e, wait);
	return ret < 0 ? LR_ESYSTEM : 0;
}

LR_API const char *lr_engine_ring_mode(lr_engine *e)
{
	return e ? atomic_load(&e->ring_mode) : NULL;
}

LR_API void lr_engine_get_stats(lr_engine *e, lr_engine_stats *out)
{
	if (!e || !out)
		return;
	out->connections_opened = atomic_load_explicit(&e->stat_opened, memory_order_relaxed);
	out->connections_reused = atomic_load_explicit(&e->stat_reused, memory_order_relaxed);
	out->stale_resends = atomic_load_explicit(&e->stat_resends, memory_order_relaxed);
	out->requests_completed = atomic_load_explicit(&e->stat_completed, memory_order_relaxed);
	out->tls_full_handshakes = atomic_load_explicit(&e->stat_tls_full, memory_order_relaxed);
	out->tls_resumed_handshakes = atomic_load_explicit(&e->stat_tls_resumed, memory_order_relaxed);
}

LR_API int lr_engine_completion_fd(lr_engine *e)
{
	return e ? e->completion_fd : LR_EINVAL;
}

static int reap_hand_out(lr_engine *e, lr_future **out, int max)
{
	int n = 0;
	while (n < max && e->reap_local) {
		struct lr_future *f = e->reap_local;
		e->reap_local = f->next;
		f->next = NULL;
		out[n++] = f;
	}
	e->reap_local_count -= n;
	return n;
}

/* Moves the reap stack into the reaper's FIFO. */
static void reap_take(lr_engine *e)
{
	struct lr_future *fifo = stack_take_fifo(&e->reap_head, offsetof(struct lr_future, next));
	if (!fifo)
		return;
	int n = 1;
	struct lr_future *tail = fifo;
	while (tail->next) {
		tail = tail->next;
		n++;
	}
	atomic_fetch_sub(&e->reap_ready, n);
	/* Append after any leftovers, keeping completion order. */
	struct lr_future **link = &e->reap_local;
	while (*link)
		link = &(*link)->next;
	*link = fifo;
	e->reap_local_count += n;
}

struct reap_goal {
	lr_engine *e;
	int min;
};

static bool reap_goal_met(void *arg)
{
	struct reap_goal *g = arg;
	return g->e->reap_local_count + atomic_load_explicit(&g->e->reap_ready, memory_order_relaxed) >=
	       g->min;
}

LR_API int lr_engine_reap_batch(lr_engine *e, lr_future **out, int max, int min, int timeout_ms)
{
	if (!e || !out || max <= 0)
		return LR_EINVAL;
	if (!e->cfg.reap_completions)
		return LR_EINVAL;
	if (min < 1)
		min = 1;
	if (min > max)
		min = max;
	if (e->cfg.drive_from_caller) {
		if (!engine_on_owner(e))
			return LR_EINVAL;
		struct reap_goal goal = {e, min};
		engine_drive(e, timeout_ms, reap_goal_met, &goal);
		reap_take(e);
		return reap_hand_out(e, out, max);
	}
	uint64_t deadline = timeout_ms > 0 ? clock_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
	for (;;) {
		if (e->reap_local_count >= min)
			return reap_hand_out(e, out, max);
		/* Announce the threshold, clear the signal, then look: a push
		 * after the look signals again, so nothing is missed. */
		atomic_store(&e->reap_want, min - e->reap_local_count);
		uint64_t v;
		while (read(e->completion_fd, &v, sizeof(v)) > 0)
			;
		if (atomic_load(&e->reap_ready) >= min - e->reap_local_count) {
			reap_take(e);
			continue;
		}
		int wait_ms = timeout_ms < 0 ? -1 : 0;
		if (timeout_ms > 0) {
			uint64_t now = clock_now_ns();
			if (now < deadline)
				wait_ms = (int)((deadline - now + 999999) / 1000000);
		}
		if (wait_ms == 0) {
			/* Out of time: hand out whatever there is. */
			atomic_store(&e->reap_want, 1);
			reap_take(e);
			return reap_hand_out(e, out, max);
		}
		struct pollfd pfd = {.fd = e->completion_fd, .events = POLLIN};
		int pr = poll(&pfd, 1, wait_ms);
		if (pr < 0 && errno != EINTR) {
			atomic_store(&e->reap_want, 1);
			return LR_ESYSTEM;
		}
		if (pr > 0)
			reap_take(e);
	}
}

LR_API int lr_engine_reap(lr_engine *e, lr_future **out, int max, int timeout_ms)
{
	return lr_engine_reap_batch(e, out, max, 1, timeout_ms);
}

static int future_build_request(lr_engine *e, struct lr_future *f, lr_request *rq, const char **why)
{
	const struct url *u = &e->base_url;
	struct http_buf fixed = {0}; /* owner: this function, for a per-request URL */
	const struct http_buf *hdrs = &e->fixed_headers;
	int ret = 0;
	if (rq->base_url) {
		f->own_url = malloc(sizeof(*f->own_url));
		if (!f->own_url)
			return LR_ENOMEM;
		ret = url_parse(rq->base_url, f->own_url, why);
		if (ret)
			return ret;
		u = f->own_url;
		/* A different origin gets no key: it was given for the engine's. */
		ret = build_fixed_headers(&fixed, u, NULL);
		if (ret) {
			http_buf_free(&fixed);
			return ret;
		}
		hdrs = &fixed;
	}
	/* A caller's body goes out as it is unless its model is replaced. */
	struct http_buf built = {0}; /* owner: this function */
	const char *body = rq->body.data;
	size_t body_len = rq->body.len;
	if (!rq->body.len || rq->model) {
		ret = openai_build_body(rq, &built, why);
		body = built.data;
		body_len = built.len;
	}
	const char *ep = openai_endpoint_path(rq->endpoint);
	size_t path_len = strlen(u->path), ep_len = strlen(ep);
	struct http_buf *b = &f->req_bytes;
	if (!ret)
		ret = http_buf_reserve(b, path_len + ep_len + hdrs->len + rq->headers.len + body_len + 64);
	if (!ret) {
		/* Reserved above: these appends cannot fail. */
		http_buf_append(b, "POST ", 5);
		http_buf_append(b, u->path, path_len);
		http_buf_append(b, ep, ep_len);
		http_buf_append(b, " HTTP/1.1\r\n", 11);
		http_buf_append(b, hdrs->data, hdrs->len);
		if (rq->headers.len)
			http_buf_append(b, rq->headers.data, rq->headers.len);
		ret = http_write_body(b, body, body_len);
	}
	http_buf_free(&built);
	http_buf_free(&fixed);
	return ret;
}

LR_API lr_future *lr_submit(lr_engine *e, lr_request *rq)
{
	if (!e || !rq) {
		lr_request_free(rq);
		return NULL;
	}
	struct lr_future *f = calloc(1, sizeof(*f)); /* owner: shared by refs (caller + engine) */
	if (!f) {
		lr_request_free(rq);
		return NULL;
	}
	atomic_init(&f->refs, 2);
	f->eng = e;
	f->user_data = rq->user_data;
	f->on_delta = rq->on_delta;
	f->on_delta_user = rq->on_delta_user;
	f->submit_ns = clock_now_ns();
	f->result.retry_after_s = -1;
	ring_timer_init(&f->deadline, future_deadline_fired);
	f->connect_ns = clock_seconds_to_ns(rq->connect_s > 0 ? rq->connect_s : e->cfg.connect_timeout_s);
	f->idle_ns = clock_seconds_to_ns(rq->idle_s > 0 ? rq->idle_s : e->cfg.idle_timeout_s);
	f->total_ns = clock_seconds_to_ns(rq->total_s > 0 ? rq->total_s : e->cfg.total_timeout_s);
	const char *why = NULL;
	int ret = future_build_request(e, f, rq, &why);
	lr_request_free(rq);
	if (ret || atomic_load_explicit(&e->stopping, memory_order_acquire)) {
		/* Completed on the caller's thread: the engine never sees it. */
		f->result.error = ret ? ret : LR_ECANCELLED;
		snprintf(f->message, sizeof(f->message), "%s",
		         ret ? (why ? why : lr_strerror(ret)) : "the engine is shutting down");
		f->result.error_message = f->message;
		http_buf_free(&f->req_bytes);
		atomic_store(&f->done, 1);
		if (e->cfg.reap_completions) {
			reap_push(e, f, f, 1);
		} else {
			atomic_store(&f->refs, 1);
		}
		return f;
	}
	struct lr_future *old = atomic_load_explicit(&e->submit_head, memory_order_relaxed);
	do {
		f->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&e->submit_head, &old, f, memory_order_release,
	                                                memory_order_relaxed));
	/* The owner of a caller-driven engine takes the stack on its next
	 * turn; anyone else wakes the loop. */
	if (!old && !engine_on_owner(e))
		eventfd_signal(e->wake_fd);
	return f;
}

LR_API int lr_future_done(const lr_future *f)
{
	return f && atomic_load_explicit(&((lr_future *)f)->done, memory_order_acquire) != 0;
}

static bool future_is_done(void *arg)
{
	return atomic_load_explicit(&((lr_future *)arg)->done, memory_order_acquire) != 0;
}

LR_API int lr_future_wait(lr_future *f, int timeout_ms)
{
	if (!f)
		return LR_EINVAL;
	if (atomic_load_explicit(&f->done, memory_order_acquire))
		return 1;
	if (engine_on_owner(f->eng)) {
		engine_drive(f->eng, timeout_ms, future_is_done, f);
		return future_is_done(f);
	}
	uint64_t deadline = timeout_ms > 0 ? clock_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
	atomic_fetch_add(&f->waiters, 1);
	int done = 0;
	for (;;) {
		if (atomic_load_explicit(&f->done, memory_order_acquire)) {
			done = 1;
			break;
		}
		if (timeout_ms == 0)
			break;
		struct timespec ts, *tsp = NULL;
		if (timeout_ms > 0) {
			uint64_t now = clock_now_ns();
			if (now >= deadline)
				break;
			uint64_t left = deadline - now;
			ts.tv_sec = (time_t)(left / 1000000000u);
			ts.tv_nsec = (long)(left % 1000000000u);
			tsp = &ts;
		}
		futex(&f->done, FUTEX_WAIT_PRIVATE, 0, tsp);
	}
	atomic_fetch_sub(&f->waiters, 1);
	return done;
}

LR_API const lr_result *lr_future_result(const lr_future *f)
{
	if (!lr_future_done(f))
		return NULL;
	return &f->result;
}

LR_API void *lr_future_user_data(const lr_future *f)
{
	return f ? f->user_data : NULL;
}

LR_API void lr_future_cancel(lr_future *f)
{
	if (!f || atomic_load_explicit(&f->done, memory_order_acquire))
		return;
	if (atomic_exchange(&f->cancel_pushed, 1))
		return; /* one cancel request is enough */
	struct lr_engine *e = f->eng;
	atomic_fetch_add(&f->refs, 1); /* held by the cancel request */
	struct lr_future *old = atomic_load_explicit(&e->cancel_head, memory_order_relaxed);
	do {
		f->next_cancel = old;
	} while (!atomic_compare_exchange_weak_explicit(&e->cancel_head, &old, f, memory_order_release,
	                                                memory_order_relaxed));
	if (!old && !engine_on_owner(e))
		eventfd_signal(e->wake_fd);
}

LR_API void lr_future_release(lr_future *f)
{
	if (f)
		future_unref(f);
}

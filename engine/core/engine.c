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
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "http/http_writer.h"
#include "util/clock.h"
#include "http/http_reader.h"
#include "core/ratelimit.h"
#include "core/prices.h"
#include "core/usage.h"
#include "format/json.h"
#include "llmring.h"
#include "http/pool.h"
#include "provider/provider.h"
#include "provider/reply.h"
#include "provider/request.h"
#include "io/resolve.h"
#include "core/engine_session.h"
#include "core/test_hooks.h"
#include "io/ring.h"
#include "io/url.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum future_state { F_SUBMITTED = 0, F_WAITING, F_ACTIVE, F_BACKOFF, F_DONE };

struct lr_future {
	_Atomic int refs;
	_Atomic uint32_t done;          /* futex word: 0 pending, 1 complete */
	_Atomic int waiters;
	_Atomic int cancel_pushed;
	struct lr_engine *eng;
	void *user_data;
	lr_result result;

	/* Result storage, owner: the future. */
	struct buf resp_body;
	size_t buffered;                /* response bytes counted in eng->buffered_bytes */
	bool over_budget;               /* failed by the engine-wide buffered-bytes cap */
	bool encoded_body;              /* refused: a Content-Encoding other than identity */
	struct reply reply;             /* text, tool calls, usage, ids (normalised) */
	struct stream_decoder *stream;  /* owner: future; while a streamed response is read */
	struct pull_queue *pull;        /* owner: future; deltas for lr_future_next_delta */
	lr_delta_fn on_delta;           /* borrowed from the request */
	void *on_delta_user;
	enum provider provider;
	enum lr_endpoint endpoint;
	char request_id[128];
	char message[400];

	/* Engine-side state. */
	enum future_state state;
	struct url *own_url;            /* owner: future; NULL uses the engine's URL */
	struct buf req_bytes;      /* owner: future; the whole request */
	struct http_exchange ex;
	struct ring_timer deadline;
	uint64_t submit_ns, start_ns;
	uint64_t attempt_ns;            /* when this attempt began (total deadline base) */
	uint64_t connect_ns, idle_ns, total_ns;
	int attempts;                   /* started so far */
	int max_retries;
	int should_retry;               /* x-should-retry: 1 true, 0 false, -1 absent */
	double est_tokens;              /* taken from the token bucket per attempt */
	char requested_model[96];       /* for accounting when the reply names none */
	lr_future_fn then_fn;           /* lr_future_then */
	void *then_user;
	_Atomic int then_state;         /* 0 none, 1 registered, 2 completed */
	_Atomic int then_used;
	struct lr_future *next;         /* submit stack, then reap stack */
	struct lr_future *next_cancel;  /* cancel stack */
	/* Engine queue (over max_in_flight) while F_WAITING, the active
	 * list while F_ACTIVE, the backoff list while F_BACKOFF. */
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

/* Where one provider's requests go: its base URL and the headers every
 * request to it carries (Host, key, content type). */
struct endpoint {
	int error;                      /* LR_E* when this provider cannot be used */
	char why[160];
	struct url url;
	struct buf fixed_headers;  /* owner: engine; may hold a key: wiped on free */
	bool needs_key;                 /* the provider's own endpoint and no key found */
};

/* Deltas handed from the engine thread to a lr_future_next_delta caller. */
struct pull_delta {
	struct pull_delta *next;
	lr_delta d;                     /* strings point into data */
	char data[];
};

struct pull_queue {
	pthread_mutex_t lock;
	struct pull_delta *head, *tail; /* owner: the queue */
	struct pull_delta *current;     /* owner: the queue; the one handed out last */
	_Atomic uint32_t seq;           /* futex word: bumped on each delta and at completion */
	_Atomic int waiting;
};

struct lr_engine {
	lr_config cfg;
	struct endpoint ep[PROVIDER_COUNT];
	pthread_t thread;
	int wake_fd;                    /* eventfd: submitters -> engine */
	int completion_fd;              /* eventfd: engine -> reaper */
	_Atomic(struct lr_future *) submit_head;
	/* lr_submit calls under way: the last free waits for them, so a
	 * submission that raced with lr_engine_destroy is always taken. */
	_Atomic unsigned submitting;
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
	bool evfd_registered;           /* drive_from_caller: the kernel signals completion_fd */

	char *ca_file;                  /* owner: engine; copy of cfg.ca_file */

	/* Engine-thread (or owner-thread) only. */
	bool shutting_down;
	bool self_free;                 /* destroyed from a callback: the thread frees e */
	uint64_t completions;           /* futures completed by this loop */
	struct resolver *resolver;      /* owner: engine */
	struct ring ring;
	struct pool pool;
	struct json_doc doc;            /* owner: engine; scratch for response parsing */
	struct ring_op op_wake;
	uint64_t wake_value;
	bool wake_armed;
	unsigned active_count;
	size_t buffered_bytes;          /* sum of the active futures' `buffered` */
	struct future_list waiting;     /* over max_in_flight, FIFO */
	struct future_list active;      /* on the wire (for shutdown) */
	struct future_list backoff;     /* waiting to be retried (for shutdown and cancel) */
	struct limits limits;           /* rpm / tpm buckets */
	struct ring_timer limit_timer;  /* wakes the queue when the buckets refill */
	struct price_table *prices;     /* owner: engine */
	struct usage_table usage;       /* owner: engine */
	uint64_t submitted;             /* accepted by the loop (progress) */
	uint64_t starts;                /* attempts put on the wire (progress) */
	uint64_t progress_ns;           /* last on_progress call */
	uint64_t progress_seen;         /* completions + retries + submissions at that call */
	uint64_t jitter_state;          /* xorshift state for retry jitter */
	struct lr_future *reap_pending, *reap_pending_last; /* newest first */
	int reap_pending_count;

	/* Statistics, written by the engine thread, read by anyone. */
	_Atomic uint64_t stat_opened, stat_reused, stat_resends, stat_completed;
	_Atomic uint64_t stat_tls_full, stat_tls_resumed;
	_Atomic uint64_t stat_retries;
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
	stream_decoder_free(f->stream);
	reply_free(&f->reply);
	if (f->pull) {
		struct pull_delta *p = f->pull->head;
		while (p) {
			struct pull_delta *next = p->next;
			free(p);
			p = next;
		}
		free(f->pull->current);
		pthread_mutex_destroy(&f->pull->lock);
		free(f->pull);
	}
	buf_free(&f->resp_body);
	buf_free(&f->req_bytes);
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

static void pull_wake(struct pull_queue *q)
{
	atomic_fetch_add_explicit(&q->seq, 1, memory_order_release);
	if (atomic_load_explicit(&q->waiting, memory_order_acquire))
		futex(&q->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

/* Publishes completion to waiters of either kind. */
static void future_mark_done(struct lr_future *f)
{
	atomic_store_explicit(&f->done, 1, memory_order_release);
	if (atomic_load_explicit(&f->waiters, memory_order_acquire))
		futex(&f->done, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	if (f->pull)
		pull_wake(f->pull);
}

/* The engine-thread side of the delta callback: a copy for the pull
 * iterator first, then the caller's callback, so a callback that wakes
 * a lr_future_next_delta consumer finds the delta already queued. */
static int pull_queue_delta(struct pull_queue *q, const lr_delta *d);
static void future_delta(void *user, const lr_delta *d)
{
	struct lr_future *f = user;
	/* A delta the puller never gets would be silent loss: the request
	 * fails instead (the decoder stops at the reply's error). */
	if (f->pull && pull_queue_delta(f->pull, d))
		reply_fail(&f->reply, LR_ENOMEM, "out of memory queueing a stream delta");
	if (f->on_delta)
		f->on_delta(f->on_delta_user, d);
}

static int pull_queue_delta(struct pull_queue *q, const lr_delta *d)
{
	size_t fr = d->finish_reason ? strlen(d->finish_reason) + 1 : 0;
	size_t id = d->tool_id ? strlen(d->tool_id) + 1 : 0;
	size_t nm = d->tool_name ? strlen(d->tool_name) + 1 : 0;
	size_t need = d->text_len + 1 + fr + id + nm + d->tool_arguments_len + 1;
	struct pull_delta *p = malloc(sizeof(*p) + need); /* owner: the queue */
	if (!p)
		return LR_ENOMEM;
	char *at = p->data;
	p->next = NULL;
	p->d = *d;
	memcpy(at, d->text, d->text_len);
	at[d->text_len] = '\0';
	p->d.text = at;
	at += d->text_len + 1;
	if (fr) {
		memcpy(at, d->finish_reason, fr);
		p->d.finish_reason = at;
		at += fr;
	}
	if (id) {
		memcpy(at, d->tool_id, id);
		p->d.tool_id = at;
		at += id;
	}
	if (nm) {
		memcpy(at, d->tool_name, nm);
		p->d.tool_name = at;
		at += nm;
	}
	if (d->tool_arguments_len)
		memcpy(at, d->tool_arguments, d->tool_arguments_len);
	at[d->tool_arguments_len] = '\0';
	p->d.tool_arguments = at;
	pthread_mutex_lock(&q->lock);
	if (q->tail)
		q->tail->next = p;
	else
		q->head = p;
	q->tail = p;
	pthread_mutex_unlock(&q->lock);
	pull_wake(q);
	return 0;
}

/* Completes a future the engine has accepted (lr_submit's refusals end
 * in future_fail_early, before anyone can wait on them): result, timings,
 * accounting, then-callback, then waiters and the reap queue. */
static void future_complete(struct lr_future *f, int err, const char *msg)
{
	struct lr_engine *e = f->eng;
	uint64_t now = clock_now_ns();
	f->state = F_DONE;
	e->completions++;
	ring_timer_cancel(&e->ring, &f->deadline);
	lr_result *r = &f->result;
	struct reply *rp = &f->reply;
	/* The result's strings are NUL-terminated and its calls published
	 * here; a success that cannot be handed out whole is out of memory
	 * (a failure just goes without them). */
	bool body_ok = f->resp_body.data && buf_reserve(&f->resp_body, 1) == 0;
	bool text_ok = rp->text.data && buf_reserve(&rp->text, 1) == 0;
	bool calls_ok = rp->ncalls && reply_publish_calls(rp) == 0;
	if (!err && ((f->resp_body.data && !body_ok) || (rp->text.data && !text_ok) ||
	             (rp->ncalls && !calls_ok))) {
		err = LR_ENOMEM;
		msg = "out of memory completing the result";
	}
	r->error = err;
	if (err) {
		if (msg != f->message)
			snprintf(f->message, sizeof(f->message), "%s", msg ? msg : lr_strerror(err));
		r->error_message = f->message;
	}
	if (body_ok) {
		f->resp_body.data[f->resp_body.len] = '\0';
		r->body = f->resp_body.data;
		r->body_len = f->resp_body.len;
	}
	/* Gemini sends no request-id header: its responseId stands in. */
	r->request_id = f->request_id[0]                              ? f->request_id
	                : f->provider == PROVIDER_GEMINI && rp->id[0] ? rp->id
	                                                              : NULL;
	if (text_ok) {
		rp->text.data[rp->text.len] = '\0';
		r->text = rp->text.data;
		r->text_len = rp->text.len;
	}
	if (calls_ok) {
		r->tool_calls = rp->public_calls;
		r->tool_call_count = (int)rp->ncalls;
	}
	r->finish_reason = rp->finish_reason[0] ? rp->finish_reason : NULL;
	r->streamed = f->stream != NULL;
	r->model = rp->model[0] ? rp->model : NULL;
	r->usage = rp->usage;
	r->provider = provider_info(f->provider)->name;
	const char *model = rp->model[0] ? rp->model : f->requested_model;
	r->cost_usd = usage_record(&e->usage, model, r->provider, &rp->usage, err == 0,
	                           f->attempts > 1 ? f->attempts - 1 : 0);
	if (f->est_tokens > 0 && (rp->usage.input_tokens || rp->usage.output_tokens))
		limits_correct(&e->limits, f->est_tokens,
		               (double)(rp->usage.input_tokens + rp->usage.output_tokens));
	r->attempts = f->attempts > 0 ? f->attempts : 1;
	r->timings.total_ms = now > f->submit_ns ? ns_to_ms(now - f->submit_ns) : 0;
	if (f->ex.sent_ns > f->submit_ns)
		r->timings.queued_ms = ns_to_ms(f->ex.sent_ns - f->submit_ns);
	if (f->ex.first_byte_ns > f->submit_ns)
		r->timings.ttfb_ms = ns_to_ms(f->ex.first_byte_ns - f->submit_ns);
	if (rp->first_token_ns > f->submit_ns)
		r->timings.ttft_ms = ns_to_ms(rp->first_token_ns - f->submit_ns);
	/* The request bytes are no longer needed. */
	buf_free(&f->req_bytes);
	atomic_fetch_add_explicit(&e->stat_completed, 1, memory_order_relaxed);
	engine_publish_stats(e);

	/* A then-callback registered before completion runs here, once, and
	 * before waiters see the future complete: whatever it does (a
	 * session appending the reply) is done when lr_future_wait returns.
	 * then_state 2 already makes the result readable to it. */
	if (atomic_exchange_explicit(&f->then_state, 2, memory_order_acq_rel) == 1)
		f->then_fn(f->then_user, f);
	future_mark_done(f);
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
static void engine_requeue(struct lr_engine *e, struct lr_future *f);

static void future_deadline_fired(struct ring_timer *t)
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
		snprintf(f->message, sizeof(f->message),
		         "request exceeded its total timeout of %.3g s while queued for a slot",
		         (double)f->total_ns / 1e9);
		future_complete(f, LR_ETIMEOUT, f->message);
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
	/* The timer has just left the heap, so there is room for it. */
	if (ring_timer_set(&e->ring, &f->deadline, next))
		pool_abort(&e->pool, ex, LR_ENOMEM, NULL);
}

/* ---- exchange callbacks ---- */

static size_t header_copy(char *dst, size_t cap, const struct http_header *h)
{
	size_t n = h->value_len < cap - 1 ? h->value_len : cap - 1;
	memcpy(dst, h->value, n);
	dst[n] = '\0';
	return n;
}


/* The response headers the engine reads, found in one pass. */
struct head_fields {
	const struct http_header *request_id, *anthropic_request_id, *should_retry, *retry_after_ms,
		*retry_after, *content_type, *content_encoding, *rl_requests, *rl_tokens, *rl_anthropic_requests,
		*rl_anthropic_tokens, *rl_anthropic_input_tokens;
};

#define NAME_IS(hd, lit) ((hd)->name_len == sizeof(lit) - 1 && strncasecmp((hd)->name, lit, sizeof(lit) - 1) == 0)

static void head_fields_find(const struct http_head *h, struct head_fields *hf)
{
	memset(hf, 0, sizeof(*hf));
	for (size_t i = 0; i < h->num_headers; i++) {
		const struct http_header *hd = &h->headers[i];
		switch (hd->name_len) {
		case 10: if (NAME_IS(hd, "request-id")) hf->anthropic_request_id = hd; break;
		case 11: if (NAME_IS(hd, "retry-after")) hf->retry_after = hd; break;
		case 12:
			if (NAME_IS(hd, "x-request-id"))
				hf->request_id = hd;
			else if (NAME_IS(hd, "content-type"))
				hf->content_type = hd;
			break;
		case 16: if (NAME_IS(hd, "content-encoding")) hf->content_encoding = hd; break;
		case 14:
			if (NAME_IS(hd, "x-should-retry"))
				hf->should_retry = hd;
			else if (NAME_IS(hd, "retry-after-ms"))
				hf->retry_after_ms = hd;
			break;
		case 28: if (NAME_IS(hd, "x-ratelimit-remaining-tokens")) hf->rl_tokens = hd; break;
		case 30: if (NAME_IS(hd, "x-ratelimit-remaining-requests")) hf->rl_requests = hd; break;
		case 36: if (NAME_IS(hd, "anthropic-ratelimit-tokens-remaining")) hf->rl_anthropic_tokens = hd; break;
		case 38: if (NAME_IS(hd, "anthropic-ratelimit-requests-remaining")) hf->rl_anthropic_requests = hd; break;
		case 42:
			if (NAME_IS(hd, "anthropic-ratelimit-input-tokens-remaining"))
				hf->rl_anthropic_input_tokens = hd;
			break;
		}
	}
}

/* A header's value as a number, or -1 when absent or not a number. */
static double header_number(const struct http_header *hd)
{
	if (!hd)
		return -1;
	char num[32];
	header_copy(num, sizeof(num), hd);
	char *end;
	double v = strtod(num, &end);
	return end != num && v >= 0 ? v : -1;
}

static int future_on_head(struct http_exchange *ex, const struct http_head *h)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	struct head_fields hf;
	head_fields_find(h, &hf);
	f->result.http_status = h->status;
	const struct http_header *rid = hf.request_id ? hf.request_id : hf.anthropic_request_id;
	if (rid)
		header_copy(f->request_id, sizeof(f->request_id), rid);
	f->result.retry_after_s = -1;
	f->should_retry = -1;
	const struct http_header *sr = hf.should_retry;
	if (sr)
		f->should_retry = sr->value_len == 4 && strncasecmp(sr->value, "true", 4) == 0   ? 1
		                  : sr->value_len == 5 && strncasecmp(sr->value, "false", 5) == 0 ? 0
		                                                                                  : -1;
	char num[64];
	if (hf.retry_after_ms) {
		double ms = header_number(hf.retry_after_ms);
		if (ms >= 0)
			f->result.retry_after_s = ms / 1000.0;
	} else if (hf.retry_after) {
		header_copy(num, sizeof(num), hf.retry_after);
		char *end;
		double secs = strtod(num, &end);
		struct tm tm;
		if (end != num && secs >= 0) {
			f->result.retry_after_s = secs;
		} else if (strptime(num, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
			/* An HTTP date: the wait is until then (never negative). */
			double wait = difftime(timegm(&tm), time(NULL));
			f->result.retry_after_s = wait > 0 ? wait : 0;
		}
	}
	struct lr_engine *e = f->eng;
	if (limits_enabled(&e->limits)) {
		/* The buckets follow what the provider says remains, and a 429's
		 * wait holds every request back, not just this one. */
		double rq = header_number(hf.rl_requests);
		double tk = header_number(hf.rl_tokens);
		if (rq < 0)
			rq = header_number(hf.rl_anthropic_requests);
		if (tk < 0)
			tk = header_number(hf.rl_anthropic_tokens);
		if (tk < 0)
			tk = header_number(hf.rl_anthropic_input_tokens);
		limits_follow(&e->limits, e->ring.now_ns, rq, tk);
		if (h->status == 429 && f->result.retry_after_s >= 0)
			limits_pause(&e->limits, e->ring.now_ns + clock_seconds_to_ns(f->result.retry_after_s));
	}
	buf_clear(&f->resp_body);
	/* Requests say Accept-Encoding: identity; a server that compresses
	 * anyway gets a named error, not "not valid JSON" about gzip bytes. */
	f->encoded_body = false;
	const struct http_header *ce = hf.content_encoding;
	if (ce && !(ce->value_len == 8 && strncasecmp(ce->value, "identity", 8) == 0)) {
		char coding[48];
		header_copy(coding, sizeof(coding), ce);
		for (char *c = coding; *c; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				*c = '?';
		snprintf(f->message, sizeof(f->message),
		         "HTTP %d response body is encoded (Content-Encoding: %s), which llmring does "
		         "not decode; it asked for identity (check the server or proxy)",
		         h->status, coding);
		f->encoded_body = true;
		return LR_EPROTO;
	}
	const struct http_header *ct = hf.content_type;
	bool sse = ct && ct->value_len >= 17 && strncasecmp(ct->value, "text/event-stream", 17) == 0;
	bool ndjson = ct && ct->value_len >= 20 && strncasecmp(ct->value, "application/x-ndjson", 20) == 0;
	if (h->status >= 200 && h->status < 300 && (sse || ndjson) && !f->stream) {
		f->stream = stream_decoder_new(f->provider, ndjson, &f->reply); /* owner: the future */
		if (!f->stream)
			return LR_ENOMEM;
		/* Only events count as progress for the idle deadline. */
		ex->owner_tracks_progress = true;
		return 0;
	}
	if (h->content_length > 0 && (uint64_t)h->content_length <= f->eng->cfg.max_body_bytes)
		return buf_reserve(&f->resp_body, (size_t)h->content_length + 1);
	return 0;
}

/*
 * The engine-wide cap on response bytes held for requests in flight:
 * without it, a few hundred endless bodies each under the per-response
 * cap exhaust memory. f's holding just changed; while the sum is over
 * the cap the largest holder fails. Returns LR_ETOOLARGE when that is f.
 */
static int engine_check_buffered(struct lr_engine *e, struct lr_future *f)
{
	size_t held = f->stream ? f->reply.text.cap + f->reply.scratch.cap : f->resp_body.cap;
	e->buffered_bytes += held - f->buffered;
	f->buffered = held;
	while (e->buffered_bytes > e->cfg.max_buffered_bytes) {
		struct lr_future *largest = f;
		for (struct lr_future *a = e->active.head; a; a = a->wait_next)
			if (a->buffered > largest->buffered)
				largest = a;
		largest->over_budget = true;
		if (largest == f)
			return LR_ETOOLARGE;
		pool_abort(&e->pool, &largest->ex, LR_ETOOLARGE, "response too large");
	}
	return 0;
}

static int future_on_body(struct http_exchange *ex, const char *data, size_t len)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	if (!f->stream) {
		int r = buf_append(&f->resp_body, data, len);
		return r ? r : engine_check_buffered(f->eng, f);
	}
	unsigned long before = f->reply.events;
	int r = stream_decoder_feed(f->stream, data, len);
	if (f->reply.events != before)
		ex->last_byte_ns = f->eng->ring.now_ns;
	int cap = engine_check_buffered(f->eng, f);
	if (cap)
		return cap;
	/* An error event from the provider still lets the response end
	 * normally (the connection stays reusable); broken framing or no
	 * memory stops it. */
	return stream_decoder_fatal(f->stream) || r == LR_ENOMEM ? r : 0;
}

static void engine_start_waiting(struct lr_engine *e);

/* Whether an attempt that ended with err may be tried again, as the
 * official SDKs decide: connection failures and timeouts, 408, 409, 429
 * and 5xx (Anthropic's 529 too), x-should-retry overriding either way;
 * never an exhausted quota, another 4xx, a cancellation, a TLS
 * verification failure or a request refused before sending; a stream
 * only while none of it reached the caller. */
static bool attempt_retryable(const struct lr_future *f, int err)
{
	if (f->attempts > f->max_retries || err == LR_ECANCELLED || err == LR_EQUOTA)
		return false;
	if (f->reply.deltas > 0)
		return false; /* part of a stream was delivered: a retry would repeat it */
	if (f->should_retry >= 0 && f->result.http_status)
		return f->should_retry == 1;
	int st = f->result.http_status;
	if (st >= 200 && st < 300) {
		/* The response broke off or a stream reported an error: the
		 * transport or the server failed, not the request. */
		return err == LR_ECONNRESET || err == LR_ETIMEOUT || err == LR_ESERVER ||
		       err == LR_EOVERLOADED || err == LR_ERATELIMIT || err == LR_EPROTO;
	}
	if (st)
		return st == 408 || st == 409 || st == 429 || st >= 500;
	/* A failed TLS handshake is not retried: a server that does not
	 * speak TLS, or TLS we cannot agree on, stays that way. */
	return err == LR_ECONNECT || err == LR_ECONNRESET || err == LR_ETIMEOUT || err == LR_EPROTO;
}

static uint64_t jitter_next(struct lr_engine *e)
{
	uint64_t x = e->jitter_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return e->jitter_state = x;
}

/* The SDKs' delay: Retry-After (retry-after-ms first) when it is between
 * 0 and 60 s, else 0.5 s doubling per retry up to 8 s, less up to 25%. */
static uint64_t retry_delay_ns(struct lr_engine *e, const struct lr_future *f)
{
	double ra = f->result.retry_after_s;
	if (ra >= 0 && ra <= 60)
		return clock_seconds_to_ns(ra);
	double base = 0.5;
	for (int i = 1; i < f->attempts && base < 8; i++)
		base *= 2;
	if (base > 8)
		base = 8;
	double jitter = 1.0 - 0.25 * (double)(jitter_next(e) >> 11) / (double)(1ull << 53);
	return clock_seconds_to_ns(base * jitter);
}

/* Clears what one attempt left behind, keeping the request bytes. */
static void attempt_reset(struct lr_future *f)
{
	stream_decoder_free(f->stream);
	f->stream = NULL;
	reply_reset(&f->reply);
	buf_clear(&f->resp_body);
	f->request_id[0] = '\0';
	f->result.http_status = 0;
	f->result.body_is_json = 0;
	f->result.retry_after_s = -1;
	f->should_retry = -1;
	memset(&f->ex, 0, sizeof(f->ex));
}

static void future_complete(struct lr_future *f, int err, const char *msg);

/* An attempt ended: complete the future, or schedule the next attempt. */
static void future_finish(struct lr_future *f, int err, const char *msg)
{
	struct lr_engine *e = f->eng;
	if (!err || e->shutting_down || !attempt_retryable(f, err)) {
		future_complete(f, err, msg);
		return;
	}
	uint64_t delay = retry_delay_ns(e, f);
	if (ring_timer_set(&e->ring, &f->deadline, e->ring.now_ns + delay)) {
		future_complete(f, LR_ENOMEM, NULL); /* nothing would wake the retry */
		return;
	}
	attempt_reset(f);
	atomic_fetch_add_explicit(&e->stat_retries, 1, memory_order_relaxed);
	f->state = F_BACKOFF;
	flist_push(&e->backoff, f);
}

static void active_unlink(struct lr_engine *e, struct lr_future *f)
{
	flist_unlink(&e->active, f);
	e->active_count--;
	e->buffered_bytes -= f->buffered;
	f->buffered = 0;
}

static void future_on_done(struct http_exchange *ex, int err, const char *msg)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	struct lr_engine *e = f->eng;
	active_unlink(e, f);
	if (f->encoded_body && err == LR_EPROTO)
		msg = f->message;
	if (f->over_budget && err == LR_ETOOLARGE) {
		snprintf(f->message, sizeof(f->message),
		         "response too large: responses in flight held more than %zu bytes together "
		         "(the largest fails; raise lr_config.max_buffered_bytes or "
		         "LLMRING_MAX_BUFFERED_BYTES, or lower concurrency)",
		         e->cfg.max_buffered_bytes);
		msg = f->message;
	}
	if (err == LR_ETOOLARGE) {
		/* A partial body that broke a cap is of no use to anyone. */
		buf_free(&f->resp_body);
		f->result.http_status = 0;
	}
	if (err == 0 || f->result.http_status) {
		/* NUL-terminate the body so callers may treat it as a string. */
		if (buf_reserve(&f->resp_body, 1) == 0)
			f->resp_body.data[f->resp_body.len] = '\0';
	}
	if (f->stream) {
		int r = err ? err : stream_decoder_finish(f->stream);
		buf_clear(&f->resp_body);
		if (reply_openai_body(&f->reply, &f->resp_body) == 0 && buf_reserve(&f->resp_body, 1) == 0) {
			f->resp_body.data[f->resp_body.len] = '\0';
			f->result.body_is_json = 1;
		} else if (!r) {
			/* A success without its assembled body would be a silent loss. */
			r = reply_fail(&f->reply, LR_ENOMEM, "out of memory assembling the body");
		}
		/* The text so far is the result's, complete or not. */
		if (!err && r)
			memcpy(f->message, f->reply.message, sizeof(f->message));
		future_finish(f, r, err ? msg : (r ? f->message : NULL));
		engine_start_waiting(e);
		return;
	}
	if (err == 0) {
		struct buf normalized = {0}; /* owner: this block until swapped in */
		bool body_is_json, rewritten;
		provider_parse_response(f->provider, f->endpoint, &e->doc, f->result.http_status,
		                        f->resp_body.data, f->resp_body.len, &f->reply, &body_is_json,
		                        &normalized, &rewritten);
		if (rewritten && buf_reserve(&normalized, 1) == 0) {
			/* Batch output is OpenAI-shaped whatever the provider. */
			normalized.data[normalized.len] = '\0';
			struct buf raw = f->resp_body;
			f->resp_body = normalized;
			normalized = raw;
		} else if (rewritten) {
			reply_fail(&f->reply, LR_ENOMEM, "out of memory rewriting the body");
		}
		buf_free(&normalized);
		f->result.body_is_json = body_is_json;
		int code = f->reply.error;
		if (code)
			memcpy(f->message, f->reply.message, sizeof(f->message));
		future_finish(f, code, code ? f->message : NULL);
	} else {
		future_finish(f, err, msg);
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
	const struct url *u = f->own_url ? f->own_url : &e->ep[f->provider].url;
	struct origin *o = pool_origin(&e->pool, u);
	if (!o) {
		future_complete(f, LR_ENOMEM, NULL);
		return;
	}
	if (e->cfg.queue_wait_untimed)
		f->attempt_ns = e->ring.now_ns; /* the queue did not count */
	if (e->ring.now_ns >= f->attempt_ns + f->total_ns) {
		snprintf(f->message, sizeof(f->message),
		         "request exceeded its total timeout of %.3g s before it could be sent",
		         (double)f->total_ns / 1e9);
		future_complete(f, LR_ETIMEOUT, f->message);
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
	f->ex.req = f->req_bytes.data;
	f->ex.req_len = f->req_bytes.len;
	e->active_count++;
	flist_push(&e->active, f);
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
	flist_push(&e->waiting, f);
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

static void engine_start_waiting(struct lr_engine *e)
{
	while (e->waiting.head && e->active_count < e->cfg.max_in_flight) {
		struct lr_future *f = e->waiting.head;
		if (limits_enabled(&e->limits)) {
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

static void limit_timer_fired(struct ring_timer *t)
{
	struct lr_engine *e = container_of(t, struct lr_engine, limit_timer);
	engine_start_waiting(e);
}

static void engine_accept(struct lr_engine *e, struct lr_future *f)
{
	if (atomic_load_explicit(&e->stopping, memory_order_relaxed)) {
		future_complete(f, LR_ECANCELLED, "the engine is shutting down");
		return;
	}
	e->submitted++;
	if (e->active_count < e->cfg.max_in_flight && !e->waiting.head && !limits_enabled(&e->limits)) {
		future_start(e, f);
		return;
	}
	engine_queue(e, f);
}

/* Pushes f onto a lock-free stack linked through *link (f's own field);
 * true when the stack was empty (the taker may need a wake-up). */
static inline bool stack_push(_Atomic(struct lr_future *) *head, struct lr_future *f,
                              struct lr_future **link)
{
	struct lr_future *old = atomic_load_explicit(head, memory_order_relaxed);
	do {
		*link = old;
	} while (!atomic_compare_exchange_weak_explicit(head, &old, f, memory_order_release,
	                                                memory_order_relaxed));
	return old == NULL;
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
	                                                memory_order_acq_rel, memory_order_relaxed));
	int after = atomic_fetch_add(&e->reap_ready, n) + n;
	int want = atomic_load(&e->reap_want);
	/* A push onto an empty stack always signals: the stack is emptied
	 * only by the reaper's exchange, which takes whatever was pushed
	 * before it, so every future is either taken by a reap already under
	 * way or announced by a signal (the count alone raced with that
	 * exchange and could skip the signal for good). */
	if ((old == NULL || (after >= want && after - n < want)) && !e->cfg.drive_from_caller)
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
	while (e->backoff.head) {
		struct lr_future *f = e->backoff.head;
		flist_unlink(&e->backoff, f);
		future_complete(f, LR_ECANCELLED, "the engine is shutting down");
	}
	pool_close_idle(&e->pool);
}

/* Creates the ring and the pool on the thread that will drive them
 * (SINGLE_ISSUER ties a ring to its creator). */
static int engine_setup(struct lr_engine *e)
{
	bool plain = e->cfg.ring_plain; /* LLMRING_RING_PLAIN was read by lr_engine_new */
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
	ring_timer_init(&e->limit_timer, limit_timer_fired);
	limits_init(&e->limits, e->cfg.requests_per_minute, e->cfg.tokens_per_minute, clock_now_ns());
	atomic_store(&e->ring_mode, e->ring.mode);
	return 0;
}

static void engine_teardown(struct lr_engine *e)
{
	ring_timer_cancel(&e->ring, &e->limit_timer);
	engine_flush_reaped(e);
	engine_publish_stats(e);
	resolver_free(e->resolver);
	e->resolver = NULL;
	pool_free(&e->pool);
	json_doc_free(&e->doc);
	ring_exit(&e->ring);
}

/* on_progress, when counts moved and the interval has passed. */
static void engine_report_progress(struct lr_engine *e)
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

static bool in_engine_callback(const struct lr_engine *e)
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
static int engine_turn(struct lr_engine *e, uint64_t max_wait_ns)
{
	const struct lr_engine *outer = tl_turn_engine;
	tl_turn_engine = e;
	int ret = engine_turn_inner(e, max_wait_ns);
	tl_turn_engine = outer;
	return ret;
}

static int engine_turn_inner(struct lr_engine *e, uint64_t max_wait_ns)
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
	engine_report_progress(e);
	/* Futures completed without I/O this turn (a refused submission, a
	 * name that does not resolve, a bad CA bundle): nothing on the ring
	 * may ever wake the wait, and a caller-driven owner must get back to
	 * its caller to see them. */
	if (e->completions != completions_before)
		max_wait_ns = 0;
	int ret = ring_run_once(&e->ring, max_wait_ns);
	if (ret < 0 && ret != -EINTR) {
		engine_log(e, "io_uring enter failed: %s", strerror(-ret));
		return ret;
	}
	engine_flush_reaped(e);
	return 1;
}

static void engine_free_after_stop(struct lr_engine *e);

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
	if (e->self_free)
		engine_free_after_stop(e); /* lr_engine_destroy was called from a callback */
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
	c.max_retries = 2;
	c.dns_ttl_s = 60;
	return c;
}

static int append_header(struct buf *b, const char *name, const char *value)
{
	return http_write_header(b, name, strlen(name), value, strlen(value));
}

/* Host, key and content headers of one base URL for one provider. */
static int build_fixed_headers(struct buf *b, const struct url *u, enum provider p,
                               const char *api_key)
{
	int ret = append_header(b, "Host", u->host_header);
	if (!ret)
		ret = provider_auth_headers(p, b, api_key);
	if (!ret)
		ret = append_header(b, "Content-Type", "application/json");
	if (!ret)
		ret = append_header(b, "Accept", "application/json");
	if (!ret) /* bodies are parsed as they are: never compressed */
		ret = append_header(b, "Accept-Encoding", "identity");
	if (!ret)
		ret = append_header(b, "User-Agent", "llmring/" LR_VERSION_STRING);
	return ret;
}

static void endpoint_wipe(struct endpoint *ep)
{
	if (ep->fixed_headers.data)
		memset(ep->fixed_headers.data, 0, ep->fixed_headers.cap);
	buf_free(&ep->fixed_headers);
}

/* OLLAMA_HOST may be "host", "host:port" or a URL, as the Ollama CLI takes it. */
static const char *ollama_url(const char *v, char *buf, size_t cap)
{
	if (strstr(v, "://"))
		return v;
	const char *host = strncmp(v, "0.0.0.0", 7) == 0 ? "127.0.0.1" : NULL;
	const char *rest = host ? v + 7 : v;
	bool port = strchr(host ? rest : v, ':') != NULL;
	snprintf(buf, cap, "http://%s%s%s", host ? host : "", rest, port ? "" : ":11434");
	return buf;
}

/* Where provider p's requests go: the configured base URL and key apply
 * to every provider; otherwise the provider's own variables and defaults.
 * 0, or LR_EINVAL with why (no base URL for mock/). */
struct endpoint_source {
	const char *base;       /* borrowed: cfg, the environment, a default or buf */
	const char *key;        /* borrowed: cfg or the environment; NULL: none */
	bool needs_key;         /* the provider's own endpoint and its key is missing */
	char buf[600];
};

static int endpoint_source(const char *cfg_base, const char *cfg_key, enum provider p,
                           struct endpoint_source *src, char *why, size_t why_len)
{
	const struct provider_info *pi = provider_info(p);
	src->base = cfg_base && cfg_base[0] ? cfg_base : NULL;
	src->key = cfg_key && cfg_key[0] ? cfg_key : NULL;
	src->needs_key = false;
	bool own_endpoint = !src->base;
	if (!src->base && pi->base_env) {
		const char *v = getenv(pi->base_env);
		if (v && v[0])
			src->base = p == PROVIDER_OLLAMA ? ollama_url(v, src->buf, sizeof(src->buf)) : v;
	}
	bool public_endpoint = !src->base;
	if (!src->base)
		src->base = pi->base_url;
	if (!src->base) {
		snprintf(why, why_len, "%s/ models need a base URL (lr_config.base_url or %s)", pi->name,
		         pi->base_env);
		return LR_EINVAL;
	}
	/* No key given: each provider's own variable, also under a base URL
	 * (a mixed batch must never send one provider's key to another). */
	if (!src->key && pi->key_env) {
		const char *k = getenv(pi->key_env);
		src->key = k && k[0] ? k : NULL;
		/* Only the public endpoint needs one: a server named by the
		 * variable may be a local one that takes none. */
		src->needs_key = !src->key && public_endpoint && own_endpoint;
	}
	return 0;
}

static int endpoints_init(struct lr_engine *e, const char *cfg_base, const char *cfg_key)
{
	for (int p = 0; p < PROVIDER_COUNT; p++) {
		struct endpoint *ep = &e->ep[p];
		struct endpoint_source src;
		ep->error = endpoint_source(cfg_base, cfg_key, (enum provider)p, &src, ep->why, sizeof(ep->why));
		if (ep->error)
			continue;
		ep->needs_key = src.needs_key;
		const char *why = NULL;
		int ret = url_parse(src.base, &ep->url, &why);
		if (ret) {
			ep->error = ret;
			snprintf(ep->why, sizeof(ep->why), "%s base URL: %s", provider_info((enum provider)p)->name,
			         why ? why : "invalid");
			if (p == PROVIDER_OPENAI)
				return ret; /* the default provider must work */
			continue;
		}
		ret = build_fixed_headers(&ep->fixed_headers, &ep->url, (enum provider)p, src.key);
		if (ret)
			return ret;
	}
	return 0;
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
	const char *buffered_env = getenv("LLMRING_MAX_BUFFERED_BYTES");
	if (buffered_env && *buffered_env) {
		char *end;
		unsigned long long v = strtoull(buffered_env, &end, 10);
		if (*end || v == 0) {
			free(e);
			return LR_EINVAL; /* a limit was asked for and cannot be read */
		}
		e->cfg.max_buffered_bytes = (size_t)v;
	}
	if (e->cfg.max_buffered_bytes == 0) {
		long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
		uint64_t eighth = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 8 : 0;
		e->cfg.max_buffered_bytes = eighth > (256u << 20) ? (size_t)eighth : (size_t)256 << 20;
	}
	if (e->cfg.max_body_bytes == 0)
		e->cfg.max_body_bytes = d.max_body_bytes;
	if (!(e->cfg.dns_ttl_s > 0))
		e->cfg.dns_ttl_s = d.dns_ttl_s;
	/* The environment is read here, on the caller's thread, never while
	 * the engine runs (getenv races with setenv in other threads). */
	const char *ca = e->cfg.ca_file && e->cfg.ca_file[0] ? e->cfg.ca_file : getenv("SSL_CERT_FILE");
	if (ca && ca[0] && !(e->ca_file = strdup(ca))) {
		free(e);
		return LR_ENOMEM;
	}
	e->cfg.ca_file = NULL; /* the caller may free theirs */
	const char *plain_env = getenv("LLMRING_RING_PLAIN");
	if (plain_env && plain_env[0] == '1')
		e->cfg.ring_plain = 1;
	e->wake_fd = e->completion_fd = -1;
	atomic_init(&e->reap_want, 1);
	if (e->cfg.max_retries < 0)
		e->cfg.max_retries = d.max_retries;
	/* Jitter only spreads retries apart: any varying seed will do. */
	e->jitter_state = clock_now_ns() ^ ((uint64_t)(uintptr_t)e << 17) ^ 0x9e3779b97f4a7c15ull;

	int ret = endpoints_init(e, e->cfg.base_url, e->cfg.api_key);
	char why[256];
	if (!ret) {
		ret = price_table_load(&e->prices, e->cfg.prices_file, why, sizeof(why));
		if (ret && ret != LR_ENOMEM)
			ret = LR_EINVAL; /* a prices file was named and cannot be used */
	}
	if (!ret)
		ret = usage_init(&e->usage, e->prices);
	e->cfg.prices_file = NULL; /* the caller may free it */
	/* The config must not keep pointers the caller may free. */
	e->cfg.base_url = NULL;
	e->cfg.api_key = NULL;
	if (ret)
		goto fail;

	e->wake_fd = eventfd(0, EFD_CLOEXEC);
	e->completion_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->wake_fd < 0 || e->completion_fd < 0) {
		ret = errno == ENOMEM ? LR_ENOMEM : LR_ESYSTEM;
		goto fail;
	}
	if (e->cfg.drive_from_caller) {
		/* No thread: the ring is this thread's, and moves when this
		 * thread reaps, waits or calls lr_engine_run. */
		e->owner = pthread_self();
		ret = engine_setup(e);
		if (ret < 0) {
			ret = ret == -ENOMEM ? LR_ENOMEM : LR_ESYSTEM;
			goto fail;
		}
		*out = e;
		return 0;
	}
	int err = pthread_create(&e->thread, NULL, engine_thread, e);
	if (err) {
		/* EAGAIN: no memory for the thread's stack or record (or the
		 * thread limit), the caller's out-of-memory case. */
		ret = err == EAGAIN || err == ENOMEM ? LR_ENOMEM : LR_ESYSTEM;
		goto fail;
	}
	int s;
	while ((s = atomic_load(&e->start_result)) == 0)
		futex((_Atomic uint32_t *)&e->start_result, FUTEX_WAIT_PRIVATE, 0, NULL);
	if (s < 0) {
		pthread_join(e->thread, NULL);
		ret = s == -ENOMEM ? LR_ENOMEM : LR_ESYSTEM;
		goto fail;
	}
	*out = e;
	return 0;
fail:
	if (e->wake_fd >= 0)
		close(e->wake_fd);
	if (e->completion_fd >= 0)
		close(e->completion_fd);
	for (int p = 0; p < PROVIDER_COUNT; p++)
		endpoint_wipe(&e->ep[p]);
	usage_free(&e->usage);
	price_table_free(e->prices);
	free(e->ca_file);
	free(e);
	return ret;
}

LR_API void lr_engine_destroy(lr_engine *e)
{
	if (!e)
		return;
	if (in_engine_callback(e)) {
		/* From a callback: the thread cannot join itself, nor a turn
		 * tear down the ring it runs on. The stop is deferred: the
		 * engine finishes its shutdown and frees itself (threaded), or
		 * the owner's next call sees it stopped (caller-driven: the
		 * owner must still call lr_engine_destroy outside callbacks). */
		atomic_store(&e->stopping, 1); /* seq_cst: see submitting */
		if (!e->cfg.drive_from_caller && !e->self_free) {
			e->self_free = true;
			pthread_detach(e->thread);
		}
		return;
	}
	atomic_store(&e->stopping, 1); /* seq_cst: see submitting */
	if (e->cfg.drive_from_caller) {
		/* Must be the owner thread (documented): finish the shutdown here. */
		while (engine_turn(e, UINT64_MAX) > 0)
			;
		engine_teardown(e);
	} else {
		eventfd_signal(e->wake_fd);
		pthread_join(e->thread, NULL);
	}
	engine_free_after_stop(e);
}

/* After the loop has stopped: what raced with the stop, then the memory. */
static void engine_free_after_stop(lr_engine *e)
{
	/* Submissions that raced with the stop go through the one completion
	 * path (then-callback before waiters, accounting, provider), on this
	 * thread: the engine's own has ended. A submitter that saw stopping
	 * unset is still inside lr_submit: wait for its push (a few
	 * instructions) so that it is taken here, not lost or pushed onto
	 * freed memory. */
	while (atomic_load(&e->submitting))
		sched_yield();
	struct lr_future *f = stack_take_fifo(&e->submit_head, offsetof(struct lr_future, next));
	while (f) {
		struct lr_future *next = f->next;
		f->next = NULL;
		future_complete(f, LR_ECANCELLED, "the engine is shutting down");
		f = next;
	}
	engine_flush_reaped(e);
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
	for (int p = 0; p < PROVIDER_COUNT; p++)
		endpoint_wipe(&e->ep[p]);
	usage_free(&e->usage);
	price_table_free(e->prices);
	free(e->ca_file);
	free(e);
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

LR_API void *lr_engine_user_data(const lr_engine *e)
{
	return e ? e->cfg.user_data : NULL;
}

/* The growth rule of lr_config (llmring.h): its size never changes. */
#define LR_CONFIG_SIZE_LP64 384
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(lr_config) == LR_CONFIG_SIZE_LP64,
               "lr_config's size is part of the ABI: take a new field's bytes from reserved");
#endif

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
	out->retries = atomic_load_explicit(&e->stat_retries, memory_order_relaxed);
}

LR_API int lr_engine_completion_fd(lr_engine *e)
{
	if (!e)
		return LR_EINVAL;
	/* A caller-driven engine has no thread to signal the fd: the kernel
	 * does, for every completion posted to the ring, once a host loop asks
	 * for the fd (only then: it costs a signal per completion). The
	 * registration must come from the ring's owner. */
	if (e->cfg.drive_from_caller && !e->evfd_registered && engine_on_owner(e)) {
		if (io_uring_register_eventfd(&e->ring.uring, e->completion_fd) < 0)
			return LR_ESYSTEM;
		e->evfd_registered = true;
	}
	return e->completion_fd;
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
	/* Level-triggered: a host loop may read the fd and then reap fewer
	 * than are ready; what is left must keep the fd readable. */
	if ((e->reap_local || atomic_load_explicit(&e->reap_head, memory_order_acquire)) &&
	    (!e->cfg.drive_from_caller || e->evfd_registered))
		eventfd_signal(e->completion_fd);
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
	if (in_engine_callback(e) && (timeout_ms != 0 || e->cfg.drive_from_caller))
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
	struct buf fixed = {0}; /* owner: this function, for a per-request URL */
	const char *base_paths[PROVIDER_COUNT];
	int ret = 0;
	if (rq->base_url) {
		f->own_url = malloc(sizeof(*f->own_url));
		if (!f->own_url)
			return LR_ENOMEM;
		ret = url_parse(rq->base_url, f->own_url, why);
		if (ret)
			return ret;
	}
	for (int p = 0; p < PROVIDER_COUNT; p++)
		base_paths[p] = f->own_url ? f->own_url->path : e->ep[p].url.path;
	struct provider_request pr; /* owner: this function */
	ret = provider_build_request(rq, base_paths, &pr, why);
	if (ret) {
		/* Text composed in pr outlives it in the future. */
		if (*why == pr.why_text) {
			snprintf(f->message, sizeof(f->message), "%s", pr.why_text);
			*why = f->message;
		}
		return ret;
	}
	f->provider = pr.provider;
	f->endpoint = rq->endpoint;
	snprintf(f->requested_model, sizeof(f->requested_model), "%s", pr.model);
	const struct endpoint *ep = &e->ep[pr.provider];
	const struct buf *hdrs = &ep->fixed_headers;
	if (f->own_url) {
		/* A different origin gets no key: it was given for the engine's. */
		ret = build_fixed_headers(&fixed, f->own_url, pr.provider, NULL);
		hdrs = &fixed;
	} else if (ep->error) {
		*why = ep->why;
		ret = ep->error;
	} else if (ep->needs_key) {
		snprintf(f->message, sizeof(f->message), "%s is not set; %s needs a key",
		         provider_info(pr.provider)->key_env, ep->url.host);
		*why = f->message;
		ret = LR_EAUTH;
	}
	const char *body = pr.body_is_input ? rq->body.data : pr.body.data;
	size_t body_len = pr.body_is_input ? rq->body.len : pr.body.len;
	struct buf *b = &f->req_bytes;
	if (!ret)
		ret = buf_reserve(b, pr.path.len + hdrs->len + rq->headers.len + body_len + 64);
	if (!ret) {
		/* Reserved above: these appends cannot fail. */
		buf_append(b, "POST ", 5);
		buf_append(b, pr.path.data, pr.path.len);
		buf_append(b, " HTTP/1.1\r\n", 11);
		buf_append(b, hdrs->data, hdrs->len);
		if (rq->headers.len)
			buf_append(b, rq->headers.data, rq->headers.len);
		ret = http_write_body(b, body, body_len);
	}
	if (!ret && e->cfg.tokens_per_minute > 0)
		f->est_tokens = limits_estimate_tokens(body, body_len, rq->max_tokens);
	provider_request_free(&pr);
	buf_free(&fixed);
	return ret;
}

/* Completed on the caller's thread: the engine never sees it. */
static void future_fail_early(lr_engine *e, struct lr_future *f, int err, const char *why)
{
	f->result.error = err;
	if (why != f->message)
		snprintf(f->message, sizeof(f->message), "%s", why);
	f->result.error_message = f->message;
	f->result.provider = provider_info(f->provider)->name;
	f->result.cost_usd = -1;
	buf_free(&f->req_bytes);
	atomic_store(&f->done, 1);
	if (e->cfg.reap_completions) {
		reap_push(e, f, f, 1);
	} else {
		atomic_store(&f->refs, 1);
	}
}

lr_future *engine_failed_future(lr_engine *e, int err, const char *msg)
{
	struct lr_future *f = calloc(1, sizeof(*f)); /* owner: shared by refs (caller + reap queue) */
	if (!f)
		return NULL;
	atomic_init(&f->refs, 2);
	f->eng = e;
	f->submit_ns = clock_now_ns();
	f->result.retry_after_s = -1;
	ring_timer_init(&f->deadline, future_deadline_fired);
	reply_init(&f->reply, NULL, NULL);
	future_fail_early(e, f, err, msg);
	return f;
}

void engine_future_refail(lr_future *f, int err, const char *msg)
{
	f->result.error = err;
	snprintf(f->message, sizeof(f->message), "%s", msg);
	f->result.error_message = f->message;
}

/*
 * Called between lr_submit's stopping check and its push: a test
 * replaces it (a strong definition) to hold a submission in the window
 * where lr_engine_destroy may run. Weak, so never inlined away.
 */
__attribute__((weak)) void engine_submit_window_hook(lr_engine *e)
{
	(void)e;
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
	reply_init(&f->reply, rq->on_delta || rq->stream ? future_delta : NULL, f);
	if (rq->stream) {
		f->pull = calloc(1, sizeof(*f->pull)); /* owner: the future */
		if (!f->pull) {
			free(f);
			lr_request_free(rq);
			return NULL;
		}
		pthread_mutex_init(&f->pull->lock, NULL);
	}
	f->submit_ns = clock_now_ns();
	f->attempt_ns = f->submit_ns;
	f->should_retry = -1;
	f->max_retries = rq->max_retries >= 0 ? rq->max_retries : e->cfg.max_retries;
	f->result.cost_usd = -1;
	f->result.retry_after_s = -1;
	ring_timer_init(&f->deadline, future_deadline_fired);
	f->connect_ns = clock_seconds_to_ns(rq->connect_s > 0 ? rq->connect_s : e->cfg.connect_timeout_s);
	f->idle_ns = clock_seconds_to_ns(rq->idle_s > 0 ? rq->idle_s : e->cfg.idle_timeout_s);
	f->total_ns = clock_seconds_to_ns(rq->total_s > 0 ? rq->total_s : e->cfg.total_timeout_s);
	const char *why = NULL;
	int ret = future_build_request(e, f, rq, &why);
	lr_request_free(rq);
	/* Counted before stopping is read (both seq_cst, against the store
	 * in lr_engine_destroy): either this call sees the stop, or the free
	 * waits for its push. */
	atomic_fetch_add(&e->submitting, 1);
	if (ret || atomic_load(&e->stopping)) {
		future_fail_early(e, f, ret ? ret : LR_ECANCELLED,
		                  ret ? (why ? why : lr_strerror(ret)) : "the engine is shutting down");
		atomic_fetch_sub_explicit(&e->submitting, 1, memory_order_release);
		return f;
	}
	engine_submit_window_hook(e);
	bool was_empty = stack_push(&e->submit_head, f, &f->next);
	/* The owner of a caller-driven engine takes the stack on its next
	 * turn; anyone else wakes the loop. */
	if (was_empty && !engine_on_owner(e))
		eventfd_signal(e->wake_fd);
	/* e may be freed from here on. */
	atomic_fetch_sub_explicit(&e->submitting, 1, memory_order_release);
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
	if (in_engine_callback(f->eng))
		return timeout_ms == 0 ? 0 : LR_EINVAL; /* only this thread could complete it */
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
	/* Complete, or inside its then-callback (then_state 2 is set once
	 * the result is written, just before completion is published). */
	if (!lr_future_done(f) &&
	    !(f && atomic_load_explicit(&((lr_future *)f)->then_state, memory_order_acquire) == 2))
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
	if (stack_push(&e->cancel_head, f, &f->next_cancel) && !engine_on_owner(e))
		eventfd_signal(e->wake_fd);
}

LR_API void lr_future_release(lr_future *f)
{
	if (f)
		future_unref(f);
}

static bool pull_ready(void *arg)
{
	struct lr_future *f = arg;
	/* Only the owner of a caller-driven engine drives: the same thread
	 * fills the queue, so a plain read is enough. */
	return atomic_load_explicit(&f->done, memory_order_acquire) || f->pull->head != NULL;
}

LR_API int lr_future_next_delta(lr_future *f, lr_delta *out, int timeout_ms)
{
	if (!f || !out || !f->pull)
		return LR_EINVAL;
	if (in_engine_callback(f->eng))
		timeout_ms = 0; /* the next delta can only come from this thread */
	struct pull_queue *q = f->pull;
	uint64_t deadline = timeout_ms > 0 ? clock_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
	for (;;) {
		uint32_t seq = atomic_load_explicit(&q->seq, memory_order_acquire);
		/* Read done before the queue: a delta queued before completion
		 * is then always seen. */
		bool done = atomic_load_explicit(&f->done, memory_order_acquire);
		pthread_mutex_lock(&q->lock);
		struct pull_delta *p = q->head;
		if (p) {
			q->head = p->next;
			if (!q->head)
				q->tail = NULL;
			free(q->current);
			q->current = p;
		}
		pthread_mutex_unlock(&q->lock);
		if (p) {
			*out = p->d;
			return 1;
		}
		if (done)
			return 0;
		int left_ms = timeout_ms;
		if (timeout_ms > 0) {
			uint64_t now = clock_now_ns();
			if (now >= deadline)
				return LR_ETIMEOUT;
			left_ms = (int)((deadline - now + 999999u) / 1000000u);
		} else if (timeout_ms == 0) {
			return LR_ETIMEOUT;
		}
		if (engine_on_owner(f->eng)) {
			engine_drive(f->eng, left_ms, pull_ready, f);
			continue;
		}
		struct timespec ts, *tsp = NULL;
		if (left_ms > 0) {
			ts.tv_sec = left_ms / 1000;
			ts.tv_nsec = (long)(left_ms % 1000) * 1000000L;
			tsp = &ts;
		}
		atomic_fetch_add(&q->waiting, 1);
		futex(&q->seq, FUTEX_WAIT_PRIVATE, seq, tsp);
		atomic_fetch_sub(&q->waiting, 1);
	}
}

LR_API int lr_config_check_model(const lr_config *cfg, const char *model, char *why, size_t why_len)
{
	char text[200] = "";
	int ret = 0;
	if (!model) {
		ret = LR_EINVAL;
		snprintf(text, sizeof(text), "no model");
	} else {
		const char *name;
		size_t name_len;
		enum provider p = provider_route(model, strlen(model), &name, &name_len);
		struct endpoint_source src;
		struct url u;
		const char *url_why = NULL;
		if (!name_len) {
			ret = LR_EINVAL;
			snprintf(text, sizeof(text), "the model name after \"%s/\" is empty", provider_info(p)->name);
		} else if ((ret = endpoint_source(cfg ? cfg->base_url : NULL, cfg ? cfg->api_key : NULL, p, &src,
		                                  text, sizeof(text)))) {
		} else if ((ret = url_parse(src.base, &u, &url_why))) {
			char shown[200];
			url_redact(src.base, shown, sizeof(shown));
			snprintf(text, sizeof(text), "%s base URL %.120s: %s", provider_info(p)->name, shown,
			         url_why ? url_why : "invalid");
		} else if (src.needs_key) {
			ret = LR_EAUTH;
			snprintf(text, sizeof(text), "%s is not set; %s needs a key", provider_info(p)->key_env,
			         src.base);
		}
	}
	if (why && why_len)
		snprintf(why, why_len, "%s", text);
	return ret;
}

/* ---- usage, cost, then, gather, blocking helpers ---- */

LR_API int lr_engine_usage(lr_engine *e, lr_usage_report *total, lr_model_usage *models, int max_models)
{
	if (!e || max_models < 0)
		return LR_EINVAL;
	return usage_read(&e->usage, total, models, max_models);
}

LR_API int lr_engine_price(lr_engine *e, const char *model, double *input, double *cached_input,
                           double *output)
{
	if (!e || !model)
		return LR_EINVAL;
	struct price p;
	if (!e->prices || !price_lookup(e->prices, model, strlen(model), &p))
		return LR_ENOTFOUND;
	if (input)
		*input = p.input;
	if (cached_input)
		*cached_input = p.cached_input;
	if (output)
		*output = p.output;
	return 0;
}

LR_API int lr_future_then(lr_future *f, lr_future_fn fn, void *user)
{
	if (!f || !fn || atomic_exchange(&f->then_used, 1))
		return LR_EINVAL;
	if (atomic_load_explicit(&f->done, memory_order_acquire)) {
		/* Complete (the engine looked for a callback before publishing
		 * that): run it here. */
		fn(user, f);
		return 0;
	}
	f->then_fn = fn;
	f->then_user = user;
	int expected = 0;
	if (!atomic_compare_exchange_strong_explicit(&f->then_state, &expected, 1, memory_order_acq_rel,
	                                             memory_order_acquire)) {
		fn(user, f); /* the engine completed it meanwhile, and saw no callback */
		return 0;
	}
	return 0;
}

LR_API int lr_wait_all(lr_future *const *fs, int n, int timeout_ms)
{
	if (!fs || n < 0)
		return LR_EINVAL;
	uint64_t deadline = timeout_ms > 0 ? clock_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
	int done = 0;
	for (int i = 0; i < n; i++) {
		if (!fs[i])
			continue;
		int left = timeout_ms;
		if (timeout_ms > 0) {
			uint64_t now = clock_now_ns();
			left = now < deadline ? (int)((deadline - now + 999999u) / 1000000u) : 0;
		}
		int w = lr_future_wait(fs[i], left);
		if (w < 0)
			return w; /* from a callback: see lr_future_wait */
		done += w == 1;
	}
	return done;
}

LR_API lr_future *lr_complete(lr_engine *e, lr_request *rq, int timeout_ms)
{
	if (in_engine_callback(e)) {
		lr_request_free(rq); /* taken over, as lr_submit would */
		return NULL;         /* it could never complete while this waits */
	}
	lr_future *f = lr_submit(e, rq);
	if (!f)
		return NULL;
	if (lr_future_wait(f, timeout_ms) != 1) {
		/* Out of time: the request is cancelled and handed back complete. */
		lr_future_cancel(f);
		lr_future_wait(f, -1);
	}
	return f;
}

LR_API int lr_run_batch(lr_engine *e, lr_request **rqs, int n, lr_future **out, int timeout_ms)
{
	if (!e || !rqs || !out || n < 0 || in_engine_callback(e)) {
		for (int i = 0; rqs && i < n; i++)
			lr_request_free(rqs[i]);
		return LR_EINVAL;
	}
	for (int i = 0; i < n; i++)
		out[i] = lr_submit(e, rqs[i]);
	if (lr_wait_all(out, n, timeout_ms) < n) {
		for (int i = 0; i < n; i++)
			if (out[i] && !lr_future_done(out[i]))
				lr_future_cancel(out[i]);
		lr_wait_all(out, n, -1);
	}
	int ok = 0;
	for (int i = 0; i < n; i++)
		ok += out[i] && lr_future_result(out[i])->error == LR_OK;
	return ok;
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

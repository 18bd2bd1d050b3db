/*
 * Futures: the reference count, the one completion path (future_complete),
 * the pull queue behind lr_future_next_delta, then-callbacks, and the
 * blocking helpers (wait, wait_all, complete, run_batch).
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
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cache.h"
#include "core/engine_internal.h"
#include "core/ratelimit.h"
#include "core/usage.h"
#include "provider/provider.h"
#include "provider/reply.h"
#include "util/clock.h"
#include "llmring.h"

/* The most memory a reused future keeps in one buffer: a larger one was
 * for a rare large request or response and goes back to malloc. */
#define FUTURE_KEEP_BYTES (16 * 1024)
/* Released futures a slab keeps at most: twice what may be on the wire,
 * plus some for the caller's queue; within what was live at the peak. */
#define FUTURE_SLAB_MAX 4096

int future_slab_new(struct lr_engine *e)
{
	struct future_slab *s = calloc(1, sizeof(*s)); /* owner: shared (engine + its futures) */
	if (!s)
		return LR_ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	unsigned cap = e->cfg.max_in_flight * 2 + 64;
	s->cap = cap > FUTURE_SLAB_MAX || cap < 64 ? FUTURE_SLAB_MAX : cap;
	atomic_init(&s->refs, 1);
	e->slab = s;
	return 0;
}

static void slab_unref(struct future_slab *s)
{
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
		pthread_mutex_destroy(&s->lock);
		free(s);
	}
}

/* What a kept future does not keep: the parts only some requests have
 * (stream decoder, pull queue, HTTP call, cache body, own URL) and
 * buffers grown past FUTURE_KEEP_BYTES. */
static void future_drop_parts(struct lr_future *f)
{
	stream_decoder_free(f->stream);
	f->stream = NULL;
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
		f->pull = NULL;
	}
	http_call_free(f->call);
	f->call = NULL;
	buf_free(&f->key_body);
	free(f->own_url);
	f->own_url = NULL;
	reply_recycle(&f->reply, FUTURE_KEEP_BYTES);
	if (f->resp_body.data && !f->spare_body.data && f->resp_body.cap <= FUTURE_KEEP_BYTES) {
		f->spare_body = f->resp_body;
		f->resp_body = (struct buf){0};
	}
	buf_free(&f->resp_body);
	buf_clear(&f->spare_body);
	if (f->spare_path.cap > FUTURE_KEEP_BYTES)
		buf_free(&f->spare_path);
	future_keep_req_bytes(f);
}

static void future_free(struct lr_future *f)
{
	future_drop_parts(f);
	struct future_slab *s = f->slab;
	if (s) {
		pthread_mutex_lock(&s->lock);
		bool keep = !s->closed && s->count < s->cap;
		if (keep) {
			f->next = s->free;
			s->free = f;
			s->count++;
		}
		pthread_mutex_unlock(&s->lock);
		if (keep)
			return;
	}
	reply_free(&f->reply);
	buf_free(&f->spare_body);
	buf_free(&f->spare_path);
	buf_free(&f->req_bytes);
	free(f);
	if (s)
		slab_unref(s);
}

/* The engine's end: kept futures are freed, later releases free theirs. */
void future_slab_close(struct future_slab *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->closed = true;
	struct lr_future *list = s->free;
	s->free = NULL;
	s->count = 0;
	pthread_mutex_unlock(&s->lock);
	while (list) {
		struct lr_future *next = list->next;
		list->slab = NULL; /* so future_free frees it */
		future_free(list);
		slab_unref(s);
		list = next;
	}
	slab_unref(s);
}

static void zero_span(struct lr_future *f, size_t from, size_t to)
{
	memset((char *)f + from, 0, to - from);
}

#define REPLY_ERR (offsetof(struct lr_future, reply) + offsetof(struct reply, err))
#define EX_ERR (offsetof(struct lr_future, ex) + offsetof(struct http_exchange, err))
_Static_assert(REPLY_ERR < EX_ERR && EX_ERR < offsetof(struct lr_future, request_id),
               "future_reset clears the spans between the messages in this order");

/* A kept future back to the state calloc gives, but for its kept memory
 * (the request bytes, spare body, path and text, the reply's scratch) and its
 * slab. Messages and ids are read only as strings: emptied, not wiped
 * (1.2 KB of the 2.7 KB a future has). */
static void future_reset(struct lr_future *f)
{
	struct buf req = f->req_bytes, body = f->spare_body, path = f->spare_path;
	struct buf text = f->reply.spare_text, scratch = f->reply.scratch;
	struct future_slab *s = f->slab;
	zero_span(f, 0, REPLY_ERR);
	error_clear(&f->reply.err);
	zero_span(f, REPLY_ERR + sizeof(struct error_info), EX_ERR);
	error_clear(&f->ex.err);
	zero_span(f, EX_ERR + sizeof(struct error_info), offsetof(struct lr_future, request_id));
	f->request_id[0] = '\0';
	f->requested_model[0] = '\0';
	error_clear(&f->err);
	f->req_bytes = req;
	f->spare_body = body;
	f->spare_path = path;
	f->reply.spare_text = text;
	f->reply.scratch = scratch;
	f->slab = s;
}

/* A future as calloc would give it (eng set, refs 0), reused when the
 * engine's slab has one; NULL when out of memory. */
struct lr_future *future_alloc(struct lr_engine *e)
{
	struct future_slab *s = e->slab;
	pthread_mutex_lock(&s->lock);
	struct lr_future *f = s->free;
	if (f) {
		s->free = f->next;
		s->count--;
	}
	pthread_mutex_unlock(&s->lock);
	if (f) {
		future_reset(f);
	} else {
		f = calloc(1, sizeof(*f)); /* owner: shared by refs; then the slab */
		if (!f)
			return NULL;
		atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
		f->slab = s;
	}
	f->eng = e;
	return f;
}

/* Done with the request bytes: small ones stay for the next request. */
void future_keep_req_bytes(struct lr_future *f)
{
	if (f->req_bytes.cap > FUTURE_KEEP_BYTES)
		buf_free(&f->req_bytes);
	else
		buf_clear(&f->req_bytes);
}

void future_unref(struct lr_future *f)
{
	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
		future_free(f);
}

void engine_publish_stats(struct lr_engine *e)
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

/* The engine-thread side of the delta callback: a copy for the pull
 * iterator first, then the caller's callback, so a callback that wakes
 * a lr_future_next_delta consumer finds the delta already queued. */
void future_delta(void *user, const lr_delta *d)
{
	struct lr_future *f = user;
	/* A delta the puller never gets would be silent loss: the request
	 * fails instead (the decoder stops at the reply's error). */
	if (f->pull && pull_queue_delta(f->pull, d))
		reply_fail(&f->reply, LR_ENOMEM, "out of memory queueing a stream delta");
	if (f->on_delta)
		f->on_delta(f->on_delta_user, d);
}

/* Usage, cost, the cache's store and the rate limiter's correction for
 * a completing future (its result's usage and provider already set). */
static void future_account(struct lr_engine *e, struct lr_future *f, int err)
{
	lr_result *r = &f->result;
	struct reply *rp = &f->reply;
	const char *model = rp->model[0] ? rp->model : f->requested_model;
	if (f->call || (f->cache_only && !r->cached)) {
		/* An HTTP call (files, batches) is no model's request, and a
		 * cache-only miss was never sent: neither is in usage. */
		r->cost_usd = -1;
	} else if (r->cached) {
		/* Nothing was paid: a request that succeeded, without tokens. */
		r->cost_usd = 0;
		r->cost_saved_usd = usage_record_cached(&e->usage, model, r->provider, &rp->usage);
		if (r->cost_saved_usd > 0)
			cache_count_saved(e->cache, r->cost_saved_usd);
	} else {
		r->cost_usd = usage_record(&e->usage, model, r->provider, &rp->usage, err == 0,
		                           f->attempts > 1 ? f->attempts - 1 : 0);
		if (!err && f->cache_state == CACHE_MISS && e->cache)
			cache_store(e->cache, f);
	}
	if (f->est_tokens > 0 && !r->cached && (rp->usage.input_tokens || rp->usage.output_tokens))
		limits_correct(&e->limits, f->est_tokens,
		               (double)(rp->usage.input_tokens + rp->usage.output_tokens));
}

/* Completes a future the engine has accepted (lr_submit's refusals end
 * in future_fail_early, before anyone can wait on them): result, timings,
 * accounting, then-callback, then waiters and the reap queue. */
void future_complete(struct lr_future *f, int err, const char *msg)
{
	struct lr_engine *e = f->eng;
	/* The turn's clock (when its completions arrived), read once for all
	 * of them; a fresh reading only when a timing taken since is later
	 * (a submission from another thread, a stream's first token), so the
	 * timings stay ordered. */
	uint64_t now = e->ring.now_ns;
	if (now < f->submit_ns || now < f->ex.sent_ns || now < f->ex.first_byte_ns ||
	    now < f->reply.first_token_ns)
		now = clock_now_ns();
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
		if (msg != f->err.message)
			error_set(&f->err, err, 0, "%s", msg ? msg : lr_strerror(err));
		f->err.code = err;
		r->error_message = f->err.message;
	}
	if (body_ok) {
		f->resp_body.data[f->resp_body.len] = '\0';
		r->body = f->resp_body.data;
		r->body_len = f->resp_body.len;
	}
	/* A provider that sends no request-id header (Gemini): its reply id stands in. */
	r->request_id = provider_request_id(f->provider, f->request_id, rp->id);
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
	r->streamed = f->stream != NULL || (r->cached && rp->fn);
	r->model = rp->model[0] ? rp->model : NULL;
	r->usage = rp->usage;
	r->provider = provider_row(f->provider)->name;
	future_account(e, f, err);
	r->attempts = f->attempts > 0 ? f->attempts : 1;
	r->timings.total_ms = now > f->submit_ns ? ns_to_ms(now - f->submit_ns) : 0;
	if (f->ex.sent_ns > f->submit_ns)
		r->timings.queued_ms = ns_to_ms(f->ex.sent_ns - f->submit_ns);
	if (f->ex.first_byte_ns > f->submit_ns)
		r->timings.ttfb_ms = ns_to_ms(f->ex.first_byte_ns - f->submit_ns);
	if (rp->first_token_ns > f->submit_ns)
		r->timings.ttft_ms = ns_to_ms(rp->first_token_ns - f->submit_ns);
	/* The request bytes are no longer needed (nor the caller's borrowed ones). */
	future_keep_req_bytes(f);
	http_call_release(f->call);
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

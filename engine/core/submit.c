/*
 * Submission: a request becomes a future with its bytes built, then goes
 * onto the submit stack (or completes at once when it is refused).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cache.h"
#include "core/engine_internal.h"
#include "core/engine_session.h"
#include "core/ratelimit.h"
#include "util/test_hooks.h"
#include "http/http_writer.h"
#include "io/url.h"
#include "provider/provider.h"
#include "provider/reply.h"
#include "provider/request.h"
#include "util/clock.h"
#include "llmring.h"

/* 0, or the code with f->err saying what was wrong. */
static int future_build_request(lr_engine *e, struct lr_future *f, lr_request *rq)
{
	struct buf fixed = {0}; /* owner: this function, for a per-request URL */
	const char *base_paths[PROVIDER_COUNT];
	int ret = 0;
	if (rq->base_url) {
		f->own_url = malloc(sizeof(*f->own_url));
		if (!f->own_url)
			return error_set(&f->err, LR_ENOMEM, 0, "%s", lr_strerror(LR_ENOMEM));
		const char *why = NULL;
		ret = url_parse(rq->base_url, f->own_url, &why);
		if (ret)
			return error_set(&f->err, ret, 0, "%s", why ? why : lr_strerror(ret));
	}
	for (int p = 0; p < PROVIDER_COUNT; p++)
		base_paths[p] = f->own_url ? f->own_url->path : e->ep[p].url.path;
	struct provider_request pr; /* owner: this function */
	ret = provider_build_request_into(rq, base_paths, &pr, &f->spare_path);
	if (ret) {
		error_copy(&f->err, &pr.err);
		if (!f->err.message[0])
			error_set(&f->err, ret, 0, "%s", lr_strerror(ret));
		return ret;
	}
	f->provider = pr.provider;
	f->endpoint = rq->endpoint;
	/* A copy, not snprintf's format walk: both are 96 bytes, NUL-terminated. */
	_Static_assert(sizeof(f->requested_model) == sizeof(pr.model), "the model's two copies");
	size_t model_len = strnlen(pr.model, sizeof(pr.model) - 1);
	memcpy(f->requested_model, pr.model, model_len);
	f->requested_model[model_len] = '\0';
	const struct endpoint *ep = &e->ep[pr.provider];
	const struct buf *hdrs = &ep->fixed_headers;
	if (f->own_url) {
		/* A different origin gets no key: it was given for the engine's. */
		ret = build_fixed_headers(&fixed, pr.provider, NULL);
		hdrs = &fixed;
	} else if (ep->err.code) {
		ret = error_copy(&f->err, &ep->err);
	} else if (ep->needs_key) {
		ret = error_set(&f->err, LR_EAUTH, 0, "%s is not set; %s needs a key",
		                provider_row(pr.provider)->key_env, ep->url.host);
	}
	const char *body = pr.body_is_input ? rq->body.data : pr.body.data;
	size_t body_len = pr.body_is_input ? rq->body.len : pr.body.len;
	struct buf *b = &f->req_bytes;
	const struct url *u = f->own_url ? f->own_url : &ep->url;
	if (!ret)
		ret = buf_reserve(b, pr.path.len + strlen(u->host_header) + hdrs->len + rq->headers.len +
		                         body_len + 96);
	if (!ret)
		ret = buf_reserve(&pr.path, 1);
	if (!ret) {
		pr.path.data[pr.path.len] = '\0';
		/* Validates the target: a path with spaces or controls is refused. */
		ret = http_write_request_line(b, "POST", pr.path.data, u->host_header);
		if (ret == LR_EINVAL)
			error_set(&f->err, ret, 0, "the request path is not a valid HTTP request target");
	}
	if (!ret) {
		/* Reserved above: these appends cannot fail. */
		buf_append(b, hdrs->data, hdrs->len);
		if (rq->headers.len)
			buf_append(b, rq->headers.data, rq->headers.len);
		ret = http_write_body(b, body, body_len);
	}
	if (!ret && e->cache) {
		/* The cache keys on the unified body: OpenAI's dialect sends it
		 * (the tail of the request bytes), the others translated it. */
		f->key_body_off = b->len - body_len;
		f->key_body_len = body_len;
		f->key_body = pr.unified;
		memset(&pr.unified, 0, sizeof(pr.unified));
	}
	if (!ret && e->cfg.tokens_per_minute > 0)
		f->est_tokens = limits_estimate_tokens(body, body_len, rq->max_tokens);
	/* The path's memory stays with the future for its next request. */
	f->spare_path = pr.path;
	pr.path = (struct buf){0};
	provider_request_free(&pr);
	buf_free(&fixed);
	if (ret && !f->err.code) /* out of memory: no more to say */
		error_set(&f->err, ret, 0, "%s", lr_strerror(ret));
	return ret;
}

/* Completed on the caller's thread: the engine never sees it. */
void future_fail_early(lr_engine *e, struct lr_future *f, int err, const char *why)
{
	f->result.error = err;
	if (why != f->err.message)
		error_set(&f->err, err, 0, "%s", why);
	f->err.code = err;
	f->result.error_message = f->err.message;
	f->result.provider = provider_row(f->provider)->name;
	f->result.cost_usd = -1;
	future_keep_req_bytes(f);
	http_call_release(f->call); /* borrowed body bytes go back at once */
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
	error_set(&f->err, err, 0, "%s", msg);
	f->result.error_message = f->err.message;
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
	struct lr_future *f = future_alloc(e); /* owner: shared by refs (caller + engine) */
	if (!f) {
		lr_request_free(rq);
		return NULL;
	}
	atomic_init(&f->refs, 2);
	f->user_data = rq->user_data;
	f->on_delta = rq->on_delta;
	f->on_delta_user = rq->on_delta_user;
	/* The reply is empty (future_alloc), with any kept memory. */
	reply_set_callback(&f->reply, rq->on_delta || rq->stream ? future_delta : NULL, f);
	if (rq->stream) {
		f->pull = calloc(1, sizeof(*f->pull)); /* owner: the future */
		if (!f->pull) {
			atomic_store(&f->refs, 1);
			future_unref(f);
			lr_request_free(rq);
			return NULL;
		}
		pthread_mutex_init(&f->pull->lock, NULL);
	}
	f->submit_ns = clock_now_ns();
	f->attempt_ns = f->submit_ns;
	f->should_retry = -1;
	f->max_retries = rq->max_retries >= 0 ? rq->max_retries : e->cfg.max_retries;
	f->cache_only = rq->cache_only;
	f->result.cost_usd = -1;
	f->result.retry_after_s = -1;
	ring_timer_init(&f->deadline, future_deadline_fired);
	f->connect_ns = clock_seconds_to_ns(rq->connect_s > 0 ? rq->connect_s : e->cfg.connect_timeout_s);
	f->idle_ns = clock_seconds_to_ns(rq->idle_s > 0 ? rq->idle_s : e->cfg.idle_timeout_s);
	f->total_ns = clock_seconds_to_ns(rq->total_s > 0 ? rq->total_s : e->cfg.total_timeout_s);
	int ret = rq->call ? future_build_http(e, f, rq) : future_build_request(e, f, rq);
	lr_request_free(rq);
	/* Counted before stopping is read (both seq_cst, against the store
	 * in lr_engine_destroy): either this call sees the stop, or the free
	 * waits for its push. */
	atomic_fetch_add(&e->submitting, 1);
	if (ret || atomic_load(&e->stopping)) {
		future_fail_early(e, f, ret ? ret : LR_ECANCELLED,
		                  ret ? f->err.message : "the engine is shutting down");
		atomic_fetch_sub_explicit(&e->submitting, 1, memory_order_release);
		return f;
	}
	engine_submit_window_hook(e);
	if (e->cache && !f->call && cache_submit(e->cache, f)) {
		/* The cache thread hands it to the submit stack after its lookup
		 * (plain HTTP calls are never cached). */
		atomic_fetch_sub_explicit(&e->submitting, 1, memory_order_release);
		return f;
	}
	if (f->cache_only) {
		/* A miss decided here (the key set rules it out, the cache only
		 * writes, or there is none): never sent. */
		future_fail_early(e, f, LR_ENOTCACHED,
		                  e->cache ? "not in the response cache" : "the engine has no response cache");
		atomic_fetch_sub_explicit(&e->submitting, 1, memory_order_release);
		return f;
	}
	bool was_empty = stack_push(&e->submit_head, f, &f->next);
	/* The owner of a caller-driven engine takes the stack on its next
	 * turn; anyone else wakes the loop. */
	if (was_empty && !engine_on_owner(e))
		eventfd_signal(e->wake_fd);
	/* e may be freed from here on. */
	atomic_fetch_sub_explicit(&e->submitting, 1, memory_order_release);
	return f;
}

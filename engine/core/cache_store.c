/*
 * What goes into the cache (cache.h): the engine's own successes
 * (cache_store), a response the caller got another way
 * (lr_engine_cache_store: a provider's batch API), both queued on the
 * store stack for the cache thread, and the wait until what was queued
 * is committed (lr_engine_cache_flush).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cache.h"
#include "core/cache_filter.h"
#include "core/cache_internal.h"
#include "core/engine_internal.h"
#include "format/json.h"
#include "provider/provider.h"
#include "provider/reply.h"

void cache_store(struct cache *c, struct lr_future *f)
{
	if (!c->writes || f->result.http_status < 200 || f->result.http_status > 299 ||
	    !f->result.body_is_json || !f->resp_body.len)
		return;
	struct cache_put *p = malloc(sizeof(*p) + f->resp_body.len); /* owner: the put stack */
	if (!p)
		return; /* not stored: the request itself is done */
	memcpy(p->key, f->cache_key, 32);
	p->status = f->result.http_status;
	p->provider = provider_row(f->provider)->name;
	p->endpoint = f->endpoint;
	snprintf(p->model, sizeof(p->model), "%s", f->reply.model[0] ? f->reply.model : f->requested_model);
	snprintf(p->request_id, sizeof(p->request_id), "%s", f->request_id);
	p->body_len = f->resp_body.len;
	memcpy(p->body, f->resp_body.data, f->resp_body.len);
	cache_push_put(c, p, engine_on_owner(c->e));
}

bool cache_writes(const struct cache *c)
{
	return c && c->writes;
}

void cache_push_put(struct cache *c, struct cache_put *p, bool on_owner)
{
	/* In the filter before the request completes: a request sent after
	 * it finds this response (its lookup comes to the cache thread,
	 * which takes stores before lookups). */
	/* Not in a complete filter: no row to replace (the writer skips the
	 * DELETE). A filter that is not fresh may miss another process's row
	 * of this key: then both rows stay, and lookups take the newer. */
	bool was_there = true;
	if (cache_filter_add(&c->filter, cache_filter_word(p->key), &was_there) != 0)
		filter_give_up(c);
	p->maybe_dup = was_there || !atomic_load_explicit(&c->filter_on, memory_order_acquire);
	struct cache_put *old = atomic_load_explicit(&c->put_head, memory_order_relaxed);
	do {
		p->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&c->put_head, &old, p, memory_order_seq_cst,
	                                                memory_order_relaxed));
	/* One wake-up a turn (cache_kick), not one a store: a lookup finds the
	 * stores pushed before it whenever the thread wakes for it, so stores
	 * only need the thread within the write delay, and a wake-up each
	 * (a futex and a context switch) cost the loop more than the store. */
	if (!old) {
		if (on_owner)
			c->kick = true;
		else
			cache_wake(c);
	}
}
/* The provider named (a row's own name, which the entry keeps), or
 * PROVIDER_COUNT. */
static enum provider provider_named(const char name[16])
{
	if (!memchr(name, '\0', 16))
		return PROVIDER_COUNT;
	for (int p = 0; p < PROVIDER_COUNT; p++)
		if (strcmp(provider_row((enum provider)p)->name, name) == 0)
			return (enum provider)p;
	return PROVIDER_COUNT;
}

/*
 * Whether body reads back as a hit would read it (cache_take parses it
 * with the OpenAI parser: a stored body that does not is asked again and
 * replaced, so storing it would only cost a request later); its model
 * into model. On the caller's thread, with a document of its own.
 */
static int read_back(enum lr_endpoint ep, const char *body, size_t len, char *model, size_t cap)
{
	struct json_doc doc = {0}; /* owner: here */
	struct reply r;            /* owner: here */
	struct buf unused = {0};   /* owner: here; OpenAI's parser never rewrites */
	bool is_json = false, rewritten = false;
	reply_init(&r, NULL, NULL);
	provider_parse_response(PROVIDER_OPENAI, ep, &doc, 200, body, len, &r, &is_json, &unused,
	                        &rewritten);
	int ret = 0;
	if (r.err.code == LR_ENOMEM)
		ret = LR_ENOMEM;
	else if (r.err.code || !is_json)
		ret = LR_EINVAL;
	snprintf(model, cap, "%s", r.model);
	reply_free(&r);
	buf_free(&unused);
	json_doc_free(&doc);
	return ret;
}

LR_API int lr_engine_cache_store(lr_engine *e, const lr_cache_key *key, const char *request_id,
                                 const char *body, size_t len)
{
	if (!e || !key || !body || !len)
		return LR_EINVAL;
	enum provider prov = provider_named(key->provider);
	if (prov == PROVIDER_COUNT || key->endpoint < LR_ENDPOINT_CHAT ||
	    key->endpoint > LR_ENDPOINT_COMPLETIONS)
		return LR_EINVAL;
	if (!cache_writes(e->cache))
		return 0; /* no cache, or one that only answers */
	char model[128];
	int ret = read_back((enum lr_endpoint)key->endpoint, body, len, model, sizeof(model));
	if (ret)
		return ret;
	struct cache_put *p = malloc(sizeof(*p) + len); /* owner: the cache (cache_push_put) */
	if (!p)
		return LR_ENOMEM;
	memcpy(p->key, key->sha256, 32);
	p->status = 200;
	p->provider = provider_row(prov)->name;
	p->endpoint = (enum lr_endpoint)key->endpoint;
	snprintf(p->model, sizeof(p->model), "%s", model);
	snprintf(p->request_id, sizeof(p->request_id), "%s", request_id ? request_id : "");
	p->body_len = len;
	memcpy(p->body, body, len);
	/* Never counted as the owner's turn: the caller may be outside any
	 * turn (a caller-driven engine between its calls), so the cache
	 * thread is woken now. */
	cache_push_put(e->cache, p, false);
	return 1;
}

LR_API int lr_engine_cache_flush(lr_engine *e, int timeout_ms)
{
	if (!e || in_engine_callback(e))
		return LR_EINVAL; /* a callback must not wait */
	struct cache *c = e->cache;
	if (!c || !c->writes || !c->started)
		return 1; /* nothing is ever queued */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	if (timeout_ms > 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&c->lock);
	/* Raised after every store this thread queued (the pushes are
	 * seq_cst, as is this): the thread reads it before it takes them. */
	uint64_t want = atomic_fetch_add(&c->flush_asked, 1) + 1;
	pthread_cond_signal(&c->wake);
	int rc = 0;
	while (c->flush_done < want && timeout_ms != 0 && rc != ETIMEDOUT)
		rc = timeout_ms < 0 ? pthread_cond_wait(&c->flushed, &c->lock)
		                    : pthread_cond_timedwait(&c->flushed, &c->lock, &until);
	bool done = c->flush_done >= want;
	pthread_mutex_unlock(&c->lock);
	return done ? 1 : 0;
}

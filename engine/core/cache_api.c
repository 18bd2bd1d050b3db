/*
 * The response cache for callers that get responses another way (a
 * provider's batch API, llmring batch --via provider-batch): a request's
 * key once the cache keyed it, and a response stored under a key, queued
 * as the engine's own stores are (cache.h: cache_push_put). Lookups that
 * send nothing are lr_request_set_cache_only (submit.c, cache_replay.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cache.h"
#include "core/cache_internal.h"
#include "core/engine_internal.h"
#include "format/json.h"
#include "provider/provider.h"
#include "provider/reply.h"

LR_API int lr_future_cache_key(const lr_future *f, lr_cache_key *out)
{
	/* Done first: until then the cache thread may still be setting
	 * cache_state. */
	if (!f || !out || !lr_future_done(f) || f->call || f->cache_state == CACHE_NONE)
		return LR_EINVAL;
	memset(out, 0, sizeof(*out));
	memcpy(out->sha256, f->cache_key, sizeof(out->sha256));
	snprintf(out->provider, sizeof(out->provider), "%s", provider_row(f->provider)->name);
	out->endpoint = (int)f->endpoint;
	return 0;
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

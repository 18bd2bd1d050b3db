/* A request's cache key (cache_internal.h: cache_make_key), and the key
 * handed to a caller (lr_future_cache_key). */
#include <stdio.h>
#include <string.h>

#include "core/cache.h"
#include "core/cache_internal.h"
#include "core/engine_internal.h"
#include "format/jcs.h"
#include "provider/provider.h"
#include "util/sha256.h"

/* Part of every key: a change to what keys are made of bumps it, so old
 * entries are never read as answers to a different question. */
#define CACHE_KEY_VERSION "llmring-cache-1"

const char *cache_endpoint_name(enum lr_endpoint ep)
{
	return ep == LR_ENDPOINT_EMBEDDINGS ? "embeddings" : ep == LR_ENDPOINT_COMPLETIONS ? "completions"
	                                                                                    : "chat";
}

/*
 * SHA-256 of the key's parts, each ended by a newline (none can hold
 * one but the body, which comes last): the version, the provider, the
 * endpoint, the base URL (origin and path) and the unified body in
 * canonical form without the fields that do not change the answer.
 * 0, or LR_EPROTO when the body has no canonical form. On the
 * submitting thread: the canonical form is written to the future's
 * spare body (its response's memory later, so nothing is allocated once
 * futures are reused).
 */
int cache_make_key(const struct lr_engine *e, struct lr_future *f, unsigned char key[32])
{
	struct buf *canon = &f->spare_body;
	static const char *const drop[] = {"user", "metadata", "stream", "stream_options"};
	const char *body = f->key_body.len ? f->key_body.data : f->req_bytes.data + f->key_body_off;
	size_t len = f->key_body.len ? f->key_body.len : f->key_body_len;
	buf_clear(canon);
	int ret = jcs_canonicalize(body, len, drop, 4, canon);
	if (ret)
		return ret;
	const struct url *u = f->own_url ? f->own_url : &e->ep[f->provider].url;
	/* "%s\n%s\n%s\n%s://%s:%u%s\n" of the parts above, without printf's
	 * cost (a tenth of a lookup's keying). */
	char head[sizeof(CACHE_KEY_VERSION) + 64 + sizeof(u->host) + sizeof(u->path) + 32];
	size_t n = 0;
	const char *pieces[] = {CACHE_KEY_VERSION "\n", provider_row(f->provider)->name, "\n",
	                        cache_endpoint_name(f->endpoint), "\n", u->https ? "https://" : "http://",
	                        u->host, ":"};
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		size_t piece_len = strnlen(pieces[i], 255);
		memcpy(head + n, pieces[i], piece_len);
		n += piece_len;
	}
	char digits[8];
	int nd = 0;
	unsigned port = u->port;
	do
		digits[nd++] = (char)('0' + port % 10);
	while ((port /= 10) && nd < 8);
	while (nd)
		head[n++] = digits[--nd];
	size_t plen = strnlen(u->path, sizeof(u->path) - 1);
	memcpy(head + n, u->path, plen);
	n += plen;
	head[n++] = '\n';
	struct sha256_part parts[2] = {{head, n}, {canon->data, canon->len}};
	sha256_parts(parts, 2, key);
	buf_clear(canon);
	return 0;
}

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

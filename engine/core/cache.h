/*
 * The response cache (lr_config.cache_path): a SQLite file of successful
 * responses, worked by threads of its own so the loop never waits on
 * the disk or a lock.
 *
 *   lr_submit -> cache_submit: key (RFC 8785 + SHA-256), and a miss the
 *   key set rules out goes to the submit stack at once; else (queue) ->
 *   cache thread: SELECT when it may be there -> the engine's
 *   submit stack, marked hit or miss -> engine thread: a hit is replayed
 *   and completed (cache_take), a miss goes to the network ->
 *   future_complete of a success -> cache_store (queue) -> cache thread:
 *   held in memory (found by lookups) -> writer thread: INSERTs, one
 *   transaction per batch of up to 4,096 or 50 ms.
 *
 * Nothing here fails a request: a cache that cannot be read or written
 * gives misses and drops stores, and each kind of problem goes to on_log
 * once (from the engine thread, as on_log promises).
 */
#ifndef LR_CACHE_H
#define LR_CACHE_H

#include <stdbool.h>

#include "llmring.h"
#include "util/errors.h"

struct lr_engine;
struct lr_future;
struct cache;

/* lr_future.cache_state */
enum cache_state {
	CACHE_NONE = 0,  /* not cached (no cache, or not cacheable) */
	CACHE_LOOKUP,    /* on the cache's queue, or back with nothing found */
	CACHE_MISS,      /* looked up (or write-only) and not found: store its success */
	CACHE_HIT,       /* resp_body holds the stored response */
};

/* The cache of e, before e's loop starts (which reads e->cache from
 * then on). 0 or LR_EINVAL / LR_ENOMEM with why in *err. Without
 * cache_path, or mode off, *out is NULL and 0 is returned. */
int cache_new(struct lr_engine *e, struct cache **out, struct error_info *err);
/* Starts its thread (the file is opened there), once e's loop runs: the
 * thread writes e's wake eventfd. 0 or LR_ESYSTEM with why in *err. */
int cache_start(struct cache *c, struct error_info *err);
/* Stops the thread (when started) after it has written what was queued; futures still
 * on its queue go to the engine's submit stack unlooked-up. Frees c. */
void cache_free(struct cache *c);

/* lr_submit, any thread, for a future whose request bytes are built:
 * keys it (cache_state, cache_key). true: the cache took it, to put it on
 * the submit stack after its lookup; false: a miss decided here (the
 * filter rules it out, or the cache only writes) or not cacheable: the
 * caller puts it on the submit stack itself. */
bool cache_submit(struct cache *c, struct lr_future *f);
/* Engine thread, before its loop waits and at the end of a turn: wakes
 * the cache thread for the lookups submitted from this thread meanwhile. */
void cache_kick(struct lr_engine *e);
/* Engine thread, a future back from the cache: true when it is done
 * with (a hit replayed and completed, or cancelled while on the queue);
 * false: send it. */
bool cache_take(struct lr_engine *e, struct lr_future *f);
/* Engine thread, in future_complete of a success that went to the network. */
void cache_store(struct cache *c, struct lr_future *f);
/* Whether c stores responses (a cache, not LR_CACHE_READ). */
bool cache_writes(const struct cache *c);
/* Queues a filled put (cache_internal.h; owner: the cache from here) for
 * the writer, found by lookups at once. on_owner: the engine's own
 * thread inside a turn, whose end wakes the cache thread (cache_kick);
 * else it is woken now. */
struct cache_put;
void cache_push_put(struct cache *c, struct cache_put *p, bool on_owner);
/* Engine thread: hands a problem the cache thread met to on_log (once per kind). */
void cache_flush_log(struct lr_engine *e);
/* A hit's would-be cost, counted (engine thread). */
void cache_count_saved(struct cache *c, double usd);
void cache_read_stats(struct cache *c, lr_cache_stats *out);

#endif

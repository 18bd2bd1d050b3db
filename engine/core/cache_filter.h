/*
 * The keys a cache file holds, as a set of their first 64 bits: a lookup
 * whose key is not in it is a miss without a SELECT, decided on the
 * submitting thread (cache.c). A key in it may still be absent (two keys
 * that share 64 bits, or a row replaced), so a "maybe" is always read
 * from the file.
 *
 * Any thread reads it without a lock; adds (the cache thread's rows from
 * the file, the engine thread's stores) take its lock. Slots only go from
 * empty to full, and a table outgrown is kept until the filter is freed
 * (a reader may still be in it; the old tables together are at most as
 * big as the current one), so a reader never sees freed memory and an
 * add that happened before a reader's acquire is always seen.
 */
#ifndef LR_CACHE_FILTER_H
#define LR_CACHE_FILTER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct filter_table {
	struct filter_table *older; /* owner: this table; the one it replaced */
	size_t cap;                 /* a power of two */
	_Atomic uint64_t slots[];   /* 0 is empty (a key's 0 is stored as 1) */
};

struct cache_filter {
	_Atomic(struct filter_table *) table; /* owner: the filter; NULL until the first add */
	pthread_mutex_t lock;                 /* adds */
	size_t count;                         /* under lock */
};

void cache_filter_init(struct cache_filter *f);
/* The first 64 bits of a 32-byte key (big-endian), as the filter keeps
 * them and as the file's k64 column holds them. */
uint64_t cache_filter_word(const unsigned char key[32]);
/* Adds w (any thread); LR_ENOMEM (the filter then misses w: stop
 * trusting it) or 0. *was_there (when not NULL): w was in it already. */
int cache_filter_add(struct cache_filter *f, uint64_t w, bool *was_there);
/* Any thread, without a lock. */
bool cache_filter_may_hold(const struct cache_filter *f, uint64_t w);
/* No reader or adder may be left. */
void cache_filter_free(struct cache_filter *f);

#endif

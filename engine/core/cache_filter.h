/*
 * The keys a cache file holds, as a set of their first 64 bits (the
 * cache thread's own): a lookup whose key is not in it is a miss without
 * a SELECT. A key in it may still be absent (two keys that share 64 bits,
 * or a row replaced), so a "maybe" is always read from the file.
 */
#ifndef LR_CACHE_FILTER_H
#define LR_CACHE_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_filter {
	uint64_t *slots; /* owner: the filter; 0 is empty (a key's 0 is stored as 1) */
	size_t cap;      /* a power of two, or 0 */
	size_t count;
};

/* The first 64 bits of a 32-byte key, as the filter keeps them. */
uint64_t cache_filter_word(const unsigned char key[32]);
/* Adds w; LR_ENOMEM (the filter is then unusable: free it) or 0. */
int cache_filter_add(struct cache_filter *f, uint64_t w);
bool cache_filter_may_hold(const struct cache_filter *f, uint64_t w);
void cache_filter_free(struct cache_filter *f);

#endif

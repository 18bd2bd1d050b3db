/* The set of key prefixes (cache_filter.h): open addressing, linear
 * probing, at most half full. The words are SHA-256 bits: spread already. */
#include "core/cache_filter.h"

#include <stdlib.h>
#include <string.h>

#include "llmring.h"

void cache_filter_init(struct cache_filter *f)
{
	atomic_init(&f->table, NULL);
	pthread_mutex_init(&f->lock, NULL);
	f->count = 0;
}

uint64_t cache_filter_word(const unsigned char key[32])
{
	/* Big-endian: the file's k64 (cache_k64) is the same on every host. */
	uint64_t w = 0;
	for (int i = 0; i < 8; i++)
		w = w << 8 | key[i];
	return w ? w : 1;
}

/* Adds w to t (not full); true when it was not there. Under the lock. */
static bool put(struct filter_table *t, uint64_t w)
{
	size_t mask = t->cap - 1;
	for (size_t i = (size_t)w & mask;; i = (i + 1) & mask) {
		uint64_t s = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
		if (s == w)
			return false;
		if (!s) {
			/* Released: a reader's acquire of a later event (the
			 * future's completion) sees it. */
			atomic_store_explicit(&t->slots[i], w, memory_order_release);
			return true;
		}
	}
}

int cache_filter_add(struct cache_filter *f, uint64_t w, bool *was_there)
{
	int ret = 0;
	bool added = false;
	pthread_mutex_lock(&f->lock);
	struct filter_table *t = atomic_load_explicit(&f->table, memory_order_relaxed);
	if (!t || 2 * (f->count + 1) > t->cap) {
		size_t cap = t ? 2 * t->cap : 1024;
		struct filter_table *n = calloc(1, sizeof(*n) + cap * sizeof(n->slots[0])); /* owner: f */
		if (!n) {
			ret = LR_ENOMEM;
			goto out;
		}
		n->cap = cap;
		n->older = t;
		for (size_t i = 0; t && i < t->cap; i++) {
			uint64_t s = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
			if (s)
				put(n, s);
		}
		atomic_store_explicit(&f->table, n, memory_order_release);
		t = n;
	}
	if ((added = put(t, w)))
		f->count++;
out:
	pthread_mutex_unlock(&f->lock);
	if (was_there)
		*was_there = !ret && !added;
	return ret;
}

bool cache_filter_may_hold(const struct cache_filter *f, uint64_t w)
{
	struct filter_table *t = atomic_load_explicit(&((struct cache_filter *)f)->table,
	                                              memory_order_acquire);
	if (!t)
		return false;
	size_t mask = t->cap - 1;
	for (size_t i = (size_t)w & mask;; i = (i + 1) & mask) {
		uint64_t s = atomic_load_explicit(&t->slots[i], memory_order_acquire);
		if (s == w)
			return true;
		if (!s)
			return false;
	}
}

void cache_filter_free(struct cache_filter *f)
{
	struct filter_table *t = atomic_load_explicit(&f->table, memory_order_relaxed);
	while (t) {
		struct filter_table *older = t->older;
		free(t);
		t = older;
	}
	atomic_store_explicit(&f->table, NULL, memory_order_relaxed);
	f->count = 0;
	pthread_mutex_destroy(&f->lock);
}

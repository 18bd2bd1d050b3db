/* The set of key prefixes (cache_filter.h): open addressing, linear
 * probing, at most half full. The words are SHA-256 bits: spread already. */
#include "core/cache_filter.h"

#include <stdlib.h>
#include <string.h>

#include "llmring.h"

uint64_t cache_filter_word(const unsigned char key[32])
{
	uint64_t w;
	memcpy(&w, key, sizeof(w));
	return w ? w : 1;
}

/* Adds w to slots (not full); true when it was not there. */
static bool put(uint64_t *slots, size_t cap, uint64_t w)
{
	for (size_t i = (size_t)w & (cap - 1);; i = (i + 1) & (cap - 1)) {
		if (slots[i] == w)
			return false;
		if (!slots[i]) {
			slots[i] = w;
			return true;
		}
	}
}

int cache_filter_add(struct cache_filter *f, uint64_t w)
{
	if (2 * (f->count + 1) > f->cap) {
		size_t cap = f->cap ? 2 * f->cap : 1024;
		uint64_t *slots = calloc(cap, sizeof(*slots)); /* owner: f */
		if (!slots)
			return LR_ENOMEM;
		for (size_t i = 0; i < f->cap; i++)
			if (f->slots[i])
				put(slots, cap, f->slots[i]);
		free(f->slots);
		f->slots = slots;
		f->cap = cap;
	}
	if (put(f->slots, f->cap, w))
		f->count++;
	return 0;
}

bool cache_filter_may_hold(const struct cache_filter *f, uint64_t w)
{
	if (!f->cap)
		return false;
	for (size_t i = (size_t)w & (f->cap - 1);; i = (i + 1) & (f->cap - 1)) {
		if (f->slots[i] == w)
			return true;
		if (!f->slots[i])
			return false;
	}
}

void cache_filter_free(struct cache_filter *f)
{
	free(f->slots);
	memset(f, 0, sizeof(*f));
}

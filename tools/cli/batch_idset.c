/*
 * The custom_ids of a batch (batch.h, struct id_set): open addressing with
 * linear probing, keys copied into an arena that is freed whole. Only this
 * set grows with the input: the duplicates and the lines done in an
 * earlier run are found through it.
 */
#include <stdlib.h>
#include <string.h>

#include "batch.h"

uint64_t hash_bytes(const char *s, size_t n)
{
	/* FNV-1a, then a final mix so the low bits (the slot) spread well. */
	uint64_t h = 0xcbf29ce484222325u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3u;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	return h ? h : 1;
}

static const char *arena_copy(struct id_set *set, const char *s, size_t n)
{
	struct arena_block *b = set->arena;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->next = set->arena;
		b->used = 0;
		b->cap = cap;
		set->arena = b;
	}
	char *p = b->data + b->used;
	memcpy(p, s, n);
	b->used += n;
	return p;
}

struct id_entry *id_set_find(struct id_set *set, const char *key, size_t len, uint64_t hash)
{
	if (!set->cap)
		return NULL;
	size_t mask = set->cap - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		struct id_entry *e = &set->slots[i];
		if (e->hash == 0)
			return NULL;
		if (e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0)
			return e;
	}
}

static int id_set_grow(struct id_set *set)
{
	size_t cap = set->cap ? set->cap * 2 : 1024;
	struct id_entry *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -1;
	for (size_t k = 0; k < set->cap; k++) {
		struct id_entry *e = &set->slots[k];
		if (!e->hash)
			continue;
		size_t i = e->hash & (cap - 1);
		while (slots[i].hash)
			i = (i + 1) & (cap - 1);
		slots[i] = *e;
	}
	free(set->slots);
	set->slots = slots;
	set->cap = cap;
	return 0;
}

struct id_entry *id_set_add(struct id_set *set, const char *key, size_t len, uint64_t hash,
                            enum id_state state)
{
	if (len > UINT32_MAX)
		return NULL;
	if ((set->count + 1) * 4 > set->cap * 3 && id_set_grow(set))
		return NULL;
	const char *copy = arena_copy(set, key, len);
	if (!copy)
		return NULL;
	size_t mask = set->cap - 1;
	size_t i = hash & mask;
	while (set->slots[i].hash)
		i = (i + 1) & mask;
	set->slots[i] = (struct id_entry){hash, copy, (uint32_t)len, state};
	set->count++;
	return &set->slots[i];
}

void id_set_free(struct id_set *set)
{
	free(set->slots);
	while (set->arena) {
		struct arena_block *next = set->arena->next;
		free(set->arena);
		set->arena = next;
	}
	memset(set, 0, sizeof(*set));
}

/*
 * The mock's provider batch APIs (issue 13), private to tools/mock:
 * OpenAI's Files + Batches and Anthropic's Message Batches.
 *
 *   mock_batch_parse.c  pure parsing: multipart/form-data, a strict JSON
 *                       value skipper, a batch line's fields, custom_id
 *                       rules, the id map (no server state; unit-tested and
 *                       fuzzed: tests/test_mock_batch_parse.c,
 *                       tests/fuzz/fuzz_mock_batch.c)
 *   mock_batch_store.c  files, batches and the submit counter; the state
 *                       directory (atomic writes, reload on start)
 *   mock_batch_run.c    the time-compressed lifecycle, done in slices per
 *                       loop turn: validation, the lines' answers, results
 *   mock_batch_api.c    the HTTP endpoints and the objects' JSON
 */
#ifndef LR_MOCK_BATCH_H
#define LR_MOCK_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ */
/* mock_batch_parse.c: pure functions over caller-owned bytes          */

/* The boundary parameter of a multipart/form-data Content-Type value
 * (quoted or not, 1..70 bytes). 0, or -1 when it is not multipart or has
 * no usable boundary. *b borrows from ct. */
int mock_mp_boundary(const char *ct, size_t n, const char **b, size_t *bl);

/* One part of a multipart body; every pointer borrows from the body. */
struct mock_mp_part {
	const char *name;      /* the Content-Disposition name */
	size_t name_len;
	const char *filename;  /* NULL when the part has none */
	size_t filename_len;
	const char *data;
	size_t len;
};

/* The part after *pos in body[0..len) (start *pos at 0). 1: a part (and
 * *pos advanced); 0: the closing delimiter was reached; -1: malformed. */
int mock_mp_next(const char *body, size_t len, const char *bnd, size_t bl, size_t *pos,
		 struct mock_mp_part *part);

/* The end of the JSON value starting at p (leading whitespace allowed),
 * or NULL when it is not one valid value within depth 64. */
const char *mock_json_skip(const char *p, const char *end);

/* The members of the JSON object [p, end): for each of nkeys keys (with
 * quotes, e.g. "\"custom_id\""), the span of its value (a string value
 * without its quotes; val[i] NULL when absent) and its kind ('s' string,
 * 'o' object, 'a' array, 'x' other). 0, or -1 when [p, end) is not exactly
 * one JSON object (whitespace around allowed). */
int mock_json_fields(const char *p, const char *end, const char *const *keys, size_t nkeys,
		     const char **val, size_t *vlen, char *kind);

/* Anthropic's custom_id rule: ^[a-zA-Z0-9_-]{1,64}$ (over the raw JSON
 * string contents, so any escape fails it). */
bool mock_custom_id_ok(const char *s, size_t n);

/* "bytes=N-" or "bytes=N-M" (one range). true with *from and *to (to is
 * UINT64_MAX without an end); false for anything else. */
bool mock_parse_range(const char *v, size_t n, uint64_t *from, uint64_t *to);

/* A string -> count map (custom_id counts and duplicate checks). */
struct mock_idslot {
	char *key;     /* owner: the map */
	uint32_t klen;
	uint32_t count;
};
struct mock_idmap {
	struct mock_idslot *slots; /* owner: the map */
	size_t cap, n;
};
/* Adds add to key's count; returns the count now. Aborts when out of memory. */
uint32_t mock_idmap_add(struct mock_idmap *m, const char *key, size_t klen, uint32_t add);
uint32_t mock_idmap_get(const struct mock_idmap *m, const char *key, size_t klen);
void mock_idmap_free(struct mock_idmap *m);

#endif

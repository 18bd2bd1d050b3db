/*
 * libFuzzer: the batch APIs' pure parsers (tools/mock/mock_batch_parse.c):
 * multipart/form-data, the JSON skipper and field finder, custom_id rules,
 * Range values and the id map.
 *
 * The input's first line (up to '\n') is a Content-Type value, the rest a
 * body. The body goes through mock_mp_next until the end or an error, into
 * an exact allocation (so ASan sees every read past it), then through
 * mock_json_fields, line by line as a batch file is, and the first line
 * through mock_parse_range.
 *
 * Oracles: sanitizers; every part, value and skipped span lies inside the
 * input; a part never overlaps the one before; mock_json_skip's end is
 * after its start; the id map counts what was added.
 */
#include "mock_batch.h"

#include <stdlib.h>
#include <string.h>

static void inside(const char *p, size_t n, const char *lo, const char *hi)
{
	if (n && (!p || p < lo || p + n > hi))
		abort();
}

static void multipart(const char *ct, size_t ctl, const char *body, size_t len)
{
	const char *bnd;
	size_t bl;
	if (mock_mp_boundary(ct, ctl, &bnd, &bl) < 0)
		return;
	inside(bnd, bl, ct, ct + ctl);
	size_t pos = 0, last_end = 0;
	struct mock_mp_part part;
	int r, guard = 0;
	while ((r = mock_mp_next(body, len, bnd, bl, &pos, &part)) == 1) {
		inside(part.data, part.len, body, body + len);
		inside(part.name, part.name_len, body, body + len);
		if (part.filename)
			inside(part.filename, part.filename_len, body, body + len);
		if ((size_t)(part.data - body) < last_end || pos > len)
			abort();
		last_end = (size_t)(part.data - body) + part.len;
		if (++guard > 100000)
			abort(); /* no progress */
	}
	if (r != 0 && r != -1)
		abort();
}

static void lines(const char *body, size_t len)
{
	static const char *const keys[] = {"\"custom_id\"", "\"method\"", "\"url\"", "\"body\""};
	struct mock_idmap ids = {0}; /* owner: here */
	uint32_t added = 0;
	for (const char *p = body, *end = body + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		const char *v[4];
		size_t vl[4];
		char k[4];
		if (mock_json_fields(p, le, keys, 4, v, vl, k) == 0) {
			for (int i = 0; i < 4; i++)
				inside(v[i], vl[i], p, le);
			if (v[0] && k[0] == 's') {
				(void)mock_custom_id_ok(v[0], vl[0]);
				mock_idmap_add(&ids, v[0], vl[0], 1);
				added++;
			}
		}
		const char *e = mock_json_skip(p, le);
		if (e && (e <= p || e > le))
			abort();
		p = nl ? nl + 1 : end;
	}
	uint32_t sum = 0;
	for (size_t i = 0; i < ids.cap; i++)
		sum += ids.slots[i].key ? ids.slots[i].count : 0;
	if (sum != added)
		abort();
	mock_idmap_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *nl = memchr(data, '\n', size);
	size_t ctl = nl ? (size_t)(nl - (const char *)data) : size;
	size_t len = nl ? size - ctl - 1 : 0;
	char *ct = malloc(ctl ? ctl : 1);   /* owner: here */
	char *body = malloc(len ? len : 1); /* owner: here */
	if (!ct || !body)
		abort();
	memcpy(ct, data, ctl);
	if (len)
		memcpy(body, nl + 1, len);
	multipart(ct, ctl, body, len);
	lines(body, len);
	uint64_t from, to;
	if (mock_parse_range(ct, ctl, &from, &to) && to < from)
		abort();
	free(ct);
	free(body);
	return 0;
}

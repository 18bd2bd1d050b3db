/*
 * Newline-delimited JSON framing: memchr for LF, lines handed over where
 * they lie, only the unterminated tail of a feed copied (and completed by
 * the next feed). The cap counts every byte before the LF, a CR included,
 * so whether a line fits does not depend on where the feeds split it.
 */
#include "format/ndjson.h"

#include <stdlib.h>
#include <string.h>

#include "llmring.h"

#define DEFAULT_MAX_LINE_BYTES ((size_t)1024 * 1024)
#define PARTIAL_MIN_CAP ((size_t)256)

void ndjson_parser_init(struct ndjson_parser *p, size_t max_line_bytes)
{
	memset(p, 0, sizeof(*p));
	p->max_line_bytes = max_line_bytes ? max_line_bytes : DEFAULT_MAX_LINE_BYTES;
}

void ndjson_parser_reset(struct ndjson_parser *p)
{
	p->error = 0;
	p->partial_len = 0;
}

void ndjson_parser_free(struct ndjson_parser *p)
{
	free(p->partial);
	p->partial = NULL;
	p->partial_len = p->partial_cap = 0;
}

static int fail(struct ndjson_parser *p, int rc)
{
	p->error = rc;
	return rc;
}

/* Appends to the partial line: doubling, never past the cap. */
static int append_partial(struct ndjson_parser *p, const char *s, size_t n)
{
	if (n > p->max_line_bytes - p->partial_len)
		return LR_ETOOLARGE;
	size_t need = p->partial_len + n;
	if (need > p->partial_cap) {
		size_t cap = p->partial_cap ? p->partial_cap : PARTIAL_MIN_CAP;
		while (cap < need && cap <= SIZE_MAX / 2)
			cap *= 2;
		if (cap > p->max_line_bytes)
			cap = p->max_line_bytes;
		char *d = realloc(p->partial, cap);
		if (!d)
			return LR_ENOMEM;
		p->partial = d;
		p->partial_cap = cap;
	}
	memcpy(p->partial + p->partial_len, s, n);
	p->partial_len = need;
	return 0;
}

/* Drops one CR before the LF, skips blank lines, calls back otherwise. */
static int deliver(const char *line, size_t len, ndjson_line_fn on_line, void *ctx)
{
	if (len && line[len - 1] == '\r')
		len--;
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
		i++;
	if (i == len)
		return 0;
	return on_line ? on_line(ctx, line, len) : 0;
}

int ndjson_parser_feed(struct ndjson_parser *p, const char *buf, size_t len,
                       ndjson_line_fn on_line, void *ctx)
{
	if (p->error)
		return p->error;
	size_t pos = 0;
	int rc;
	while (pos < len) {
		const char *q = memchr(buf + pos, '\n', len - pos);
		if (!q)
			break;
		size_t eol = (size_t)(q - buf);
		if (p->partial_len) {
			rc = append_partial(p, buf + pos, eol - pos);
			if (rc == 0)
				rc = deliver(p->partial, p->partial_len, on_line, ctx);
			p->partial_len = 0;
		} else if (eol - pos > p->max_line_bytes) {
			rc = LR_ETOOLARGE;
		} else {
			rc = deliver(buf + pos, eol - pos, on_line, ctx);
		}
		if (rc < 0)
			return fail(p, rc);
		pos = eol + 1;
	}
	if (pos < len && (rc = append_partial(p, buf + pos, len - pos)) < 0)
		return fail(p, rc);
	return 0;
}

int ndjson_parser_finish(struct ndjson_parser *p, ndjson_line_fn on_line, void *ctx)
{
	if (p->error)
		return p->error;
	size_t n = p->partial_len;
	p->partial_len = 0;
	int rc = n ? deliver(p->partial, n, on_line, ctx) : 0;
	return rc < 0 ? fail(p, rc) : 0;
}

bool ndjson_parser_mid_line(const struct ndjson_parser *p)
{
	return p->partial_len != 0;
}

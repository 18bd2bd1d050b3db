/*
 * Pure parsing for the mock's batch APIs (mock_batch.h): multipart bodies
 * (OpenAI's file upload), a strict JSON value skipper and field finder
 * (batch lines, Anthropic's request list), custom_id rules, Range values,
 * and a string -> count map. No server state, no allocation but the map's;
 * every input is hostile (tests/fuzz/fuzz_mock_batch.c).
 *
 * Not the engine's JSON code on purpose, like the rest of the mock.
 */
#include "mock_batch.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* ------------------------------------------------------------------ */
/* multipart/form-data (RFC 7578)                                      */

int mock_mp_boundary(const char *ct, size_t n, const char **b, size_t *bl)
{
	static const char mp[] = "multipart/form-data";
	if (n < sizeof(mp) - 1 || strncasecmp(ct, mp, sizeof(mp) - 1) != 0)
		return -1;
	for (size_t i = sizeof(mp) - 1; i + 9 <= n; i++) {
		if (strncasecmp(ct + i, "boundary=", 9) != 0 ||
		    (ct[i - 1] != ';' && ct[i - 1] != ' ' && ct[i - 1] != '\t'))
			continue;
		const char *v = ct + i + 9, *e = ct + n;
		const char *ve;
		if (v < e && *v == '"') {
			v++;
			ve = memchr(v, '"', (size_t)(e - v));
			if (!ve)
				return -1;
		} else {
			ve = v;
			while (ve < e && *ve != ';' && !ws(*ve))
				ve++;
		}
		if (ve == v || ve - v > 70)
			return -1;
		*b = v;
		*bl = (size_t)(ve - v);
		return 0;
	}
	return -1;
}

/* A name="..." or filename="..." parameter of a Content-Disposition value. */
static bool disp_param(const char *v, const char *e, const char *key, const char **out,
		       size_t *olen)
{
	size_t kl = strlen(key);
	for (const char *p = v; p + kl + 2 <= e; p++) {
		if (strncasecmp(p, key, kl) != 0 || p[kl] != '=' ||
		    (p > v && p[-1] != ';' && p[-1] != ' ' && p[-1] != '\t'))
			continue;
		const char *q = p + kl + 1;
		if (*q != '"')
			return false;
		q++;
		const char *qe = memchr(q, '"', (size_t)(e - q));
		if (!qe)
			return false;
		*out = q;
		*olen = (size_t)(qe - q);
		return true;
	}
	return false;
}

/* The part's header lines [h, he): its name and filename. */
static int part_headers(const char *h, const char *he, struct mock_mp_part *part)
{
	bool have_name = false;
	while (h < he) {
		const char *eol = memmem(h, (size_t)(he - h), "\r\n", 2);
		if (!eol)
			eol = he;
		static const char cd[] = "content-disposition:";
		if ((size_t)(eol - h) >= sizeof(cd) - 1 && strncasecmp(h, cd, sizeof(cd) - 1) == 0) {
			const char *v = h + sizeof(cd) - 1;
			while (v < eol && ws(*v))
				v++;
			if ((size_t)(eol - v) < 9 || strncasecmp(v, "form-data", 9) != 0)
				return -1;
			have_name = disp_param(v, eol, "name", &part->name, &part->name_len);
			if (!disp_param(v, eol, "filename", &part->filename, &part->filename_len))
				part->filename = NULL;
		}
		h = eol + 2;
	}
	return have_name ? 0 : -1;
}

int mock_mp_next(const char *body, size_t len, const char *bnd, size_t bl, size_t *pos,
		 struct mock_mp_part *part)
{
	memset(part, 0, sizeof(*part));
	size_t p = *pos;
	if (p == 0) {
		/* The first delimiter, after an optional preamble. */
		if (len >= 2 + bl && body[0] == '-' && body[1] == '-' && memcmp(body + 2, bnd, bl) == 0) {
			p = 2 + bl;
		} else {
			const char *d = NULL;
			for (const char *s = body; len - (size_t)(s - body) >= 4 + bl; s++) {
				s = memmem(s, len - (size_t)(s - body), "\r\n--", 4);
				if (!s)
					break;
				if ((size_t)(body + len - s) >= 4 + bl && memcmp(s + 4, bnd, bl) == 0) {
					d = s;
					break;
				}
			}
			if (!d)
				return -1;
			p = (size_t)(d - body) + 4 + bl;
		}
	}
	/* p is just after a delimiter: "--" closes, else CRLF and a part. */
	if (len - p >= 2 && body[p] == '-' && body[p + 1] == '-')
		return 0;
	while (p < len && (body[p] == ' ' || body[p] == '\t'))
		p++; /* transport padding */
	if (len - p < 2 || body[p] != '\r' || body[p + 1] != '\n')
		return -1;
	p += 2;
	const char *h = body + p;
	const char *he;
	if (len - p >= 2 && h[0] == '\r' && h[1] == '\n') {
		he = h; /* no header lines */
	} else {
		he = memmem(h, len - p, "\r\n\r\n", 4);
		if (!he)
			return -1;
	}
	if (part_headers(h, he, part) < 0)
		return -1;
	const char *data = he + (he == h ? 2 : 4);
	size_t left = len - (size_t)(data - body);
	/* The data ends at the next CRLF--boundary. */
	const char *s = data;
	for (;;) {
		size_t rem = left - (size_t)(s - data);
		const char *d = rem >= 4 + bl ? memmem(s, rem, "\r\n--", 4) : NULL;
		if (!d)
			return -1;
		if ((size_t)(body + len - d) >= 4 + bl && memcmp(d + 4, bnd, bl) == 0) {
			part->data = data;
			part->len = (size_t)(d - data);
			*pos = (size_t)(d - body) + 4 + bl;
			return 1;
		}
		s = d + 1;
	}
}

/* ------------------------------------------------------------------ */
/* JSON                                                                 */

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && ws(*p))
		p++;
	return p;
}

/* p after the opening quote: the closing quote, or NULL when the string is
 * not valid (a control byte, a bad escape, no end). */
static const char *str_end(const char *p, const char *end)
{
	while (p < end) {
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			return p;
		if (c < 0x20)
			return NULL;
		if (c == '\\') {
			if (++p >= end)
				return NULL;
			if (*p == 'u') {
				if (end - p < 5)
					return NULL;
				for (int i = 1; i <= 4; i++) {
					char h = p[i];
					if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
					      (h >= 'A' && h <= 'F')))
						return NULL;
				}
				p += 4;
			} else if (!strchr("\"\\/bfnrt", *p) || *p == '\0') {
				return NULL;
			}
		}
		p++;
	}
	return NULL;
}

static const char *num_end(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p >= end || *p < '0' || *p > '9')
		return NULL;
	if (*p == '0')
		p++;
	else
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	if (p < end && *p == '.') {
		p++;
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	return p;
}

static const char *skip_value(const char *p, const char *end, int depth)
{
	p = skip_ws(p, end);
	if (p >= end || depth > 64)
		return NULL;
	switch (*p) {
	case '"': {
		const char *q = str_end(p + 1, end);
		return q ? q + 1 : NULL;
	}
	case '{':
	case '[': {
		char close = *p == '{' ? '}' : ']';
		bool obj = *p == '{';
		p = skip_ws(p + 1, end);
		if (p < end && *p == close)
			return p + 1;
		for (;;) {
			if (obj) {
				p = skip_ws(p, end);
				if (p >= end || *p != '"')
					return NULL;
				p = str_end(p + 1, end);
				if (!p)
					return NULL;
				p = skip_ws(p + 1, end);
				if (p >= end || *p != ':')
					return NULL;
				p++;
			}
			p = skip_value(p, end, depth + 1);
			if (!p)
				return NULL;
			p = skip_ws(p, end);
			if (p < end && *p == ',') {
				p++;
				continue;
			}
			return p < end && *p == close ? p + 1 : NULL;
		}
	}
	case 't':
		return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
	case 'f':
		return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
	case 'n':
		return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
	default:
		return num_end(p, end);
	}
}

const char *mock_json_skip(const char *p, const char *end)
{
	return skip_value(p, end, 0);
}

int mock_json_fields(const char *p, const char *end, const char *const *keys, size_t nkeys,
		     const char **val, size_t *vlen, char *kind)
{
	for (size_t i = 0; i < nkeys; i++) {
		val[i] = NULL;
		vlen[i] = 0;
		kind[i] = 0;
	}
	const char *e = mock_json_skip(p, end);
	if (!e || skip_ws(e, end) != end)
		return -1;
	p = skip_ws(p, end);
	if (*p != '{')
		return -1;
	p = skip_ws(p + 1, end);
	if (*p == '}')
		return 0;
	for (;;) {
		/* Valid as a whole: no checks but for the structure. */
		const char *k = p;
		const char *ke = str_end(k + 1, end) + 1;
		p = skip_ws(ke, end) + 1;
		p = skip_ws(p, end);
		const char *v = p;
		const char *ve = mock_json_skip(v, end);
		for (size_t i = 0; i < nkeys; i++) {
			size_t kl = strlen(keys[i]);
			if ((size_t)(ke - k) != kl || memcmp(k, keys[i], kl) != 0 || val[i])
				continue;
			kind[i] = *v == '"' ? 's' : *v == '{' ? 'o' : *v == '[' ? 'a' : 'x';
			val[i] = *v == '"' ? v + 1 : v;
			vlen[i] = (size_t)(ve - v) - (*v == '"' ? 2 : 0);
		}
		p = skip_ws(ve, end);
		if (*p == '}')
			return 0;
		p = skip_ws(p + 1, end); /* the comma */
	}
}

bool mock_custom_id_ok(const char *s, size_t n)
{
	if (n < 1 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

static bool digits(const char **p, const char *e, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;
	while (*p < e && **p >= '0' && **p <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(**p - '0');
		(*p)++;
	}
	*out = v;
	return *p > s;
}

bool mock_parse_range(const char *v, size_t n, uint64_t *from, uint64_t *to)
{
	const char *p = v, *e = v + n;
	if (n < 7 || strncasecmp(p, "bytes=", 6) != 0)
		return false;
	p += 6;
	if (!digits(&p, e, from) || p >= e || *p != '-')
		return false;
	p++;
	*to = UINT64_MAX;
	if (p == e)
		return true;
	return digits(&p, e, to) && p == e && *to >= *from;
}

/* ------------------------------------------------------------------ */
/* The id map: open addressing, FNV-1a                                  */

static uint64_t hash_key(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 0x100000001b3ull;
	return h;
}

static struct mock_idslot *find_slot(struct mock_idslot *slots, size_t cap, const char *k,
				     size_t n)
{
	size_t i = (size_t)hash_key(k, n) & (cap - 1);
	while (slots[i].key && (slots[i].klen != n || memcmp(slots[i].key, k, n) != 0))
		i = (i + 1) & (cap - 1);
	return &slots[i];
}

static void grow(struct mock_idmap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	struct mock_idslot *ns = calloc(cap, sizeof(*ns)); /* owner: the map */
	if (!ns)
		abort();
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key)
			*find_slot(ns, cap, m->slots[i].key, m->slots[i].klen) = m->slots[i];
	free(m->slots);
	m->slots = ns;
	m->cap = cap;
}

uint32_t mock_idmap_add(struct mock_idmap *m, const char *key, size_t klen, uint32_t add)
{
	if ((m->n + 1) * 2 > m->cap)
		grow(m);
	struct mock_idslot *s = find_slot(m->slots, m->cap, key, klen);
	if (!s->key) {
		s->key = malloc(klen ? klen : 1); /* owner: the map */
		if (!s->key)
			abort();
		memcpy(s->key, key, klen);
		s->klen = (uint32_t)klen;
		m->n++;
	}
	s->count += add;
	return s->count;
}

uint32_t mock_idmap_get(const struct mock_idmap *m, const char *key, size_t klen)
{
	if (!m->cap)
		return 0;
	const struct mock_idslot *s = find_slot(m->slots, m->cap, key, klen);
	return s->key ? s->count : 0;
}

void mock_idmap_free(struct mock_idmap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->slots[i].key);
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

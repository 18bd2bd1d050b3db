/*
 * A single-pass validating JSON scanner for the hot path: one walk over the
 * bytes checks the whole grammar (RFC 8259, as strict as json_parse) and
 * reports every scalar with the keys that lead to it, with no tokens and no
 * allocation. The engine reads usage and model from every response this way,
 * at about half the cost of jsmn plus json_parse's check.
 */
#include "format/json.h"
#include "format/utf8.h"
#include "llmring.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

struct scanner {
	const char *p, *end;
	struct json_scan_path path;
	json_scan_fn fn;
	void *ctx;
};

/* 1 for bytes a string may hold without a closer look (ASCII only:
 * a byte from 0x80 up starts a sequence to check). */
static const unsigned char plain_string_byte[256] = {
	[0x20] = 1, [0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7f] = 1,
};

static void skip_ws(struct scanner *sc)
{
	while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\n' || *sc->p == '\r' || *sc->p == '\t'))
		sc->p++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Skips the bytes a string may hold as they are; stops at a quote, a
 * backslash, a control character or the end. Most of a response's bytes
 * are string contents, so this loop is the scanner's cost: 16 bytes a
 * step with SSE2 (every x86-64 has it), a table lookup per byte else. */
static const char *skip_plain(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"');
	const __m128i backslash = _mm_set1_epi8('\\');
	const __m128i space = _mm_set1_epi8(0x20);
	const __m128i sign = _mm_set1_epi8((char)0x80);
	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)p);
		/* Unsigned v < 0x20, through a signed compare of v ^ 0x80. */
		__m128i ctl = _mm_cmplt_epi8(_mm_xor_si128(v, sign), _mm_xor_si128(space, sign));
		__m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)), ctl);
		/* High-bit bytes (UTF-8 sequences) stop the run too: v's own
		 * sign bits. */
		int mask = _mm_movemask_epi8(hit) | _mm_movemask_epi8(v);
		if (mask)
			return p + __builtin_ctz((unsigned)mask);
		p += 16;
	}
#endif
	while (p < end && plain_string_byte[(unsigned char)*p])
		p++;
	return p;
}

/* At the opening quote; leaves p after the closing one. The span excludes
 * the quotes and is the raw (escaped) text. */
static bool scan_string(struct scanner *sc, const char **start, size_t *len)
{
	const char *p = sc->p + 1, *end = sc->end;
	*start = p;
	for (;;) {
		p = skip_plain(p, end);
		if (p >= end)
			return false;
		if (*p == '"')
			break;
		if ((unsigned char)*p >= 0x80) {
			size_t n = utf8_char_len(p, (size_t)(end - p));
			if (!n)
				return false; /* not UTF-8 */
			p += n;
			continue;
		}
		if (*p != '\\')
			return false; /* a raw control character */
		if (++p >= end)
			return false;
		switch (*p) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			p++;
			break;
		case 'u':
			if (end - p < 5 || hexval(p[1]) < 0 || hexval(p[2]) < 0 || hexval(p[3]) < 0 ||
			    hexval(p[4]) < 0)
				return false;
			p += 5;
			break;
		default:
			return false;
		}
	}
	*len = (size_t)(p - *start);
	sc->p = p + 1;
	return true;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool scan_number(struct scanner *sc)
{
	const char *p = sc->p, *end = sc->end;
	if (p < end && *p == '-')
		p++;
	if (p >= end || !is_digit(*p))
		return false;
	if (*p == '0')
		p++;
	else
		while (p < end && is_digit(*p))
			p++;
	if (p < end && *p == '.') {
		p++;
		if (p >= end || !is_digit(*p))
			return false;
		while (p < end && is_digit(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !is_digit(*p))
			return false;
		while (p < end && is_digit(*p))
			p++;
	}
	sc->p = p;
	return true;
}

static bool scan_literal(struct scanner *sc, const char *word, size_t n)
{
	if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0)
		return false;
	sc->p += n;
	return true;
}

static bool scan_value(struct scanner *sc);

static bool scan_container(struct scanner *sc, bool object)
{
	struct json_scan_path *path = &sc->path;
	const char *open = sc->p;
	if (path->depth >= JSON_SCAN_MAX_DEPTH)
		return false;
	int level = path->depth++;
	path->key[level] = NULL;
	path->key_len[level] = 0;
	sc->p++; /* the bracket */
	skip_ws(sc);
	char close = object ? '}' : ']';
	if (sc->p < sc->end && *sc->p == close) {
		sc->p++;
		goto closed;
	}
	for (;;) {
		if (object) {
			if (sc->p >= sc->end || *sc->p != '"' ||
			    !scan_string(sc, &path->key[level], &path->key_len[level]))
				return false;
			skip_ws(sc);
			if (sc->p >= sc->end || *sc->p != ':')
				return false;
			sc->p++;
			skip_ws(sc);
		}
		if (!scan_value(sc))
			return false;
		skip_ws(sc);
		if (sc->p >= sc->end)
			return false;
		if (*sc->p == close) {
			sc->p++;
			goto closed;
		}
		if (*sc->p != ',')
			return false;
		sc->p++;
		skip_ws(sc);
	}
closed:
	path->depth--;
	if (sc->fn)
		sc->fn(sc->ctx, path, object ? JSON_OBJECT : JSON_ARRAY, open, (size_t)(sc->p - open));
	return true;
}

static bool scan_value(struct scanner *sc)
{
	if (sc->p >= sc->end)
		return false;
	const char *start = sc->p;
	enum json_type type = JSON_PRIMITIVE;
	bool ok;
	switch (*sc->p) {
	case '{':
		return scan_container(sc, true);
	case '[':
		return scan_container(sc, false);
	case '"': {
		size_t len;
		if (!scan_string(sc, &start, &len))
			return false;
		if (sc->fn)
			sc->fn(sc->ctx, &sc->path, JSON_STRING, start, len);
		return true;
	}
	case 't': ok = scan_literal(sc, "true", 4); break;
	case 'f': ok = scan_literal(sc, "false", 5); break;
	case 'n': ok = scan_literal(sc, "null", 4); break;
	default: ok = scan_number(sc); break;
	}
	if (ok && sc->fn)
		sc->fn(sc->ctx, &sc->path, type, start, (size_t)(sc->p - start));
	return ok;
}

bool json_scan(const char *text, size_t len, json_scan_fn fn, void *ctx)
{
	/* Not zero-initialised: the key arrays are 2 KiB and each level is
	 * written before anything reads it (readers stop at depth). */
	struct scanner sc;
	sc.p = text;
	sc.end = text + len;
	sc.fn = fn;
	sc.ctx = ctx;
	sc.path.depth = 0;
	skip_ws(&sc);
	if (!scan_value(&sc))
		return false;
	skip_ws(&sc);
	return sc.p == sc.end;
}

bool json_scan_path_is(const struct json_scan_path *path, const char *const *keys, int n)
{
	if (path->depth != n)
		return false;
	for (int i = 0; i < n; i++) {
		size_t kl = strlen(keys[i]);
		if (!path->key[i] || path->key_len[i] != kl || memcmp(path->key[i], keys[i], kl) != 0)
			return false;
	}
	return true;
}

static int hex4(const char *p, uint32_t *out)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(p[i]);
		if (h < 0)
			return -1;
		v = v << 4 | (uint32_t)h;
	}
	*out = v;
	return 0;
}

int json_unescape_append(struct buf *out, const char *raw, size_t len)
{
	/* Unescaping never lengthens: one reservation covers the worst case. */
	if (buf_reserve(out, len + 1))
		return LR_ENOMEM;
	char *w = out->data + out->len;
	const char *p = raw, *end = raw + len;
	while (p < end) {
		const char *bs = memchr(p, '\\', (size_t)(end - p));
		size_t plain = (size_t)((bs ? bs : end) - p);
		memcpy(w, p, plain);
		w += plain;
		p += plain;
		if (!bs)
			break;
		if (end - p < 2)
			return LR_EPROTO;
		char c = p[1];
		p += 2;
		switch (c) {
		case '"': *w++ = '"'; break;
		case '\\': *w++ = '\\'; break;
		case '/': *w++ = '/'; break;
		case 'b': *w++ = '\b'; break;
		case 'f': *w++ = '\f'; break;
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		case 't': *w++ = '\t'; break;
		case 'u': {
			uint32_t cp, lo;
			if (end - p < 4 || hex4(p, &cp))
				return LR_EPROTO;
			p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
			    hex4(p + 2, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				p += 6;
			} else if (cp >= 0xd800 && cp <= 0xdfff) {
				cp = 0xfffd; /* a lone surrogate */
			}
			w += utf8_encode(cp, w); /* 6 or 12 escaped bytes give at most 4 */
			break;
		}
		default:
			return LR_EPROTO;
		}
	}
	out->len = (size_t)(w - out->data);
	out->data[out->len] = '\0';
	return 0;
}

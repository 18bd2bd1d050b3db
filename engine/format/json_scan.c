/*
 * A single-pass validating JSON scanner for the hot path: one walk over the
 * bytes checks the whole grammar (RFC 8259, as strict as json_parse) and
 * reports every scalar with the keys that lead to it, with no tokens and no
 * allocation. The engine reads usage and model from every response this way,
 * at about half the cost of jsmn plus json_parse's check.
 */
#include "format/json.h"
#include "format/json_bytes.h"
#include "format/utf8.h"
#include "llmring.h"

#include <stdint.h>
#include <string.h>

/* JSON's four whitespace bytes. */
static const unsigned char ws_byte[256] = {[' '] = 1, ['\n'] = 1, ['\r'] = 1, ['\t'] = 1};

/* Most separators have no whitespace around them (every API answer is
 * compact): one lookup says so. */
static inline const char *skip_ws(const char *p, const char *end)
{
	while (p < end && ws_byte[(unsigned char)*p])
		p++;
	return p;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Skips the bytes a string may hold as they are; stops at a quote, a
 * backslash, a control character, a byte from 0x80 up or the end. 16
 * bytes a step with SSE2 (every x86-64 has it), a table lookup per byte
 * else. */

static const char *skip_plain(const char *p, const char *end)
{
#ifdef __SSE2__
	while (end - p >= 16) {
		unsigned mask = json_special_mask(_mm_loadu_si128((const __m128i *)p));
		if (mask)
			return p + (size_t)__builtin_ctz(mask);
		p += 16;
	}
#endif
	while (p < end && json_plain_byte[(unsigned char)*p])
		p++;
	return p;
}

/* The general case of string_end: escapes, UTF-8, long strings, the
 * last bytes of the text. */
static const char *string_end_slow(const char *p, const char *end)
{
	for (;;) {
		p = skip_plain(p, end);
		if (p >= end)
			return NULL;
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			return p;
		if (c >= 0x80) {
			size_t n = utf8_char_len(p, (size_t)(end - p));
			if (!n)
				return NULL; /* not UTF-8 */
			p += n;
			continue;
		}
		if (c != '\\' || ++p >= end)
			return NULL; /* a raw control character, or a cut escape */
		switch (*p) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			p++;
			break;
		case 'u':
			if (end - p < 5 || hexval(p[1]) < 0 || hexval(p[2]) < 0 || hexval(p[3]) < 0 ||
			    hexval(p[4]) < 0)
				return NULL;
			p += 5;
			break;
		default:
			return NULL;
		}
	}
}

/* p just after an opening quote; returns the closing quote, or NULL when
 * the string is not valid (unterminated, a raw control character, a bad
 * escape, not UTF-8). Keys and most values are short plain ASCII: a
 * 16-byte step or two finds their closing quote with nothing before it.
 * Near the end of the text the step is the text's last 16 bytes, the
 * ones before p shifted out (text is where the whole text begins). */
static inline const char *string_end(const char *text, const char *p, const char *end)
{
#ifdef __SSE2__
	while (end - p >= 16) {
		unsigned mask = json_special_mask(_mm_loadu_si128((const __m128i *)p));
		if (mask) {
			p += (size_t)__builtin_ctz(mask);
			return *p == '"' ? p : string_end_slow(p, end);
		}
		p += 16;
	}
	if (p < end && end - text >= 16) {
		unsigned mask = json_special_mask(_mm_loadu_si128((const __m128i *)(end - 16))) >> (16 - (end - p));
		if (mask) {
			p += (size_t)__builtin_ctz(mask);
			return *p == '"' ? p : string_end_slow(p, end);
		}
		return NULL; /* unterminated */
	}
#else
	(void)text;
#endif
	return string_end_slow(p, end);
}

static inline bool is_digit(char c)
{
	return (unsigned char)(c - '0') < 10;
}

/* Skips a run of digits, eight a step while eight bytes are left (a
 * timestamp is two steps). */
static inline const char *digits(const char *p, const char *end)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/* A lone digit (most counts, an index) is done with at once. */
	while (end - p >= 8 && is_digit(*p)) {
		uint64_t x;
		memcpy(&x, p, 8);
		/* A byte's high bit is set here unless it is '0'..'9': below
		 * '0' the subtraction borrows, above '9' adding 0x46 carries. */
		uint64_t bad = ((x - 0x3030303030303030u) | (x + 0x4646464646464646u)) & 0x8080808080808080u;
		if (bad) {
			/* Little-endian: the lowest set bit is the first non-digit. */
			return p + __builtin_ctzll(bad) / 8;
		}
		p += 8;
	}
#endif
	while (p < end && is_digit(*p))
		p++;
	return p;
}

/* At a number's first byte; returns the byte after it, or NULL. */
static const char *number_end(const char *p, const char *end)
{
	if (*p == '-' && ++p >= end)
		return NULL;
	if (*p == '0')
		p++;
	else if (is_digit(*p))
		p = digits(p + 1, end);
	else
		return NULL;
	if (p < end && *p == '.') {
		if (++p >= end || !is_digit(*p))
			return NULL;
		p = digits(p + 1, end);
	}
	if (p < end && (*p | 0x20) == 'e') {
		if (++p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !is_digit(*p))
			return NULL;
		p = digits(p + 1, end);
	}
	return p;
}

/*
 * One loop with the open containers on an explicit stack instead of a
 * recursive descent: the position stays in a register and each value
 * costs a branch or two beyond its own bytes. path.key[i] is the key
 * being read at level i (NULL in arrays); open[i] is where that
 * container began, object[i] whether it is an object; close is the
 * innermost one's closing bracket. Whitespace is looked for only where a
 * separator or a value was not found (compact JSON has none).
 * Why this function is long: it is one state machine whose labels are its
 * states (value, next, closed, key); split into functions, the position
 * would go back to memory at every value, which was most of the cost.
 */
bool json_scan(const char *text, size_t len, json_scan_fn fn, void *ctx)
{
	/* Not zero-initialised: the arrays are 3 KiB and each level is
	 * written before anything reads it (readers stop at depth). */
	struct json_scan_path path;
	const char *open[JSON_SCAN_MAX_DEPTH];
	bool object[JSON_SCAN_MAX_DEPTH];
	const char *p = text, *end = text + len, *start, *q;
	size_t depth = 0; /* size_t: an index without a sign extension at each use */
	path.depth = 0; /* kept equal to depth as containers open and close */
	char close = 0;

value:
	if (p >= end)
		return false;
	start = p;
	/* Strings and containers first, by compare: most values are
	 * strings, and a jump table costs more than two compares. */
	if (*p == '"') {
		if (!(q = string_end(text, p + 1, end)))
			return false;
		p = q + 1;
		if (fn)
			fn(ctx, &path, JSON_STRING, start + 1, (size_t)(q - start - 1));
		goto next;
	}
	if (*p == '{' || *p == '[') {
		if (depth >= JSON_SCAN_MAX_DEPTH)
			return false;
		open[depth] = p;
		object[depth] = *p == '{';
		close = *p == '{' ? '}' : ']';
		path.key[depth] = NULL;
		path.key_len[depth] = 0;
		depth++;
		path.depth = (int)depth;
		p = skip_ws(p + 1, end);
		if (p < end && *p == close)
			goto closed;
		if (close == '}')
			goto key;
		goto value;
	}
	switch (*p) {
	case ' ': case '\n': case '\r': case '\t':
		p = skip_ws(p + 1, end);
		goto value;
	case 't':
		if (end - p < 4 || memcmp(p, "true", 4) != 0)
			return false;
		p += 4;
		break;
	case 'f':
		if (end - p < 5 || memcmp(p, "false", 5) != 0)
			return false;
		p += 5;
		break;
	case 'n':
		if (end - p < 4 || memcmp(p, "null", 4) != 0)
			return false;
		p += 4;
		break;
	default:
		if (!(p = number_end(p, end)))
			return false;
		break;
	}
	if (fn)
		fn(ctx, &path, JSON_PRIMITIVE, start, (size_t)(p - start));
next:
	if (depth == 0)
		return skip_ws(p, end) == end;
	for (;;) {
		if (p >= end)
			return false;
		if (*p == ',') {
			p++;
			if (close == '}')
				goto key;
			goto value;
		}
		if (*p == close)
			break;
		if (!ws_byte[(unsigned char)*p])
			return false;
		p++;
	}
closed:
	p++; /* the closing bracket */
	depth--;
	path.depth = (int)depth;
	if (fn) {
		fn(ctx, &path, object[depth] ? JSON_OBJECT : JSON_ARRAY, open[depth],
		   (size_t)(p - open[depth]));
	}
	close = depth == 0 ? 0 : object[depth - 1] ? '}' : ']';
	goto next;
key:
	if (p >= end || *p != '"') {
		p = skip_ws(p, end);
		if (p >= end || *p != '"')
			return false;
	}
	if (!(q = string_end(text, p + 1, end)))
		return false;
	path.key[depth - 1] = p + 1;
	path.key_len[depth - 1] = (size_t)(q - p - 1);
	p = q + 1;
	if (p >= end || *p != ':') {
		p = skip_ws(p, end);
		if (p >= end || *p != ':')
			return false;
	}
	p++;
	goto value;
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

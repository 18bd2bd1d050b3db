/*
 * JSON access over jsmn tokens.
 *
 * jsmn tokenizes fast but, even with JSMN_STRICT, accepts text that is not
 * JSON ("[1,]", "{\"a\" 1}" in some forms, "tru", several values in a row,
 * raw control characters in strings). json_parse therefore follows jsmn
 * with one linear check over its tokens: the bytes between tokens must be
 * exactly the whitespace, ':' and ',' the grammar asks for, every
 * primitive must be true/false/null or a number, and strings must hold no
 * raw control character. Only then is the document accepted.
 *
 * jsmn is built with JSMN_PARENT_LINKS: without them closing a container
 * scans back over all earlier siblings, quadratic on arrays of objects
 * (an embeddings response). jsmntok_t is then one int larger than
 * struct json_token, so the token array is parsed as jsmntok_t and then
 * compacted in place into json_token (entry i is written at or below the
 * bytes of jsmn entry i, which has already been read).
 */
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "format/json.h"
#include "format/json_bytes.h"
#include "format/utf8.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmring.h"

/*
 * Deeper documents are rejected. jsmn finds the container a closing bracket
 * ends by climbing parent links from the last token, so its work per
 * bracket grows with the nesting depth (quadratic on "[[[[...]]]]"); the
 * checker below also recurses once per level.
 */
#define JSON_MAX_DEPTH 128
#define JSON_MIN_TOKENS 64

_Static_assert(sizeof(struct json_token) <= sizeof(jsmntok_t),
               "json_token must fit in place of a jsmntok_t");
_Static_assert((int)JSON_OBJECT == (int)JSMN_OBJECT && (int)JSON_ARRAY == (int)JSMN_ARRAY &&
               (int)JSON_STRING == (int)JSMN_STRING &&
               (int)JSON_PRIMITIVE == (int)JSMN_PRIMITIVE,
               "token type values must match jsmn's");

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t pos, size_t len)
{
	while (pos < len && is_ws(s[pos]))
		pos++;
	return pos;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 8259 number: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)? */
static bool valid_number(const char *s, size_t n)
{
	size_t i = 0;
	if (i < n && s[i] == '-')
		i++;
	if (i >= n)
		return false;
	if (s[i] == '0') {
		i++;
	} else if (s[i] >= '1' && s[i] <= '9') {
		while (i < n && is_digit(s[i]))
			i++;
	} else {
		return false;
	}
	if (i < n && s[i] == '.') {
		i++;
		if (i >= n || !is_digit(s[i]))
			return false;
		while (i < n && is_digit(s[i]))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || !is_digit(s[i]))
			return false;
		while (i < n && is_digit(s[i]))
			i++;
	}
	return i == n;
}

static bool valid_primitive(const char *s, size_t n)
{
	switch (s[0]) {
	case 't':
		return n == 4 && memcmp(s, "true", 4) == 0;
	case 'f':
		return n == 5 && memcmp(s, "false", 5) == 0;
	case 'n':
		return n == 4 && memcmp(s, "null", 4) == 0;
	default:
		return valid_number(s, n);
	}
}

/* jsmn has checked the escapes; raw control characters are left to us.
 * Eight bytes at a time: this scan covers most of a response's bytes. */
static bool valid_string_bytes(const char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x;
		memcpy(&x, s + i, 8);
		/* Nonzero when some byte is below 0x20 (bytes >= 0x80 excluded). */
		if ((x - 0x20 * ones) & ~x & highs)
			return false;
		if (x & highs) {
			/* A UTF-8 sequence starts in these 8 bytes: check the rest
			 * byte by byte from its first high byte. */
			break;
		}
	}
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len = utf8_char_len(s + i, n - i);
		if (!len)
			return false; /* not UTF-8 */
		i += len;
	}
	return true;
}

/* Exact count of '[' and '{' bytes, eight at a time. */
static size_t count_open_brackets(const char *s, size_t n)
{
	const uint64_t low7 = 0x7f7f7f7f7f7f7f7fu, ones = 0x0101010101010101u;
	size_t count = 0, i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x, a, b;
		memcpy(&x, s + i, 8);
		a = x ^ ('[' * ones); /* zero bytes where x has '[' */
		b = x ^ ('{' * ones);
		/* High bit set exactly in the zero bytes. */
		a = ~(((a & low7) + low7) | a | low7);
		b = ~(((b & low7) + low7) | b | low7);
		/* Usually zero or one bit: no popcount instruction needed. */
		for (uint64_t m = a | b; m; m &= m - 1)
			count++;
	}
	for (; i < n; i++)
		count += s[i] == '[' || s[i] == '{';
	return count;
}

/* Nesting never exceeds JSON_MAX_DEPTH (brackets inside strings aside).
 * Only documents with that many brackets at all need the byte walk. */
static bool depth_within_limit(const char *s, size_t n)
{
	if (count_open_brackets(s, n) <= JSON_MAX_DEPTH)
		return true;
	int depth = 0;
	bool in_string = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			if (++depth > JSON_MAX_DEPTH)
				return false;
		} else if (c == ']' || c == '}') {
			depth--;
		}
	}
	return true;
}

struct checker {
	const char *text;
	size_t len;
	const jsmntok_t *tok;
	int count;
	int next;   /* next token index to visit */
	size_t pos; /* text position just after the last visited value */
};

/* Where the value of token t begins in the text (strings: the quote). */
static size_t value_begin(const jsmntok_t *t)
{
	return t->type == JSMN_STRING ? (size_t)t->start - 1 : (size_t)t->start;
}

static size_t value_end(const jsmntok_t *t)
{
	return t->type == JSMN_STRING ? (size_t)t->end + 1 : (size_t)t->end;
}

/*
 * Visits the value at c->next, which must begin exactly at c->pos after
 * whitespace; leaves c->pos just after it. False on any grammar error.
 */
static bool check_value(struct checker *c, int depth)
{
	if (c->next >= c->count || depth > JSON_MAX_DEPTH)
		return false;
	const jsmntok_t *t = &c->tok[c->next];
	c->pos = skip_ws(c->text, c->pos, c->len);
	if (t->start < 0 || t->end < 0 || value_begin(t) != c->pos)
		return false;
	c->next++;

	switch (t->type) {
	case JSMN_STRING:
		if (t->size != 0 ||
		    !valid_string_bytes(c->text + t->start, (size_t)(t->end - t->start)))
			return false;
		break;
	case JSMN_PRIMITIVE:
		if (t->size != 0 || !valid_primitive(c->text + t->start, (size_t)(t->end - t->start)))
			return false;
		break;
	case JSMN_OBJECT:
	case JSMN_ARRAY: {
		bool object = t->type == JSMN_OBJECT;
		c->pos++; /* the opening bracket */
		for (int k = 0; k < t->size; k++) {
			if (k > 0) {
				c->pos = skip_ws(c->text, c->pos, c->len);
				if (c->pos >= c->len || c->text[c->pos] != ',')
					return false;
				c->pos++;
			}
			if (object) {
				if (c->next >= c->count)
					return false;
				const jsmntok_t *key = &c->tok[c->next];
				if (key->type != JSMN_STRING || key->size != 1)
					return false;
				c->pos = skip_ws(c->text, c->pos, c->len);
				if (key->start < 1 || value_begin(key) != c->pos ||
				    !valid_string_bytes(c->text + key->start,
				                        (size_t)(key->end - key->start)))
					return false;
				c->next++;
				c->pos = skip_ws(c->text, value_end(key), c->len);
				if (c->pos >= c->len || c->text[c->pos] != ':')
					return false;
				c->pos++;
			}
			if (!check_value(c, depth + 1))
				return false;
		}
		c->pos = skip_ws(c->text, c->pos, c->len);
		if (c->pos >= c->len || c->text[c->pos] != (object ? '}' : ']') ||
		    c->pos + 1 != (size_t)t->end)
			return false;
		break;
	}
	default:
		return false;
	}
	c->pos = value_end(t);
	return true;
}

/* Grows the token allocation (counted in jsmntok_t entries). */
static int grow_tokens(struct json_doc *d, int want)
{
	int cap = d->cap > 0 ? d->cap : JSON_MIN_TOKENS;
	while (cap < want) {
		if (cap > INT_MAX / 2)
			return LR_ENOMEM;
		cap *= 2;
	}
	if (cap == d->cap)
		return 0;
	void *grown = realloc(d->tok, (size_t)cap * sizeof(jsmntok_t));
	if (!grown)
		return LR_ENOMEM;
	d->tok = grown;
	d->cap = cap;
	return 0;
}

/* A top-level number or literal: jsmn in strict mode wants a delimiter
 * after a primitive, so a document that is only one is handled here. */
static int parse_top_primitive(struct json_doc *d, size_t begin)
{
	size_t end = begin;
	while (end < d->len && !is_ws(d->text[end]))
		end++;
	if (skip_ws(d->text, end, d->len) != d->len ||
	    !valid_primitive(d->text + begin, end - begin))
		return LR_EPROTO;
	int rc = grow_tokens(d, 1);
	if (rc)
		return rc;
	d->tok[0] = (struct json_token){JSON_PRIMITIVE, (int)begin, (int)end, 0};
	d->count = 1;
	return 0;
}

int json_parse(struct json_doc *d, const char *text, size_t len)
{
	d->text = text;
	d->len = len;
	d->count = 0;
	if (len >= INT_MAX) /* jsmn keeps offsets in int */
		return LR_EPROTO;

	size_t begin = skip_ws(text, 0, len);
	if (begin >= len)
		return LR_EPROTO;
	char first = text[begin];
	if (first != '{' && first != '[' && first != '"')
		return parse_top_primitive(d, begin);

	if (!depth_within_limit(text, len))
		return LR_EPROTO;
	int rc = grow_tokens(d, JSON_MIN_TOKENS);
	if (rc)
		return rc;
	jsmn_parser p;
	jsmn_init(&p);
	int n;
	for (;;) {
		/* On NOMEM jsmn leaves its position on the value it could not
		 * store, so parsing resumes after the array has grown. */
		n = jsmn_parse(&p, text, len, (jsmntok_t *)(void *)d->tok, (unsigned)d->cap);
		if (n != JSMN_ERROR_NOMEM)
			break;
		if (d->cap > INT_MAX / 2)
			return LR_ENOMEM;
		rc = grow_tokens(d, d->cap * 2);
		if (rc)
			return rc;
	}
	if (n <= 0)
		return LR_EPROTO;

	struct checker c = {
		.text = text, .len = len, .tok = (const jsmntok_t *)(void *)d->tok,
		.count = n, .next = 0, .pos = begin,
	};
	if (!check_value(&c, 0) || c.next != n || skip_ws(text, c.pos, len) != len)
		return LR_EPROTO;

	/* Compact jsmntok_t entries into json_token entries, in order. The two
	 * overlap in memory: memcpy (byte access) keeps every read of entry i
	 * before the write that may cover it, whatever aliasing rules allow. */
	char *bytes = (char *)d->tok;
	for (int i = 0; i < n; i++) {
		jsmntok_t t;
		memcpy(&t, bytes + (size_t)i * sizeof(jsmntok_t), sizeof t);
		struct json_token j = {(enum json_type)t.type, t.start, t.end, t.size};
		memcpy(bytes + (size_t)i * sizeof(struct json_token), &j, sizeof j);
	}
	d->count = n;
	return 0;
}

void json_doc_free(struct json_doc *d)
{
	free(d->tok);
	d->tok = NULL;
	d->count = d->cap = 0;
}

static bool valid_index(const struct json_doc *d, int i)
{
	return i >= 0 && i < d->count;
}

int json_skip(const struct json_doc *d, int i)
{
	if (!valid_index(d, i))
		return d->count;
	/* An object's size counts keys and each key's size is 1 (its value),
	 * so counting sizes walks exactly the subtree. */
	long pending = 1;
	while (pending > 0 && i < d->count) {
		pending += d->tok[i].size - 1;
		i++;
	}
	return i;
}

static bool string_eq_n(const struct json_doc *d, int i, const char *s, size_t n)
{
	if (!valid_index(d, i) || d->tok[i].type != JSON_STRING)
		return false;
	return (size_t)(d->tok[i].end - d->tok[i].start) == n &&
	       memcmp(d->text + d->tok[i].start, s, n) == 0;
}

bool json_string_eq(const struct json_doc *d, int i, const char *s)
{
	return string_eq_n(d, i, s, strlen(s));
}

static int object_get_n(const struct json_doc *d, int obj, const char *key, size_t key_len)
{
	if (!valid_index(d, obj) || d->tok[obj].type != JSON_OBJECT)
		return -1;
	int k = obj + 1;
	for (int m = 0; m < d->tok[obj].size && k + 1 < d->count; m++) {
		if (string_eq_n(d, k, key, key_len))
			return k + 1;
		k = json_skip(d, k + 1);
	}
	return -1;
}

int json_object_get(const struct json_doc *d, int obj, const char *key)
{
	return object_get_n(d, obj, key, strlen(key));
}

int json_path(const struct json_doc *d, int obj, const char *path)
{
	int cur = obj;
	for (;;) {
		const char *dot = strchr(path, '.');
		size_t n = dot ? (size_t)(dot - path) : strlen(path);
		cur = object_get_n(d, cur, path, n);
		if (!dot || cur < 0)
			return cur;
		path = dot + 1;
	}
}

bool json_get_int(const struct json_doc *d, int i, int64_t *out)
{
	if (!valid_index(d, i) || d->tok[i].type != JSON_PRIMITIVE)
		return false;
	const char *s = d->text + d->tok[i].start;
	const char *end = d->text + d->tok[i].end;
	bool negative = s < end && *s == '-';
	if (negative)
		s++;
	if (s >= end)
		return false;
	/* Accumulate as a negative number so INT64_MIN fits. */
	int64_t v = 0;
	for (; s < end; s++) {
		if (!is_digit(*s))
			return false;
		int digit = *s - '0';
		if (v < (INT64_MIN + digit) / 10)
			return false;
		v = v * 10 - digit;
	}
	if (!negative) {
		if (v == INT64_MIN)
			return false;
		v = -v;
	}
	*out = v;
	return true;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at s (n bytes available), or -1. */
static long read_hex4(const char *s, size_t n)
{
	if (n < 4)
		return -1;
	long v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hex_value(s[k]);
		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Stores what fits of bytes[0..n) at out[*len..cap-1) and counts all. */
static void put_bytes(char *out, size_t cap, size_t *len, const char *bytes, size_t n)
{
	if (out && *len < cap) {
		size_t room = cap - 1 - *len;
		memcpy(out + *len, bytes, n < room ? n : room);
	}
	*len += n;
}

long json_get_string(const struct json_doc *d, int i, char *out, size_t cap)
{
	if (cap == 0)
		out = NULL;
	if (!valid_index(d, i) || d->tok[i].type != JSON_STRING)
		return -1;
	const char *s = d->text + d->tok[i].start;
	size_t n = (size_t)(d->tok[i].end - d->tok[i].start);
	size_t len = 0;
	size_t k = 0;
	while (k < n) {
		/* Copy the run up to the next escape in one go. */
		size_t run = k;
		while (run < n && s[run] != '\\')
			run++;
		put_bytes(out, cap, &len, s + k, run - k);
		k = run;
		if (k >= n)
			break;
		if (k + 1 >= n)
			return -1;
		char e = s[k + 1];
		char c;
		k += 2;
		switch (e) {
		case '"': c = '"'; break;
		case '\\': c = '\\'; break;
		case '/': c = '/'; break;
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u': {
			long u = read_hex4(s + k, n - k);
			if (u < 0)
				return -1;
			k += 4;
			uint32_t cp = (uint32_t)u;
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				/* A high surrogate pairs with a following \uDC00-\uDFFF;
				 * alone it (like a lone low one) becomes U+FFFD. */
				long lo = -1;
				if (k + 6 <= n && s[k] == '\\' && s[k + 1] == 'u')
					lo = read_hex4(s + k + 2, n - k - 2);
				if (lo >= 0xDC00 && lo <= 0xDFFF) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
					k += 6;
				} else {
					cp = 0xFFFD;
				}
			} else if (cp >= 0xDC00 && cp <= 0xDFFF) {
				cp = 0xFFFD;
			}
			char utf8[4];
			put_bytes(out, cap, &len, utf8, utf8_encode(cp, utf8));
			continue;
		}
		default:
			return -1;
		}
		put_bytes(out, cap, &len, &c, 1);
	}
	if (out)
		out[len < cap ? len : cap - 1] = '\0';
	return len > LONG_MAX ? -1 : (long)len;
}

char *json_dup_string(const struct json_doc *d, int i)
{
	if (!valid_index(d, i) || d->tok[i].type != JSON_STRING)
		return NULL;
	/* Unescaping never makes a string longer than its raw text. */
	size_t raw = (size_t)(d->tok[i].end - d->tok[i].start);
	char *s = malloc(raw + 1); /* owner: the caller */
	if (!s)
		return NULL;
	if (json_get_string(d, i, s, raw + 1) < 0) {
		free(s);
		return NULL;
	}
	return s;
}

void json_span(const struct json_doc *d, int i, const char **start, size_t *len)
{
	if (!valid_index(d, i)) {
		*start = NULL;
		*len = 0;
		return;
	}
	const struct json_token *t = &d->tok[i];
	bool quoted = t->type == JSON_STRING;
	*start = d->text + t->start - (quoted ? 1 : 0);
	*len = (size_t)(t->end - t->start) + (quoted ? 2 : 0);
}

/* Whether any of the 8 bytes at p needs a closer look in a string: a
 * quote, a backslash, a control character or a byte from 0x80 up. The
 * "has a byte below n" test ((x - n..) & ~x & 0x80..) is exact for
 * whether there is one, and a byte equal to c is a zero byte of x ^ c.. */
static inline bool word_special(const char *p)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	uint64_t x;
	memcpy(&x, p, 8);
	uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
	return (((x - ones * 0x20) & ~x) | x | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & highs;
}

int json_append_string(struct buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	/* Most strings need no escape: reserve for that case up front. */
	if (buf_reserve(b, len + 2))
		return LR_ENOMEM;
	/* The plain prefix (every id and most texts are all of it) is copied
	 * straight into the reserved bytes as it is checked: 16 bytes a step
	 * with SSE2 (each step stores 16 bytes, and k + 16 <= len keeps them
	 * inside the reservation), a byte at a time for the rest. */
	char *w = b->data + b->len + 1;
	w[-1] = '"';
	size_t k = 0;
#ifdef __SSE2__
	while (len - k >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(s + k));
		_mm_storeu_si128((__m128i *)(w + k), v);
		unsigned mask = json_special_mask(v);
		if (mask) {
			k += (size_t)__builtin_ctz(mask);
			break;
		}
		k += 16;
	}
#endif
	/* Eight bytes a step for what is left of at least eight (ids and
	 * names are 8-15 bytes), the last step overlapping checked bytes. */
	if (k < len && len >= 8 && json_plain_byte[(unsigned char)s[k]]) {
		while (len - k >= 8 && !word_special(s + k)) {
			memcpy(w + k, s + k, 8);
			k += 8;
		}
		if (k < len && len - k < 8 && !word_special(s + len - 8)) {
			memcpy(w + len - 8, s + len - 8, 8);
			k = len;
		}
	}
	while (k < len && json_plain_byte[(unsigned char)s[k]]) {
		w[k] = s[k];
		k++;
	}
	if (k == len) {
		w[k] = '"';
		b->len += len + 2;
		return 0;
	}
	b->len += 1 + k;
	while (k < len) {
		size_t run = k;
		while (run < len && (unsigned char)s[run] >= 0x20 && (unsigned char)s[run] < 0x80 &&
		       s[run] != '"' && s[run] != '\\')
			run++;
		if (run > k && buf_append(b, s + k, run - k))
			return LR_ENOMEM;
		k = run;
		if (k >= len)
			break;
		if ((unsigned char)s[k] >= 0x80) {
			/* Valid UTF-8 goes as it is; anything else becomes U+FFFD, so
			 * what we write is always JSON (RFC 8259 text is UTF-8). */
			size_t n = utf8_char_len(s + k, len - k);
			if (n ? buf_append(b, s + k, n) : buf_append(b, "\xef\xbf\xbd", 3))
				return LR_ENOMEM;
			k += n ? n : 1;
			continue;
		}
		unsigned char c = (unsigned char)s[k++];
		char esc[6] = {'\\', 0, 0, 0, 0, 0};
		size_t n = 2;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
			break;
		}
		if (buf_append(b, esc, n))
			return LR_ENOMEM;
	}
	return buf_append(b, "\"", 1) ? LR_ENOMEM : 0;
}

const char *json_invalid_reason(const char *text, size_t len, char *buf, size_t cap)
{
	const unsigned char *u = (const unsigned char *)text;
	const char *why = "it is not valid JSON";
	size_t begin = skip_ws(text, 0, len);
	if (begin >= len) {
		why = "it is empty";
	} else if (len >= 2 && u[0] == 0x1f && u[1] == 0x8b) {
		why = "it is gzip-compressed data (a server or proxy ignored Accept-Encoding: identity)";
	} else if (len >= 3 && u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf) {
		why = "it begins with a UTF-8 byte order mark, which JSON does not allow";
	} else {
		for (size_t i = 0; i < len;) {
			size_t n = utf8_char_len(text + i, len - i);
			if (!n) {
				snprintf(buf, cap, "it is not valid UTF-8 (byte %zu of %zu)", i + 1, len);
				return buf;
			}
			i += n;
		}
		if (!depth_within_limit(text, len))
			why = "it nests deeper than 128 levels";
		else if (text[begin] == '[' || text[begin] == '"' || text[begin] == '-' ||
		         (text[begin] >= '0' && text[begin] <= '9') || text[begin] == 't' ||
		         text[begin] == 'f' || text[begin] == 'n') {
			struct json_doc d = {0}; /* owner: this block */
			if (json_parse(&d, text, len) == 0)
				why = d.tok[0].type == JSON_ARRAY    ? "it is a JSON array, not an object"
				      : d.tok[0].type == JSON_STRING ? "it is a JSON string, not an object"
				                                     : "it is a JSON scalar, not an object";
			json_doc_free(&d);
		}
	}
	snprintf(buf, cap, "%s", why);
	return buf;
}

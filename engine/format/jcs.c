/*
 * RFC 8785 canonical JSON (jcs.h): a recursive-descent reader that writes
 * the canonical form as it goes. Objects are the one place it must look
 * ahead: their members are canonicalized one by one into a scratch buffer
 * and written out in key order. It runs on the cache's thread, off the
 * I/O loop, on every request body a cache looks up: numbers most
 * requests hold take a path without strtod and printf.
 */
#include "format/jcs.h"

#include <locale.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/utf8.h"
#include "llmring.h"

struct reader {
	const char *p, *end;
	int depth;
};

static void skip_ws(struct reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int hex4(const char *p, uint32_t *out)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return LR_EPROTO;
	}
	*out = v;
	return 0;
}

/* Reads the string at r->p (at its opening quote) and appends its value,
 * unescaped, as UTF-8 to out. A lone surrogate has no UTF-8 form: JCS
 * refuses it, and so does this. */
static int read_string(struct reader *r, struct buf *out)
{
	r->p++; /* the opening quote */
	for (;;) {
		const char *run = r->p;
		while (r->p < r->end && *r->p != '"' && *r->p != '\\' && (unsigned char)*r->p >= 0x20 &&
		       (unsigned char)*r->p < 0x80)
			r->p++;
		buf_append(out, run, (size_t)(r->p - run));
		if (r->p >= r->end)
			return LR_EPROTO;
		unsigned char c = (unsigned char)*r->p;
		if (c == '"') {
			r->p++;
			return buf_error(out);
		}
		if (c < 0x20)
			return LR_EPROTO; /* a raw control character */
		if (c >= 0x80) {
			size_t n = utf8_char_len(r->p, (size_t)(r->end - r->p));
			if (!n)
				return LR_EPROTO;
			buf_append(out, r->p, n);
			r->p += n;
			continue;
		}
		/* An escape. */
		if (r->end - r->p < 2)
			return LR_EPROTO;
		char e = r->p[1];
		r->p += 2;
		const char *simple = strchr("\"\\/bfnrt", e);
		if (e && simple) {
			static const char val[] = "\"\\/\b\f\n\r\t";
			buf_append(out, &val[simple - "\"\\/bfnrt"], 1);
			continue;
		}
		if (e != 'u' || r->end - r->p < 4)
			return LR_EPROTO;
		uint32_t cp, lo;
		if (hex4(r->p, &cp))
			return LR_EPROTO;
		r->p += 4;
		if (cp >= 0xDC00 && cp <= 0xDFFF)
			return LR_EPROTO;
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || hex4(r->p + 2, &lo) ||
			    lo < 0xDC00 || lo > 0xDFFF)
				return LR_EPROTO;
			r->p += 6;
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
		}
		char enc[4];
		buf_append(out, enc, utf8_encode(cp, enc));
	}
}

/* JSON.stringify's escaping of a UTF-8 string (RFC 8785 3.2.2.2). */
static void write_string(struct buf *out, const char *s, size_t len)
{
	static const char xd[] = "0123456789abcdef";
	buf_append(out, "\"", 1);
	size_t run = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		buf_append(out, s + run, i - run);
		run = i + 1;
		char esc[6] = {'\\', 0};
		size_t n = 2;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = xd[c >> 4];
			esc[5] = xd[c & 15];
			n = 6;
		}
		buf_append(out, esc, n);
	}
	buf_append(out, s + run, len - run);
	buf_append(out, "\"", 1);
}

/* The length of the string at r->p (at its opening quote) with its
 * quotes when it holds no escape and no control character, and its
 * bytes past ASCII are valid UTF-8: JSON.stringify writes such a string
 * as it is. 0 otherwise (read_string and write_string decide). */
static size_t plain_string(const struct reader *r)
{
	const char *p = r->p + 1;
	while (p < r->end) {
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			return (size_t)(p + 1 - r->p);
		if (c == '\\' || c < 0x20)
			return 0;
		if (c < 0x80) {
			p++;
			continue;
		}
		size_t n = utf8_char_len(p, (size_t)(r->end - p));
		if (!n)
			return 0;
		p += n;
	}
	return 0;
}

static locale_t jcs_c_locale;
static pthread_once_t jcs_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
	jcs_c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* JSON's decimal point is '.' whatever locale the program set (with
 * de_DE's ',' strtod would read 0.5 and 0.7 both as 0: one key). */
static locale_t c_locale(void)
{
	pthread_once(&jcs_locale_once, make_c_locale);
	return jcs_c_locale ? jcs_c_locale : LC_GLOBAL_LOCALE;
}

/* ECMAScript's form of the number 0.d1d2..dk x 10^n (k significant
 * digits, the last not 0), into out (at least 32 bytes). */
static size_t format_digits(bool neg, const char *digits, int k, int n, char *out)
{
	size_t o = 0;
	if (neg)
		out[o++] = '-';
	if (k <= n && n <= 21) {
		memcpy(out + o, digits, (size_t)k);
		o += (size_t)k;
		for (int i = k; i < n; i++)
			out[o++] = '0';
	} else if (0 < n && n <= 21) {
		memcpy(out + o, digits, (size_t)n);
		o += (size_t)n;
		out[o++] = '.';
		memcpy(out + o, digits + n, (size_t)(k - n));
		o += (size_t)(k - n);
	} else if (-6 < n && n <= 0) {
		out[o++] = '0';
		out[o++] = '.';
		for (int i = 0; i < -n; i++)
			out[o++] = '0';
		memcpy(out + o, digits, (size_t)k);
		o += (size_t)k;
	} else {
		out[o++] = digits[0];
		if (k > 1) {
			out[o++] = '.';
			memcpy(out + o, digits + 1, (size_t)(k - 1));
			o += (size_t)(k - 1);
		}
		int e = n - 1 < 0 ? 1 - n : n - 1;
		char ebuf[8];
		int el = 0;
		do
			ebuf[el++] = (char)('0' + e % 10);
		while ((e /= 10) && el < 8);
		out[o++] = 'e';
		out[o++] = n - 1 < 0 ? '-' : '+';
		while (el)
			out[o++] = ebuf[--el];
	}
	out[o] = '\0';
	return o;
}

size_t jcs_number(double v, char out[32])
{
	locale_t old = uselocale(c_locale()); /* snprintf and strtod below: C's */
	if (v == 0) {
		memcpy(out, "0", 2); /* -0 too */
		uselocale(old);
		return 1;
	}
	char tmp[40];
	/* The shortest precision that reads back as the same double. */
	int prec = 1;
	for (; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	/* tmp is [-]d[.ddd]e[+-]xx: take the digits and the exponent. */
	char digits[20];
	int k = 0;
	const char *q = tmp;
	bool neg = *q == '-';
	if (neg)
		q++;
	for (; *q && *q != 'e'; q++)
		if (*q >= '0' && *q <= '9')
			digits[k++] = *q;
	while (k > 1 && digits[k - 1] == '0')
		k--;
	int n = atoi(q + 1) + 1; /* the decimal point sits after n digits */
	uselocale(old);
	return format_digits(neg, digits, k, n, out);
}

/*
 * The canonical form of a number token without an exponent whose
 * significant digits are at most 15 (DBL_DIG), as most numbers in
 * requests are (16, 0.7, 1024): such a decimal reads as a double that no
 * shorter decimal reads as, and the shortest form that reads back is
 * its own digits, so no strtod and no printf loop. 0 when the token is
 * not such a number (jcs_number then decides).
 */
static size_t short_number(const char *s, size_t len, char out[32])
{
	const char *p = s, *end = s + len;
	bool neg = p < end && *p == '-';
	if (neg)
		p++;
	char digits[16];
	int k = 0, n = 0, zeros = 0; /* zeros: ones held back, kept if a digit follows */
	bool seen = false, frac = false;
	for (; p < end; p++) {
		if (*p == '.') {
			frac = true;
			continue;
		}
		if (*p < '0' || *p > '9')
			return 0; /* an exponent */
		if (!seen && *p == '0') {
			if (frac && --n <= -6)
				return 0; /* 0.00d: the point moves right of these */
			continue;
		}
		seen = true;
		if (!frac)
			n++;
		if (*p == '0') {
			zeros++;
			continue;
		}
		if (k + zeros + 1 > 15)
			return 0;
		while (zeros) {
			digits[k++] = '0';
			zeros--;
		}
		digits[k++] = *p;
	}
	if (!seen) {
		memcpy(out, "0", 2); /* 0, -0, 0.000 */
		return 1;
	}
	if (n > 21 || n <= -6)
		return 0; /* written with an exponent: the general path */
	return format_digits(neg, digits, k, n, out);
}

/* A number token per RFC 8259's grammar, written in ECMAScript's form. */
static int read_number(struct reader *r, struct buf *out)
{
	const char *s = r->p, *p = s;
	if (p < r->end && *p == '-')
		p++;
	if (p < r->end && *p == '0') {
		p++;
	} else if (p < r->end && *p >= '1' && *p <= '9') {
		while (p < r->end && *p >= '0' && *p <= '9')
			p++;
	} else {
		return LR_EPROTO;
	}
	if (p < r->end && *p == '.') {
		p++;
		if (p >= r->end || *p < '0' || *p > '9')
			return LR_EPROTO;
		while (p < r->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < r->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < r->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= r->end || *p < '0' || *p > '9')
			return LR_EPROTO;
		while (p < r->end && *p >= '0' && *p <= '9')
			p++;
	}
	size_t len = (size_t)(p - s);
	char num[32];
	size_t nlen = short_number(s, len, num);
	if (nlen) {
		r->p = p;
		return buf_append(out, num, nlen);
	}
	char stack[64];
	char *copy = len < sizeof(stack) ? stack : malloc(len + 1); /* owner: this function */
	if (!copy)
		return LR_ENOMEM;
	memcpy(copy, s, len);
	copy[len] = '\0';
	double v = strtod_l(copy, NULL, c_locale());
	if (copy != stack)
		free(copy);
	if (v == __builtin_inf() || v == -__builtin_inf())
		return LR_EPROTO; /* JCS has no form for it */
	buf_append(out, num, jcs_number(v, num));
	r->p = p;
	return buf_error(out);
}

/* One UTF-16 code unit of a UTF-8 string at a time: the order of
 * RFC 8785 3.2.3 (characters past U+FFFF sort as their surrogates). */
struct units {
	const unsigned char *p, *end;
	uint16_t low; /* the pending low surrogate, or 0 */
};

static int next_unit(struct units *u)
{
	if (u->low) {
		int v = u->low;
		u->low = 0;
		return v;
	}
	if (u->p >= u->end)
		return -1;
	unsigned char c = *u->p;
	uint32_t cp;
	size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; /* valid UTF-8: read_string checked */
	if (n == 1)
		cp = c;
	else if (n == 2)
		cp = (uint32_t)(c & 0x1F) << 6 | (u->p[1] & 0x3F);
	else if (n == 3)
		cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(u->p[1] & 0x3F) << 6 | (u->p[2] & 0x3F);
	else
		cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(u->p[1] & 0x3F) << 12 |
		     (uint32_t)(u->p[2] & 0x3F) << 6 | (u->p[3] & 0x3F);
	u->p += n;
	if (cp < 0x10000)
		return (int)cp;
	cp -= 0x10000;
	u->low = (uint16_t)(0xDC00 + (cp & 0x3FF));
	return (int)(0xD800 + (cp >> 10));
}

struct member {
	size_t key, key_len;     /* in the object's scratch buffer */
	size_t value, value_len; /* likewise: the value's canonical form */
};

struct object_ctx {
	const char *base;        /* the scratch buffer's data, for the comparison */
};
static _Thread_local struct object_ctx sort_ctx;

static int member_cmp(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	/* Up to the first byte that differs the keys are equal; when both of
	 * those bytes are ASCII (or one key ends there), byte order is UTF-16
	 * order. Only bytes past ASCII need the units. */
	const unsigned char *kx = (const unsigned char *)sort_ctx.base + x->key;
	const unsigned char *ky = (const unsigned char *)sort_ctx.base + y->key;
	size_t common = x->key_len < y->key_len ? x->key_len : y->key_len, i = 0;
	while (i < common && kx[i] == ky[i])
		i++;
	if (i == common)
		return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
	if (kx[i] < 0x80 && ky[i] < 0x80)
		return kx[i] < ky[i] ? -1 : 1;
	struct units ux = {(const unsigned char *)sort_ctx.base + x->key,
	                   (const unsigned char *)sort_ctx.base + x->key + x->key_len, 0};
	struct units uy = {(const unsigned char *)sort_ctx.base + y->key,
	                   (const unsigned char *)sort_ctx.base + y->key + y->key_len, 0};
	for (;;) {
		int cx = next_unit(&ux), cy = next_unit(&uy);
		if (cx != cy)
			return cx < cy ? -1 : 1;
		if (cx < 0)
			return 0;
	}
}

static int read_value(struct reader *r, struct buf *out, const char *const *drop, int ndrop);

static bool dropped(const char *key, size_t len, const char *const *drop, int ndrop)
{
	for (int i = 0; i < ndrop; i++)
		if (strlen(drop[i]) == len && memcmp(drop[i], key, len) == 0)
			return true;
	return false;
}

/* Members into scratch (key, then canonical value), sorted, written. */
static int read_object(struct reader *r, struct buf *out, const char *const *drop, int ndrop)
{
	struct buf scratch = {0};   /* owner: this function */
	struct member small[16];    /* most objects: no allocation */
	struct member *m = small;   /* owner: this function unless small; n used of cap */
	size_t n = 0, cap = sizeof(small) / sizeof(small[0]);
	int ret = 0;
	r->p++; /* { */
	skip_ws(r);
	if (r->p < r->end && *r->p == '}') {
		r->p++;
		return buf_append(out, "{}", 2);
	}
	for (;;) {
		skip_ws(r);
		if (r->p >= r->end || *r->p != '"') {
			ret = LR_EPROTO;
			break;
		}
		if (n == cap) {
			size_t c = cap * 2;
			struct member *g = m == small ? malloc(c * sizeof(*m)) : realloc(m, c * sizeof(*m));
			if (!g) {
				ret = LR_ENOMEM;
				break;
			}
			if (m == small)
				memcpy(g, small, sizeof(small));
			m = g;
			cap = c;
		}
		struct member *cur = &m[n];
		cur->key = scratch.len;
		if ((ret = read_string(r, &scratch)))
			break;
		cur->key_len = scratch.len - cur->key;
		skip_ws(r);
		if (r->p >= r->end || *r->p != ':') {
			ret = LR_EPROTO;
			break;
		}
		r->p++;
		cur->value = scratch.len;
		if ((ret = read_value(r, &scratch, NULL, 0)))
			break;
		cur->value_len = scratch.len - cur->value;
		if (!dropped(scratch.data + cur->key, cur->key_len, drop, ndrop))
			n++;
		skip_ws(r);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == '}') {
			r->p++;
			break;
		}
		ret = LR_EPROTO;
		break;
	}
	if (!ret) {
		sort_ctx.base = scratch.data;
		if (n <= sizeof(small) / sizeof(small[0])) {
			for (size_t i = 1; i < n; i++) /* insertion: cheaper than qsort for a few */
				for (size_t j = i; j > 0 && member_cmp(&m[j - 1], &m[j]) > 0; j--) {
					struct member t = m[j];
					m[j] = m[j - 1];
					m[j - 1] = t;
				}
		} else {
			qsort(m, n, sizeof(*m), member_cmp);
		}
		buf_append(out, "{", 1);
		for (size_t i = 0; i < n; i++) {
			if (i)
				buf_append(out, ",", 1);
			write_string(out, scratch.data + m[i].key, m[i].key_len);
			buf_append(out, ":", 1);
			buf_append(out, scratch.data + m[i].value, m[i].value_len);
		}
		buf_append(out, "}", 1);
		ret = buf_error(out);
	}
	if (m != small)
		free(m);
	buf_free(&scratch);
	return ret;
}

static int read_array(struct reader *r, struct buf *out)
{
	r->p++; /* [ */
	buf_append(out, "[", 1);
	skip_ws(r);
	if (r->p < r->end && *r->p == ']') {
		r->p++;
		return buf_append(out, "]", 1);
	}
	for (bool first = true;; first = false) {
		if (!first)
			buf_append(out, ",", 1);
		int ret = read_value(r, out, NULL, 0);
		if (ret)
			return ret;
		skip_ws(r);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == ']') {
			r->p++;
			return buf_append(out, "]", 1);
		}
		return LR_EPROTO;
	}
}

static int read_literal(struct reader *r, struct buf *out, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return LR_EPROTO;
	r->p += n;
	return buf_append(out, word, n);
}

static int read_value(struct reader *r, struct buf *out, const char *const *drop, int ndrop)
{
	skip_ws(r);
	if (r->p >= r->end)
		return LR_EPROTO;
	int ret;
	switch (*r->p) {
	case '{':
	case '[':
		if (++r->depth > JCS_MAX_DEPTH)
			return LR_EPROTO;
		ret = *r->p == '{' ? read_object(r, out, drop, ndrop) : read_array(r, out);
		r->depth--;
		return ret;
	case '"': {
		size_t raw = plain_string(r);
		if (raw) {
			buf_append(out, r->p, raw);
			r->p += raw;
			return buf_error(out);
		}
		struct buf s = {0}; /* owner: this block */
		ret = read_string(r, &s);
		if (!ret) {
			write_string(out, s.data ? s.data : "", s.len);
			ret = buf_error(out);
		}
		buf_free(&s);
		return ret;
	}
	case 't':
		return read_literal(r, out, "true");
	case 'f':
		return read_literal(r, out, "false");
	case 'n':
		return read_literal(r, out, "null");
	default:
		return read_number(r, out);
	}
}

int jcs_canonicalize(const char *text, size_t len, const char *const *drop, int ndrop, struct buf *out)
{
	struct reader r = {.p = text, .end = text + len};
	int ret = read_value(&r, out, drop, ndrop);
	if (ret)
		return ret == LR_ENOMEM || buf_error(out) ? LR_ENOMEM : LR_EPROTO;
	skip_ws(&r);
	return r.p == r.end ? 0 : LR_EPROTO;
}

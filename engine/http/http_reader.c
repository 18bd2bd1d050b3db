/*
 * Incremental HTTP/1.1 response reader (RFC 9112), client side.
 *
 * The head is found by looking for the blank line (memchr for LF), then
 * parsed in one pass over bytes that are known to end in LF, so the parser
 * never has to check for the end of its input. A head that arrives whole
 * is parsed where it lies; only a head split across feeds is copied into
 * r->partial, and each feed then scans just the new bytes (plus three back
 * for a blank line that straddles the split). Everything after the head is
 * a byte-level state machine that never buffers: body spans are handed to
 * on_body straight from the fed buffer, chunk by chunk.
 *
 * Line ends in the head may be bare LF (as picohttpparser allows); chunk
 * framing requires CRLF, since a lenient chunk parser is how request
 * smuggling starts.
 *
 * Why this file is long: the head, the three body framings, the chunk
 * lines (a one-pass reader for the common "HEX CRLF" beside the exact
 * byte walk) and the trailers share one state, its limits and its error
 * path; apart, each would reach into the others' fields.
 */
#include "http/http_reader.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "llmring.h"

#define DEFAULT_MAX_HEAD_BYTES ((size_t)64 * 1024)
#define DEFAULT_MAX_BODY_BYTES ((uint64_t)64 * 1024 * 1024)
#define PARTIAL_MIN_CAP ((size_t)1024)
#define MAX_CONTENT_LENGTH_DIGITS 19 /* 9999999999999999999 still fits in uint64_t */
#define MAX_CHUNK_SIZE_DIGITS 15     /* keeps size << 4 from overflowing */

/* RFC 9110 tchar: "!#$%&'*+-.^_`|~", digits and letters. */
const unsigned char http_token_char[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
	0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, /* 0x20  !"#$%&'()*+,-./ */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, /* 0x30 0-9:;<=>? */
	0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 @A-O */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, /* 0x50 P-Z[\]^_ */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 `a-o */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0, /* 0x70 p-z{|}~ DEL */
	/* 0x80..0xff: not token characters */
};

/* Field-value and reason-phrase bytes: HT, SP, VCHAR, obs-text (no controls, no DEL). */
static const unsigned char text_char[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, /* 0x00: HT only */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x50 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, /* 0x70: not DEL */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x80.. obs-text */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Sub-states of r->chunk_state, one set per reader state that uses it. */
enum chunk_line_state {
	CS_FIRST_DIGIT = 0,
	CS_DIGITS,
	CS_BWS,          /* whitespace after the size, before ';' or CRLF */
	CS_EXT,          /* inside ";name=value" extensions (skipped) */
	CS_EXT_QUOTED,
	CS_EXT_ESCAPE,
	CS_LF,           /* CR seen, LF must follow */
};
enum chunk_end_state { CE_CR = 0, CE_LF };
enum trailer_state { TR_LINE_START = 0, TR_IN_LINE, TR_END_LF };

/* What parse_head learned from the framing headers. */
struct head_flags {
	bool has_te;
	bool te_chunked;     /* final transfer coding of the last TE header */
	bool conn_close;
	bool conn_keep_alive;
};

static inline bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static inline bool is_ctl(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static inline unsigned char ascii_lower(unsigned char c)
{
	return (unsigned)(c - 'A') < 26 ? (unsigned char)(c + 32) : c;
}

/* s[0, len) equals the lowercase literal lower, ignoring ASCII case. */
static bool equals_lower(const char *s, size_t len, const char *lower, size_t lower_len)
{
	if (len != lower_len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (ascii_lower((unsigned char)s[i]) != (unsigned char)lower[i])
			return false;
	return true;
}

#define EQUALS_LITERAL(s, len, lit) equals_lower((s), (len), (lit), sizeof(lit) - 1)

static int hex_value(unsigned char c)
{
	if ((unsigned)(c - '0') < 10)
		return c - '0';
	c |= 0x20;
	if ((unsigned)(c - 'a') < 6)
		return c - 'a' + 10;
	return -1;
}

/* ---- head ---- */

/*
 * Index just past the first blank line that ends in p[from, to), or 0.
 * A blank line is LF followed by LF or CRLF.
 */
static size_t find_head_end(const char *p, size_t from, size_t to)
{
	const char *s = p + from, *end = p + to;
	while (s < end) {
		const char *lf = memchr(s, '\n', (size_t)(end - s));
		if (!lf)
			return 0;
		if (lf + 1 < end && lf[1] == '\n')
			return (size_t)(lf + 2 - p);
		if (lf + 2 < end && lf[1] == '\r' && lf[2] == '\n')
			return (size_t)(lf + 3 - p);
		s = lf + 1;
	}
	return 0;
}

#ifdef __SSE2__
/* v's bytes that are at most hi - lo above lo (unsigned), as 0xff. */
static inline __m128i bytes_in_range(__m128i v, char lo, char hi)
{
	__m128i t = _mm_sub_epi8(v, _mm_set1_epi8(lo));
	return _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8((char)(hi - lo))), t);
}

/* The bytes of v that are not text_char bytes or are HT (which is, but
 * is rare): the controls 0x00-0x1f and DEL. */
static inline unsigned text_stop_mask(__m128i v)
{
	__m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
	return (unsigned)_mm_movemask_epi8(_mm_or_si128(ctl, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f))));
}

/* The bytes of v that are not http_token_char bytes: 0x00-0x20, 0x7f
 * and up, and the delimiters "(),/:;<=>?@[\]{} (in ranges where they
 * are neighbours). */
static inline unsigned nontoken_mask(__m128i v)
{
	__m128i bad = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x20)), v);
	bad = _mm_or_si128(bad, _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x7f)), v));
	bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
	bad = _mm_or_si128(bad, bytes_in_range(v, '(', ')'));
	bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8(',')));
	bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8('/')));
	bad = _mm_or_si128(bad, bytes_in_range(v, ':', '@'));
	bad = _mm_or_si128(bad, bytes_in_range(v, '[', ']'));
	bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8('{')));
	bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, _mm_set1_epi8('}')));
	return (unsigned)_mm_movemask_epi8(bad);
}
#endif

/*
 * Index of the first byte at or after p[i] that is not a token character
 * (the end of a header name). Terminates because every head ends in LF;
 * 16 bytes a step with SSE2 while they lie before len (the head's end).
 */
static size_t scan_token(const char *p, size_t i, size_t len)
{
#ifdef __SSE2__
	while (i + 16 <= len) {
		unsigned mask = nontoken_mask(_mm_loadu_si128((const __m128i *)(p + i)));
		if (mask)
			return i + (size_t)__builtin_ctz(mask);
		i += 16;
	}
#else
	(void)len;
#endif
	while (http_token_char[(unsigned char)p[i]])
		i++;
	return i;
}

/*
 * Index of the CR or LF ending the text that starts at p[i], or SIZE_MAX
 * at a control character. Terminates because every head ends in LF; 16
 * bytes a step with SSE2 while they lie before len (the head's end).
 */
static size_t scan_text(const char *p, size_t i, size_t len)
{
#ifdef __SSE2__
	while (i + 16 <= len) {
		unsigned mask = text_stop_mask(_mm_loadu_si128((const __m128i *)(p + i)));
		if (!mask) {
			i += 16;
			continue;
		}
		i += (size_t)__builtin_ctz(mask);
		if (p[i] != '\t')
			break; /* the end of the line, or a control character */
		i++;
	}
#else
	(void)len;
#endif
	for (;; i++) {
		unsigned char c = (unsigned char)p[i];
		if (text_char[c])
			continue;
		if (c == '\r' || c == '\n')
			return i;
		return SIZE_MAX;
	}
}

/* Index past the line end at p[i] (CRLF or LF), or SIZE_MAX for a bare CR. */
static size_t skip_eol(const char *p, size_t i)
{
	if (p[i] == '\n')
		return i + 1;
	return p[i + 1] == '\n' ? i + 2 : SIZE_MAX;
}

static bool line_has_colon(const char *p, size_t i)
{
	for (; p[i] != '\n'; i++)
		if (p[i] == ':')
			return true;
	return false;
}

static int parse_content_length(const char *v, size_t n, int64_t *out, const char **why)
{
	if (n == 0) {
		*why = "invalid Content-Length";
		return LR_EPROTO;
	}
	if (n > MAX_CONTENT_LENGTH_DIGITS) {
		*why = "Content-Length too large";
		return LR_EPROTO;
	}
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(v[i] - '0');
		if (d > 9) {
			*why = "invalid Content-Length";
			return LR_EPROTO;
		}
		x = x * 10 + d;
	}
	if (x > (uint64_t)INT64_MAX) {
		*why = "Content-Length too large";
		return LR_EPROTO;
	}
	*out = (int64_t)x;
	return 0;
}

/* The final transfer coding is the last non-empty list element. */
static bool final_coding_is_chunked(const char *v, size_t n)
{
	while (n > 0 && (is_ows(v[n - 1]) || v[n - 1] == ','))
		n--;
	size_t start = n;
	while (start > 0 && v[start - 1] != ',')
		start--;
	while (start < n && is_ows(v[start]))
		start++;
	return EQUALS_LITERAL(v + start, n - start, "chunked");
}

static void scan_connection(const char *v, size_t n, struct head_flags *f)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (is_ows(v[i]) || v[i] == ','))
			i++;
		size_t start = i;
		while (i < n && v[i] != ',')
			i++;
		size_t end = i;
		while (end > start && is_ows(v[end - 1]))
			end--;
		if (EQUALS_LITERAL(v + start, end - start, "close"))
			f->conn_close = true;
		else if (EQUALS_LITERAL(v + start, end - start, "keep-alive"))
			f->conn_keep_alive = true;
	}
}

/*
 * A header name (token bytes only) equals lower, a literal of lowercase
 * letters, digits and '-', of length n >= 8, ignoring case: eight bytes a
 * step, the last step overlapping. `| 0x20` folds exactly the letters
 * among token bytes onto the lowercase literal's bytes (it would map CR to
 * '-', but CR is no token byte), so the name is compared, not lowered.
 */
static bool token_equals_lower(const char *name, const char *lower, size_t n)
{
	const uint64_t fold = 0x2020202020202020u;
	uint64_t a, b;
	for (size_t i = 0; i + 8 < n; i += 8) {
		memcpy(&a, name + i, 8);
		memcpy(&b, lower + i, 8);
		if ((a | fold) != b)
			return false;
	}
	memcpy(&a, name + n - 8, 8);
	memcpy(&b, lower + n - 8, 8);
	return (a | fold) == b;
}
#define NAME_IS(name, len, lit) ((len) == sizeof(lit) - 1 && token_equals_lower((name), (lit), sizeof(lit) - 1))

/* Interprets the headers that decide framing; dispatches on length first. */
static int note_header(const char *name, size_t name_len, const char *value, size_t value_len,
                       struct http_head *h, struct head_flags *f, const char **why)
{
	switch (name_len) {
	case 14:
		if (NAME_IS(name, name_len, "content-length")) {
			int64_t cl;
			int rc = parse_content_length(value, value_len, &cl, why);
			if (rc < 0)
				return rc;
			if (h->content_length >= 0 && h->content_length != cl) {
				*why = "conflicting Content-Length values";
				return LR_EPROTO;
			}
			h->content_length = cl;
		}
		break;
	case 17:
		if (NAME_IS(name, name_len, "transfer-encoding")) {
			f->has_te = true;
			f->te_chunked = final_coding_is_chunked(value, value_len);
		}
		break;
	case 10:
		if (NAME_IS(name, name_len, "connection"))
			scan_connection(value, value_len, f);
		break;
	}
	return 0;
}

/*
 * Parses a complete head p[0, len) (status line through the blank line,
 * so p[len - 1] is LF). Returns 0 or LR_EPROTO with *why set.
 */
static int parse_head(const char *p, size_t len, struct http_head *h, struct head_flags *f,
                      const char **why)
{
	*why = "malformed status line";
	if (len < 13 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
	    p[8] != ' ' || (unsigned)(p[9] - '1') > 8 || (unsigned)(p[10] - '0') > 9 ||
	    (unsigned)(p[11] - '0') > 9)
		return LR_EPROTO;
	h->minor_version = p[7] - '0';
	h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	size_t i;
	if (p[12] == ' ')
		i = 13;
	else if (p[12] == '\r' || p[12] == '\n')
		i = 12; /* no reason phrase: tolerated, as most parsers do */
	else
		return LR_EPROTO;
	size_t eol = scan_text(p, i, len);
	if (eol == SIZE_MAX)
		return LR_EPROTO;
	h->reason = p + i;
	h->reason_len = eol - i;
	i = skip_eol(p, eol);
	if (i == SIZE_MAX)
		return LR_EPROTO;

	h->content_length = -1;
	h->chunked = h->conn_close = h->no_body = h->close_delimited = 0;
	h->num_headers = 0;
	for (;;) {
		char c = p[i];
		if (c == '\r' || c == '\n') {
			if (skip_eol(p, i) == SIZE_MAX) {
				*why = "bare CR in header block";
				return LR_EPROTO;
			}
			return 0;
		}
		if (is_ows(c)) {
			*why = "obsolete header line folding";
			return LR_EPROTO;
		}
		size_t name = i;
		i = scan_token(p, i, len);
		if (p[i] != ':' || i == name) {
			*why = line_has_colon(p, i) ? "invalid character in header name"
			                            : "header field without colon";
			return LR_EPROTO;
		}
		size_t name_len = i - name;
		i++;
		while (is_ows(p[i]))
			i++;
		size_t value = i;
		eol = scan_text(p, i, len);
		if (eol == SIZE_MAX) {
			*why = "invalid character in header value";
			return LR_EPROTO;
		}
		size_t value_end = eol;
		while (value_end > value && is_ows(p[value_end - 1]))
			value_end--;
		i = skip_eol(p, eol);
		if (i == SIZE_MAX) {
			*why = "bare CR in header block";
			return LR_EPROTO;
		}
		if (h->num_headers < HTTP_MAX_HEADERS) {
			struct http_header *hd = &h->headers[h->num_headers++];
			hd->name = p + name;
			hd->name_len = name_len;
			hd->value = p + value;
			hd->value_len = value_end - value;
		}
		int rc = note_header(p + name, name_len, p + value, value_end - value, h, f, why);
		if (rc < 0)
			return rc;
	}
}

/* ---- reader ---- */

static long fail(struct http_reader *r, int code, const char *why)
{
	r->state = HTTP_READ_ERROR;
	r->error = code;
	r->error_message = why;
	return code;
}

/* The callback's code is its own error: no reader message, so callers fall
 * back to their own text or lr_strerror(). */
static long callback_stopped(struct http_reader *r, int rc)
{
	return fail(r, rc, NULL);
}

static long finish(struct http_reader *r, const struct http_reader_callbacks *cb, void *ctx)
{
	r->state = HTTP_READ_DONE;
	if (cb->on_done) {
		int rc = cb->on_done(ctx);
		if (rc < 0)
			return callback_stopped(r, rc);
	}
	return 0;
}

static long deliver(struct http_reader *r, const char *data, size_t len,
                    const struct http_reader_callbacks *cb, void *ctx)
{
	r->body_received += len;
	if (cb->on_body && len > 0) {
		int rc = cb->on_body(ctx, data, len);
		if (rc < 0)
			return callback_stopped(r, rc);
	}
	return 0;
}

static void start_chunk_line(struct http_reader *r)
{
	r->state = HTTP_READ_CHUNK_SIZE;
	r->chunk_state = CS_FIRST_DIGIT;
	r->body_remaining = 0;
	r->hex_digits = 0;
	r->framing_bytes = 0;
}

/* A complete head lies in p[0, len): parse it, choose the body framing, report it. */
static long head_complete(struct http_reader *r, const char *p, size_t len,
                          const struct http_reader_callbacks *cb, void *ctx)
{
	struct http_head head;
	struct head_flags f = { 0 };
	const char *why;
	if (parse_head(p, len, &head, &f, &why) < 0)
		return fail(r, LR_EPROTO, why);
	if (head.status < 200) {
		if (head.status == 101)
			return fail(r, LR_EPROTO, "unexpected 101 Switching Protocols");
		return 0; /* interim response: the final head follows */
	}
	if (f.has_te && head.content_length >= 0)
		return fail(r, LR_EPROTO, "both Transfer-Encoding and Content-Length");

	/* RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing: never reuse. */
	head.conn_close = f.conn_close || (head.minor_version == 0 && !f.conn_keep_alive) ||
	                  (head.minor_version == 0 && f.has_te);
	head.chunked = f.has_te && f.te_chunked;
	head.no_body = head.status == 204 || head.status == 304 || r->request_was_head;

	enum http_reader_state next;
	if (head.no_body) {
		next = HTTP_READ_DONE;
	} else if (f.has_te) {
		head.close_delimited = !head.chunked;
		next = head.chunked ? HTTP_READ_CHUNK_SIZE : HTTP_READ_BODY_CLOSE;
	} else if (head.content_length >= 0) {
		if ((uint64_t)head.content_length > r->max_body_bytes)
			return fail(r, LR_ETOOLARGE, "response body too large");
		r->body_remaining = (uint64_t)head.content_length;
		next = head.content_length > 0 ? HTTP_READ_BODY_LENGTH : HTTP_READ_DONE;
	} else {
		head.close_delimited = 1;
		next = HTTP_READ_BODY_CLOSE;
	}

	r->status = head.status;
	if (next == HTTP_READ_CHUNK_SIZE)
		start_chunk_line(r);
	else
		r->state = next;
	if (cb->on_head) {
		int rc = cb->on_head(ctx, &head);
		if (rc < 0)
			return callback_stopped(r, rc);
	}
	return next == HTTP_READ_DONE ? finish(r, cb, ctx) : 0;
}

/* Grows r->partial to hold need bytes; need never exceeds max_head_bytes. */
static int reserve_partial(struct http_reader *r, size_t need)
{
	if (need <= r->partial_cap)
		return 0;
	size_t cap = r->partial_cap ? r->partial_cap : PARTIAL_MIN_CAP;
	while (cap < need)
		cap *= 2;
	if (cap > r->max_head_bytes)
		cap = r->max_head_bytes;
	char *p = realloc(r->partial, cap);
	if (!p)
		return LR_ENOMEM;
	r->partial = p;
	r->partial_cap = cap;
	return 0;
}

static long read_head(struct http_reader *r, char *buf, size_t len,
                      const struct http_reader_callbacks *cb, void *ctx)
{
	size_t max = r->max_head_bytes;
	long rc;
	r->got_bytes = 1;
	if (r->partial_len == 0) {
		/* Fast path: the whole head is in this feed. */
		size_t end = find_head_end(buf, 0, len < max ? len : max);
		if (end) {
			rc = head_complete(r, buf, end, cb, ctx);
			return rc < 0 ? rc : (long)end;
		}
		if (len >= max)
			return fail(r, LR_ETOOLARGE, "response header block too large");
		if (reserve_partial(r, len) < 0)
			return fail(r, LR_ENOMEM, "out of memory");
		memcpy(r->partial, buf, len);
		r->partial_len = len;
		return (long)len;
	}

	/* Copy no more than the cap allows; the blank line can only be in the new bytes. */
	size_t old = r->partial_len;
	size_t n = len < max - old ? len : max - old;
	if (reserve_partial(r, old + n) < 0)
		return fail(r, LR_ENOMEM, "out of memory");
	memcpy(r->partial + old, buf, n);
	size_t end = find_head_end(r->partial, old > 3 ? old - 3 : 0, old + n);
	if (end) {
		r->partial_len = 0;
		rc = head_complete(r, r->partial, end, cb, ctx);
		return rc < 0 ? rc : (long)(end - old);
	}
	if (old + n >= max)
		return fail(r, LR_ETOOLARGE, "response header block too large");
	r->partial_len = old + n;
	return (long)n;
}

static long read_length_body(struct http_reader *r, const char *buf, size_t len,
                             const struct http_reader_callbacks *cb, void *ctx)
{
	size_t n = len < r->body_remaining ? len : (size_t)r->body_remaining;
	r->body_remaining -= n;
	long rc = deliver(r, buf, n, cb, ctx);
	if (rc == 0 && r->body_remaining == 0)
		rc = finish(r, cb, ctx);
	return rc < 0 ? rc : (long)n;
}

static long read_close_body(struct http_reader *r, const char *buf, size_t len,
                            const struct http_reader_callbacks *cb, void *ctx)
{
	if (len > r->max_body_bytes - r->body_received)
		return fail(r, LR_ETOOLARGE, "response body too large");
	long rc = deliver(r, buf, len, cb, ctx);
	return rc < 0 ? rc : (long)len;
}

/* chunk-size [ chunk-ext ] CRLF, one byte at a time (lines are short). */
static long read_chunk_size(struct http_reader *r, const char *buf, size_t len)
{
	unsigned st = r->chunk_state;
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)buf[i++];
		if (++r->framing_bytes > r->max_head_bytes)
			return fail(r, LR_ETOOLARGE, "chunk size line too long");
		if (c == '\n' && st != CS_LF)
			return fail(r, LR_EPROTO, "bare LF in chunk framing");
		switch (st) {
		case CS_FIRST_DIGIT:
		case CS_DIGITS: {
			int d = hex_value(c);
			if (d >= 0) {
				if (++r->hex_digits > MAX_CHUNK_SIZE_DIGITS)
					return fail(r, LR_EPROTO, "chunk size too large");
				r->body_remaining = r->body_remaining << 4 | (unsigned)d;
				st = CS_DIGITS;
			} else if (st == CS_FIRST_DIGIT) {
				return fail(r, LR_EPROTO, "invalid chunk size");
			} else if (c == '\r') {
				st = CS_LF;
			} else if (c == ';') {
				st = CS_EXT;
			} else if (is_ows((char)c)) {
				st = CS_BWS;
			} else {
				return fail(r, LR_EPROTO, "invalid chunk size");
			}
			break;
		}
		case CS_BWS:
			if (c == '\r')
				st = CS_LF;
			else if (c == ';')
				st = CS_EXT;
			else if (!is_ows((char)c))
				return fail(r, LR_EPROTO, "invalid chunk size");
			break;
		case CS_EXT:
			if (c == '\r')
				st = CS_LF;
			else if (c == '"')
				st = CS_EXT_QUOTED;
			else if (is_ctl(c))
				return fail(r, LR_EPROTO, "invalid chunk extension");
			break;
		case CS_EXT_QUOTED:
			if (c == '"')
				st = CS_EXT;
			else if (c == '\\')
				st = CS_EXT_ESCAPE;
			else if (is_ctl(c))
				return fail(r, LR_EPROTO, "invalid chunk extension");
			break;
		case CS_EXT_ESCAPE:
			if (is_ctl(c))
				return fail(r, LR_EPROTO, "invalid chunk extension");
			st = CS_EXT_QUOTED;
			break;
		case CS_LF:
			if (c != '\n')
				return fail(r, LR_EPROTO, "bare CR in chunk framing");
			if (r->body_remaining == 0) {
				r->state = HTTP_READ_TRAILERS;
				r->chunk_state = TR_LINE_START;
				r->framing_bytes = 0;
				return (long)i;
			}
			if (r->body_remaining > r->max_body_bytes - r->body_received)
				return fail(r, LR_ETOOLARGE, "response body too large");
			r->state = HTTP_READ_CHUNK_DATA;
			return (long)i;
		}
	}
	r->chunk_state = st;
	return (long)i;
}

/*
 * The common chunk-size line, "HEX CRLF" whole in buf at a line start,
 * parsed in one pass. Returns the bytes consumed, or 0 when the line is
 * anything else (extensions, whitespace, split across feeds, a bad byte),
 * which read_chunk_size then takes byte by byte with its exact errors.
 */
static size_t read_chunk_size_fast(struct http_reader *r, const char *buf, size_t len)
{
	/* A hex digit's value plus one; 0 for every other byte. */
	static const unsigned char hex1[256] = {
		['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7,
		['7'] = 8, ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
		['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15,
		['F'] = 16,
	};
	uint64_t size = 0;
	size_t i = 0;
	size_t max = len < MAX_CHUNK_SIZE_DIGITS ? len : MAX_CHUNK_SIZE_DIGITS;
	unsigned d;
	while (i < max && (d = hex1[(unsigned char)buf[i]]) != 0) {
		size = size << 4 | (d - 1);
		i++;
	}
	if (i == 0 || i + 2 > len || buf[i] != '\r' || buf[i + 1] != '\n' ||
	    i + 2 > r->max_head_bytes || size == 0 ||
	    size > r->max_body_bytes - r->body_received)
		return 0;
	r->body_remaining = size;
	r->hex_digits = (unsigned)i;
	r->framing_bytes += i + 2;
	r->state = HTTP_READ_CHUNK_DATA;
	return i + 2;
}

static long read_chunk_end(struct http_reader *r, char c)
{
	if (r->chunk_state == CE_CR) {
		if (c != '\r')
			return fail(r, LR_EPROTO, c == '\n' ? "bare LF in chunk framing"
			                                     : "missing CRLF after chunk data");
		r->chunk_state = CE_LF;
		return 1;
	}
	if (c != '\n')
		return fail(r, LR_EPROTO, "missing CRLF after chunk data");
	start_chunk_line(r);
	return 1;
}

/* Trailer fields are skipped unparsed; the block is capped like a head. */
static long read_trailers(struct http_reader *r, const char *buf, size_t len,
                          const struct http_reader_callbacks *cb, void *ctx)
{
	size_t i = 0;
	bool done = false;
	while (i < len && !done) {
		switch (r->chunk_state) {
		case TR_LINE_START:
			if (buf[i] == '\n')
				done = true;
			else
				r->chunk_state = buf[i] == '\r' ? TR_END_LF : TR_IN_LINE;
			i++;
			break;
		case TR_IN_LINE: {
			const char *lf = memchr(buf + i, '\n', len - i);
			if (lf) {
				i = (size_t)(lf - buf) + 1;
				r->chunk_state = TR_LINE_START;
			} else {
				i = len;
			}
			break;
		}
		case TR_END_LF:
			if (buf[i] != '\n')
				return fail(r, LR_EPROTO, "bare CR in trailer section");
			i++;
			done = true;
			break;
		}
		if (i > r->max_head_bytes - r->framing_bytes)
			return fail(r, LR_ETOOLARGE, "trailer section too large");
	}
	r->framing_bytes += i;
	if (done) {
		long rc = finish(r, cb, ctx);
		if (rc < 0)
			return rc;
	}
	return (long)i;
}

void http_reader_init(struct http_reader *r, size_t max_head_bytes, uint64_t max_body_bytes)
{
	memset(r, 0, sizeof(*r));
	r->max_head_bytes = max_head_bytes ? max_head_bytes : DEFAULT_MAX_HEAD_BYTES;
	r->max_body_bytes = max_body_bytes ? max_body_bytes : DEFAULT_MAX_BODY_BYTES;
}

void http_reader_reset(struct http_reader *r)
{
	/* Keep the limits and partial's allocation; request_was_head is per request. */
	struct http_reader keep = *r;
	memset(r, 0, sizeof(*r));
	r->max_head_bytes = keep.max_head_bytes;
	r->max_body_bytes = keep.max_body_bytes;
	r->partial = keep.partial;
	r->partial_cap = keep.partial_cap;
}

void http_reader_free(struct http_reader *r)
{
	free(r->partial);
	r->partial = NULL;
	r->partial_len = r->partial_cap = 0;
}

long http_reader_feed(struct http_reader *r, char *buf, size_t len,
                      const struct http_reader_callbacks *cb, void *ctx)
{
	size_t pos = 0;
	while (pos < len) {
		long n;
		switch (r->state) {
		case HTTP_READ_HEAD:
			n = read_head(r, buf + pos, len - pos, cb, ctx);
			break;
		case HTTP_READ_BODY_LENGTH:
			n = read_length_body(r, buf + pos, len - pos, cb, ctx);
			break;
		case HTTP_READ_BODY_CLOSE:
			n = read_close_body(r, buf + pos, len - pos, cb, ctx);
			break;
		case HTTP_READ_CHUNK_SIZE:
			n = 0;
			if (r->chunk_state == CS_FIRST_DIGIT)
				n = (long)read_chunk_size_fast(r, buf + pos, len - pos);
			if (n == 0)
				n = read_chunk_size(r, buf + pos, len - pos);
			break;
		case HTTP_READ_CHUNK_DATA: {
			size_t avail = len - pos;
			size_t take = avail < r->body_remaining ? avail : (size_t)r->body_remaining;
			r->body_remaining -= take;
			if (r->body_remaining == 0) {
				r->state = HTTP_READ_CHUNK_DATA_END;
				r->chunk_state = CE_CR;
			}
			n = deliver(r, buf + pos, take, cb, ctx);
			if (n < 0)
				return n;
			n = (long)take;
			/* The CRLF after the data, when it is here, in one step. */
			if (r->state == HTTP_READ_CHUNK_DATA_END && len - pos - take >= 2 &&
			    buf[pos + take] == '\r' && buf[pos + take + 1] == '\n') {
				start_chunk_line(r);
				n += 2;
			}
			break;
		}
		case HTTP_READ_CHUNK_DATA_END:
			n = read_chunk_end(r, buf[pos]);
			break;
		case HTTP_READ_TRAILERS:
			n = read_trailers(r, buf + pos, len - pos, cb, ctx);
			break;
		case HTTP_READ_DONE:
			return (long)pos; /* what follows belongs to the caller */
		case HTTP_READ_ERROR:
		default:
			return r->error;
		}
		if (n < 0)
			return n;
		pos += (size_t)n;
	}
	return r->state == HTTP_READ_ERROR ? r->error : (long)pos;
}

int http_reader_eof(struct http_reader *r, const struct http_reader_callbacks *cb, void *ctx)
{
	switch (r->state) {
	case HTTP_READ_ERROR:
		return r->error;
	case HTTP_READ_DONE:
		return 0;
	case HTTP_READ_BODY_CLOSE:
		return (int)finish(r, cb, ctx);
	case HTTP_READ_HEAD:
		if (!r->got_bytes)
			return (int)fail(r, LR_ECONNRESET, "connection closed before any response byte");
		/* fall through */
	default:
		return (int)fail(r, LR_EPROTO, "connection closed mid-response");
	}
}

const struct http_header *http_head_find(const struct http_head *h, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < h->num_headers; i++) {
		const struct http_header *hd = &h->headers[i];
		if (hd->name_len != len)
			continue;
		size_t j = 0;
		while (j < len && ascii_lower((unsigned char)hd->name[j]) ==
		                      ascii_lower((unsigned char)name[j]))
			j++;
		if (j == len)
			return hd;
	}
	return NULL;
}

/*
 * Server-sent events parser (WHATWG HTML, "Interpreting an event stream").
 *
 * Lines are found with memchr: the next LF and the next CR are each
 * searched once and cached, so every byte is scanned at most twice
 * whatever the line ends. An event of one data line and the blank line,
 * whole in the fed buffer (what the APIs send), is dispatched by
 * fast_event straight from the buffer. A line that lies in the fed
 * buffer is processed where it lies; only the unterminated tail of a feed
 * is copied, into p->line, and completed by the next feed.
 *
 * Event fields are borrowed from the fed buffer while they can be: the
 * first data value and the event type are kept as pointers, and copied
 * into the parser's buffers only when a second data line needs joining
 * or the feed ends before the blank line that dispatches the event.
 *
 * A CR that ends a feed ends its line at once; skip_lf remembers to
 * swallow an LF that starts the next feed, so a CRLF split between feeds
 * is one line end, not two.
 */
#include "format/sse.h"

#include <stdlib.h>
#include <string.h>

#include "llmring.h"

#define DEFAULT_MAX_LINE_BYTES ((size_t)1024 * 1024)
#define DEFAULT_MAX_EVENT_BYTES ((size_t)1024 * 1024)
#define BUF_MIN_CAP ((size_t)256)

static const unsigned char utf8_bom[3] = {0xEF, 0xBB, 0xBF};

/* Grows b to hold need bytes: doubling, but never past limit (the caller
 * has checked need <= limit), so a cap bounds memory as well as data. */
static int sse_buf_reserve(struct sse_buf *b, size_t need, size_t limit)
{
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need && cap <= SIZE_MAX / 2)
		cap *= 2;
	if (cap > limit)
		cap = limit;
	if (cap < need)
		cap = need;
	char *d = realloc(b->data, cap);
	if (!d)
		return LR_ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

static int sse_buf_append(struct sse_buf *b, const char *s, size_t n, size_t limit)
{
	if (n == 0)
		return 0;
	int rc = sse_buf_reserve(b, b->len + n, limit);
	if (rc < 0)
		return rc;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	return 0;
}

static void sse_buf_free(struct sse_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* The data buffer holds the WHATWG data buffer: each value plus LF; its
 * bound is the event cap plus that final LF. */
static size_t data_limit(const struct sse_parser *p)
{
	return p->max_event_bytes + 1;
}

/* Forget the event being built (not the last event ID, which persists). */
static void clear_event(struct sse_parser *p)
{
	p->has_data = false;
	p->bdata = NULL;
	p->bdata_len = 0;
	p->data.len = 0;
	p->type_borrowed = false;
	p->type_ptr = NULL;
	p->type_len = 0;
}

void sse_parser_init(struct sse_parser *p, size_t max_line_bytes, size_t max_event_bytes)
{
	memset(p, 0, sizeof(*p));
	p->max_line_bytes = max_line_bytes ? max_line_bytes : DEFAULT_MAX_LINE_BYTES;
	p->max_event_bytes = max_event_bytes ? max_event_bytes : DEFAULT_MAX_EVENT_BYTES;
}

void sse_parser_reset(struct sse_parser *p)
{
	clear_event(p);
	p->error = 0;
	p->bom_matched = 0;
	p->bom_done = false;
	p->skip_lf = false;
	p->line.len = 0;
	p->type.len = 0;
	p->id.len = 0;
}

void sse_parser_free(struct sse_parser *p)
{
	sse_buf_free(&p->line);
	sse_buf_free(&p->data);
	sse_buf_free(&p->type);
	sse_buf_free(&p->id);
	clear_event(p);
}

static int fail(struct sse_parser *p, int rc)
{
	p->error = rc;
	return rc;
}

/* Moves a borrowed data value into p->data (as value + LF). */
static int own_data(struct sse_parser *p)
{
	if (!p->bdata)
		return 0;
	p->data.len = 0;
	int rc = sse_buf_append(&p->data, p->bdata, p->bdata_len, data_limit(p));
	if (rc == 0)
		rc = sse_buf_append(&p->data, "\n", 1, data_limit(p));
	p->bdata = NULL;
	p->bdata_len = 0;
	return rc;
}

/* Length of the WHATWG data buffer so far (values plus one LF each). */
static size_t data_buffer_len(const struct sse_parser *p)
{
	return p->bdata ? p->bdata_len + 1 : p->data.len;
}

static int field_data(struct sse_parser *p, const char *v, size_t n, bool borrowable)
{
	/* The event cap counts the data the event will deliver: the buffer
	 * less its final LF. */
	size_t before = p->has_data ? data_buffer_len(p) : 0;
	if (n > p->max_event_bytes || before + n > p->max_event_bytes)
		return LR_ETOOLARGE;
	if (!p->has_data) {
		p->has_data = true;
		if (borrowable) {
			p->bdata = v;
			p->bdata_len = n;
			return 0;
		}
		p->data.len = 0;
	} else {
		int rc = own_data(p);
		if (rc < 0)
			return rc;
	}
	int rc = sse_buf_append(&p->data, v, n, data_limit(p));
	if (rc == 0)
		rc = sse_buf_append(&p->data, "\n", 1, data_limit(p));
	return rc;
}

static int field_event(struct sse_parser *p, const char *v, size_t n, bool borrowable)
{
	if (borrowable) {
		p->type_ptr = v;
		p->type_len = n;
		p->type_borrowed = true;
		return 0;
	}
	p->type.len = 0;
	int rc = sse_buf_append(&p->type, v, n, p->max_line_bytes);
	if (rc < 0)
		return rc;
	p->type_ptr = p->type.data;
	p->type_len = n;
	p->type_borrowed = false;
	return 0;
}

static int field_retry(const char *v, size_t n, const struct sse_callbacks *cb, void *ctx)
{
	if (n == 0)
		return 0; /* no digits: not a retry value */
	uint64_t ms = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned char)v[i] - '0';
		if (d > 9)
			return 0; /* ignored, as the standard says */
		ms = ms > (UINT64_MAX - d) / 10 ? UINT64_MAX : ms * 10 + d;
	}
	return cb->on_retry ? cb->on_retry(ctx, ms) : 0;
}

static int dispatch(struct sse_parser *p, const struct sse_callbacks *cb, void *ctx)
{
	if (!p->has_data) {
		/* No data line: nothing to dispatch, and the type is dropped too. */
		clear_event(p);
		return 0;
	}
	struct sse_event ev;
	if (p->type_len) {
		ev.type = p->type_ptr;
		ev.type_len = p->type_len;
	} else {
		ev.type = "message";
		ev.type_len = 7;
	}
	if (p->bdata) {
		ev.data = p->bdata;
		ev.data_len = p->bdata_len;
	} else {
		ev.data = p->data.data;
		ev.data_len = p->data.len - 1; /* the final LF */
	}
	ev.id = p->id.len ? p->id.data : "";
	ev.id_len = p->id.len;
	/* The buffers keep their bytes until the next line, so clearing the
	 * event first leaves ev intact and the parser ready if the callback
	 * stops it. */
	clear_event(p);
	return cb->on_event ? cb->on_event(ctx, &ev) : 0;
}

/* One complete line, terminator excluded. borrowable: the line lies in
 * the fed buffer and stays valid until the feed returns. */
static int process_line(struct sse_parser *p, const char *line, size_t len, bool borrowable,
                        const struct sse_callbacks *cb, void *ctx)
{
	if (len == 0)
		return dispatch(p, cb, ctx);
	if (line[0] == ':')
		return cb->on_comment ? cb->on_comment(ctx, line + 1, len - 1) : 0;

	const char *colon = memchr(line, ':', len);
	size_t name_len = colon ? (size_t)(colon - line) : len;
	const char *v = line + len;
	size_t n = 0;
	if (colon) {
		v = colon + 1;
		n = len - name_len - 1;
		if (n && *v == ' ') { /* exactly one leading space */
			v++;
			n--;
		}
	}
	/* Field names are case-sensitive; unknown ones are ignored. */
	switch (name_len) {
	case 2:
		if (memcmp(line, "id", 2) == 0 && !memchr(v, '\0', n)) {
			p->id.len = 0;
			return sse_buf_append(&p->id, v, n, p->max_line_bytes);
		}
		break;
	case 4:
		if (memcmp(line, "data", 4) == 0)
			return field_data(p, v, n, borrowable);
		break;
	case 5:
		if (memcmp(line, "event", 5) == 0)
			return field_event(p, v, n, borrowable);
		if (memcmp(line, "retry", 5) == 0)
			return field_retry(v, n, cb, ctx);
		break;
	}
	return 0;
}

/* Appends bytes of an unterminated line to p->line, within the line cap. */
static int append_partial(struct sse_parser *p, const char *s, size_t n)
{
	if (n > p->max_line_bytes - p->line.len)
		return LR_ETOOLARGE;
	return sse_buf_append(&p->line, s, n, p->max_line_bytes);
}

/* Strips a UTF-8 BOM that opens the stream, even one split across feeds.
 * Returns how many bytes of buf it consumed. */
static size_t skip_bom(struct sse_parser *p, const char *buf, size_t len, int *rc)
{
	size_t i = 0;
	while (p->bom_matched < 3 && i < len && (unsigned char)buf[i] == utf8_bom[p->bom_matched]) {
		p->bom_matched++;
		i++;
	}
	if (p->bom_matched == 3) {
		p->bom_done = true;
	} else if (i < len) {
		/* Not a BOM after all: the bytes matched so far open the first line. */
		p->bom_done = true;
		*rc = append_partial(p, (const char *)utf8_bom, p->bom_matched);
	}
	return i;
}

/* Length of the blank line's terminator at buf[i] (i < len): 0 when
 * buf[i] ends no line. A CR that ends the buffer sets *skip_lf. */
static size_t blank_line_end(const char *buf, size_t i, size_t len, bool *skip_lf)
{
	if (buf[i] == '\n')
		return 1;
	if (buf[i] != '\r')
		return 0;
	if (i + 1 == len) {
		*skip_lf = true;
		return 1;
	}
	return buf[i + 1] == '\n' ? 2 : 1;
}

/*
 * The common event: one "data:" line and the blank line, whole in buf,
 * with no event under way (an event field before it is fine). It is
 * dispatched from where it lies, without process_line's field walk.
 * line is buf + pos, eol the offset of its terminator (CR or LF) in buf.
 * Returns the bytes consumed up to the blank line's end, 0 when the
 * general path must take the line (so every error stays its own), or
 * the callback's negative code.
 */
static long fast_event(struct sse_parser *p, const char *buf, size_t pos, size_t eol, size_t len,
                       const struct sse_callbacks *cb, void *ctx)
{
	size_t line_len = eol - pos;
	if (line_len < 5 || memcmp(buf + pos, "data:", 5) != 0 || line_len > p->max_line_bytes)
		return 0;
	size_t i = eol + 1; /* after the data line's terminator */
	if (buf[eol] == '\r') {
		if (i == len)
			return 0; /* may be half of a CRLF */
		if (buf[i] == '\n')
			i++;
	}
	if (i == len)
		return 0;
	bool skip_lf = false;
	size_t t = blank_line_end(buf, i, len, &skip_lf);
	if (t == 0)
		return 0; /* another line follows: the general path joins them */
	const char *v = buf + pos + 5;
	size_t n = line_len - 5;
	if (n && *v == ' ') {
		v++;
		n--;
	}
	if (n > p->max_event_bytes)
		return 0;
	struct sse_event ev;
	if (p->type_len) {
		ev.type = p->type_ptr;
		ev.type_len = p->type_len;
	} else {
		ev.type = "message";
		ev.type_len = 7;
	}
	ev.data = v;
	ev.data_len = n;
	ev.id = p->id.len ? p->id.data : "";
	ev.id_len = p->id.len;
	p->skip_lf = skip_lf;
	clear_event(p);
	int rc = cb->on_event ? cb->on_event(ctx, &ev) : 0;
	return rc < 0 ? rc : (long)(i + t - pos);
}

int sse_parser_feed(struct sse_parser *p, const char *buf, size_t len,
                    const struct sse_callbacks *cb, void *ctx)
{
	if (p->error)
		return p->error;
	int rc = 0;
	size_t pos = 0;
	if (!p->bom_done) {
		pos = skip_bom(p, buf, len, &rc);
		if (rc < 0)
			return fail(p, rc);
	}
	if (p->skip_lf && pos < len) {
		p->skip_lf = false;
		if (buf[pos] == '\n')
			pos++;
	}

	/* The next LF and the next CR at or after pos (len when none), each
	 * searched again only once pos has passed it: every byte is scanned
	 * at most once for each, whatever the line ends. */
	size_t lf = 0, cr = 0;
	bool lf_known = false, cr_known = false;
	while (pos < len) {
		if (!lf_known || lf < pos) {
			const char *q = memchr(buf + pos, '\n', len - pos);
			lf = q ? (size_t)(q - buf) : len;
			lf_known = true;
		}
		if (!cr_known || cr < pos) {
			const char *q = memchr(buf + pos, '\r', len - pos);
			cr = q ? (size_t)(q - buf) : len;
			cr_known = true;
		}
		size_t eol = cr < lf ? cr : lf;
		if (eol == len)
			break; /* unterminated: the tail waits for the next feed */

		if (p->line.len == 0 && !p->has_data) {
			long n = fast_event(p, buf, pos, eol, len, cb, ctx);
			if (n < 0)
				return fail(p, (int)n);
			if (n > 0) {
				pos += (size_t)n;
				continue;
			}
		}
		if (p->line.len) {
			rc = append_partial(p, buf + pos, eol - pos);
			if (rc == 0)
				rc = process_line(p, p->line.data, p->line.len, false, cb, ctx);
			p->line.len = 0;
		} else if (eol - pos > p->max_line_bytes) {
			rc = LR_ETOOLARGE;
		} else {
			rc = process_line(p, buf + pos, eol - pos, true, cb, ctx);
		}
		if (rc < 0)
			return fail(p, rc);

		if (buf[eol] == '\r') {
			if (eol + 1 == len)
				p->skip_lf = true;
			else if (buf[eol + 1] == '\n')
				eol++;
		}
		pos = eol + 1;
	}

	if (pos < len && (rc = append_partial(p, buf + pos, len - pos)) < 0)
		return fail(p, rc);
	/* The fed buffer dies when we return: keep what the event borrowed. */
	if (p->bdata && (rc = own_data(p)) < 0)
		return fail(p, rc);
	if (p->type_borrowed && (rc = field_event(p, p->type_ptr, p->type_len, false)) < 0)
		return fail(p, rc);
	return 0;
}

int sse_parser_finish(struct sse_parser *p)
{
	/* At the end of the stream pending data is discarded (WHATWG). */
	clear_event(p);
	p->line.len = 0;
	p->skip_lf = false;
	return p->error;
}

bool sse_parser_mid_event(const struct sse_parser *p)
{
	return p->has_data || p->type_len || p->line.len ||
	       (!p->bom_done && p->bom_matched);
}

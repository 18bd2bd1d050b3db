/*
 * The input side of `llmring batch`: lines read in chunks (a line longer
 * than --max-line-bytes is never buffered whole: it gets an invalid_input
 * line and the rest of it is read and dropped), each checked and handed
 * to submit_line, or answered with an error line at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"

/* ---- unescaped strings (b->scratch: one at a time) ---------------------- */

static bool ensure_scratch(struct batch *b, size_t need)
{
	if (need <= b->scratch_cap)
		return true;
	size_t cap = b->scratch_cap ? b->scratch_cap : 256;
	while (cap < need)
		cap *= 2;
	char *p = realloc(b->scratch, cap);
	if (!p)
		return false;
	b->scratch = p;
	b->scratch_cap = cap;
	return true;
}

long scratch_string(struct batch *b, int i)
{
	const char *raw;
	size_t raw_len;
	json_span(&b->doc, i, &raw, &raw_len);
	/* Unescaping never lengthens a string. */
	if (!ensure_scratch(b, raw_len + 1))
		return -1;
	return json_get_string(&b->doc, i, b->scratch, b->scratch_cap);
}

/* ---- reading the input ------------------------------------------------- */

enum {
	READ_END = 0,  /* no more lines */
	READ_LINE = 1, /* a whole line (without its newline) */
	READ_LONG = 2, /* the first max + 1 bytes of a line over max; the rest is dropped */
};

void reader_init(struct line_reader *r, int fd, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->max = max;
}

void reader_free(struct line_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
}

/* The first newline in buf[from, to), or NULL. */
static char *find_newline(char *buf, size_t from, size_t to)
{
	return to > from ? memchr(buf + from, '\n', to - from) : NULL;
}

/* Reads more at the end of the buffer (the unread bytes moved to its
 * start first, the buffer grown to at most max + a chunk). 0, or -errno. */
int reader_fill(struct line_reader *r)
{
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->scanned -= r->start;
		r->start = 0;
	}
	if (r->cap - r->end < BATCH_READ_CHUNK) {
		size_t limit = r->max + BATCH_READ_CHUNK + 1;
		size_t cap = r->cap ? r->cap * 2 : BATCH_READ_CHUNK;
		if (cap > limit)
			cap = limit;
		if (cap < r->end + BATCH_READ_CHUNK)
			cap = r->end + BATCH_READ_CHUNK;
		char *grown = realloc(r->buf, cap);
		if (!grown)
			return -ENOMEM;
		r->buf = grown;
		r->cap = cap;
	}
	for (;;) {
		ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			r->eof = true;
		r->end += (size_t)n;
		return 0;
	}
}

/*
 * The next line: READ_LINE or READ_LONG with *line (valid until the next
 * call) and *len, READ_END, or -errno. Never a silent end on a failed read
 * (getline's ENOMEM sets no error flag), and never more than max plus a
 * chunk in memory: a longer line is reported when it passes max, then
 * dropped chunk by chunk up to its newline (by the following call).
 */
static int reader_next(struct line_reader *r, const char **line, size_t *len)
{
	for (;;) {
		if (r->discarding) {
			char *nl = find_newline(r->buf, r->start, r->end);
			if (nl) {
				r->start = r->scanned = (size_t)(nl - r->buf) + 1;
				r->discarding = false;
				continue;
			}
			r->start = r->end = r->scanned = 0;
			if (r->eof)
				return READ_END;
			int rc = reader_fill(r);
			if (rc)
				return rc;
			continue;
		}
		char *nl = find_newline(r->buf, r->scanned, r->end);
		if (nl) {
			*line = r->buf + r->start;
			*len = (size_t)(nl - *line);
			r->start = r->scanned = (size_t)(nl - r->buf) + 1;
			/* Whole in the buffer but over the cap: refused the same
			 * as one that is still arriving. */
			if (*len > r->max) {
				*len = r->max + 1;
				return READ_LONG;
			}
			return READ_LINE;
		}
		r->scanned = r->end;
		if (r->end - r->start > r->max) {
			*line = r->buf + r->start;
			*len = r->max + 1;
			r->start += r->max + 1;
			r->discarding = true;
			return READ_LONG;
		}
		if (r->eof) {
			if (r->start == r->end)
				return READ_END;
			*line = r->buf + r->start; /* a last line without its newline */
			*len = r->end - r->start;
			r->start = r->scanned = r->end;
			if (*len > r->max) {
				*len = r->max + 1;
				return READ_LONG;
			}
			return READ_LINE;
		}
		int rc = reader_fill(r);
		if (rc)
			return rc;
	}
}

/* ---- input lines -------------------------------------------------------- */

bool line_is_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

static bool endpoint_from_url(struct batch *b, int url, enum lr_endpoint *ep)
{
	static const struct {
		const char *url;
		enum lr_endpoint ep;
	} known[] = {
		{"/v1/chat/completions", LR_ENDPOINT_CHAT},
		{"/chat/completions", LR_ENDPOINT_CHAT},
		{"/v1/embeddings", LR_ENDPOINT_EMBEDDINGS},
		{"/embeddings", LR_ENDPOINT_EMBEDDINGS},
	};
	for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
		if (json_string_eq(&b->doc, url, known[k].url)) {
			*ep = known[k].ep;
			return true;
		}
	}
	return false;
}

/*
 * Whether the \u escapes of a raw JSON string pair their surrogates. A
 * lone one has no character: unescaped it would become U+FFFD, and ids
 * differing only there would collapse into one (and be written back as
 * another id), so such an id is refused instead.
 */
static bool escapes_valid(const char *s, size_t n)
{
	bool want_low = false; /* the last character was a high surrogate */
	for (size_t i = 0; i < n; i++) {
		bool u = s[i] == '\\' && i + 5 < n && s[i + 1] == 'u';
		unsigned v = 0;
		for (size_t k = 2; u && k < 6; k++) {
			char c = s[i + k];
			v = v << 4 | (unsigned)(c >= '0' && c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
		}
		bool low = u && v >= 0xdc00 && v <= 0xdfff;
		if (want_low != low)
			return false;
		want_low = u && v >= 0xd800 && v <= 0xdbff;
		if (s[i] == '\\')
			i += u ? 5 : 1; /* the parser has checked the escape's form */
	}
	return !want_low;
}

/*
 * Checks one input line (already parsed into b->doc). NULL when usable:
 * the custom_id is then in b->scratch (length *id_len) and rq is filled.
 * Otherwise a message saying what is wrong.
 */
const char *check_input(struct batch *b, long *id_len, struct input_request *rq)
{
	const struct json_doc *d = &b->doc;
	if (d->tok[0].type != JSON_OBJECT)
		return "the line is not a JSON object";
	int method = json_object_get(d, 0, "method");
	if (method >= 0 && !json_string_eq(d, method, "POST"))
		return "\"method\" must be \"POST\"";
	int url = json_object_get(d, 0, "url");
	if (url < 0)
		return "missing \"url\" (\"/v1/chat/completions\" or \"/v1/embeddings\")";
	if (!endpoint_from_url(b, url, &rq->endpoint))
		return "unsupported \"url\": expected \"/v1/chat/completions\" or \"/v1/embeddings\"";
	int body = json_object_get(d, 0, "body");
	if (body < 0 || d->tok[body].type != JSON_OBJECT)
		return "\"body\" must be a JSON object";
	json_span(d, body, &rq->body, &rq->body_len);
	if (b->opt.model) {
		rq->model = b->opt.model;
	} else {
		int model = json_object_get(d, body, "model");
		if (model < 0 || d->tok[model].type != JSON_STRING || d->tok[model].end == d->tok[model].start)
			return "\"body\" has no \"model\" string (give one, or --model)";
		long len = scratch_string(b, model);
		if (len < 0)
			return "out of memory";
		rq->model = model_names_find(&b->requested, b->scratch, (size_t)len, true);
	}
	/* Last, since it leaves the id in the scratch buffer. */
	int id = json_object_get(d, 0, "custom_id");
	if (id < 0)
		return "missing \"custom_id\"";
	if (d->tok[id].type != JSON_STRING || d->tok[id].end == d->tok[id].start)
		return "\"custom_id\" must be a non-empty string";
	const char *raw;
	size_t raw_len;
	json_span(d, id, &raw, &raw_len);
	if (!escapes_valid(raw, raw_len))
		return "\"custom_id\" has a \\u escape of a lone surrogate (no character)";
	*id_len = scratch_string(b, id);
	if (*id_len < 0)
		return "out of memory";
	return NULL;
}

/* What the fast path of a line's parse picks up (raw spans into the line). */
struct line_fields {
	const char *id, *method, *url, *body, *model;
	size_t id_len, method_len, url_len, body_len, model_len;
	enum json_type id_type, method_type, url_type, model_type, body_type;
	bool top_object;
};

static bool span_is(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n == l && memcmp(s, lit, l) == 0;
}

static void line_field(void *ctx, const struct json_scan_path *p, enum json_type type,
                       const char *v, size_t len)
{
	struct line_fields *lf = ctx;
	if (p->depth == 0) {
		lf->top_object = type == JSON_OBJECT;
		return;
	}
	const char *k = p->key[0];
	size_t kl = p->key_len[0];
	if (p->depth == 1) {
		/* The first occurrence of a key counts, as with json_object_get.
		 * The length picks the one key to compare. */
		switch (kl) {
		case 9:
			if (!lf->id_type && memcmp(k, "custom_id", 9) == 0)
				lf->id = v, lf->id_len = len, lf->id_type = type;
			break;
		case 6:
			if (!lf->method_type && memcmp(k, "method", 6) == 0)
				lf->method = v, lf->method_len = len, lf->method_type = type;
			break;
		case 3:
			if (!lf->url_type && memcmp(k, "url", 3) == 0)
				lf->url = v, lf->url_len = len, lf->url_type = type;
			break;
		case 4:
			if (!lf->body_type && memcmp(k, "body", 4) == 0)
				lf->body = v, lf->body_len = len, lf->body_type = type;
			break;
		}
	} else if (p->depth == 2 && kl == 4 && p->key_len[1] == 5 && !lf->model_type && !lf->body_type &&
	           memcmp(k, "body", 4) == 0 && memcmp(p->key[1], "model", 5) == 0) {
		lf->model = v, lf->model_len = len, lf->model_type = type;
	}
}

/*
 * The common line in one validating pass with no tokens: every field
 * present, of the right type, and no escapes in the id or model (so the
 * raw text is the value). Anything else takes the full path (json_parse
 * and check_input), which also words the errors. True when rq and the id
 * are filled in.
 */
bool fast_input(struct batch *b, const char *line, size_t len, struct input_request *rq,
                       const char **id, size_t *id_len)
{
	struct line_fields lf = {0};
	if (!json_scan(line, len, line_field, &lf) || !lf.top_object)
		return false;
	if (lf.id_type != JSON_STRING || lf.id_len == 0 || memchr(lf.id, '\\', lf.id_len))
		return false;
	if (lf.method_type && (lf.method_type != JSON_STRING || !span_is(lf.method, lf.method_len, "POST")))
		return false;
	if (lf.url_type != JSON_STRING || lf.body_type != JSON_OBJECT)
		return false;
	if (span_is(lf.url, lf.url_len, "/v1/chat/completions") || span_is(lf.url, lf.url_len, "/chat/completions"))
		rq->endpoint = LR_ENDPOINT_CHAT;
	else if (span_is(lf.url, lf.url_len, "/v1/embeddings") || span_is(lf.url, lf.url_len, "/embeddings"))
		rq->endpoint = LR_ENDPOINT_EMBEDDINGS;
	else
		return false;
	if (b->opt.model) {
		rq->model = b->opt.model;
	} else {
		if (lf.model_type != JSON_STRING || lf.model_len == 0 || memchr(lf.model, '\\', lf.model_len))
			return false;
		rq->model = model_names_find(&b->requested, lf.model, lf.model_len, true);
		if (!rq->model)
			return false;
	}
	rq->body = lf.body;
	rq->body_len = lf.body_len;
	*id = lf.id;
	*id_len = lf.id_len;
	return true;
}

/*
 * Handles input line b->line_no (its bytes without the newline): a
 * request submitted, an error line written, or nothing (blank, or done
 * in an earlier run). False only when the run cannot go on (out of
 * memory).
 */
static bool handle_input_line(struct batch *b, const char *line, size_t len)
{
	while (len > 0 && line[len - 1] == '\r')
		len--;
	if (line_is_blank(line, len))
		return true;
	if (line_done(b, b->line_no, line, len)) {
		b->skipped++;
		b->earlier_errors = true; /* such lines are always error lines */
		return true;
	}
	struct input_request rq = {0};
	const char *id;
	size_t id_len;
	if (!fast_input(b, line, len, &rq, &id, &id_len)) {
		memset(&rq, 0, sizeof(rq));
		if (json_parse(&b->doc, line, len) != 0) {
			write_input_error(b, NULL, 0, "invalid_input", "the line is not valid JSON",
			                  hash_bytes(line, len));
			return true;
		}
		long scratch_len = -1;
		const char *why = check_input(b, &scratch_len, &rq);
		if (why) {
			write_input_error(b, NULL, 0, "invalid_input", why, hash_bytes(line, len));
			return true;
		}
		id = b->scratch;
		id_len = (size_t)scratch_len;
	}
	uint64_t h = id_set_hash(&b->ids, id, id_len);
	long no = id_set_find_hashed(&b->ids, id, id_len, h);
	enum id_state state = no >= 0 ? id_set_state(&b->ids, no) : 0;
	if (state == ID_SEEN) {
		write_input_error(b, id, id_len, "duplicate_custom_id",
		                  "this custom_id appeared on an earlier line; only the first is sent",
		                  hash_bytes(line, len));
		return true;
	}
	if (state) { /* done in an earlier run */
		if (state == ID_DONE_ERR)
			b->earlier_errors = true;
		id_set_set_state(&b->ids, no, ID_SEEN);
		b->skipped++;
		return true;
	}
	if (no == ID_FAILED || id_set_add_hashed(&b->ids, id, id_len, h, ID_SEEN)) {
		fprintf(stderr, "llmring batch: cannot keep the custom_ids: %s\n",
		        strerror(b->ids.err ? b->ids.err : ENOMEM));
		b->write_failed = true;
		return false;
	}
	if (b->line_sink)
		b->line_sink(b, id, id_len, &rq, line, len);
	else
		submit_line(b, id, id_len, &rq);
	return true;
}

bool take_input_line(struct batch *b)
{
	const char *line;
	size_t len;
	int rc = reader_next(&b->in, &line, &len);
	if (rc == READ_END)
		return false;
	if (rc < 0) {
		b->read_err = -rc;
		return false;
	}
	b->line_no++;
	if (rc == READ_LINE)
		return handle_input_line(b, line, len);
	/* Too long: the hash covers the bytes that were read (max + 1). */
	uint64_t h = hash_bytes(line, len);
	if (line_done(b, b->line_no, line, len)) {
		b->skipped++;
		b->earlier_errors = true;
		return true;
	}
	char why[160];
	snprintf(why, sizeof why, "the line is longer than %zu bytes (the --max-line-bytes limit; "
	         "raise it with --max-line-bytes N)", b->in.max);
	write_input_error(b, NULL, 0, "invalid_input", why, h);
	/* Written now: the rest of the line may take long to read (or never
	 * end, as /dev/zero). */
	write_pending(b);
	return true;
}

/*
 * The body model of the first line that has one (of the first 16), or
 * NULL; the input is read through its own bounded reader and put back
 * where it was (input that cannot seek is not peeked at). 0, or the errno
 * of a failed read or seek (the caller prints it).
 */
int peek_first_model(int fd, size_t max_line, char *out, size_t cap, const char **model)
{
	*model = NULL;
	off_t at = lseek(fd, 0, SEEK_CUR);
	if (at < 0)
		return 0;
	struct line_reader r; /* owner: this function */
	reader_init(&r, fd, max_line);
	struct json_doc doc = {0}; /* owner: this function */
	int rc = 0;
	for (int tries = 0; !*model && tries < 16; tries++) {
		const char *line;
		size_t len;
		rc = reader_next(&r, &line, &len);
		if (rc != READ_LINE) /* the end, an error, or a line too long to look at */
			break;
		if (json_parse(&doc, line, len) != 0 || doc.count == 0 || doc.tok[0].type != JSON_OBJECT)
			continue;
		int m = json_path(&doc, 0, "body.model");
		if (m >= 0 && json_get_string(&doc, m, out, cap) >= 0)
			*model = out;
	}
	json_doc_free(&doc);
	reader_free(&r);
	if (rc < 0)
		return -rc;
	if (lseek(fd, at, SEEK_SET) < 0)
		return errno;
	return 0;
}

/*
 * The batch APIs' HTTP endpoints (mock_batches.h), shaped as the providers
 * document them:
 *   OpenAI     POST /v1/files (multipart: purpose=batch, file), GET /v1/files,
 *              GET /v1/files/ID, GET /v1/files/ID/content (Range: bytes=N-[M],
 *              206), DELETE /v1/files/ID; POST /v1/batches, GET /v1/batches
 *              (?limit=&after=), GET /v1/batches/ID, POST /v1/batches/ID/cancel
 *   Anthropic  POST /v1/messages/batches, GET /v1/messages/batches
 *              (?limit=&after_id=&before_id=), GET /v1/messages/batches/ID,
 *              POST .../ID/cancel, GET .../ID/results (results_url, Range
 *              too), DELETE .../ID (ended only)
 *   the mock   GET /mock/stats, GET /mock/submits[?custom_id=ID]
 * Error bodies take the provider's shape (mock_respond_error).
 */
#include "mock_batches.h"

#include <stdio.h>
#include <stdlib.h>

struct call {
	struct mock_server *s;
	struct conn *c;
	uint64_t n;
	bool close;
	const char *body, *end;
	const char *head;
};

/* ---- replies ---- */

/* s->scratch (the body the caller built) as a JSON reply with status st. */
static void reply_ct(struct call *k, int st, enum ctype ct, const char *extra)
{
	struct mock_buf *b = &k->s->scratch;
	struct job *j = &k->c->job;
	j->whole.len = 0;
	mock_put_head(&j->whole, st, ct, b->len, k->n, k->close, extra, j->dialect);
	j->head_len = j->whole.len;
	put(&j->whole, b->p, b->len);
	mock_job_whole(k->c, k->close);
}

static void reply(struct call *k, int st, const char *extra)
{
	reply_ct(k, st, CT_JSON, extra);
}

static void err(struct call *k, int st, const char *msg, const char *type, const char *code)
{
	mock_respond_error(k->s, k->c, k->n, st, msg, strlen(msg), type, code, k->close, NULL);
}

static void not_found(struct call *k, const char *what, const char *id, size_t n)
{
	struct mock_buf m = {0}; /* owner: here */
	put(&m, what, strlen(what));
	mock_put_json_escaped(&m, id, n);
	put_ch(&m, '\0');
	err(k, 404, m.p, "invalid_request_error", NULL);
	mock_buf_free(&m);
}

static double draw(const struct mock_server *s, uint64_t a, uint64_t b)
{
	return (double)(mix64(s->o.seed * 0x9e3779b97f4a7c15ull ^ mix64(a * 0x100000001b3ull + b)) >>
			11) * (1.0 / 9007199254740992.0);
}

/* Whether batch fault f strikes: asked by the header, or drawn by its rate. */
static bool fault_on(struct call *k, int f, uint64_t a)
{
	if (k->c->rq.batch_fault == f)
		return true;
	double r = k->s->o.batch_fault_rate[f];
	return r > 0 && draw(k->s, a, (uint64_t)f) < r;
}

/* A query parameter's value (raw), or NULL. */
static const char *query(struct call *k, const char *key, size_t *vl)
{
	const struct req *rq = &k->c->rq;
	const char *q = k->head + rq->query_off, *e = q + rq->query_len;
	size_t kl = strlen(key);
	while (rq->query_len && q < e) {
		const char *amp = memchr(q, '&', (size_t)(e - q));
		const char *pe = amp ? amp : e;
		if ((size_t)(pe - q) > kl && memcmp(q, key, kl) == 0 && q[kl] == '=') {
			*vl = (size_t)(pe - q - kl - 1);
			return q + kl + 1;
		}
		q = pe + 1;
	}
	return NULL;
}

static unsigned query_limit(struct call *k, unsigned dflt, unsigned max)
{
	size_t vl;
	const char *v = query(k, "limit", &vl);
	unsigned x = 0;
	for (size_t i = 0; v && i < vl && i < 9 && v[i] >= '0' && v[i] <= '9'; i++)
		x = x * 10 + (unsigned)(v[i] - '0');
	return !v || x == 0 ? dflt : x > max ? max : x;
}

static void reply_batch(struct call *k, const struct mock_batch *x)
{
	struct mock_buf *b = &k->s->scratch;
	b->len = 0;
	if (x->api == API_OPENAI)
		mock_put_openai_batch(b, x);
	else
		mock_put_anthropic_batch(k->s, b, x);
	reply(k, 200, NULL);
}

/* ---- downloads ---- */

/* f's bytes (the asked range) as the reply, streamed from the file. */
static void send_file(struct call *k, struct mock_bfile *f)
{
	struct job *j = &k->c->job;
	const struct req *rq = &k->c->rq;
	uint64_t from = 0, to = f->len ? f->len - 1 : 0;
	int st = 200;
	char extra[160];
	if (rq->has_range) {
		if (rq->range_from >= f->len) {
			snprintf(extra, sizeof(extra), "Content-Range: bytes */%zu\r\n", f->len);
			struct mock_buf *b = &k->s->scratch;
			b->len = 0;
			mock_dialects[j->dialect]->error_body(b, 416, "Range Not Satisfiable", 21,
							      "invalid_request_error", NULL);
			reply(k, 416, extra);
			return;
		}
		st = 206;
		from = rq->range_from;
		if (rq->range_to < to)
			to = rq->range_to;
	}
	size_t len = f->len ? (size_t)(to - from + 1) : 0;
	bool cut = len > 1 && !f->cut_done && fault_on(k, MOCK_BF_CUT, f->seq);
	if (cut)
		f->cut_done = true; /* once per file: the resumed download is whole */
	if (st == 206)
		snprintf(extra, sizeof(extra),
			 "Accept-Ranges: bytes\r\nContent-Range: bytes %llu-%llu/%zu\r\n",
			 (unsigned long long)from, (unsigned long long)to, f->len);
	else
		snprintf(extra, sizeof(extra), "Accept-Ranges: bytes\r\n");
	bool close = k->close || cut;
	j->whole.len = 0;
	mock_put_head(&j->whole, st, CT_OCTET, len, k->n, close, extra, j->dialect);
	j->head_len = j->whole.len;
	mock_job_whole(k->c, close);
	mock_bfile_ref(f);
	j->src = f;
	j->src_data = f->data;
	j->src_off = (size_t)from;
	j->src_end = (size_t)from + (cut ? len / 2 : len);
	if (cut)
		j->fault = MOCK_FAULT_TRUNCATE; /* no TLS close_notify either */
}

/* ---- OpenAI files ---- */

static void file_upload(struct call *k)
{
	const struct req *rq = &k->c->rq;
	const char *bnd;
	size_t bl;
	if (!rq->ctype_len ||
	    mock_mp_boundary(k->head + rq->ctype_off, rq->ctype_len, &bnd, &bl) < 0) {
		err(k, 400, "The request must be multipart/form-data with a boundary.",
		    "invalid_request_error", NULL);
		return;
	}
	size_t pos = 0;
	struct mock_mp_part part, file = {0};
	bool have_file = false, purpose_ok = false, have_purpose = false;
	int r;
	while ((r = mock_mp_next(k->body, (size_t)(k->end - k->body), bnd, bl, &pos, &part)) == 1) {
		if (part.name_len == 7 && memcmp(part.name, "purpose", 7) == 0) {
			have_purpose = true;
			purpose_ok = part.len == 5 && memcmp(part.data, "batch", 5) == 0;
		} else if (part.name_len == 4 && memcmp(part.name, "file", 4) == 0 && !have_file) {
			file = part;
			have_file = true;
		}
	}
	if (r < 0) {
		err(k, 400, "The multipart body could not be parsed.", "invalid_request_error", NULL);
		return;
	}
	if (!have_file || !have_purpose) {
		err(k, 400, have_file ? "Missing required parameter: 'purpose'."
				      : "Missing required parameter: 'file'.",
		    "invalid_request_error", "missing_required_parameter");
		return;
	}
	if (!purpose_ok) {
		err(k, 400, "Invalid value for 'purpose': the mock takes 'batch' files only.",
		    "invalid_request_error", "invalid_value");
		return;
	}
	const char *fn = file.filename ? file.filename : "upload.jsonl";
	size_t fl = file.filename ? file.filename_len : 12;
	struct mock_bfile *f = mock_bfile_add(k->s->bs, BP_BATCH, fn, fl, file.data, file.len, NULL);
	struct mock_buf *b = &k->s->scratch;
	b->len = 0;
	mock_put_file(b, f);
	reply(k, 200, NULL);
}

static void files(struct call *k, const char *p, size_t n)
{
	struct mock_bstore *st = k->s->bs;
	uint8_t m = k->c->rq.method;
	struct mock_buf *b = &k->s->scratch;
	if (n == 0) {
		if (m == M_POST) {
			file_upload(k);
			return;
		}
		if (m != M_GET)
			goto bad_method;
		b->len = 0;
		PUTL(b, "{\"object\":\"list\",\"data\":[");
		bool any = false;
		for (size_t i = 0; i < st->nfiles; i++) {
			if (st->files[i]->purpose > BP_BATCH_OUTPUT)
				continue; /* Anthropic's, not OpenAI files */
			if (any)
				put_ch(b, ',');
			any = true;
			mock_put_file(b, st->files[i]);
		}
		PUTL(b, "],\"has_more\":false}");
		reply(k, 200, NULL);
		return;
	}
	const char *id = p + 1, *slash = memchr(id, '/', n - 1);
	size_t il = slash ? (size_t)(slash - id) : n - 1;
	struct mock_bfile *f = mock_bfile_find(st, id, il);
	bool content = slash && (size_t)(p + n - slash) == 8 && memcmp(slash, "/content", 8) == 0;
	if (slash && !content) {
		not_found(k, "Invalid URL: ", p, n);
		return;
	}
	if (!f || f->purpose > BP_BATCH_OUTPUT) {
		not_found(k, "No such File object: ", id, il);
		return;
	}
	if (content && m == M_GET) {
		send_file(k, f);
	} else if (!content && m == M_GET) {
		b->len = 0;
		mock_put_file(b, f);
		reply(k, 200, NULL);
	} else if (!content && m == M_DELETE) {
		b->len = 0;
		PUTL(b, "{\"id\":\"");
		put(b, f->id, strlen(f->id));
		PUTL(b, "\",\"object\":\"file\",\"deleted\":true}");
		mock_bfile_delete(st, f);
		reply(k, 200, NULL);
	} else {
		goto bad_method;
	}
	return;
bad_method:
	err(k, 405, "Method not allowed.", "invalid_request_error", NULL);
}

/* ---- OpenAI batches ---- */

/* A JSON object without the whitespace outside strings (one line). */
static char *compact(const char *v, size_t n)
{
	char *o = malloc(n + 1); /* owner: the caller */
	if (!o)
		abort();
	size_t w = 0;
	bool in = false;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		if (in) {
			if (ch == '\\' && i + 1 < n) {
				o[w++] = ch;
				ch = v[++i];
			} else if (ch == '"') {
				in = false;
			}
		} else if (is_ws(ch)) {
			continue;
		} else if (ch == '"') {
			in = true;
		}
		o[w++] = ch;
	}
	o[w] = '\0';
	return o;
}

/* Whether s[0..n) is well-formed UTF-8. Metadata is echoed in every batch
 * object: a stray byte would make each of them invalid JSON (found by
 * fuzzing). */
static bool utf8_well_formed(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t l = mock_utf8_len(s + i, n - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

static void batch_create(struct call *k)
{
	static const char *const keys[] = {"\"input_file_id\"", "\"endpoint\"",
					   "\"completion_window\"", "\"metadata\""};
	const char *v[4];
	size_t vl[4];
	char kd[4];
	if (mock_json_fields(k->body, k->end, keys, 4, v, vl, kd) < 0) {
		err(k, 400, "We could not parse the JSON body of your request.",
		    "invalid_request_error", NULL);
		return;
	}
	static const char *const names[] = {"input_file_id", "endpoint", "completion_window"};
	for (int i = 0; i < 3; i++)
		if (!v[i] || kd[i] != 's') {
			char m[96];
			snprintf(m, sizeof(m), "Missing required parameter: '%s'.", names[i]);
			err(k, 400, m, "invalid_request_error", "missing_required_parameter");
			return;
		}
	int ep = -1;
	for (int i = 0; i < 3; i++)
		if (vl[1] == strlen(mock_endpoints[i]) && memcmp(v[1], mock_endpoints[i], vl[1]) == 0)
			ep = i;
	if (ep < 0) {
		err(k, 400, "Invalid value for 'endpoint': the mock takes /v1/chat/completions, "
			    "/v1/embeddings or /v1/completions.", "invalid_request_error",
		    "invalid_value");
		return;
	}
	if (vl[2] != 3 || memcmp(v[2], "24h", 3) != 0) {
		err(k, 400, "Invalid value for 'completion_window': only '24h' is supported.",
		    "invalid_request_error", "invalid_value");
		return;
	}
	if (v[3] && kd[3] != 'o' && !(vl[3] == 4 && memcmp(v[3], "null", 4) == 0)) {
		err(k, 400, "Invalid type for 'metadata': expected an object.",
		    "invalid_request_error", "invalid_type");
		return;
	}
	if (v[3] && !utf8_well_formed(v[3], vl[3])) {
		err(k, 400, "We could not parse the JSON body of your request (it is not UTF-8).",
		    "invalid_request_error", NULL);
		return;
	}
	struct mock_bstore *st = k->s->bs;
	struct mock_bfile *f = mock_bfile_find(st, v[0], vl[0]);
	if (!f) {
		not_found(k, "No such File object: ", v[0], vl[0]);
		return;
	}
	if (f->purpose != BP_BATCH) {
		err(k, 400, "The input file's purpose must be 'batch'.", "invalid_request_error",
		    "invalid_value");
		return;
	}
	if (fault_on(k, MOCK_BF_429, k->n)) {
		struct mock_buf *b = &k->s->scratch;
		b->len = 0;
		const char *m = "Rate limit reached for batch creation (mock). Please try again in 1s.";
		mock_openai.error_body(b, 429, m, strlen(m), "requests", "rate_limit_exceeded");
		reply(k, 429, "Retry-After: 1\r\nretry-after-ms: 1000\r\n");
		return;
	}
	struct mock_batch *x = mock_batch_add(st, API_OPENAI);
	x->ep = (uint8_t)ep;
	memcpy(x->input_file_id, f->id, sizeof(f->id));
	if (v[3] && kd[3] == 'o')
		x->metadata = compact(v[3], vl[3]);
	x->fault_invalid = fault_on(k, MOCK_BF_INVALID, x->seq * 4 + 1);
	x->fault_fail = !x->fault_invalid && fault_on(k, MOCK_BF_FAIL, x->seq * 4 + 2);
	double er = k->s->o.batch_fault_rate[MOCK_BF_EXPIRE];
	x->expire_rate = k->c->rq.batch_fault == MOCK_BF_EXPIRE ? (er > 0 ? er : 0.5) : er;
	mock_batch_save(st, x);
	reply_batch(k, x);
}

static void batch_list(struct call *k, uint8_t api)
{
	struct mock_bstore *st = k->s->bs;
	unsigned limit = query_limit(k, 20, api == API_OPENAI ? 100 : 1000);
	size_t al = 0, bl = 0;
	const char *after = query(k, api == API_OPENAI ? "after" : "after_id", &al);
	const char *before = api == API_ANTHROPIC ? query(k, "before_id", &bl) : NULL;
	/* Newest first; after: older than that id; before_id: newer than it. */
	long lo = 0, hi = (long)st->nbatches - 1;
	for (long i = hi; i >= 0 && (after || before); i--) {
		const struct mock_batch *x = st->batches[i];
		if (after && strlen(x->id) == al && memcmp(x->id, after, al) == 0)
			hi = i - 1;
		if (before && strlen(x->id) == bl && memcmp(x->id, before, bl) == 0)
			lo = i + 1;
	}
	struct mock_buf *b = &k->s->scratch;
	b->len = 0;
	/* Two PUTLs: sizeof of a conditional is a pointer's, not a literal's. */
	if (api == API_OPENAI)
		PUTL(b, "{\"object\":\"list\",\"data\":[");
	else
		PUTL(b, "{\"data\":[");
	unsigned got = 0;
	const struct mock_batch *first = NULL, *last = NULL;
	long i = before && !after ? lo + (long)limit - 1 : hi;
	if (i > hi)
		i = hi;
	bool more = false;
	for (; i >= lo; i--) {
		const struct mock_batch *x = st->batches[i];
		if (x->api != api)
			continue;
		if (got == limit) {
			more = true;
			break;
		}
		if (got++)
			put_ch(b, ',');
		if (api == API_OPENAI)
			mock_put_openai_batch(b, x);
		else
			mock_put_anthropic_batch(k->s, b, x);
		if (!first)
			first = x;
		last = x;
	}
	PUTL(b, "],\"first_id\":");
	mock_put_str_or_null(b, first ? first->id : NULL);
	PUTL(b, ",\"last_id\":");
	mock_put_str_or_null(b, last ? last->id : NULL);
	PUTL(b, ",\"has_more\":");
	if (more)
		PUTL(b, "true}");
	else
		PUTL(b, "false}");
	reply(k, 200, NULL);
}

static void batch_cancel(struct call *k, struct mock_batch *x)
{
	if (x->status > BS_FINALIZING) {
		char m[96];
		snprintf(m, sizeof(m), "Cannot cancel a batch with status '%s'.",
			 mock_openai_status[x->status]);
		err(k, 409, m, "invalid_request_error", NULL);
		return;
	}
	x->status = BS_CANCELLING;
	x->cancelling_ms = mock_now_ms();
	mock_batch_save(k->s->bs, x);
	reply_batch(k, x);
}

static void batches(struct call *k, const char *p, size_t n)
{
	uint8_t m = k->c->rq.method;
	if (n == 0) {
		if (m == M_POST)
			batch_create(k);
		else if (m == M_GET)
			batch_list(k, API_OPENAI);
		else
			err(k, 405, "Method not allowed.", "invalid_request_error", NULL);
		return;
	}
	const char *id = p + 1, *slash = memchr(id, '/', n - 1);
	size_t il = slash ? (size_t)(slash - id) : n - 1;
	struct mock_batch *x = mock_batch_find(k->s->bs, API_OPENAI, id, il);
	bool cancel = slash && (size_t)(p + n - slash) == 7 && memcmp(slash, "/cancel", 7) == 0;
	if ((slash && !cancel) || (!cancel && m != M_GET) || (cancel && m != M_POST)) {
		not_found(k, "Invalid URL: ", p, n);
		return;
	}
	if (!x) {
		not_found(k, "No batch found with id ", id, il);
		return;
	}
	if (cancel)
		batch_cancel(k, x);
	else
		reply_batch(k, x);
}

/* ---- Anthropic message batches ---- */

static void anthropic_create(struct call *k)
{
	size_t len = (size_t)(k->end - k->body);
	if (len > ANTHROPIC_MAX_BYTES) {
		err(k, 413, "Request exceeds the maximum size of 256 MB.", "invalid_request_error",
		    NULL);
		return;
	}
	if (fault_on(k, MOCK_BF_429, k->n)) {
		struct mock_buf *b = &k->s->scratch;
		b->len = 0;
		const char *m = "Number of batch requests has exceeded your rate limit (mock).";
		mock_anthropic.error_body(b, 429, m, strlen(m), NULL, NULL);
		reply(k, 429, "Retry-After: 1\r\n");
		return;
	}
	struct mock_bstore *st = k->s->bs;
	if (fault_on(k, MOCK_BF_INVALID, st->seq * 4 + 5)) {
		err(k, 400, "requests: invalid (mock-batch-fault:invalid)", "invalid_request_error",
		    NULL);
		return;
	}
	/* Checked before anything is kept: a refused body leaves nothing. */
	struct mock_batch probe;
	memset(&probe, 0, sizeof(probe));
	char msg[200];
	struct mock_buf ids = {0}; /* owner: here */
	bool ok = mock_anthropic_prepare(&probe, k->body, len, msg, sizeof(msg), &ids);
	mock_batch_free_work(&probe);
	if (!ok) {
		mock_buf_free(&ids);
		err(k, 400, msg, "invalid_request_error", NULL);
		return;
	}
	struct mock_batch *x = mock_batch_add(st, API_ANTHROPIC);
	char name[80];
	snprintf(name, sizeof(name), "%s_requests.json", x->id);
	struct mock_bfile *f = mock_bfile_add(st, BP_ANTHROPIC_INPUT, name, strlen(name), k->body,
					      len, NULL);
	memcpy(x->input_file_id, f->id, sizeof(f->id));
	x->status = BS_IN_PROGRESS;
	x->in_progress_ms = x->created_ms;
	x->total = probe.total;
	x->fault_fail = fault_on(k, MOCK_BF_FAIL, x->seq * 4 + 2);
	double er = k->s->o.batch_fault_rate[MOCK_BF_EXPIRE];
	x->expire_rate = k->c->rq.batch_fault == MOCK_BF_EXPIRE ? (er > 0 ? er : 0.5) : er;
	mock_bstore_count_submits(st, ids.p, ids.len);
	mock_buf_free(&ids);
	x->counted = true;
	mock_batch_save(st, x);
	reply_batch(k, x);
}

static void anthropic(struct call *k, const char *p, size_t n)
{
	uint8_t m = k->c->rq.method;
	struct mock_bstore *st = k->s->bs;
	if (n == 0) {
		if (m == M_POST)
			anthropic_create(k);
		else if (m == M_GET)
			batch_list(k, API_ANTHROPIC);
		else
			err(k, 405, "Method not allowed.", "invalid_request_error", NULL);
		return;
	}
	const char *id = p + 1, *slash = memchr(id, '/', n - 1);
	size_t il = slash ? (size_t)(slash - id) : n - 1;
	size_t tl = slash ? (size_t)(p + n - slash) : 0;
	bool cancel = tl == 7 && memcmp(slash, "/cancel", 7) == 0;
	bool results = tl == 8 && memcmp(slash, "/results", 8) == 0;
	struct mock_batch *x = mock_batch_find(st, API_ANTHROPIC, id, il);
	if ((slash && !cancel && !results) || (cancel && m != M_POST) ||
	    (!cancel && m == M_POST) || (results && m != M_GET)) {
		not_found(k, "Not found: ", p, n);
		return;
	}
	if (!x) {
		not_found(k, "Message batch not found: ", id, il);
		return;
	}
	if (cancel) {
		if (x->status == BS_IN_PROGRESS) {
			x->status = BS_CANCELLING;
			x->cancelling_ms = mock_now_ms();
			mock_batch_save(st, x);
		}
		reply_batch(k, x);
	} else if (results) {
		struct mock_bfile *f = mock_batch_ended(x) ? mock_bfile_find(st, x->output_file_id,
								  strlen(x->output_file_id))
						: NULL;
		if (!f)
			not_found(k, "No results yet for message batch ", id, il);
		else
			send_file(k, f);
	} else if (m == M_DELETE) {
		if (!mock_batch_ended(x)) {
			err(k, 400, "Message batch must be ended before it can be deleted.",
			    "invalid_request_error", NULL);
			return;
		}
		struct mock_buf *b = &k->s->scratch;
		b->len = 0;
		PUTL(b, "{\"id\":\"");
		put(b, x->id, strlen(x->id));
		PUTL(b, "\",\"type\":\"message_batch_deleted\"}");
		mock_batch_delete(st, x);
		reply(k, 200, NULL);
	} else if (m == M_GET) {
		reply_batch(k, x);
	} else {
		err(k, 405, "Method not allowed.", "invalid_request_error", NULL);
	}
}

/* ---- the mock's counters ---- */

static void mock_stats(struct call *k)
{
	const struct mock_bstore *st = k->s->bs;
	struct mock_buf *b = &k->s->scratch;
	b->len = 0;
	uint32_t max = 0;
	size_t repeated = 0;
	PUTL(b, "{\"batch_lines_submitted\":");
	put_u64(b, st->submitted);
	PUTL(b, ",\"distinct_custom_ids\":");
	put_u64(b, st->submits.n);
	PUTL(b, ",\"repeated\":[");
	for (size_t i = 0; i < st->submits.cap; i++) {
		const struct mock_idslot *sl = &st->submits.slots[i];
		if (!sl->key)
			continue;
		max = sl->count > max ? sl->count : max;
		if (sl->count < 2 || repeated++ >= 1000)
			continue;
		if (repeated > 1)
			put_ch(b, ',');
		PUTL(b, "{\"custom_id\":\"");
		put(b, sl->key, sl->klen);
		PUTL(b, "\",\"count\":");
		put_u64(b, sl->count);
		put_ch(b, '}');
	}
	PUTL(b, "],\"repeated_custom_ids\":");
	put_u64(b, repeated);
	PUTL(b, ",\"max_submits\":");
	put_u64(b, max);
	unsigned nb[2] = {0, 0};
	for (size_t i = 0; i < st->nbatches; i++)
		nb[st->batches[i]->api & 1]++;
	PUTL(b, ",\"openai_batches\":");
	put_u64(b, nb[0]);
	PUTL(b, ",\"anthropic_batches\":");
	put_u64(b, nb[1]);
	PUTL(b, ",\"requests\":");
	put_u64(b, atomic_load_explicit(&k->s->requests, memory_order_relaxed));
	PUTL(b, "}");
	reply(k, 200, NULL);
}

static void mock_submits(struct call *k)
{
	const struct mock_bstore *st = k->s->bs;
	struct mock_buf *b = &k->s->scratch;
	b->len = 0;
	size_t vl;
	const char *v = query(k, "custom_id", &vl);
	if (v) {
		PUTL(b, "{\"custom_id\":\"");
		mock_put_json_escaped(b, v, vl);
		PUTL(b, "\",\"count\":");
		put_u64(b, mock_idmap_get(&st->submits, v, vl));
		PUTL(b, "}");
		reply(k, 200, NULL);
		return;
	}
	/* Every id, one JSON object a line. */
	for (size_t i = 0; i < st->submits.cap; i++) {
		const struct mock_idslot *sl = &st->submits.slots[i];
		if (!sl->key)
			continue;
		PUTL(b, "{\"custom_id\":\"");
		put(b, sl->key, sl->klen);
		PUTL(b, "\",\"count\":");
		put_u64(b, sl->count);
		PUTL(b, "}\n");
	}
	reply_ct(k, 200, CT_NDJSON, NULL);
}

void mock_batch_dispatch(struct mock_server *s, struct conn *c, uint64_t n, const char *body,
			 const char *end, bool close)
{
	struct call k = {s, c, n, close, body, end, c->in.p + c->in_start};
	const char *p = k.head + c->rq.path_off;
	size_t pl = c->rq.path_len;
	if (c->rq.batch_fault == -2) {
		err(&k, 400, "Unknown x-mock-batch-fault value (invalid, expire, fail, cut, 429).",
		    "invalid_request_error", NULL);
		return;
	}
	if (pl >= 20 && memcmp(p, "/v1/messages/batches", 20) == 0)
		anthropic(&k, p + 20, pl - 20);
	else if (pl >= 9 && memcmp(p, "/v1/files", 9) == 0)
		files(&k, p + 9, pl - 9);
	else if (pl >= 11 && memcmp(p, "/v1/batches", 11) == 0)
		batches(&k, p + 11, pl - 11);
	else if (pl == 11 && memcmp(p, "/mock/stats", 11) == 0 && c->rq.method == M_GET)
		mock_stats(&k);
	else if (pl == 13 && memcmp(p, "/mock/submits", 13) == 0 && c->rq.method == M_GET)
		mock_submits(&k);
	else
		not_found(&k, "Invalid URL: ", p, pl);
}

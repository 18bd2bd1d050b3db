/*
 * The batches' time-compressed lifecycle (mock_batches.h). Each phase
 * lasts at least phase_ms (--batch-phase-ms):
 *   OpenAI     validating -> in_progress -> finalizing -> completed
 *              (failed: validation or the fail fault; expired: the expire
 *              fault; cancelling -> cancelled)
 *   Anthropic  in_progress -> ended (canceling -> ended)
 * The work is done on the server thread in slices of about 2 ms per loop
 * turn (mock_batches_tick), so a 200 MB batch never stalls the other
 * connections for long: OpenAI's validation walks the input file, then the
 * lines are answered in a shuffled order (seeded) into the output and
 * error buffers, which become files when the batch ends. A line's answer is
 * the mock's normal reply to its body (the dialect's own renderer).
 */
#include "mock_batches.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define SLICE_NS 2000000ull

static bool terminal(uint8_t st)
{
	return st == BS_COMPLETED || st == BS_FAILED || st == BS_EXPIRED || st == BS_CANCELLED;
}

/* ---- the timer that wakes the loop while a batch is live ---- */

static void timer_arm(struct mock_server *s)
{
	struct mock_bstore *st = s->bs;
	unsigned ms = st->phase_ms / 4;
	ms = ms < 1 ? 1 : ms > 50 ? 50 : ms;
	st->ts.tv_sec = 0;
	st->ts.tv_nsec = (long long)ms * 1000000;
	struct io_uring_sqe *sqe;
	while (!(sqe = io_uring_get_sqe(&s->ring)))
		io_uring_submit(&s->ring);
	io_uring_prep_timeout(sqe, &st->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, TAG_BATCH);
	st->timer_armed = true;
}

void mock_batch_timer_fired(struct mock_server *s)
{
	if (s->bs)
		s->bs->timer_armed = false; /* the tick after this turn re-arms it */
}

void mock_batch_timer_cancel(struct mock_server *s)
{
	if (!s->bs || !s->bs->timer_armed)
		return;
	struct io_uring_sqe *sqe;
	while (!(sqe = io_uring_get_sqe(&s->ring)))
		io_uring_submit(&s->ring);
	io_uring_prep_timeout_remove(sqe, TAG_BATCH, 0);
	io_uring_sqe_set_data64(sqe, TAG_IGNORE);
}

/* ---- validation ---- */

static void add_item(struct mock_batch *b, uint64_t off, size_t len)
{
	if (b->nitems == b->items_cap) {
		b->items_cap = b->items_cap ? b->items_cap * 2 : 1024;
		b->items = realloc(b->items, b->items_cap * sizeof(*b->items));
		if (!b->items)
			abort();
	}
	b->items[b->nitems].off = off;
	b->items[b->nitems].len = (uint32_t)len;
	b->nitems++;
}

/* One entry of OpenAI's errors.data (at most BATCH_ERRORS_MAX). */
static void add_error(struct mock_batch *b, struct mock_buf *e, const char *code,
		      const char *msg, const char *param, size_t line)
{
	if (b->total++ >= BATCH_ERRORS_MAX) /* total counts errors until validated */
		return;
	if (e->len)
		put_ch(e, ',');
	PUTL(e, "{\"code\":\"");
	put(e, code, strlen(code));
	PUTL(e, "\",\"message\":\"");
	put(e, msg, strlen(msg));
	PUTL(e, "\",\"param\":");
	if (param) {
		put_ch(e, '"');
		put(e, param, strlen(param));
		put_ch(e, '"');
	} else {
		PUTL(e, "null");
	}
	PUTL(e, ",\"line\":");
	if (line)
		put_u64(e, line);
	else
		PUTL(e, "null");
	put_ch(e, '}');
}

static const char *const endpoint_path[] = {
	[EP_CHAT] = "/v1/chat/completions", [EP_EMBED] = "/v1/embeddings",
	[EP_COMPLETIONS] = "/v1/completions"};

/* The raw string value of the first "model" in a body, or false. */
static bool body_model(const char *body, const char *end, const char **m, size_t *ml)
{
	const char *v = mock_find_value(body, end, "\"model\"");
	if (!v || *v != '"')
		return false;
	const char *q = v + 1;
	while (q < end && *q != '"')
		q += *q == '\\' ? 2 : 1;
	if (q >= end)
		return false;
	*m = v + 1;
	*ml = (size_t)(q - v - 1);
	return true;
}

/* Checks OpenAI batch line number lineno (1-based) as OpenAI does. */
static void check_line(struct mock_batch *b, struct mock_buf *e, const char *line, size_t len,
		       size_t lineno)
{
	static const char *const keys[] = {"\"custom_id\"", "\"method\"", "\"url\"", "\"body\""};
	const char *v[4];
	size_t vl[4];
	char k[4];
	if (mock_json_fields(line, line + len, keys, 4, v, vl, k) < 0) {
		add_error(b, e, "invalid_json_line", "This line is not parseable as valid JSON.",
			  NULL, lineno);
		return;
	}
	static const char *const names[] = {"custom_id", "method", "url", "body"};
	for (int i = 0; i < 4; i++)
		if (!v[i] || k[i] != (i == 3 ? 'o' : 's') || (i == 0 && vl[0] == 0)) {
			add_error(b, e, "missing_required_parameter",
				  i == 3 ? "The body must be a JSON object."
					 : "A required string parameter is missing or empty.",
				  names[i], lineno);
			return;
		}
	if (vl[1] != 4 || memcmp(v[1], "POST", 4) != 0) {
		add_error(b, e, "invalid_method", "Only the POST method is supported.", "method",
			  lineno);
		return;
	}
	const char *ep = endpoint_path[b->ep];
	if (vl[2] != strlen(ep) || memcmp(v[2], ep, vl[2]) != 0) {
		add_error(b, e, "invalid_url",
			  "The url must be the batch's endpoint (the same for every line).", "url",
			  lineno);
		return;
	}
	const char *m;
	size_t ml;
	if (body_model(v[3], v[3] + vl[3], &m, &ml)) {
		if (!b->model_len && ml && ml < sizeof(b->model)) {
			memcpy(b->model, m, ml);
			b->model_len = ml;
		} else if (ml != b->model_len || memcmp(m, b->model, ml) != 0) {
			add_error(b, e, "mismatched_model",
				  "Every line of a batch file must use the same model.", "body.model",
				  lineno);
			return;
		}
	}
	if (mock_idmap_add(&b->seen, v[0], vl[0], 1) > 1) {
		add_error(b, e, "duplicate_custom_id", "The custom_id of this line is a duplicate.",
			  "custom_id", lineno);
		return;
	}
	add_item(b, (uint64_t)(line - b->input->data), len);
}

/* The counter gets every custom_id of a batch once (also after a restart). */
static void count_submits(struct mock_bstore *st, struct mock_batch *b)
{
	if (b->counted)
		return;
	struct mock_buf ids = {0}; /* owner: here */
	for (size_t i = 0; i < b->seen.cap; i++) {
		const struct mock_idslot *sl = &b->seen.slots[i];
		for (uint32_t c = 0; sl->key && c < sl->count; c++) {
			put(&ids, sl->key, sl->klen);
			put_ch(&ids, '\n');
		}
	}
	mock_bstore_count_submits(st, ids.p, ids.len);
	mock_buf_free(&ids);
	b->counted = true;
}

/* A slice of OpenAI's validation. True when it is done. */
static bool validate_slice(struct mock_server *s, struct mock_batch *b, uint64_t deadline)
{
	const struct mock_bfile *f = b->input;
	struct mock_buf e = {0}; /* owner: here, then b->errors when failing */
	if (b->errors) {
		put(&e, b->errors, strlen(b->errors));
		free(b->errors);
		b->errors = NULL;
	}
	if (b->scan == 0) {
		b->total = 0; /* counts the errors until the end of validation */
		b->lines = 0;
		if (f->len > OPENAI_MAX_BYTES) {
			add_error(b, &e, "file_too_large",
				  "The input file is larger than 200 MB, the most a batch takes.", NULL,
				  0);
			b->scan = f->len;
		}
	}
	unsigned k = 0;
	while (b->scan < f->len) {
		const char *p = f->data + b->scan, *end = f->data + f->len;
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);
		b->scan += len + (nl ? 1 : 0);
		b->lines++;
		size_t ll = len && p[len - 1] == '\r' ? len - 1 : len;
		if (ll)
			check_line(b, &e, p, ll, b->lines);
		if ((++k & 63) == 0 && mock_now_ns() >= deadline)
			break;
	}
	bool done = b->scan >= f->len;
	if (done) {
		if (!b->total && b->nitems == 0)
			add_error(b, &e, "empty_file", "The input file has no requests.", NULL, 0);
		else if (b->nitems > OPENAI_MAX_LINES)
			add_error(b, &e, "too_many_requests",
				  "A batch file holds at most 50,000 requests.", NULL, 0);
		if (b->fault_invalid)
			add_error(b, &e, "invalid_request",
				  "The batch failed validation (mock-batch-fault:invalid).", NULL, 0);
		b->total = (unsigned)b->nitems;
		count_submits(s->bs, b);
	}
	if (e.len) {
		put_ch(&e, '\0');
		b->errors = e.p; /* owner: the batch */
	} else {
		mock_buf_free(&e);
	}
	return done;
}

/* Anthropic's "requests" list, checked at create. */
bool mock_anthropic_prepare(struct mock_batch *b, const char *body, size_t len, char *msg,
			    size_t cap, struct mock_buf *ids)
{
	static const char *const top[] = {"\"requests\""};
	const char *v;
	size_t vl;
	char k;
	if (mock_json_fields(body, body + len, top, 1, &v, &vl, &k) < 0 || k != 'a') {
		snprintf(msg, cap, "%s", v || k ? "requests: Input should be a valid list"
						: "requests: Field required");
		return false;
	}
	const char *p = v + 1, *end = v + vl;
	size_t i = 0;
	for (;;) {
		while (p < end && is_ws(*p))
			p++;
		if (p >= end || *p == ']')
			break;
		const char *e = mock_json_skip(p, end);
		static const char *const keys[] = {"\"custom_id\"", "\"params\""};
		const char *fv[2];
		size_t fl[2];
		char fk[2];
		if (!e || mock_json_fields(p, e, keys, 2, fv, fl, fk) < 0 || !fv[1] || fk[1] != 'o') {
			snprintf(msg, cap, "requests.%zu.params: Field required", i);
			return false;
		}
		if (!fv[0] || fk[0] != 's' || !mock_custom_id_ok(fv[0], fl[0])) {
			snprintf(msg, cap,
				 "requests.%zu.custom_id: String should match pattern "
				 "'^[a-zA-Z0-9_-]{1,64}$'", i);
			return false;
		}
		if (mock_idmap_add(&b->seen, fv[0], fl[0], 1) > 1) {
			snprintf(msg, cap, "requests.%zu.custom_id: duplicate custom_id '%.*s'", i,
				 (int)fl[0], fv[0]);
			return false;
		}
		if (ids) {
			put(ids, fv[0], fl[0]);
			put_ch(ids, '\n');
		}
		add_item(b, (uint64_t)(p - body), (size_t)(e - p));
		i++;
		while (e < end && is_ws(*e))
			e++;
		p = e < end && *e == ',' ? e + 1 : e;
	}
	if (i == 0) {
		snprintf(msg, cap, "requests: List should have at least 1 item");
		return false;
	}
	if (i > ANTHROPIC_MAX_REQUESTS) {
		snprintf(msg, cap, "requests: a batch holds at most 100,000 requests");
		return false;
	}
	b->total = (unsigned)i;
	b->prepared = true;
	return true;
}

/* ---- answers ---- */

static void shuffle(struct mock_server *s, struct mock_batch *b)
{
	b->order = malloc((b->nitems ? b->nitems : 1) * sizeof(*b->order)); /* owner: the batch */
	if (!b->order)
		abort();
	for (size_t i = 0; i < b->nitems; i++)
		b->order[i] = (uint32_t)i;
	for (size_t i = b->nitems; i > 1; i--) {
		size_t j = (size_t)(mix64(s->o.seed ^ mix64(b->seq * 0x9e37ull + i)) % i);
		uint32_t t = b->order[i - 1];
		b->order[i - 1] = b->order[j];
		b->order[j] = t;
	}
}

/* The HTTP status an error fault's marker in a line's body asks for (0: none). */
static int fault_status(int fault)
{
	switch (fault) {
	case MOCK_FAULT_429: case MOCK_FAULT_QUOTA: return 429;
	case MOCK_FAULT_500: case MOCK_FAULT_STREAM_ERROR: return 500;
	case MOCK_FAULT_503: return 503;
	case MOCK_FAULT_529: return 529;
	case MOCK_FAULT_400: case MOCK_FAULT_CONTEXT: return 400;
	case MOCK_FAULT_401: return 401;
	case MOCK_FAULT_403: return 403;
	case MOCK_FAULT_404: return 404;
	case MOCK_FAULT_409: return 409;
	case MOCK_FAULT_422: return 422;
	default: return 0;
	}
}

/* The reply body to one line's request into s->scratch; its HTTP status. */
static int render_answer(struct mock_server *s, struct mock_batch *b, uint64_t n,
			 const char *body, const char *end)
{
	uint8_t d = b->api == API_OPENAI ? D_OPENAI : D_ANTHROPIC;
	const struct mock_dialect *dl = mock_dialects[d];
	struct mock_buf *out = &s->scratch;
	out->len = 0;
	int fault = mock_body_fault(body, end);
	int st = fault_status(fault);
	if (st) {
		char msg[64];
		snprintf(msg, sizeof(msg), "Injected by mock-fault:%s.", mock_fault_name(fault));
		dl->error_body(out, st, msg, strlen(msg),
			       st == 429 ? "requests" : st < 500 ? "invalid_request_error" : "server_error",
			       st == 429 ? "rate_limit_exceeded" : NULL);
		return st;
	}
	if (d == D_ANTHROPIC && !mock_find_value(body, end, "\"max_tokens\"")) {
		dl->error_body(out, 400, "max_tokens: Field required", 26, "invalid_request_error",
			       NULL);
		return 400;
	}
	struct job j;
	memset(&j, 0, sizeof(j));
	j.n = n;
	j.created = mock_now_ms() / 1000;
	j.dialect = d;
	mock_copy_model(&j, body, end);
	if (b->ep == EP_EMBED) {
		unsigned ninputs;
		mock_scan_inputs(body, end, "\"input\"", &ninputs, &j.prompt_tokens);
		dl->embed_body(s, &j, out, ninputs);
		return 200;
	}
	j.text_completion = b->ep == EP_COMPLETIONS;
	mock_plan_chat(s, &j, body, end);
	dl->chat_body(s, &j, out);
	return 200;
}

static bool line_expires(const struct mock_server *s, const struct mock_batch *b, uint32_t idx,
			 const char *body, const char *end)
{
	if (mock_key_find(body, (size_t)(end - body), "mock-fault:expire", 17))
		return true;
	if (b->expire_rate <= 0)
		return false;
	double u = (double)(mix64(s->o.seed * 0x2545f4914f6cdd1dull ^ mix64(b->seq << 24 ^ idx)) >>
			    11) * (1.0 / 9007199254740992.0);
	return u < b->expire_rate;
}

/* "kind" lines without a message: Anthropic's canceled and expired, and
 * OpenAI's batch_expired error line. */
static void put_plain_line(struct mock_batch *b, uint64_t n, const char *cid, size_t cl,
			   const char *type)
{
	if (b->api == API_ANTHROPIC) {
		PUTL(&b->out, "{\"custom_id\":\"");
		put(&b->out, cid, cl);
		PUTL(&b->out, "\",\"result\":{\"type\":\"");
		put(&b->out, type, strlen(type));
		PUTL(&b->out, "\"}}\n");
		return;
	}
	PUTL(&b->err, "{\"id\":\"batch_req_mock");
	put_u64(&b->err, n);
	PUTL(&b->err, "\",\"custom_id\":\"");
	put(&b->err, cid, cl);
	PUTL(&b->err, "\",\"response\":null,\"error\":{\"code\":\"batch_expired\",\"message\":"
		      "\"This request could not be executed before the completion window "
		      "expired.\"}}\n");
}

/* Answers item order[b->next] into b->out or b->err. kind: 0 normal, or
 * "canceled" / "errored" for the lines a cancel or a failure leaves. */
static void answer_next(struct mock_server *s, struct mock_batch *b, const char *kind)
{
	uint32_t idx = b->order[b->next++];
	const struct mock_bitem *it = &b->items[idx];
	const char *line = b->input->data + it->off;
	static const char *const oa[] = {"\"custom_id\"", "\"body\""};
	static const char *const an[] = {"\"custom_id\"", "\"params\""};
	const char *v[2];
	size_t vl[2];
	char k[2];
	mock_json_fields(line, line + it->len, b->api == API_OPENAI ? oa : an, 2, v, vl, k);
	const char *body = v[1], *end = v[1] + vl[1];
	uint64_t n = ++s->next_n;
	if (kind && b->api == API_ANTHROPIC && strcmp(kind, "canceled") == 0) {
		put_plain_line(b, n, v[0], vl[0], "canceled");
		b->canceled++;
		return;
	}
	if (!kind && line_expires(s, b, idx, body, end)) {
		put_plain_line(b, n, v[0], vl[0], "expired");
		if (b->api == API_OPENAI)
			b->failed++;
		b->expired++;
		return;
	}
	int st;
	if (kind) { /* a failed Anthropic batch: the rest errored */
		s->scratch.len = 0;
		mock_anthropic.error_body(&s->scratch, 500, "Internal server error (mock batch fault)",
					  40, "server_error", NULL);
		st = 500;
	} else {
		st = render_answer(s, b, n, body, end);
	}
	if (b->api == API_ANTHROPIC) {
		PUTL(&b->out, "{\"custom_id\":\"");
		put(&b->out, v[0], vl[0]);
		if (st == 200)
			PUTL(&b->out, "\",\"result\":{\"type\":\"succeeded\",\"message\":");
		else
			PUTL(&b->out, "\",\"result\":{\"type\":\"errored\",\"error\":");
		put(&b->out, s->scratch.p, s->scratch.len);
		PUTL(&b->out, "}}\n");
	} else {
		struct mock_buf *o = st == 200 ? &b->out : &b->err;
		PUTL(o, "{\"id\":\"batch_req_mock");
		put_u64(o, n);
		PUTL(o, "\",\"custom_id\":\"");
		put(o, v[0], vl[0]);
		PUTL(o, "\",\"response\":{\"status_code\":");
		put_u64(o, (uint64_t)st);
		PUTL(o, ",\"request_id\":\"req_mock_");
		put_u64(o, n);
		PUTL(o, "\",\"body\":");
		put(o, s->scratch.p, s->scratch.len);
		PUTL(o, "},\"error\":null}\n");
	}
	if (st == 200)
		b->completed++;
	else
		b->failed++;
}

/* ---- the phases ---- */

static void set_status(struct mock_server *s, struct mock_batch *b, uint8_t st, uint64_t now)
{
	b->status = st;
	switch (st) {
	case BS_IN_PROGRESS: b->in_progress_ms = now; break;
	case BS_FINALIZING: b->finalizing_ms = now; break;
	case BS_COMPLETED: b->completed_ms = now; break;
	case BS_FAILED: b->failed_ms = now; break;
	case BS_EXPIRED: b->expired_ms = now; break;
	case BS_CANCELLED: b->cancelled_ms = now; break;
	default: break;
	}
	if (terminal(st))
		mock_batch_free_work(b);
	mock_batch_save(s->bs, b);
}

/* The output and error buffers become files; the batch ends. */
static void finish(struct mock_server *s, struct mock_batch *b, uint64_t now, bool cancelled)
{
	struct mock_bstore *st = s->bs;
	char name[96];
	if (b->api == API_ANTHROPIC) {
		while (b->next < b->nitems)
			answer_next(s, b, "canceled");
		snprintf(name, sizeof(name), "%s_results.jsonl", b->id);
		struct mock_bfile *f = mock_bfile_add(st, BP_ANTHROPIC_RESULTS, name, strlen(name),
						      b->out.p, b->out.len, &b->out.p);
		memcpy(b->output_file_id, f->id, sizeof(f->id));
		b->out.len = b->out.cap = 0;
		set_status(s, b, cancelled ? BS_CANCELLED : BS_COMPLETED, now);
		return;
	}
	if (b->out.len) {
		snprintf(name, sizeof(name), "batch_%s_output.jsonl", b->id);
		struct mock_bfile *f = mock_bfile_add(st, BP_BATCH_OUTPUT, name, strlen(name),
						      b->out.p, b->out.len, &b->out.p);
		memcpy(b->output_file_id, f->id, sizeof(f->id));
		b->out.len = b->out.cap = 0;
	}
	if (b->err.len) {
		snprintf(name, sizeof(name), "batch_%s_error.jsonl", b->id);
		struct mock_bfile *f = mock_bfile_add(st, BP_BATCH_OUTPUT, name, strlen(name),
						      b->err.p, b->err.len, &b->err.p);
		memcpy(b->error_file_id, f->id, sizeof(f->id));
		b->err.len = b->err.cap = 0;
	}
	set_status(s, b, cancelled ? BS_CANCELLED : b->expired ? BS_EXPIRED : BS_COMPLETED, now);
}

/* The input's file and items[] (again after a restart). False: failed. */
static bool ensure_input(struct mock_server *s, struct mock_batch *b, uint64_t now,
			 uint64_t deadline, bool *busy)
{
	if (!b->input) {
		struct mock_bfile *f = mock_bfile_find(s->bs, b->input_file_id,
						       strlen(b->input_file_id));
		if (!f) {
			free(b->errors);
			b->errors = strdup("{\"code\":\"file_not_found\",\"message\":\"The input "
					   "file is gone.\",\"param\":\"input_file_id\",\"line\":null}");
			set_status(s, b, BS_FAILED, now);
			return false;
		}
		mock_bfile_ref(f);
		b->input = f;
	}
	if (b->prepared && b->order)
		return true;
	if (b->api == API_ANTHROPIC) {
		char msg[160];
		if (!b->prepared) /* after a restart: checked at create */
			mock_anthropic_prepare(b, b->input->data, b->input->len, msg, sizeof(msg),
					       NULL);
	} else if (!b->prepared) {
		if (!validate_slice(s, b, deadline)) {
			*busy = true;
			return false;
		}
		if (b->errors) {
			set_status(s, b, BS_FAILED, now);
			return false;
		}
	}
	b->prepared = true;
	shuffle(s, b);
	return true;
}

/* One batch's due work. True when it has work left right now. */
static bool step(struct mock_server *s, struct mock_batch *b, uint64_t now, uint64_t deadline)
{
	unsigned ph = s->bs->phase_ms;
	bool busy = false;
	switch (b->status) {
	case BS_VALIDATING:
		if (now < b->created_ms + ph || !ensure_input(s, b, now, deadline, &busy))
			return busy;
		set_status(s, b, BS_IN_PROGRESS, now);
		return true;
	case BS_IN_PROGRESS: {
		if (!ensure_input(s, b, now, deadline, &busy))
			return busy;
		unsigned k = 0;
		while (b->next < b->nitems) {
			if (b->fault_fail && b->next >= b->nitems / 2) {
				if (b->api == API_ANTHROPIC) {
					while (b->next < b->nitems)
						answer_next(s, b, "errored");
					break;
				}
				free(b->errors);
				b->errors = strdup("{\"code\":\"batch_failed\",\"message\":\"The batch "
						   "failed while in progress "
						   "(mock-batch-fault:fail).\",\"param\":null,"
						   "\"line\":null}");
				set_status(s, b, BS_FAILED, now);
				return false;
			}
			answer_next(s, b, NULL);
			if ((++k & 31) == 0 && mock_now_ns() >= deadline)
				return true;
		}
		if (now < b->in_progress_ms + ph)
			return false;
		if (b->api == API_ANTHROPIC) {
			finish(s, b, now, false);
			return false;
		}
		set_status(s, b, BS_FINALIZING, now);
		return false;
	}
	case BS_FINALIZING:
		if (now >= b->finalizing_ms + ph) {
			if (!ensure_input(s, b, now, deadline, &busy))
				return busy; /* after a restart: answered again first */
			while (b->next < b->nitems)
				answer_next(s, b, NULL); /* only after a restart */
			finish(s, b, now, false);
		}
		return false;
	case BS_CANCELLING:
		if (now >= b->cancelling_ms + ph) {
			if (b->api == API_ANTHROPIC && !ensure_input(s, b, now, deadline, &busy))
				return busy;
			finish(s, b, now, true);
		}
		return false;
	default:
		return false;
	}
}

bool mock_batches_tick(struct mock_server *s)
{
	struct mock_bstore *st = s->bs;
	uint64_t now = mock_now_ms(), deadline = mock_now_ns() + SLICE_NS;
	bool live = false, busy = false;
	for (size_t i = 0; i < st->nbatches; i++) {
		struct mock_batch *b = st->batches[i];
		if (terminal(b->status))
			continue;
		if (!busy || mock_now_ns() < deadline)
			busy |= step(s, b, now, deadline);
		live |= !terminal(b->status);
	}
	if (live && !st->timer_armed)
		timer_arm(s);
	return busy;
}

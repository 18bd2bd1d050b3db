/*
 * Routing: the path of a request picks its route and dialect
 * (mock_route_path, called by the request parser), and a complete request
 * becomes the plan of its reply in c->job (mock_dispatch): refusals, the
 * fault, validation, then the embeddings or chat reply, whole or streamed.
 */
#include "mock_batches.h"

static bool has_prefix(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n >= l && memcmp(s, lit, l) == 0;
}

struct route_entry {
	const char *path;
	uint8_t len;
	uint8_t route;
	uint8_t dialect;
};

#define ROUTE(path, route, dialect) {path, sizeof(path) - 1, route, dialect}
/* The endpoints served, by exact path. */
static const struct route_entry exact_routes[] = {
	ROUTE("/v1/chat/completions", R_CHAT, D_OPENAI),
	ROUTE("/chat/completions", R_CHAT, D_OPENAI),
	ROUTE("/v1/completions", R_COMPLETIONS, D_OPENAI),
	ROUTE("/completions", R_COMPLETIONS, D_OPENAI),
	ROUTE("/v1/embeddings", R_EMBED, D_OPENAI),
	ROUTE("/embeddings", R_EMBED, D_OPENAI),
	ROUTE("/v1/messages", R_ANTHROPIC, D_ANTHROPIC),
	ROUTE("/messages", R_ANTHROPIC, D_ANTHROPIC),
	ROUTE("/api/chat", R_OLLAMA_CHAT, D_OLLAMA),
	ROUTE("/api/embed", R_OLLAMA_EMBED, D_OLLAMA),
};
/* Unknown paths under these prefixes get a 404 in that dialect. */
static const struct route_entry prefix_dialects[] = {
	ROUTE("/v1/messages/", R_NOTFOUND, D_ANTHROPIC),
	ROUTE("/messages/", R_NOTFOUND, D_ANTHROPIC),
	ROUTE("/api/", R_NOTFOUND, D_OLLAMA),
};
#undef ROUTE

/* Gemini: [/v1beta|/v1]/models/MODEL:METHOD, with ?alt=sse to stream. */
static void route_gemini(struct req *rq, const char *path, size_t plen, const char *q,
			 const char *qe, const char *head)
{
	const char *m = path, *pend = path + plen;
	if (has_prefix(m, plen, "/v1beta/"))
		m += 7;
	else if (has_prefix(m, plen, "/v1/"))
		m += 3;
	if (!has_prefix(m, (size_t)(pend - m), "/models/"))
		return;
	rq->dialect = D_GEMINI;
	m += 8;
	const char *colon = memchr(m, ':', (size_t)(pend - m));
	if (!colon || colon == m || memchr(m, '/', (size_t)(colon - m)))
		return;
	size_t ml = (size_t)(pend - colon - 1);
	if (ml == 15 && memcmp(colon + 1, "generateContent", 15) == 0)
		rq->route = R_GEMINI;
	else if (ml == 21 && memcmp(colon + 1, "streamGenerateContent", 21) == 0)
		rq->route = R_GEMINI_STREAM;
	else
		return;
	rq->model_off = (uint16_t)(m - head);
	rq->model_len = (uint16_t)(colon - m);
	/* alt=sse as one of the query's parameters */
	for (const char *a = q; a && a + 8 <= qe; a++)
		if ((*a == '?' || *a == '&') && memcmp(a + 1, "alt=sse", 7) == 0 &&
		    (a + 8 == qe || a[8] == '&')) {
			rq->alt_sse = true;
			break;
		}
}


/* Unknown paths keep route R_NOTFOUND (rq is zeroed) and get the dialect
 * their prefix suggests, for the 404 body. */
void mock_route_path(struct req *rq, const char *path, size_t plen, const char *q,
		     const char *qe, const char *head)
{
	/* The batch APIs: Anthropic's under /v1/messages/batches, OpenAI's
	 * files and batches, the mock's own counters under /mock/. */
	static const struct route_entry batch_prefixes[] = {
		{"/v1/messages/batches", 20, R_BATCH, D_ANTHROPIC},
		{"/v1/files", 9, R_BATCH, D_OPENAI},
		{"/v1/batches", 11, R_BATCH, D_OPENAI},
		{"/mock/", 6, R_BATCH, D_OPENAI},
	};
	for (size_t i = 0; i < sizeof(batch_prefixes) / sizeof(batch_prefixes[0]); i++) {
		const struct route_entry *r = &batch_prefixes[i];
		if (plen >= r->len && memcmp(path, r->path, r->len) == 0 &&
		    (plen == r->len || path[r->len] == '/' || path[r->len - 1] == '/')) {
			rq->route = r->route;
			rq->dialect = r->dialect;
			return;
		}
	}
	for (size_t i = 0; i < sizeof(exact_routes) / sizeof(exact_routes[0]); i++) {
		const struct route_entry *r = &exact_routes[i];
		if (plen == r->len && memcmp(path, r->path, plen) == 0) {
			rq->route = r->route;
			rq->dialect = r->dialect;
			return;
		}
	}
	for (size_t i = 0; i < sizeof(prefix_dialects) / sizeof(prefix_dialects[0]); i++) {
		const struct route_entry *r = &prefix_dialects[i];
		if (plen >= r->len && memcmp(path, r->path, r->len) == 0) {
			rq->dialect = r->dialect;
			return;
		}
	}
	route_gemini(rq, path, plen, q, qe, head);
}

/* ------------------------------------------------------------------ */
/* Dispatch, in the order its steps run                                */

/* What cannot be served at all: an unknown path (404), an unknown
 * x-mock-fault name, a body that is not a JSON object (400). True when it
 * answered. */
static bool refuse_request(struct mock_server *s, struct conn *c, uint64_t n,
			   const char *body, const char *end, bool close)
{
	const struct req *rq = &c->rq;
	if (rq->route == R_NOTFOUND) {
		struct mock_buf m = {0}; /* owner: here, freed below */
		PUTL(&m, "Invalid URL (");
		mock_put_json_escaped(&m, rq->line, rq->line_len);
		PUTL(&m, ")");
		mock_respond_error(s, c, n, 404, m.p, m.len, "invalid_request_error", "not_found",
				   close, NULL);
		mock_buf_free(&m);
		return true;
	}
	if (rq->fault == -2) {
		ERRL(s, c, n, 400, "Unknown x-mock-fault value.", "invalid_request_error", NULL,
		     close, NULL);
		return true;
	}
	const char *p = body;
	while (p < end && is_ws(*p))
		p++;
	if (p >= end || *p != '{') {
		ERRL(s, c, n, 400,
		     "We could not parse the JSON body of your request. (HINT: This likely means "
		     "you aren't using your HTTP library correctly.)",
		     "invalid_request_error", NULL, close, NULL);
		return true;
	}
	return false;
}

static int pick_fault(struct mock_server *s, uint64_t n)
{
	if (s->fault_cum[MOCK_FAULT_COUNT - 1] <= 0)
		return MOCK_FAULT_NONE;
	double u = (double)(mix64(s->o.seed * 0x2545f4914f6cdd1dull ^ mix64(n)) >> 11) *
		   (1.0 / 9007199254740992.0);
	for (int k = 1; k < MOCK_FAULT_COUNT; k++)
		if (u < s->fault_cum[k])
			return k;
	return MOCK_FAULT_NONE;
}

/* The fault for request n: the x-mock-fault header's, else the body
 * marker's, else one drawn by the fault rates. */
static int choose_fault(struct mock_server *s, const struct req *rq, uint64_t n,
			const char *body, const char *end)
{
	int fault = rq->fault;
	if (fault < 0)
		fault = mock_body_fault(body, end);
	if (fault < 0)
		fault = pick_fault(s, n);
	return fault;
}

/* The error faults answer at once (stream-error without a stream is 500).
 * True when it answered. */
static bool answer_error_fault(struct mock_server *s, struct conn *c, uint64_t n, int fault,
			       const char *body, const char *end, bool close)
{
	switch (fault) {
	case MOCK_FAULT_STREAM_ERROR:
		if (mock_wants_stream(&c->rq, body, end))
			return false;
		break;
	case MOCK_FAULT_429:
	case MOCK_FAULT_500:
	case MOCK_FAULT_503:
	case MOCK_FAULT_529:
		break;
	default:
		if (fault >= MOCK_FAULT_400 && fault < MOCK_FAULT_COUNT) {
			mock_respond_refusal(s, c, n, fault, close);
			return true;
		}
		return false;
	}
	mock_respond_fault(s, c, n, fault, close);
	return true;
}

/* What a dialect requires of a request (400 otherwise). Checked after the
 * error faults: an asked-for fault always shows. True when it answered. */
static bool refuse_invalid(struct mock_server *s, struct conn *c, uint64_t n,
			   const char *body, const char *end, bool close)
{
	const struct req *rq = &c->rq;
	if (rq->route == R_ANTHROPIC && !mock_find_value(body, end, "\"max_tokens\"")) {
		ERRL(s, c, n, 400, "max_tokens: Field required", "invalid_request_error", NULL,
		     close, NULL);
		return true;
	}
	if (rq->route == R_COMPLETIONS && !mock_find_value(body, end, "\"prompt\"")) {
		ERRL(s, c, n, 400, "you must provide a prompt parameter", "invalid_request_error",
		     NULL, close, NULL);
		return true;
	}
	if (rq->route == R_GEMINI_STREAM && !rq->alt_sse) {
		ERRL(s, c, n, 400, "mock: streamGenerateContent is served with ?alt=sse only",
		     "invalid_request_error", NULL, close, NULL);
		return true;
	}
	return false;
}

/* The job's model, its delays and how the connection ends after it. */
static void begin_job(struct mock_server *s, struct conn *c, int fault, bool close,
		      const char *body, const char *end)
{
	const struct req *rq = &c->rq;
	struct job *j = &c->job;
	if (rq->route == R_GEMINI || rq->route == R_GEMINI_STREAM)
		mock_copy_path_model(j, c->in.p + c->in_start + rq->model_off, rq->model_len);
	else
		mock_copy_model(j, body, end);
	j->active = true;
	j->ttft_us = mock_ttft_us(s, j->n);
	j->slow = fault == MOCK_FAULT_SLOW_HEADERS;
	j->close_mode = close ? CLOSE_FIN : CLOSE_NONE;
	if (fault == MOCK_FAULT_RESET)
		j->close_mode = CLOSE_RST;
	j->whole.len = 0;
	j->off = 0;
}

/* An embeddings body into s->scratch. */
static void render_embeddings(struct mock_server *s, struct job *j, int fault,
			      const char *body, const char *end)
{
	unsigned ninputs, ntok;
	mock_scan_inputs(body, end, "\"input\"", &ninputs, &ntok);
	j->prompt_tokens = ntok;
	const struct mock_dialect *d = mock_dialects[j->dialect];
	struct mock_buf *b = &s->scratch;
	b->len = 0;
	if (fault == MOCK_FAULT_MALFORMED)
		put(b, d->malformed_embed, strlen(d->malformed_embed));
	else
		d->embed_body(s, j, b, ninputs);
}

/* A chat (or completion) reply's prompt tokens, tool call, and how many
 * tokens and stream events it has. o.tokens is where the mock's model
 * stops on its own (its EOS); a max-token field cuts it shorter, and with
 * ignore_eos (the server's option, or vLLM's "ignore_eos":true in the
 * body) it is the exact length, capped at MOCK_MAX_TOKENS_CAP. */
void mock_plan_chat(struct mock_server *s, struct job *j, const char *body, const char *end)
{
	if (j->text_completion) {
		unsigned nprompts;
		mock_scan_inputs(body, end, "\"prompt\"", &nprompts, &j->prompt_tokens);
	} else {
		j->prompt_tokens = mock_prompt_words(j->dialect, body, end);
		mock_find_tool(j, body, end);
	}
	if (j->tool) {
		/* OpenAI and Anthropic stream the arguments in pieces. */
		j->ntok = TOOL_FRAGS;
		j->nev = j->dialect == D_OPENAI || j->dialect == D_ANTHROPIC ? TOOL_FRAGS : 1;
	} else {
		j->ntok = s->o.tokens;
		uint64_t mt;
		if (mock_max_tokens(j->dialect, body, end, &mt) &&
		    (mt < j->ntok || s->o.ignore_eos ||
		     mock_value_is_true(mock_find_value(body, end, "\"ignore_eos\""), end))) {
			j->ntok = mt < MOCK_MAX_TOKENS_CAP ? (unsigned)mt : MOCK_MAX_TOKENS_CAP;
			j->length_cut = true;
		}
		j->nev = j->ntok;
	}
}

/* A streamed chat reply: how many events it sends, then its head. */
static void begin_stream(struct job *j, int fault, bool close, const char *body,
			 const char *end)
{
	if (fault == MOCK_FAULT_STREAM_ERROR && j->nev > 2)
		j->nev = 2;
	if (j->dialect == D_OPENAI && fault != MOCK_FAULT_STREAM_ERROR)
		j->include_usage =
			mock_value_is_true(mock_find_value(body, end, "\"include_usage\""), end);
	mock_start_stream(j, j->n, close);
}

/* A chat body that is not streamed into s->scratch. */
static void render_chat(struct mock_server *s, struct job *j, int fault)
{
	const struct mock_dialect *d = mock_dialects[j->dialect];
	struct mock_buf *b = &s->scratch;
	b->len = 0;
	if (fault == MOCK_FAULT_MALFORMED)
		put(b, d->malformed_chat, strlen(d->malformed_chat));
	else
		d->chat_body(s, j, b);
}

/* The head and the body in s->scratch into j->whole, cut short for the
 * truncate and reset faults. */
static void frame_whole_body(struct mock_server *s, struct job *j, int fault, bool close)
{
	struct mock_buf *b = &s->scratch;
	uint64_t n = j->n;
	if (fault == MOCK_FAULT_TRUNCATE) {
		/* Chunked, cut off after the first half of the body. */
		mock_put_head(&j->whole, 200, CT_JSON, SIZE_MAX, n, true, NULL, j->dialect);
		j->head_len = j->whole.len;
		size_t half = b->len / 2;
		put_hex(&j->whole, half);
		PUTL(&j->whole, "\r\n");
		put(&j->whole, b->p, half);
		PUTL(&j->whole, "\r\n");
		j->cut = j->whole.len;
	} else {
		mock_put_head(&j->whole, 200, CT_JSON, b->len, n, close, NULL, j->dialect);
		j->head_len = j->whole.len;
		put(&j->whole, b->p, b->len);
		j->cut = fault == MOCK_FAULT_RESET ? j->head_len + b->len / 2 : j->whole.len;
	}
	j->phase = PH_TTFT;
}

void mock_dispatch(struct mock_server *s, struct conn *c)
{
	struct req *rq = &c->rq;
	struct job *j = &c->job;
	const char *body = c->in.p + c->in_start + rq->head_len;
	const char *end = body + rq->body_len;
	uint64_t n = ++s->next_n;
	atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);

	bool close = !rq->keep_alive || (s->o.close_every && n % s->o.close_every == 0);
	mock_job_reset(j);
	j->n = n;
	j->created = s->now;
	j->dialect = rq->dialect;
	if (rq->route == R_BATCH) {
		if (s->bs) {
			mock_batch_dispatch(s, c, n, body, end, close);
			return;
		}
		rq->route = R_NOTFOUND; /* a server without the store (the fuzzer's) */
	}
	if (refuse_request(s, c, n, body, end, close))
		return;
	int fault = choose_fault(s, rq, n, body, end);
	j->fault = (uint8_t)fault;
	if (answer_error_fault(s, c, n, fault, body, end, close))
		return;
	if (fault == MOCK_FAULT_CLOSE)
		close = true;
	if (refuse_invalid(s, c, n, body, end, close))
		return;
	if (fault == MOCK_FAULT_TRUNCATE)
		close = true; /* the cut body cannot be framed for a next request */
	begin_job(s, c, fault, close, body, end);

	if (rq->route == R_EMBED || rq->route == R_OLLAMA_EMBED) {
		render_embeddings(s, j, fault, body, end);
		frame_whole_body(s, j, fault, close);
		return;
	}
	j->text_completion = rq->route == R_COMPLETIONS;
	mock_plan_chat(s, j, body, end);
	j->stream = mock_wants_stream(rq, body, end);
	if (j->stream) {
		begin_stream(j, fault, close, body, end);
	} else {
		render_chat(s, j, fault);
		frame_whole_body(s, j, fault, close);
		/* With a capacity, a whole reply takes its generation time. */
		if (s->o.max_batch)
			j->ttft_us += (uint64_t)j->ntok * s->o.itl_ms * 1000;
	}
	mock_batch_admit(s, c); /* a generation: a slot, or the queue */
}

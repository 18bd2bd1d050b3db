/*
 * What every dialect's replies share: the response head, the error
 * replies (the status and wording per fault and dialect; the body's shape
 * is the dialect's), the tool call's stream pieces and the table of
 * dialects. A dialect's own bodies and events are in mock_<dialect>.c.
 */
#include "mock_internal.h"

const struct mock_dialect *const mock_dialects[4] = {
	[D_OPENAI] = &mock_openai,
	[D_ANTHROPIC] = &mock_anthropic,
	[D_OLLAMA] = &mock_ollama,
	[D_GEMINI] = &mock_gemini,
};

const char *const mock_tool_frag[TOOL_FRAGS] = {
	"{\\\"city\\\":", "\\\"Paris\\\",", "\\\"days\\\":", "3}",
};

static const char *status_text(int st)
{
	switch (st) {
	case 200: return "200 OK";
	case 206: return "206 Partial Content";
	case 416: return "416 Range Not Satisfiable";
	case 400: return "400 Bad Request";
	case 401: return "401 Unauthorized";
	case 403: return "403 Forbidden";
	case 404: return "404 Not Found";
	case 405: return "405 Method Not Allowed";
	case 409: return "409 Conflict";
	case 411: return "411 Length Required";
	case 413: return "413 Content Too Large";
	case 429: return "429 Too Many Requests";
	case 422: return "422 Unprocessable Content";
	case 431: return "431 Request Header Fields Too Large";
	case 500: return "500 Internal Server Error";
	case 529: return "529 Overloaded";
	default: return "503 Service Unavailable";
	}
}

/* Anthropic calls its request id header request-id. */
void mock_put_head(struct mock_buf *b, int st, enum ctype ct, size_t clen, uint64_t n,
		   bool close, const char *extra, uint8_t dialect)
{
	PUTL(b, "HTTP/1.1 ");
	put(b, status_text(st), strlen(status_text(st)));
	if (ct == CT_SSE)
		PUTL(b, "\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache");
	else if (ct == CT_NDJSON)
		PUTL(b, "\r\nContent-Type: application/x-ndjson");
	else if (ct == CT_OCTET)
		PUTL(b, "\r\nContent-Type: application/octet-stream");
	else
		PUTL(b, "\r\nContent-Type: application/json");
	if (clen == SIZE_MAX) {
		PUTL(b, "\r\nTransfer-Encoding: chunked");
	} else {
		PUTL(b, "\r\nContent-Length: ");
		put_u64(b, clen);
	}
	if (dialect == D_ANTHROPIC)
		PUTL(b, "\r\nrequest-id: req_mock_");
	else
		PUTL(b, "\r\nx-request-id: req_mock_");
	put_u64(b, n);
	PUTL(b, "\r\n");
	if (extra)
		put(b, extra, strlen(extra));
	if (close)
		PUTL(b, "Connection: close\r\n");
	PUTL(b, "\r\n");
}

void mock_respond_error(struct mock_server *s, struct conn *c, uint64_t n, int st,
			const char *msg, size_t mlen, const char *type, const char *code,
			bool close, const char *extra)
{
	struct mock_buf *body = &s->scratch;
	struct job *j = &c->job;
	body->len = 0;
	mock_dialects[j->dialect]->error_body(body, st, msg, mlen, type, code);
	j->whole.len = 0;
	mock_put_head(&j->whole, st, CT_JSON, body->len, n, close, extra, j->dialect);
	j->head_len = j->whole.len;
	put(&j->whole, body->p, body->len);
	mock_job_whole(c, close);
}

void mock_respond_fault(struct mock_server *s, struct conn *c, uint64_t n, int fault,
			bool close)
{
	static const char *const msg[][4] = {
		/* OpenAI, Anthropic, Ollama, Gemini */
		{"Rate limit reached for requests (mock). Please try again in 1s.",
		 "Number of requests has exceeded your rate limit (mock). Please try again later.",
		 "rate limit exceeded (mock)",
		 "Resource has been exhausted (e.g. check quota). (mock)"},
		{"The server had an error while processing your request. Sorry about that!",
		 "Internal server error", "internal server error (mock)",
		 "An internal error has occurred. Please retry. (mock)"},
		{"The server is overloaded or not ready yet.", "Service unavailable (mock)",
		 "server busy, please try again. (mock)",
		 "The model is overloaded. Please try again later."},
		{"The server is overloaded (mock). Please try again later.", "Overloaded",
		 "server overloaded (mock)", "The model is overloaded. Please try again later."},
	};
	uint8_t d = c->job.dialect;
	int row, st;
	const char *type = "server_error", *code = NULL, *extra = NULL;
	switch (fault) {
	case MOCK_FAULT_429:
		row = 0;
		st = 429;
		type = "requests";
		code = "rate_limit_exceeded";
		extra = d == D_OPENAI ? "Retry-After: 1\r\nretry-after-ms: 1000\r\n"
				      : "Retry-After: 1\r\n";
		break;
	case MOCK_FAULT_503:
		row = 2;
		st = 503;
		break;
	case MOCK_FAULT_529:
		row = 3;
		st = 529;
		break;
	default: /* 500, stream-error */
		row = 1;
		st = 500;
		break;
	}
	mock_respond_error(s, c, n, st, msg[row][d], strlen(msg[row][d]), type, code, close,
			   extra);
}

/* The refusal faults, each worded as its provider words it, so that the
 * client's classification (by status, error type, code or message) is what
 * a real refusal gets. */
void mock_respond_refusal(struct mock_server *s, struct conn *c, uint64_t n, int fault,
			  bool close)
{
	static const struct {
		int status;
		const char *type, *code; /* OpenAI's error type and code */
		const char *msg[4];      /* OpenAI, Anthropic, Ollama, Gemini */
	} refusals[] = {
		[MOCK_FAULT_400 - MOCK_FAULT_400] = {400, "invalid_request_error", NULL,
			{"Invalid value for 'messages' (mock).", "messages: invalid (mock)",
			 "invalid request (mock)", "Invalid JSON payload received (mock)."}},
		[MOCK_FAULT_401 - MOCK_FAULT_400] = {401, "invalid_request_error", "invalid_api_key",
			{"Incorrect API key provided (mock).", "invalid x-api-key (mock)",
			 "unauthorized (mock)", "Request had invalid authentication credentials (mock)."}},
		[MOCK_FAULT_403 - MOCK_FAULT_400] = {403, "invalid_request_error", "unsupported_country_region_territory",
			{"Country, region, or territory not supported (mock).",
			 "Your API key does not have permission to use the specified resource (mock).",
			 "forbidden (mock)", "The caller does not have permission (mock)."}},
		[MOCK_FAULT_404 - MOCK_FAULT_400] = {404, "invalid_request_error", "model_not_found",
			{"The model does not exist or you do not have access to it (mock).",
			 "model: not found (mock)", "model not found, try pulling it first (mock)",
			 "models/x is not found for API version v1beta (mock)."}},
		[MOCK_FAULT_409 - MOCK_FAULT_400] = {409, "invalid_request_error", NULL,
			{"Conflict (mock).", "conflict (mock)", "conflict (mock)", "Conflict (mock)."}},
		[MOCK_FAULT_422 - MOCK_FAULT_400] = {422, "invalid_request_error", NULL,
			{"Unprocessable entity (mock).", "unprocessable (mock)", "unprocessable (mock)",
			 "Unprocessable (mock)."}},
		[MOCK_FAULT_CONTEXT - MOCK_FAULT_400] = {400, "invalid_request_error",
			"context_length_exceeded",
			{"This model's maximum context length is 128000 tokens (mock).",
			 "prompt is too long: 210000 tokens > 200000 maximum (mock)",
			 "the input exceeds the context length (mock)",
			 "The input token count exceeds the maximum number of tokens allowed (mock)."}},
		[MOCK_FAULT_QUOTA - MOCK_FAULT_400] = {429, "insufficient_quota", "insufficient_quota",
			{"You exceeded your current quota, please check your plan and billing details (mock).",
			 "Your credit balance is too low to access the Anthropic API (mock).",
			 "quota exceeded (mock)", "Quota exceeded (mock)."}},
	};
	unsigned i = (unsigned)(fault - MOCK_FAULT_400);
	uint8_t d = c->job.dialect;
	int st = refusals[i].status;
	/* Anthropic refuses a spent credit balance with 400, not 429. */
	if (fault == MOCK_FAULT_QUOTA && d == D_ANTHROPIC)
		st = 400;
	const char *msg = refusals[i].msg[d];
	mock_respond_error(s, c, n, st, msg, strlen(msg), refusals[i].type, refusals[i].code, close,
			   NULL);
}

void mock_respond_parse_error(struct mock_server *s, struct conn *c, int st)
{
	uint64_t n = ++s->next_n;
	atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
	mock_job_reset(&c->job);
	c->job.dialect = c->rq.dialect; /* mock_parse_head set it (0 before the path) */
	switch (st) {
	case 411:
		ERRL(s, c, n, 411, "Chunked request bodies are not supported; send Content-Length.",
		     "invalid_request_error", NULL, true, NULL);
		break;
	case 413:
		ERRL(s, c, n, 413, "Request body too large.", "invalid_request_error", NULL, true,
		     NULL);
		break;
	case 431:
		ERRL(s, c, n, 431, "Request header fields too large.", "invalid_request_error",
		     NULL, true, NULL);
		break;
	default:
		ERRL(s, c, n, 400, "Malformed HTTP request.", "invalid_request_error", NULL, true,
		     NULL);
		break;
	}
}

/*
 * Gemini's wire dialect: generateContent bodies, streamGenerateContent
 * with alt=sse (one event per token, each with usageMetadata so far, the
 * last with finishReason, no [DONE]), the error body
 * {"error":{"code","message","status"}}.
 */
#include "mock_internal.h"

static const char *gemini_status(int st)
{
	switch (st) {
	case 401: return "UNAUTHENTICATED";
	case 403: return "PERMISSION_DENIED";
	case 404: return "NOT_FOUND";
	case 429: return "RESOURCE_EXHAUSTED";
	case 503:
	case 529: return "UNAVAILABLE";
	default: return st < 500 ? "INVALID_ARGUMENT" : "INTERNAL";
	}
}

static void put_gemini_open(struct mock_buf *b)
{
	PUTL(b, "{\"candidates\":[{\"content\":{\"parts\":[");
}

static void put_gemini_call(struct mock_buf *b, const struct job *j)
{
	PUTL(b, "{\"functionCall\":{\"name\":\"");
	put(b, j->tool_name, j->tool_name_len);
	PUTL(b, "\",\"args\":" TOOL_ARGS "}}");
}

/* After the parts: the candidate's end, usage with k output tokens, ids. */
static void put_gemini_close(struct mock_buf *b, const struct job *j, unsigned k, bool finish)
{
	PUTL(b, "],\"role\":\"model\"}");
	if (finish) {
		if (j->length_cut && !j->tool)
			PUTL(b, ",\"finishReason\":\"MAX_TOKENS\"");
		else
			PUTL(b, ",\"finishReason\":\"STOP\"");
	}
	PUTL(b, ",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, ",\"candidatesTokenCount\":");
	put_u64(b, k);
	PUTL(b, ",\"totalTokenCount\":");
	put_u64(b, (uint64_t)j->prompt_tokens + k);
	PUTL(b, "},\"modelVersion\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"responseId\":\"mock-");
	put_u64(b, j->n);
	PUTL(b, "\"}");
}

static void chat_body(struct mock_server *s, struct job *j, struct mock_buf *b)
{
	put_gemini_open(b);
	if (j->tool) {
		put_gemini_call(b, j);
	} else {
		PUTL(b, "{\"text\":\"");
		mock_put_text(b, s->o.seed, j->n, j->ntok);
		PUTL(b, "\"}");
	}
	put_gemini_close(b, j, j->ntok, true);
}

/* Stream event ev: whole SSE events, ended by CRLF CRLF as Google ends them. */
static void event(struct mock_server *s, const struct job *j, struct mock_buf *b, unsigned ev,
		  enum ev_kind k)
{
	switch (k) {
	case EV_TOKEN:
		PUTL(b, "data: ");
		put_gemini_open(b);
		if (j->tool) {
			put_gemini_call(b, j);
		} else {
			PUTL(b, "{\"text\":\"");
			put_token(s, j, b, ev);
			PUTL(b, "\"}");
		}
		/* The last token carries the finish reason, unless an error follows. */
		put_gemini_close(b, j, j->tool ? j->ntok : ev,
				 ev == j->nev && j->fault != MOCK_FAULT_STREAM_ERROR);
		PUTL(b, "\r\n\r\n");
		break;
	case EV_FINISH:
		if (j->nev)
			break; /* said by the last token */
		PUTL(b, "data: ");
		put_gemini_open(b);
		PUTL(b, "{\"text\":\"\"}");
		put_gemini_close(b, j, 0, true);
		PUTL(b, "\r\n\r\n");
		break;
	case EV_ERROR:
		PUTL(b, "data: {\"error\":{\"code\":500,\"message\":\"mock stream error\","
			"\"status\":\"INTERNAL\"}}\r\n\r\n");
		break;
	case EV_MALFORMED:
		PUTL(b, "data: {\"candidates\":[{\r\n\r\n");
		break;
	default:
		break;
	}
}

static void error_body(struct mock_buf *b, int st, const char *msg, size_t mlen,
		       const char *type, const char *code)
{
	PUTL(b, "{\"error\":{\"code\":");
	put_u64(b, (uint64_t)st);
	PUTL(b, ",\"message\":\"");
	put(b, msg, mlen);
	PUTL(b, "\",\"status\":\"");
	put(b, gemini_status(st), strlen(gemini_status(st)));
	if (st == 429)
		PUTL(b, "\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\","
			"\"retryDelay\":\"1s\"}]}}");
	else
		PUTL(b, "\"}}");
}

const struct mock_dialect mock_gemini = {
	.chat_body = chat_body,
	.event = event,
	.error_body = error_body,
	.malformed_chat = "{\"candidates\":[{",
};

/*
 * Ollama's wire dialect: /api/chat (a stream of NDJSON lines by default,
 * one per token, then one with "done":true and the counts; one object with
 * "stream":false), /api/embed, the error body {"error":"..."}.
 */
#include "mock_internal.h"

/* {"model":M,"created_at":...,"message":{"role":"assistant","content":" */
static void put_ollama_open(struct mock_buf *b, const struct job *j)
{
	PUTL(b, "{\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\","
		"\"content\":\"");
}

/* Ends the message (with the tool call when asked) and the object. */
static void put_ollama_close(struct mock_buf *b, const struct job *j, bool tool, bool done)
{
	put_ch(b, '"');
	if (tool) {
		PUTL(b, ",\"tool_calls\":[{\"function\":{\"name\":\"");
		put(b, j->tool_name, j->tool_name_len);
		PUTL(b, "\",\"arguments\":" TOOL_ARGS "}}]");
	}
	if (!done) {
		PUTL(b, "},\"done\":false}");
		return;
	}
	PUTL(b, "},\"done\":true,\"done_reason\":\"");
	if (j->length_cut && !j->tool)
		PUTL(b, "length");
	else
		PUTL(b, "stop");
	PUTL(b, "\",\"total_duration\":1000,\"load_duration\":0,\"prompt_eval_count\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, ",\"prompt_eval_duration\":0,\"eval_count\":");
	put_u64(b, j->ntok);
	PUTL(b, ",\"eval_duration\":0}");
}

static void chat_body(struct mock_server *s, struct job *j, struct mock_buf *b)
{
	put_ollama_open(b, j);
	if (!j->tool)
		mock_put_text(b, s->o.seed, j->n, j->ntok);
	put_ollama_close(b, j, j->tool, true);
}


static void embed_body(struct mock_server *s, struct job *j, struct mock_buf *b,
		       unsigned ninputs)
{
	PUTL(b, "{\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"embeddings\":[");
	for (unsigned i = 0; i < ninputs; i++) {
		if (i)
			put_ch(b, ',');
		mock_put_vector(b, s->o.seed, j->n, i);
	}
	PUTL(b, "],\"total_duration\":1000,\"load_duration\":0,\"prompt_eval_count\":");
	put_u64(b, j->prompt_tokens);
	put_ch(b, '}');
}

/* Stream event ev: whole NDJSON lines. */
static void event(struct mock_server *s, const struct job *j, struct mock_buf *b, unsigned ev,
		  enum ev_kind k)
{
	switch (k) {
	case EV_TOKEN:
		put_ollama_open(b, j);
		if (!j->tool)
			put_token(s, j, b, ev);
		put_ollama_close(b, j, j->tool, false);
		put_ch(b, '\n');
		break;
	case EV_FINISH:
		put_ollama_open(b, j);
		put_ollama_close(b, j, false, true);
		put_ch(b, '\n');
		break;
	case EV_ERROR:
		PUTL(b, "{\"error\":\"mock stream error\"}\n");
		break;
	case EV_MALFORMED:
		PUTL(b, "{\"model\":\"");
		put(b, j->model, j->model_len);
		PUTL(b, "\",\"message\":{\n");
		break;
	default:
		break;
	}
}

static void error_body(struct mock_buf *b, int st, const char *msg, size_t mlen,
		       const char *type, const char *code)
{
	PUTL(b, "{\"error\":\"");
	put(b, msg, mlen);
	PUTL(b, "\"}");
}

const struct mock_dialect mock_ollama = {
	.chat_body = chat_body,
	.event = event,
	.error_body = error_body,
	.embed_body = embed_body,
	.malformed_chat = "{\"model\":\"mock\",\"message\":{",
	.malformed_embed = "{\"model\":\"mock\",\"embeddings\":[[",
};

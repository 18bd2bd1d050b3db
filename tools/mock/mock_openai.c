/*
 * OpenAI's wire dialect: Chat Completions bodies and chunks (SSE, with
 * stream_options.include_usage), embeddings, the error body. The legacy
 * completions' bodies are mock_completions.c's.
 *
 * The text stream is the throughput benchmarks' path: every chunk starts
 * with the prefix start_stream built once per reply (j->prefix), and the
 * tool-call and error events are kept out of it (event_rare).
 */
#include "mock_internal.h"

static void put_usage(struct mock_buf *b, unsigned p, unsigned c)
{
	PUTL(b, "\"usage\":{\"prompt_tokens\":");
	put_u64(b, p);
	PUTL(b, ",\"completion_tokens\":");
	put_u64(b, c);
	PUTL(b, ",\"total_tokens\":");
	put_u64(b, (uint64_t)p + c);
	PUTL(b, ",\"prompt_tokens_details\":{\"cached_tokens\":0},"
		"\"completion_tokens_details\":{\"reasoning_tokens\":0}}");
}


static void put_openai_finish(struct mock_buf *b, const struct job *j)
{
	if (j->tool)
		PUTL(b, "tool_calls");
	else if (j->length_cut)
		PUTL(b, "length");
	else
		PUTL(b, "stop");
}

/* {"id":...,"type":"function","function":{"name":...,"arguments":"ARGS"}} */
static void put_openai_tool_call(struct mock_buf *b, const struct job *j, bool args)
{
	PUTL(b, "\"id\":\"call_mock_");
	put_u64(b, j->n);
	PUTL(b, "\",\"type\":\"function\",\"function\":{\"name\":\"");
	put(b, j->tool_name, j->tool_name_len);
	if (args)
		PUTL(b, "\",\"arguments\":\"" TOOL_ARGS_STR "\"}");
	else
		PUTL(b, "\",\"arguments\":\"\"}");
}

static void chat_body(struct mock_server *s, struct job *j, struct mock_buf *b)
{
	if (j->text_completion) {
		mock_completion_body(s, j, b);
		return;
	}
	PUTL(b, "{\"id\":\"chatcmpl-mock-");
	put_u64(b, j->n);
	PUTL(b, "\",\"object\":\"chat.completion\",\"created\":");
	put_u64(b, j->created);
	PUTL(b, ",\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
	if (j->tool) {
		PUTL(b, "null,\"tool_calls\":[{");
		put_openai_tool_call(b, j, true);
		PUTL(b, "}]");
	} else {
		put_ch(b, '"');
		mock_put_text(b, s->o.seed, j->n, j->ntok);
		put_ch(b, '"');
	}
	PUTL(b, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"");
	put_openai_finish(b, j);
	PUTL(b, "\"}],");
	put_usage(b, j->prompt_tokens, j->ntok);
	PUTL(b, ",\"system_fingerprint\":\"fp_mock\"}");
}

static void embed_body(struct mock_server *s, struct job *j, struct mock_buf *b,
		       unsigned ninputs)
{
	PUTL(b, "{\"object\":\"list\",\"data\":[");
	for (unsigned i = 0; i < ninputs; i++) {
		if (i)
			put_ch(b, ',');
		PUTL(b, "{\"object\":\"embedding\",\"index\":");
		put_u64(b, i);
		PUTL(b, ",\"embedding\":");
		mock_put_vector(b, s->o.seed, j->n, i);
		put_ch(b, '}');
	}
	PUTL(b, "],\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"usage\":{\"prompt_tokens\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, ",\"total_tokens\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, "}}");
}

/* The events of a tool call and the mid-stream error, kept out of the
 * text path below. */
static void event_rare(const struct job *j, struct mock_buf *b, unsigned ev, enum ev_kind k)
{
	if (k == EV_ERROR) {
		PUTL(b, "data: {\"error\":{\"message\":\"mock stream error\",\"type\":"
			"\"server_error\",\"param\":null,\"code\":null}}\n\n");
		return;
	}
	PUTL(b, "data: ");
	put(b, j->prefix.p, j->prefix.len);
	if (k == EV_START) {
		PUTL(b, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,"
			"\"tool_calls\":[{\"index\":0,");
		put_openai_tool_call(b, j, false);
		PUTL(b, "}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]");
	} else {
		PUTL(b, "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
			"{\"arguments\":\"");
		put(b, mock_tool_frag[ev - 1], strlen(mock_tool_frag[ev - 1]));
		PUTL(b, "\"}}]},\"logprobs\":null,\"finish_reason\":null}]");
	}
	if (j->include_usage)
		PUTL(b, ",\"usage\":null");
	PUTL(b, "}\n\n");
}


/* Stream event ev: "data: {...}\n\n". */
static void event(struct mock_server *s, const struct job *j, struct mock_buf *b, unsigned ev,
		  enum ev_kind k)
{
	if (j->text_completion) {
		mock_completion_event(s, j, b, ev, k);
		return;
	}
	if (j->tool && (k == EV_START || k == EV_TOKEN)) {
		event_rare(j, b, ev, k);
		return;
	}
	switch (k) {
	case EV_DONE:
		break;
	case EV_ERROR:
		event_rare(j, b, ev, k);
		break;
	case EV_MALFORMED:
		PUTL(b, "data: {\"id\":\"chatcmpl-mock\",\"choices\":[{\n\n");
		break;
	case EV_START:
	case EV_TOKEN:
	case EV_FINISH:
		PUTL(b, "data: ");
		put(b, j->prefix.p, j->prefix.len);
		if (k == EV_START) {
			PUTL(b, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
				"\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]");
		} else if (k == EV_TOKEN) {
			PUTL(b, "[{\"index\":0,\"delta\":{\"content\":\"");
			put_token(s, j, b, ev);
			PUTL(b, "\"},\"logprobs\":null,\"finish_reason\":null}]");
		} else {
			PUTL(b, "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"");
			put_openai_finish(b, j);
			PUTL(b, "\"}]");
		}
		if (j->include_usage)
			PUTL(b, ",\"usage\":null");
		PUTL(b, "}\n\n");
		break;
	case EV_USAGE:
		PUTL(b, "data: ");
		put(b, j->prefix.p, j->prefix.len);
		PUTL(b, "[],");
		put_usage(b, j->prompt_tokens, j->ntok);
		PUTL(b, "}\n\n");
		break;
	}
}

/* {"error":{"message","type","param","code"}} */
static void error_body(struct mock_buf *b, int st, const char *msg, size_t mlen,
		       const char *type, const char *code)
{
	PUTL(b, "{\"error\":{\"message\":\"");
	put(b, msg, mlen);
	PUTL(b, "\",\"type\":\"");
	put(b, type, strlen(type));
	PUTL(b, "\",\"param\":null,\"code\":");
	if (code) {
		put_ch(b, '"');
		put(b, code, strlen(code));
		put_ch(b, '"');
	} else {
		PUTL(b, "null");
	}
	PUTL(b, "}}");
}

const struct mock_dialect mock_openai = {
	.chat_body = chat_body,
	.event = event,
	.error_body = error_body,
	.embed_body = embed_body,
	.malformed_chat = "{\"id\":\"chatcmpl-mock\",\"choices\":[{",
	.malformed_embed = "{\"object\":\"list\",\"data\":[{",
};

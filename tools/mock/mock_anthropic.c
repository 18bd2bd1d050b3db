/*
 * Anthropic's wire dialect (Messages API): the message body, the SSE
 * events (message_start, content_block_start, ping, content_block_delta
 * per token, content_block_stop, message_delta, message_stop), the error
 * body {"type":"error","error":{"type","message"}}.
 */
#include "mock_internal.h"

static const char *anthropic_error_type(int st)
{
	switch (st) {
	case 401: return "authentication_error";
	case 403: return "permission_error";
	case 404: return "not_found_error";
	case 413: return "request_too_large";
	case 429: return "rate_limit_error";
	case 529: return "overloaded_error";
	default: return st < 500 ? "invalid_request_error" : "api_error";
	}
}

static void put_anthropic_stop(struct mock_buf *b, const struct job *j)
{
	if (j->tool)
		PUTL(b, "tool_use");
	else if (j->length_cut)
		PUTL(b, "max_tokens");
	else
		PUTL(b, "end_turn");
}

static void put_anthropic_tool_head(struct mock_buf *b, const struct job *j)
{
	PUTL(b, "{\"type\":\"tool_use\",\"id\":\"toolu_mock_");
	put_u64(b, j->n);
	PUTL(b, "\",\"name\":\"");
	put(b, j->tool_name, j->tool_name_len);
	PUTL(b, "\",\"input\":");
}

static void chat_body(struct mock_server *s, struct job *j, struct mock_buf *b)
{
	PUTL(b, "{\"id\":\"msg_mock_");
	put_u64(b, j->n);
	PUTL(b, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"content\":[");
	if (j->tool) {
		put_anthropic_tool_head(b, j);
		PUTL(b, TOOL_ARGS "}");
	} else {
		PUTL(b, "{\"type\":\"text\",\"text\":\"");
		mock_put_text(b, s->o.seed, j->n, j->ntok);
		PUTL(b, "\"}");
	}
	PUTL(b, "],\"stop_reason\":\"");
	put_anthropic_stop(b, j);
	PUTL(b, "\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, ",\"output_tokens\":");
	put_u64(b, j->ntok);
	PUTL(b, ",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}}");
}
/* Stream event ev: whole SSE events. */
static void event(struct mock_server *s, const struct job *j, struct mock_buf *b, unsigned ev,
		  enum ev_kind k)
{
	switch (k) {
	case EV_START:
		PUTL(b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"
			"{\"id\":\"msg_mock_");
		put_u64(b, j->n);
		PUTL(b, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
		put(b, j->model, j->model_len);
		PUTL(b, "\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
			"\"usage\":{\"input_tokens\":");
		put_u64(b, j->prompt_tokens);
		PUTL(b, ",\"output_tokens\":1}}}\n\n"
			"event: content_block_start\ndata: {\"type\":\"content_block_start\","
			"\"index\":0,\"content_block\":");
		if (j->tool) {
			put_anthropic_tool_head(b, j);
			PUTL(b, "{}}");
		} else {
			PUTL(b, "{\"type\":\"text\",\"text\":\"\"}");
		}
		PUTL(b, "}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n");
		break;
	case EV_TOKEN:
		PUTL(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
			"\"index\":0,\"delta\":");
		if (j->tool) {
			PUTL(b, "{\"type\":\"input_json_delta\",\"partial_json\":\"");
			put(b, mock_tool_frag[ev - 1], strlen(mock_tool_frag[ev - 1]));
		} else {
			PUTL(b, "{\"type\":\"text_delta\",\"text\":\"");
			put_token(s, j, b, ev);
		}
		PUTL(b, "\"}}\n\n");
		break;
	case EV_FINISH:
		PUTL(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\","
			"\"index\":0}\n\n"
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
			"{\"stop_reason\":\"");
		put_anthropic_stop(b, j);
		PUTL(b, "\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":");
		put_u64(b, j->ntok);
		PUTL(b, "}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
		break;
	case EV_ERROR:
		PUTL(b, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
			"\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
		break;
	case EV_MALFORMED:
		PUTL(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
			"\"index\":0,\"delta\":{\n\n");
		break;
	default:
		break;
	}
}

static void error_body(struct mock_buf *b, int st, const char *msg, size_t mlen,
		       const char *type, const char *code)
{
	PUTL(b, "{\"type\":\"error\",\"error\":{\"type\":\"");
	put(b, anthropic_error_type(st), strlen(anthropic_error_type(st)));
	PUTL(b, "\",\"message\":\"");
	put(b, msg, mlen);
	PUTL(b, "\"}}");
}

const struct mock_dialect mock_anthropic = {
	.chat_body = chat_body,
	.event = event,
	.error_body = error_body,
	.malformed_chat = "{\"id\":\"msg_mock\",\"type\":\"message\",\"content\":[{",
};

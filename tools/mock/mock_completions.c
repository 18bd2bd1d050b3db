/*
 * OpenAI's legacy completions endpoint (/v1/completions, the default of
 * vLLM's `vllm bench serve`), in the shapes of OpenAI's API reference and
 * vLLM's CompletionResponse / CompletionStreamResponse:
 *
 *   whole    {"id":"cmpl-mock-N","object":"text_completion","created","model",
 *             "choices":[{"index":0,"text":"...","logprobs":null,
 *             "finish_reason":"length"|"stop"}],"usage":{...}}
 *   stream   data: {same keys,"choices":[{"index":0,"text":" word",
 *             "logprobs":null,"finish_reason":null}]} per token, then one
 *             with "text":"" and the finish_reason, then (include_usage) one
 *             with "choices":[] and the usage, then data: [DONE]. With
 *             include_usage every chunk before the last says "usage":null.
 *
 * It is the OpenAI dialect (D_OPENAI: errors, head, [DONE]); only the
 * bodies differ, so mock_openai.c hands a job with j->text_completion here.
 */
#include "mock_internal.h"

static void put_completion_usage(struct mock_buf *b, const struct job *j)
{
	PUTL(b, "\"usage\":{\"prompt_tokens\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, ",\"completion_tokens\":");
	put_u64(b, j->ntok);
	PUTL(b, ",\"total_tokens\":");
	put_u64(b, (uint64_t)j->prompt_tokens + j->ntok);
	put_ch(b, '}');
}

static void put_completion_finish(struct mock_buf *b, const struct job *j)
{
	if (j->length_cut)
		PUTL(b, "\"length\"");
	else
		PUTL(b, "\"stop\"");
}

void mock_completion_prefix(struct job *j, uint64_t n)
{
	j->prefix.len = 0;
	PUTL(&j->prefix, "{\"id\":\"cmpl-mock-");
	put_u64(&j->prefix, n);
	PUTL(&j->prefix, "\",\"object\":\"text_completion\",\"created\":");
	put_u64(&j->prefix, j->created);
	PUTL(&j->prefix, ",\"model\":\"");
	put(&j->prefix, j->model, j->model_len);
	PUTL(&j->prefix, "\",\"choices\":");
}

void mock_completion_body(struct mock_server *s, struct job *j, struct mock_buf *b)
{
	PUTL(b, "{\"id\":\"cmpl-mock-");
	put_u64(b, j->n);
	PUTL(b, "\",\"object\":\"text_completion\",\"created\":");
	put_u64(b, j->created);
	PUTL(b, ",\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"choices\":[{\"index\":0,\"text\":\"");
	mock_put_text(b, s->o.seed, j->n, j->ntok);
	PUTL(b, "\",\"logprobs\":null,\"finish_reason\":");
	put_completion_finish(b, j);
	PUTL(b, "}],");
	put_completion_usage(b, j);
	put_ch(b, '}');
}

/* Stream event ev: "data: {...}\n\n"; nothing opens the stream. */
void mock_completion_event(struct mock_server *s, const struct job *j, struct mock_buf *b,
			   unsigned ev, enum ev_kind k)
{
	switch (k) {
	case EV_TOKEN:
	case EV_FINISH:
		PUTL(b, "data: ");
		put(b, j->prefix.p, j->prefix.len);
		PUTL(b, "[{\"index\":0,\"text\":\"");
		if (k == EV_TOKEN) {
			put_token(s, j, b, ev);
			PUTL(b, "\",\"logprobs\":null,\"finish_reason\":null}]");
		} else {
			PUTL(b, "\",\"logprobs\":null,\"finish_reason\":");
			put_completion_finish(b, j);
			PUTL(b, "}]");
		}
		if (j->include_usage)
			PUTL(b, ",\"usage\":null");
		PUTL(b, "}\n\n");
		break;
	case EV_USAGE:
		PUTL(b, "data: ");
		put(b, j->prefix.p, j->prefix.len);
		PUTL(b, "[],");
		put_completion_usage(b, j);
		PUTL(b, "}\n\n");
		break;
	case EV_ERROR:
		PUTL(b, "data: {\"error\":{\"message\":\"mock stream error\",\"type\":"
			"\"server_error\",\"param\":null,\"code\":null}}\n\n");
		break;
	case EV_MALFORMED:
		PUTL(b, "data: {\"id\":\"cmpl-mock\",\"choices\":[{\n\n");
		break;
	default: /* EV_START: nothing; EV_DONE is framed by mock_stream.c */
		break;
	}
}

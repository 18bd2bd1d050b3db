/* The OpenAI dialect (and every OpenAI-compatible server): responses and
 * "data: {chat.completion.chunk}" ... "data: [DONE]" streams into struct
 * reply, and the legacy text completions' (choices[].text where chat has
 * choices[].message.content or .delta.content: the two shapes never meet,
 * so one parser reads both). Its request body is the unified one
 * (provider.c). Two rows use it: openai/ and mock/ (any OpenAI-compatible
 * server at a given URL). */
#include "provider/dialect.h"
#include "provider/dialect_util.h"

#include <stdio.h>
#include <string.h>

/* Maps an HTTP error status plus the provider's error body to a code.
 * The body decides between rate limiting and an exhausted quota. */
static int classify_status(int status, const struct json_doc *d, bool have_doc)
{
	int err_obj = have_doc ? json_object_get(d, 0, "error") : -1;
	if (err_obj >= 0 && d->tok[err_obj].type == JSON_OBJECT) {
		int code = json_object_get(d, err_obj, "code");
		int type = json_object_get(d, err_obj, "type");
		if ((code >= 0 && json_string_eq(d, code, "insufficient_quota")) ||
		    (type >= 0 && json_string_eq(d, type, "insufficient_quota")))
			return LR_EQUOTA;
		if (code >= 0 && json_string_eq(d, code, "context_length_exceeded"))
			return LR_ECONTEXT;
	}
	return provider_status_code(status);
}

/* What a success body carries, picked out while json_scan validates it. */
struct body_fields {
	struct reply *r;
	unsigned choices_closed;    /* choices[] elements seen whole */
	unsigned calls_closed;      /* choices[0].message.tool_calls[] elements seen whole */
	int error;
};

/* The reply text, a raw JSON string span. */
static void body_text(struct body_fields *bf, const char *v, size_t len)
{
	int ret = json_unescape_append(reply_text_buf(bf->r, len), v, len); /* LR_ENOMEM or LR_EPROTO */
	if (ret && !bf->error)
		bf->error = ret;
}

/* The key into level (below p->depth) is lit: the length first, which
 * turns most keys away (an array's NULL key has length 0). */
#define KEY_EQ(p, level, lit) \
	((p)->key_len[level] == sizeof(lit) - 1 && memcmp((p)->key[level], lit, sizeof(lit) - 1) == 0)

/* usage.*: the token counts (p->depth >= 2, a number). Not inlined: its
 * calls would give body_field a stack frame, which every call of it
 * would set up and tear down (body_field's other ways out are jumps). */
__attribute__((noinline)) static void body_usage_field(struct body_fields *bf, const struct json_scan_path *p, const char *v,
                             size_t len)
{
	struct reply *r = bf->r;
	if (p->depth == 2) {
		if (KEY_EQ(p, 1, "prompt_tokens"))
			r->usage.input_tokens = scanned_count(v, len);
		else if (KEY_EQ(p, 1, "completion_tokens"))
			r->usage.output_tokens = scanned_count(v, len);
	} else if (p->depth == 3 && KEY_EQ(p, 1, "prompt_tokens_details") && KEY_EQ(p, 2, "cached_tokens")) {
		r->usage.cached_input_tokens = scanned_count(v, len);
	}
}

/* Inside choices[i] (p->depth >= 2): the first choice's text, finish
 * reason and tool calls; the others are counted as they close. */
__attribute__((noinline)) static void body_choice_field(struct body_fields *bf, const struct json_scan_path *p,
                                                        enum json_type type, const char *v, size_t len)
{
	struct reply *r = bf->r;
	if (p->depth == 2) {
		if (type == JSON_OBJECT)
			bf->choices_closed++;
		return;
	}
	if (bf->choices_closed != 0)
		return; /* only the first choice is read */
	switch (p->depth) {
	case 3:
		if (type == JSON_STRING && KEY_EQ(p, 2, "finish_reason"))
			reply_copy_field(r->finish_reason, sizeof(r->finish_reason), v, len);
		else if (type == JSON_STRING && KEY_EQ(p, 2, "text"))
			body_text(bf, v, len); /* a text_completion's choices[0].text */
		break;
	case 4:
		/* choices[0].message.content: the reply text */
		if (type == JSON_STRING && KEY_EQ(p, 3, "content") && KEY_EQ(p, 2, "message"))
			body_text(bf, v, len);
		break;
	case 5:
		if (type == JSON_OBJECT && KEY_EQ(p, 3, "tool_calls"))
			bf->calls_closed++;
		break;
	case 6:
	case 7:
		/* choices[0].message.tool_calls[j].id / .function.name / .function.arguments */
		if (type != JSON_STRING || !KEY_EQ(p, 2, "message") || !KEY_EQ(p, 3, "tool_calls"))
			break;
		if (p->depth == 6 && KEY_EQ(p, 5, "id"))
			reply_tool(r, (int)bf->calls_closed, v, len, NULL, 0, NULL, 0, true);
		else if (p->depth == 7 && KEY_EQ(p, 5, "function") && KEY_EQ(p, 6, "name"))
			reply_tool(r, (int)bf->calls_closed, NULL, 0, v, len, NULL, 0, true);
		else if (p->depth == 7 && KEY_EQ(p, 5, "function") && KEY_EQ(p, 6, "arguments"))
			reply_tool(r, (int)bf->calls_closed, NULL, 0, NULL, 0, v, len, true);
		break;
	}
}

/* The scanner's callback, for every scalar and container of a success
 * body (two dozen per answer): dispatched on the top-level key's length
 * before any compare, choices[] and usage in calls of their own. */
static void body_field(void *ctx, const struct json_scan_path *p, enum json_type type, const char *v,
                       size_t len)
{
	struct body_fields *bf = ctx;
	if (p->depth == 0)
		return;
	size_t l0 = p->key_len[0];
	if (l0 == 7) { /* "choices"; no other key wanted has 7 bytes */
		if (p->depth >= 2 && memcmp(p->key[0], "choices", 7) == 0)
			body_choice_field(bf, p, type, v, len);
		return;
	}
	if (p->depth == 1) {
		/* The model and the id. */
		if (type != JSON_STRING)
			return;
		if (KEY_EQ(p, 0, "model"))
			reply_copy_field(bf->r->model, sizeof(bf->r->model), v, len);
		else if (KEY_EQ(p, 0, "id"))
			reply_copy_field(bf->r->id, sizeof(bf->r->id), v, len);
		return;
	}
	if (type == JSON_PRIMITIVE && KEY_EQ(p, 0, "usage"))
		body_usage_field(bf, p, v, len);
}

static bool starts_with_object(const char *body, size_t len)
{
	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
		i++;
	return i < len && body[i] == '{';
}

static void openai_parse(int status, const char *body, size_t len, struct json_doc *doc, struct reply *r,
                  bool *body_is_json)
{
	if (status >= 200 && status < 300) {
		/* The hot path: one validating pass, no tokens. The callback
		 * must not fire deltas: a whole response is not a stream. */
		lr_delta_fn fn = r->fn;
		r->fn = NULL;
		struct body_fields bf = {.r = r};
		bool ok = starts_with_object(body, len) && json_scan(body, len, body_field, &bf);
		r->fn = fn;
		if (!ok) {
			memset(&r->usage, 0, sizeof(r->usage));
			r->model[0] = '\0';
			char why[96];
			reply_fail(r, LR_EPROTO, "HTTP %d response body is not a JSON object: %s", status,
			           json_invalid_reason(body, len, why, sizeof(why)));
			return;
		}
		*body_is_json = true;
		if (bf.error)
			reply_fail(r, bf.error, bf.error == LR_ENOMEM ? "out of memory decoding the reply text"
			                                               : "the reply text could not be decoded");
		return;
	}
	bool have_doc = len > 0 && json_parse(doc, body, len) == 0 && doc->count > 0 &&
	                doc->tok[0].type == JSON_OBJECT;
	*body_is_json = have_doc;
	r->err.code = classify_status(status, doc, have_doc);
	/* OpenAI nests the message under "error"; vLLM and others put it at
	 * the top ({"object":"error","message":...}). */
	int msg = have_doc ? json_path(doc, 0, "error.message") : -1;
	if (msg < 0 && have_doc)
		msg = json_object_get(doc, 0, "message");
	if (msg < 0 && have_doc && (msg = json_object_get(doc, 0, "error")) >= 0 &&
	    doc->tok[msg].type != JSON_STRING)
		msg = -1; /* {"error":"text"} (llama.cpp, Ollama's /v1) */
	provider_error_message(r, status, doc, msg);
	/* Servers without OpenAI's code still say so in words. */
	if (r->err.code == LR_EBADREQUEST && (strstr(r->err.message, "maximum context length") ||
	                                   strstr(r->err.message, "context length") ||
	                                   strstr(r->err.message, "context window")))
		r->err.code = LR_ECONTEXT;
}

/* ---- streams ---- */

/* What one chunk event carries, picked out while json_scan validates it. */
struct chunk_fields {
	struct reply *r;
	const char *content;        /* raw span of choices[i].delta.content (or .text) */
	size_t content_len;
	int64_t index;
	const char *finish;         /* raw span of choices[i].finish_reason (a string) */
	size_t finish_len;
	/* choices[i].delta.tool_calls[j] being read */
	int64_t tool_index;
	const char *tool_id, *tool_name, *tool_args;
	size_t tool_id_len, tool_name_len, tool_args_len;
	bool tool_seen;             /* choices[i] held a tool-call delta */
	bool error;                 /* an {"error":{...}} event */
	const char *error_message;
	size_t error_message_len;
};

__attribute__((noinline)) static void chunk_emit_choice(struct chunk_fields *cf)
{
	struct reply *r = cf->r;
	unsigned long before = r->deltas;
	char finish[32] = "";
	if (cf->finish)
		reply_copy_field(finish, sizeof(finish), cf->finish, cf->finish_len);
	/* Text and a finish reason in one event (vLLM's last chunk) are one delta. */
	if (cf->content)
		reply_text_finish(r, (int)cf->index, cf->content, cf->content_len, true, finish);
	else if (cf->finish)
		reply_finish(r, (int)cf->index, finish);
	/* Nothing said (the role-only first chunk, "content":""), nor any
	 * tool call in it: the event still reaches the caller. */
	if (r->deltas == before && !cf->tool_seen)
		reply_empty_event(r, (int)cf->index);
	cf->content = cf->finish = NULL;
	cf->index = 0;
	cf->tool_seen = false;
}

__attribute__((noinline)) static void chunk_emit_tool(struct chunk_fields *cf)
{
	cf->tool_seen = true;
	if (cf->index == 0)
		reply_tool(cf->r, (int)cf->tool_index, cf->tool_id, cf->tool_id_len, cf->tool_name,
		           cf->tool_name_len, cf->tool_args, cf->tool_args_len, true);
	cf->tool_index = 0;
	cf->tool_id = cf->tool_name = cf->tool_args = NULL;
	cf->tool_id_len = cf->tool_name_len = cf->tool_args_len = 0;
}

/* Outside choices[]: the model, the id, usage and an error. The keys are
 * told apart by their length first (most keys here are not wanted). */
__attribute__((noinline)) static void chunk_top_field(struct chunk_fields *cf, const struct json_scan_path *p,
                                                      enum json_type type, const char *v, size_t len)
{
	struct reply *r = cf->r;
	switch (p->key_len[0]) {
	case 2:
		if (p->depth == 1 && type == JSON_STRING && KEY_IS(p, 0, "id"))
			reply_copy_field(r->id, sizeof(r->id), v, len);
		break;
	case 5:
		if (p->depth == 1) {
			if (type == JSON_STRING && KEY_IS(p, 0, "model"))
				reply_copy_field(r->model, sizeof(r->model), v, len);
			else if (type == JSON_OBJECT && KEY_IS(p, 0, "error"))
				cf->error = true;
		} else if (p->depth == 2 && type == JSON_PRIMITIVE && KEY_IS(p, 0, "usage")) {
			if (KEY_IS(p, 1, "prompt_tokens"))
				r->usage.input_tokens = scanned_count(v, len);
			else if (KEY_IS(p, 1, "completion_tokens"))
				r->usage.output_tokens = scanned_count(v, len);
		} else if (p->depth == 3 && type == JSON_PRIMITIVE && KEY_IS(p, 0, "usage") &&
		           KEY_IS(p, 1, "prompt_tokens_details") && KEY_IS(p, 2, "cached_tokens")) {
			r->usage.cached_input_tokens = scanned_count(v, len);
		} else if (p->depth == 2 && type == JSON_STRING && KEY_IS(p, 0, "error") &&
		           KEY_IS(p, 1, "message")) {
			cf->error_message = v;
			cf->error_message_len = len;
		}
		break;
	}
}

/* Inside choices[i]: keys are [choices, (index), field, ...]. */
__attribute__((noinline)) static void chunk_choice_field(struct chunk_fields *cf, const struct json_scan_path *p,
                                                         enum json_type type, const char *v, size_t len)
{
	switch (p->depth) {
	case 2:
		if (type == JSON_OBJECT)
			chunk_emit_choice(cf); /* choices[i] closed: one delta */
		break;
	case 3:
		if (KEY_IS(p, 2, "index") && type == JSON_PRIMITIVE)
			cf->index = scanned_count(v, len);
		else if (KEY_IS(p, 2, "finish_reason") && type == JSON_STRING)
			cf->finish = v, cf->finish_len = len;
		else if (KEY_IS(p, 2, "text") && type == JSON_STRING)
			cf->content = v, cf->content_len = len; /* a text_completion chunk */
		break;
	case 4:
		if (KEY_IS(p, 2, "delta") && KEY_IS(p, 3, "content") && type == JSON_STRING)
			cf->content = v, cf->content_len = len;
		break;
	case 5:
		if (KEY_IS(p, 2, "delta") && KEY_IS(p, 3, "tool_calls") && type == JSON_OBJECT)
			chunk_emit_tool(cf);
		break;
	case 6:
	case 7:
		if (!KEY_IS(p, 2, "delta") || !KEY_IS(p, 3, "tool_calls"))
			break;
		if (p->depth == 6 && KEY_IS(p, 5, "index") && type == JSON_PRIMITIVE)
			cf->tool_index = scanned_count(v, len);
		else if (p->depth == 6 && KEY_IS(p, 5, "id") && type == JSON_STRING)
			cf->tool_id = v, cf->tool_id_len = len;
		else if (p->depth == 7 && KEY_IS(p, 5, "function") && type == JSON_STRING) {
			if (KEY_IS(p, 6, "name"))
				cf->tool_name = v, cf->tool_name_len = len;
			else if (KEY_IS(p, 6, "arguments"))
				cf->tool_args = v, cf->tool_args_len = len;
		}
		break;
	}
}

/* The scanner's callback, kept small (its two halves are calls of their
 * own, reached by a jump): most values of a chunk are wanted by neither. */
static void chunk_field(void *ctx, const struct json_scan_path *p, enum json_type type, const char *v,
                        size_t len)
{
	if (p->depth >= 2 && KEY_IS(p, 0, "choices"))
		chunk_choice_field(ctx, p, type, v, len);
	else if (p->depth >= 1)
		chunk_top_field(ctx, p, type, v, len);
}

static int openai_sse_event(struct stream_decoder *sd, const struct sse_event *ev)
{
	struct reply *r = sd->r;
	if (r->done)
		return 0;
	if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
		r->done = true;
		r->events++;
		return 0;
	}
	struct chunk_fields cf = {.r = r};
	if (!json_scan(ev->data, ev->data_len, chunk_field, &cf))
		return stream_not_json(sd, 0, ev->data, ev->data_len, false);
	r->events++;
	if (r->err.code) {
		sd->fatal = true;
		return r->err.code;
	}
	if (cf.error) {
		char text[300] = "";
		if (cf.error_message) {
			struct buf m = {0}; /* owner: this block */
			if (json_unescape_append(&m, cf.error_message, cf.error_message_len) == 0 &&
			    buf_append(&m, "", 1) == 0)
				snprintf(text, sizeof(text), ": %s", m.data);
			buf_free(&m);
		}
		reply_fail(r, LR_ESERVER, "error event in the stream%s", text);
	}
	return 0;
}

/* ---- the rows ---- */

static int openai_path(struct provider_request *out, enum lr_endpoint ep, const char *base,
                       const char *model, size_t model_len, const char **why)
{
	const char *rest = ep == LR_ENDPOINT_EMBEDDINGS ? "/embeddings"
	                 : ep == LR_ENDPOINT_COMPLETIONS ? "/completions"
	                                                 : "/chat/completions";
	return path_join(&out->path, base, NULL, "", rest);
}

const struct provider_row openai_row = {
	.name = "openai",
	.base_url = "https://api.openai.com/v1",
	.base_env = "OPENAI_BASE_URL",
	.key_env = "OPENAI_API_KEY",
	.key_form = KEY_BEARER,
	.request_id_header = "x-request-id",
	.ratelimit_requests_header = "x-ratelimit-remaining-requests",
	.ratelimit_tokens_headers = {"x-ratelimit-remaining-tokens"},
	.path = openai_path,
	.parse_body = openai_parse,
	.sse_event = openai_sse_event,
};

/* OpenAI's response headers need no naming here: every row answers to
 * them. */
const struct provider_row mock_row = {
	.name = "mock",
	.base_env = "LLMRING_MOCK_URL",
	.key_form = KEY_BEARER,
	.path = openai_path,
	.parse_body = openai_parse,
	.sse_event = openai_sse_event,
};

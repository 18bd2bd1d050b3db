/*
 * Gemini generateContent / streamGenerateContent?alt=sse: the unified
 * request translated into contents/parts (roles user and model, system
 * lifted into systemInstruction, functionCall / functionResponse parts,
 * generationConfig), responses and SSE chunks normalised into struct reply.
 */
#include "provider/dialect.h"
#include "provider/dialect_util.h"

#include <stdio.h>
#include <string.h>

static int put_parts(struct buf *out, const struct json_doc *d, int content, bool *any,
                     const char **why)
{
	struct buf url = {0}; /* owner: this function */
	int ret = 0;
	const struct json_token *t = &d->tok[content];
	if (t->type == JSON_STRING) {
		if (t->end == t->start)
			return 0; /* Gemini refuses empty text parts */
		buf_puts(out, *any ? ",{\"text\":" : "{\"text\":");
		json_copy_value(out, d, content);
		*any = true;
		return buf_puts(out, "}");
	}
	if (t->type != JSON_ARRAY)
		return 0;
	int part = content + 1;
	for (int k = 0; k < t->size && !ret; k++, part = json_skip(d, part)) {
		int type = json_object_get(d, part, "type");
		ret = buf_puts(out, *any ? "," : "");
		if (!ret && type >= 0 && json_string_eq(d, type, "text")) {
			int text = json_object_get(d, part, "text");
			buf_puts(out, "{\"text\":");
			if (text >= 0)
				json_copy_value(out, d, text);
			else
				buf_puts(out, "\"\"");
			ret = buf_puts(out, "}");
		} else if (!ret && type >= 0 && json_string_eq(d, type, "image_url")) {
			const char *mime, *data;
			size_t mime_len, data_len;
			if (image_part(d, part, &url, &mime, &mime_len, &data, &data_len) || !data) {
				*why = "Gemini takes images as base64 data: URLs";
				ret = LR_EUNSUPPORTED;
				break;
			}
			buf_puts(out, "{\"inlineData\":{\"mimeType\":");
			json_append_string(out, mime, mime_len);
			buf_puts(out, ",\"data\":");
			json_append_string(out, data, data_len);
			ret = buf_puts(out, "}}");
		} else if (!ret) {
			*why = "Gemini takes text and image_url content parts only";
			ret = LR_EUNSUPPORTED;
		}
		*any = true;
	}
	buf_free(&url);
	return ret;
}

static int put_function_response(struct buf *out, const struct json_doc *d, int msgs, int m,
                                 const char **why)
{
	int id = json_object_get(d, m, "tool_call_id");
	int name = id >= 0 ? tool_call_name(d, msgs, m, id) : -1;
	if (name < 0)
		name = json_object_get(d, m, "name");
	if (name < 0) {
		*why = "a tool message must answer an earlier assistant tool call (Gemini needs its name)";
		return LR_EINVAL;
	}
	struct buf text = {0}; /* owner: this function */
	struct json_doc inner = {0}; /* owner: this function */
	int ret = content_text(&text, d, json_object_get(d, m, "content"));
	if (ret) {
		buf_free(&text); /* a part may have been appended */
		if (ret == LR_EINVAL)
			*why = "a tool message's content is not text";
		return ret; /* LR_EINVAL or LR_ENOMEM */
	}
	buf_puts(out, "{\"functionResponse\":{\"name\":");
	json_copy_value(out, d, name);
	ret = buf_puts(out, ",\"response\":");
	/* response must be an object: a JSON object result goes as it is. */
	int prc = text.len ? json_parse(&inner, text.data, text.len) : LR_EPROTO;
	if (prc == LR_ENOMEM && !ret)
		ret = LR_ENOMEM; /* else a JSON result would be sent as text */
	bool object = prc == 0 && inner.count > 0 && inner.tok[0].type == JSON_OBJECT;
	if (!ret && object) {
		ret = buf_append(out, text.data, text.len);
	} else if (!ret) {
		buf_puts(out, "{\"content\":");
		json_append_string(out, text.data ? text.data : "", text.len);
		ret = buf_puts(out, "}");
	}
	if (!ret)
		ret = buf_puts(out, "}}");
	json_doc_free(&inner);
	buf_free(&text);
	return ret;
}

/* An assistant message's tool calls as functionCall parts. */
static int put_function_calls(struct buf *out, const struct json_doc *d, int calls, bool *any,
                              const char **why)
{
	int c = calls + 1, ret = 0;
	for (int j = 0; !ret && j < d->tok[calls].size; j++, c = json_skip(d, c)) {
		int name = json_path(d, c, "function.name");
		if (name < 0) {
			*why = "a tool call needs a function name";
			return LR_EINVAL;
		}
		buf_puts(out, *any ? ",{\"functionCall\":{\"name\":" : "{\"functionCall\":{\"name\":");
		json_copy_value(out, d, name);
		ret = buf_puts(out, ",\"args\":");
		if (!ret && (ret = arguments_object(out, d, json_path(d, c, "function.arguments"))) == LR_EINVAL)
			*why = "tool call arguments are not a JSON object";
		if (!ret)
			ret = buf_puts(out, "}}");
		*any = true;
	}
	return ret;
}

static const struct turn_style contents_style = {
	.user_open = "{\"role\":\"user\",\"parts\":[",
	.assistant_open = "{\"role\":\"model\",\"parts\":[",
	.tool_result = put_function_response,
	.content_items = put_parts,
	.call_items = put_function_calls,
};

/* A top-level field into generationConfig under Gemini's name. */
static int put_config(struct buf *cfg, const struct json_doc *d, const char *from, const char *to)
{
	int v = json_object_get(d, 0, from);
	if (v < 0 || (d->tok[v].type == JSON_PRIMITIVE && d->text[d->tok[v].start] == 'n'))
		return 0; /* absent or null */
	buf_puts(cfg, cfg->len ? ",\"" : "\"");
	buf_puts(cfg, to);
	buf_puts(cfg, "\":");
	return !strcmp(to, "stopSequences") ? put_as_list(cfg, d, v) : json_copy_value(cfg, d, v);
}

static int put_tools(struct buf *out, const struct json_doc *d, int tools, const char **why)
{
	int ret = buf_puts(out, ",\"tools\":[{\"functionDeclarations\":[");
	if (!ret)
		ret = put_function_list(out, d, tools, "parameters", NULL, why);
	if (!ret)
		ret = buf_puts(out, "]}]");
	return ret;
}

static int put_tool_config(struct buf *out, const struct json_doc *d, int tc, const char **why)
{
	int ret = buf_puts(out, ",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":");
	if (ret)
		return ret;
	if (json_string_eq(d, tc, "auto"))
		return buf_puts(out, "\"AUTO\"}}");
	if (json_string_eq(d, tc, "none"))
		return buf_puts(out, "\"NONE\"}}");
	if (json_string_eq(d, tc, "required"))
		return buf_puts(out, "\"ANY\"}}");
	int name = json_path(d, tc, "function.name");
	if (name < 0) {
		*why = "tool_choice is \"auto\", \"none\", \"required\" or a function";
		return LR_EINVAL;
	}
	buf_puts(out, "\"ANY\",\"allowedFunctionNames\":[");
	json_copy_value(out, d, name);
	return buf_puts(out, "]}}");
}

/* The model is named in the path, not the body. */
static int gemini_build(const struct json_doc *d, const char *model, struct provider_request *pr,
                        const char **why)
{
	int msgs = messages_array(d, why);
	if (msgs < 0)
		return msgs;
	struct buf *out = &pr->body;
	struct buf system = {0}, cfg = {0}; /* owner: this function */
	buf_puts(out, "{\"contents\":[");
	int ret = put_turns(out, &system, d, msgs, &contents_style, why);
	if (!ret && system.len) {
		buf_puts(out, ",\"systemInstruction\":{\"parts\":[{\"text\":");
		json_append_string(out, system.data, system.len);
		ret = buf_puts(out, "}]}");
	}
	static const char *const map[][2] = {
		{"temperature", "temperature"}, {"top_p", "topP"}, {"top_k", "topK"},
		{"max_tokens", "maxOutputTokens"}, {"max_completion_tokens", "maxOutputTokens"},
		{"stop", "stopSequences"}, {"seed", "seed"}, {"n", "candidateCount"},
		{"presence_penalty", "presencePenalty"}, {"frequency_penalty", "frequencyPenalty"},
	};
	for (size_t i = 0; !ret && i < sizeof(map) / sizeof(map[0]); i++) {
		if (i == 3 && json_object_get(d, 0, "max_completion_tokens") >= 0)
			continue; /* the newer name wins */
		ret = put_config(&cfg, d, map[i][0], map[i][1]);
	}
	int rf = json_object_get(d, 0, "response_format");
	if (!ret && rf >= 0) {
		int type = json_object_get(d, rf, "type");
		int schema = json_path(d, rf, "json_schema.schema");
		if (type >= 0 && (json_string_eq(d, type, "json_object") || json_string_eq(d, type, "json_schema"))) {
			ret = buf_puts(&cfg, cfg.len ? ",\"responseMimeType\":\"application/json\""
			                             : "\"responseMimeType\":\"application/json\"");
			if (!ret && schema >= 0) {
				ret = buf_puts(&cfg, ",\"responseJsonSchema\":");
				if (!ret)
					ret = json_copy_value(&cfg, d, schema);
			}
		} else if (!(type >= 0 && json_string_eq(d, type, "text"))) {
			*why = "response_format is text, json_object or json_schema";
			ret = LR_EINVAL;
		}
	}
	if (!ret && cfg.len)
		ret = put_object_member(out, "generationConfig", &cfg);
	int tools = json_object_get(d, 0, "tools");
	if (!ret && tools >= 0 && d->tok[tools].type == JSON_ARRAY && d->tok[tools].size > 0) {
		ret = put_tools(out, d, tools, why);
		int tc = json_object_get(d, 0, "tool_choice");
		if (!ret && tc >= 0)
			ret = put_tool_config(out, d, tc, why);
	}
	if (!ret)
		ret = buf_puts(out, "}");
	buf_free(&system);
	buf_free(&cfg);
	return ret;
}

static bool model_is_path_safe(const char *m, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = m[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.' || c == ':' || c == '/'))
			return false;
	}
	return true;
}

/* {base}/v1beta/models/{model}:generateContent (or the SSE stream's). */
static int gemini_path(struct provider_request *out, enum lr_endpoint ep, const char *base,
                       const char *model, size_t model_len, const char **why)
{
	if (ep == LR_ENDPOINT_EMBEDDINGS) {
		*why = "Gemini embeddings are not supported";
		return LR_EUNSUPPORTED;
	}
	if (ep == LR_ENDPOINT_COMPLETIONS) {
		*why = "Gemini has no text-completions endpoint";
		return LR_EUNSUPPORTED;
	}
	if (model_len > 7 && memcmp(model, "models/", 7) == 0)
		model += 7, model_len -= 7;
	if (!model_is_path_safe(model, model_len)) {
		*why = "a Gemini model name may hold only letters, digits and - _ . :";
		return LR_EINVAL;
	}
	/* A base ending in Gemini's stable version /v1 keeps it. */
	const char *version = ends_with(base, strlen(base), "/v1") ? "/v1" : "/v1beta";
	path_join(&out->path, base, NULL, version, "/models/");
	buf_append(&out->path, model, model_len);
	return buf_puts(&out->path, out->stream ? ":streamGenerateContent?alt=sse" : ":generateContent");
}

/* ---- responses ---- */

/* Gemini's finishReason f in OpenAI's words (calls: the reply made tool
 * calls). */
static const char *finish_of(const char *f, size_t n, bool calls)
{
	static const char *const filtered[] = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT",
	                                       "SPII", "IMAGE_SAFETY"};
	if (span_is(f, n, "MAX_TOKENS"))
		return "length";
	for (size_t i = 0; i < sizeof(filtered) / sizeof(filtered[0]); i++)
		if (span_is(f, n, filtered[i]))
			return "content_filter";
	return calls ? "tool_calls" : "stop";
}

/* One GenerateContentResponse (a whole reply or one stream chunk). */
static void take_chunk(struct reply *r, const struct json_doc *d, int *calls)
{
	int v;
	if ((v = json_object_get(d, 0, "modelVersion")) >= 0 && d->tok[v].type == JSON_STRING)
		json_get_string(d, v, r->model, sizeof(r->model));
	if ((v = json_object_get(d, 0, "responseId")) >= 0 && d->tok[v].type == JSON_STRING)
		json_get_string(d, v, r->id, sizeof(r->id));
	int um = json_object_get(d, 0, "usageMetadata");
	if (um >= 0) {
		int64_t n, thoughts = 0;
		if ((v = json_object_get(d, um, "thoughtsTokenCount")) >= 0)
			json_get_int(d, v, &thoughts);
		if ((v = json_object_get(d, um, "promptTokenCount")) >= 0 && json_get_int(d, v, &n))
			r->usage.input_tokens = n;
		if ((v = json_object_get(d, um, "candidatesTokenCount")) >= 0 && json_get_int(d, v, &n))
			r->usage.output_tokens = n + thoughts; /* thinking is billed as output */
		if ((v = json_object_get(d, um, "cachedContentTokenCount")) >= 0 && json_get_int(d, v, &n))
			r->usage.cached_input_tokens = n;
	}
	int cands = json_object_get(d, 0, "candidates");
	if (cands < 0 || d->tok[cands].type != JSON_ARRAY || d->tok[cands].size == 0) {
		if (json_object_get(d, 0, "promptFeedback") >= 0)
			reply_finish(r, 0, "content_filter"); /* the prompt was blocked */
		return;
	}
	int c = cands + 1;
	for (int k = 0; k < d->tok[cands].size; k++, c = json_skip(d, c)) {
		int64_t index = k;
		if ((v = json_object_get(d, c, "index")) >= 0)
			json_get_int(d, v, &index);
		int parts = json_path(d, c, "content.parts");
		int p = parts + 1;
		for (int j = 0; parts >= 0 && d->tok[parts].type == JSON_ARRAY && j < d->tok[parts].size;
		     j++, p = json_skip(d, p)) {
			int text = json_object_get(d, p, "text");
			int thought = json_object_get(d, p, "thought");
			if (thought >= 0 && d->tok[thought].type == JSON_PRIMITIVE && d->text[d->tok[thought].start] == 't')
				continue; /* thought summaries are not the reply */
			if (text >= 0 && d->tok[text].type == JSON_STRING) {
				reply_text(r, (int)index, d->text + d->tok[text].start,
				           (size_t)(d->tok[text].end - d->tok[text].start), true);
				continue;
			}
			int fc = json_object_get(d, p, "functionCall");
			if (fc < 0 || index != 0)
				continue;
			reply_whole_tool_call_tokens(r, (*calls)++, d, json_object_get(d, fc, "id"),
			                             json_object_get(d, fc, "name"), json_object_get(d, fc, "args"));
		}
		int fr = json_object_get(d, c, "finishReason");
		const char *f;
		size_t fl;
		json_string_span(d, fr, &f, &fl);
		if (fr >= 0)
			reply_finish(r, (int)index, finish_of(f, fl, *calls > 0));
	}
}

static void gemini_parse(struct json_doc *d, struct reply *r)
{
	lr_delta_fn fn = r->fn;
	r->fn = NULL;
	int calls = 0;
	take_chunk(r, d, &calls);
	if (!r->finish_reason[0])
		snprintf(r->finish_reason, sizeof(r->finish_reason), "stop");
	r->fn = fn;
}

/* Gemini's error status (google.rpc.Code names), and the few messages
 * that say more. */
static int status_code(const char *status, const char *message, int http)
{
	static const struct named_code codes[] = {
		{"UNAUTHENTICATED", LR_EAUTH}, {"PERMISSION_DENIED", LR_EPERMISSION},
		{"NOT_FOUND", LR_ENOTFOUND}, {"RESOURCE_EXHAUSTED", LR_ERATELIMIT},
		{"UNAVAILABLE", LR_EOVERLOADED}, {"DEADLINE_EXCEEDED", LR_ETIMEOUT},
		{"INTERNAL", LR_ESERVER},
	};
	if (!strcmp(status, "INVALID_ARGUMENT") || !strcmp(status, "FAILED_PRECONDITION")) {
		if (strstr(message, "API key"))
			return LR_EAUTH;
		if (strstr(message, "exceeds the maximum number of tokens") || strstr(message, "too long"))
			return LR_ECONTEXT;
		return LR_EBADREQUEST;
	}
	return named_code(codes, sizeof(codes) / sizeof(codes[0]), status,
	                  http ? provider_status_code(http) : LR_ESERVER);
}

/* {"error":{"code":429,"message":"...","status":"RESOURCE_EXHAUSTED"}}, also
 * as the one element of an array (what the non-SSE stream sends). */
static int error_object(const struct json_doc *d)
{
	int root = 0;
	if (d->tok[0].type == JSON_ARRAY && d->tok[0].size > 0)
		root = 1;
	int e = d->tok[root].type == JSON_OBJECT ? json_object_get(d, root, "error") : -1;
	return e >= 0 && d->tok[e].type == JSON_OBJECT ? e : -1;
}

/* The status and message of error object e (-1: none, both ""). */
static void error_fields(const struct json_doc *d, int e, char (*status)[64], char (*message)[300])
{
	(*status)[0] = (*message)[0] = '\0';
	int v;
	if (e >= 0 && (v = json_object_get(d, e, "status")) >= 0)
		json_get_string(d, v, *status, sizeof(*status));
	if (e >= 0 && (v = json_object_get(d, e, "message")) >= 0)
		json_get_string(d, v, *message, sizeof(*message));
}

static void gemini_error(struct json_doc *d, bool have_doc, int status, struct reply *r)
{
	int e = have_doc ? error_object(d) : -1;
	char st[64], message[300];
	error_fields(d, e, &st, &message);
	r->err.code = st[0] ? status_code(st, message, status) : provider_status_code(status);
	provider_error_message(r, status, d, e >= 0 ? json_object_get(d, e, "message") : -1);
}

/* ---- streams ---- */

/*
 * The hot path of a stream: one json_scan pass collects a chunk's parts
 * and candidates (spans into the event), then they are handed out in
 * order. A chunk that is unusual (an error, a blocked prompt, more parts
 * than collected here) goes through the token walk of take_chunk instead.
 */
#define SCAN_PARTS 8
#define SCAN_CANDS 4

struct scan_part {
	int cand;                   /* ordinal of its candidate in the chunk */
	bool thought, is_call;
	const char *text, *name, *args, *id;
	size_t text_len, name_len, args_len, id_len;
};

struct scan_cand {
	int64_t index;              /* -1: not given (the ordinal then) */
	const char *finish;
	size_t finish_len;
};

struct chunk_scan {
	struct scan_part parts[SCAN_PARTS], cur;
	struct scan_cand cands[SCAN_CANDS], cur_cand;
	int nparts, ncands;
	bool unusual;               /* error, promptFeedback, or too many parts */
	const char *model, *id;
	size_t model_len, id_len;
	int64_t prompt, output, thoughts, cached;
	bool has_prompt, has_output, has_cached;
};

/* Outside candidates[]: the model, the id, usage, and what makes a
 * chunk unusual. */
__attribute__((noinline)) static void scan_top_field(struct chunk_scan *cs, const struct json_scan_path *p,
                                                     enum json_type type, const char *v, size_t len)
{
	/* Told apart by the keys' lengths: one compare each. */
	if (p->depth == 1) {
		switch (p->key_len[0]) {
		case 12:
			if (type == JSON_STRING && KEY_IS(p, 0, "modelVersion"))
				cs->model = v, cs->model_len = len;
			break;
		case 10:
			if (type == JSON_STRING && KEY_IS(p, 0, "responseId"))
				cs->id = v, cs->id_len = len;
			break;
		case 5:
		case 14:
			if (KEY_IS(p, 0, "error") || KEY_IS(p, 0, "promptFeedback"))
				cs->unusual = true;
			break;
		}
		return;
	}
	if (p->depth != 2 || type != JSON_PRIMITIVE || !KEY_IS(p, 0, "usageMetadata"))
		return;
	switch (p->key_len[1]) {
	case 16:
		if (KEY_IS(p, 1, "promptTokenCount"))
			cs->prompt = scanned_count(v, len), cs->has_prompt = true;
		break;
	case 20:
		if (KEY_IS(p, 1, "candidatesTokenCount"))
			cs->output = scanned_count(v, len), cs->has_output = true;
		break;
	case 18:
		if (KEY_IS(p, 1, "thoughtsTokenCount"))
			cs->thoughts = scanned_count(v, len);
		break;
	case 23:
		if (KEY_IS(p, 1, "cachedContentTokenCount"))
			cs->cached = scanned_count(v, len), cs->has_cached = true;
		break;
	}
}

/* Inside candidates[i]: its index and finish reason, its parts. */
__attribute__((noinline)) static void scan_cand_field(struct chunk_scan *cs, const struct json_scan_path *p,
                                                      enum json_type type, const char *v, size_t len)
{
	if (p->depth == 2 && type == JSON_OBJECT) {
		/* A candidate closed. */
		if (cs->ncands == SCAN_CANDS) {
			cs->unusual = true;
			return;
		}
		cs->cands[cs->ncands++] = cs->cur_cand;
		cs->cur_cand = (struct scan_cand){.index = -1};
		return;
	}
	if (p->depth == 3) {
		if (KEY_IS(p, 2, "index") && type == JSON_PRIMITIVE)
			cs->cur_cand.index = scanned_count(v, len);
		else if (KEY_IS(p, 2, "finishReason") && type == JSON_STRING)
			cs->cur_cand.finish = v, cs->cur_cand.finish_len = len;
		return;
	}
	if (!KEY_IS(p, 2, "content") || !KEY_IS(p, 3, "parts"))
		return;
	struct scan_part *cur = &cs->cur;
	if (p->depth == 5 && type == JSON_OBJECT) {
		/* A part closed. */
		if (cs->nparts == SCAN_PARTS) {
			cs->unusual = true;
		} else {
			cur->cand = cs->ncands;
			cs->parts[cs->nparts++] = *cur;
		}
		memset(cur, 0, sizeof(*cur));
	} else if (p->depth == 6) {
		if (KEY_IS(p, 5, "text") && type == JSON_STRING)
			cur->text = v, cur->text_len = len;
		else if (KEY_IS(p, 5, "thought") && type == JSON_PRIMITIVE && len == 4 && v[0] == 't')
			cur->thought = true;
		else if (KEY_IS(p, 5, "functionCall") && type == JSON_OBJECT)
			cur->is_call = true;
	} else if (p->depth == 7 && KEY_IS(p, 5, "functionCall")) {
		if (KEY_IS(p, 6, "name") && type == JSON_STRING)
			cur->name = v, cur->name_len = len;
		else if (KEY_IS(p, 6, "id") && type == JSON_STRING)
			cur->id = v, cur->id_len = len;
		else if (KEY_IS(p, 6, "args") && type == JSON_OBJECT)
			cur->args = v, cur->args_len = len;
	}
}

/* The scanner's callback, kept small (its two halves are calls of their
 * own, reached by a jump). */
static void scan_field(void *ctx, const struct json_scan_path *p, enum json_type type, const char *v,
                       size_t len)
{
	if (p->depth >= 2 && KEY_IS(p, 0, "candidates"))
		scan_cand_field(ctx, p, type, v, len);
	else if (p->depth >= 1)
		scan_top_field(ctx, p, type, v, len);
}

static void emit_scanned(struct reply *r, const struct chunk_scan *cs, int *calls)
{
	if (cs->model)
		reply_copy_field(r->model, sizeof(r->model), cs->model, cs->model_len);
	if (cs->id)
		reply_copy_field(r->id, sizeof(r->id), cs->id, cs->id_len);
	if (cs->has_prompt)
		r->usage.input_tokens = cs->prompt;
	if (cs->has_output)
		r->usage.output_tokens = cs->output + cs->thoughts; /* thinking is billed as output */
	if (cs->has_cached)
		r->usage.cached_input_tokens = cs->cached;
	int part = 0;
	for (int k = 0; k < cs->ncands; k++) {
		const struct scan_cand *c = &cs->cands[k];
		int index = c->index >= 0 ? (int)c->index : k;
		for (; part < cs->nparts && cs->parts[part].cand == k; part++) {
			const struct scan_part *sp = &cs->parts[part];
			if (sp->thought)
				continue; /* thought summaries are not the reply */
			if (sp->text) {
				reply_text(r, index, sp->text, sp->text_len, true);
				continue;
			}
			if (!sp->is_call || index != 0)
				continue;
			reply_whole_tool_call(r, (*calls)++, sp->id, sp->id_len, sp->name, sp->name_len, sp->args,
			                      sp->args_len);
		}
		if (c->finish)
			reply_finish(r, index, finish_of(c->finish, c->finish_len, *calls > 0));
	}
}

static int gemini_sse_event(struct stream_decoder *sd, const struct sse_event *ev)
{
	struct reply *r = sd->r;
	struct chunk_scan cs;
	cs.nparts = cs.ncands = 0;
	cs.unusual = cs.has_prompt = cs.has_output = cs.has_cached = false;
	cs.model = cs.id = NULL;
	cs.thoughts = 0;
	memset(&cs.cur, 0, sizeof(cs.cur));
	cs.cur_cand = (struct scan_cand){.index = -1};
	bool scanned = ev->data_len && ev->data[0] == '{' && json_scan(ev->data, ev->data_len, scan_field, &cs);
	if (scanned && !cs.unusual) {
		r->events++;
		emit_scanned(r, &cs, &sd->calls);
		if (r->err.code == LR_ENOMEM)
			sd->fatal = true;
		return sd->fatal ? r->err.code : 0;
	}
	struct json_doc *d = &sd->doc;
	int rc = json_parse(d, ev->data, ev->data_len);
	if (rc || d->count == 0 || d->tok[0].type != JSON_OBJECT)
		return stream_not_json(sd, rc, ev->data, ev->data_len, false);
	r->events++;
	int e = error_object(d);
	if (e >= 0) {
		char st[64], message[300];
		error_fields(d, e, &st, &message);
		reply_fail(r, status_code(st, message, 0), "error event in the stream: %s%s%s", st,
		           st[0] ? ": " : "", message);
		return 0;
	}
	take_chunk(r, d, &sd->calls);
	if (r->err.code == LR_ENOMEM)
		sd->fatal = true;
	return sd->fatal ? r->err.code : 0;
}

/* ---- the row ---- */

const struct provider_row gemini_row = {
	.name = "gemini",
	.base_url = "https://generativelanguage.googleapis.com",
	.base_env = "GEMINI_BASE_URL",
	.key_env = "GEMINI_API_KEY",
	.key_form = KEY_HEADER,
	.key_header = "x-goog-api-key",
	.reply_id_is_request_id = true, /* its responseId */
	.path = gemini_path,
	.build_chat = gemini_build,
	.parse_error = gemini_error,
	.parse_reply = gemini_parse,
	.sse_event = gemini_sse_event,
	.stream_ends_at_finish = true,
};

/*
 * Ollama's native API: /api/chat (NDJSON streams, one JSON object a line,
 * the last with "done":true and the counts) and /api/embed. The unified
 * request is translated (images as base64, options.num_predict, format),
 * replies normalised into struct reply.
 */
#include "provider/dialect.h"
#include "provider/dialect_util.h"

#include <stdio.h>
#include <string.h>

static int put_message_content(struct buf *out, const struct json_doc *d, int content,
                               const char **why)
{
	struct buf text = {0}, url = {0}, images = {0}; /* owner: this function */
	int ret = 0;
	if (content >= 0 && d->tok[content].type == JSON_ARRAY) {
		int part = content + 1;
		for (int k = 0; k < d->tok[content].size && !ret; k++, part = json_skip(d, part)) {
			int type = json_object_get(d, part, "type");
			if (type >= 0 && json_string_eq(d, type, "image_url")) {
				const char *mime, *data;
				size_t mime_len, data_len;
				if (image_part(d, part, &url, &mime, &mime_len, &data, &data_len) || !data) {
					*why = "Ollama takes images as base64 data: URLs only";
					ret = LR_EUNSUPPORTED;
					break;
				}
				ret = buf_puts(&images, images.len ? "," : "");
				if (!ret)
					ret = json_append_string(&images, data, data_len);
			} else if (!(type >= 0 && json_string_eq(d, type, "text"))) {
				*why = "Ollama takes text and image_url content parts only";
				ret = LR_EUNSUPPORTED;
			}
		}
	}
	if (!ret && (ret = content_text(&text, d, content)) == LR_EINVAL)
		*why = "a message's content is neither text nor parts"; /* else LR_ENOMEM */
	if (!ret)
		ret = buf_puts(out, ",\"content\":");
	if (!ret)
		ret = json_append_string(out, text.data ? text.data : "", text.len);
	if (!ret && images.len) {
		ret = buf_puts(out, ",\"images\":[");
		if (!ret)
			ret = buf_append(out, images.data, images.len);
		if (!ret)
			ret = buf_puts(out, "]");
	}
	buf_free(&text);
	buf_free(&url);
	buf_free(&images);
	return ret;
}

static int put_messages(struct buf *out, const struct json_doc *d, int msgs, const char **why)
{
	int ret = buf_puts(out, ",\"messages\":[");
	int m = msgs + 1;
	for (int k = 0; k < d->tok[msgs].size && !ret; k++, m = json_skip(d, m)) {
		int role = json_object_get(d, m, "role");
		if (role < 0 || d->tok[role].type != JSON_STRING) {
			*why = "a message needs a role";
			return LR_EINVAL;
		}
		ret = buf_puts(out, k ? ",{\"role\":" : "{\"role\":");
		if (!ret)
			ret = json_string_eq(d, role, "developer") ? buf_puts(out, "\"system\"") : json_copy_value(out, d, role);
		if (!ret)
			ret = put_message_content(out, d, json_object_get(d, m, "content"), why);
		/* A tool result names its function (Ollama keys results by name). */
		int call_id = json_string_eq(d, role, "tool") ? json_object_get(d, m, "tool_call_id") : -1;
		int tool_name = call_id >= 0 ? tool_call_name(d, msgs, m, call_id) : -1;
		if (!ret && tool_name >= 0) {
			ret = buf_puts(out, ",\"tool_name\":");
			if (!ret)
				ret = json_copy_value(out, d, tool_name);
		}
		int calls = json_object_get(d, m, "tool_calls");
		if (!ret && calls >= 0 && d->tok[calls].type == JSON_ARRAY && d->tok[calls].size) {
			ret = buf_puts(out, ",\"tool_calls\":[");
			int c = calls + 1;
			for (int j = 0; j < d->tok[calls].size && !ret; j++, c = json_skip(d, c)) {
				int fn = json_object_get(d, c, "function");
				int name = fn >= 0 ? json_object_get(d, fn, "name") : -1;
				if (name < 0) {
					*why = "a tool call needs a function name";
					return LR_EINVAL;
				}
				ret = buf_puts(out, j ? ",{\"function\":{\"name\":" : "{\"function\":{\"name\":");
				if (!ret)
					ret = json_copy_value(out, d, name);
				if (!ret)
					ret = buf_puts(out, ",\"arguments\":");
				if (!ret && (ret = arguments_object(out, d, json_object_get(d, fn, "arguments"))) == LR_EINVAL)
					*why = "tool call arguments are not a JSON object";
				if (!ret)
					ret = buf_puts(out, "}}");
			}
			if (!ret)
				ret = buf_puts(out, "]");
		}
		if (!ret)
			ret = buf_puts(out, "}");
	}
	if (!ret)
		ret = buf_puts(out, "]");
	return ret;
}

/* An OpenAI sampling field into options, under Ollama's name. */
static int put_option(struct buf *opts, const struct json_doc *d, const char *from, const char *to)
{
	int v = json_object_get(d, 0, from);
	if (v < 0)
		return 0;
	buf_puts(opts, opts->len ? ",\"" : "\"");
	buf_puts(opts, to);
	buf_puts(opts, "\":");
	return !strcmp(to, "stop") ? put_as_list(opts, d, v) : json_copy_value(opts, d, v);
}

static int ollama_build(const struct json_doc *d, const char *model, struct provider_request *pr,
                        const char **why)
{
	int msgs = messages_array(d, why);
	if (msgs < 0)
		return msgs;
	struct buf *out = &pr->body;
	struct buf opts = {0}; /* owner: this function */
	buf_puts(out, "{\"model\":");
	int ret = json_append_string(out, model, strlen(model));
	if (!ret)
		ret = put_messages(out, d, msgs, why);
	int tc = json_object_get(d, 0, "tool_choice");
	bool tools_off = tc >= 0 && json_string_eq(d, tc, "none");
	if (!ret && tc >= 0 && !tools_off && !json_string_eq(d, tc, "auto")) {
		*why = "Ollama cannot force a tool call (tool_choice)";
		ret = LR_EUNSUPPORTED;
	}
	int tools = json_object_get(d, 0, "tools");
	if (!ret && tools >= 0 && !tools_off) {
		ret = buf_puts(out, ",\"tools\":");
		if (!ret)
			ret = json_copy_value(out, d, tools);
	}
	int rf = json_object_get(d, 0, "response_format");
	if (!ret && rf >= 0) {
		int type = json_object_get(d, rf, "type");
		int schema = json_path(d, rf, "json_schema.schema");
		if (type >= 0 && json_string_eq(d, type, "json_object")) {
			ret = buf_puts(out, ",\"format\":\"json\"");
		} else if (type >= 0 && json_string_eq(d, type, "json_schema") && schema >= 0) {
			ret = buf_puts(out, ",\"format\":");
			if (!ret)
				ret = json_copy_value(out, d, schema);
		} else if (!(type >= 0 && json_string_eq(d, type, "text"))) {
			*why = "response_format is text, json_object or json_schema with a schema";
			ret = LR_EINVAL;
		}
	}
	int n = json_object_get(d, 0, "n");
	if (!ret && n >= 0 && !(d->tok[n].end - d->tok[n].start == 1 && d->text[d->tok[n].start] == '1')) {
		*why = "Ollama returns one choice (n)";
		ret = LR_EUNSUPPORTED;
	}
	static const char *const same_name[] = {"temperature", "top_p", "seed", "stop",
	                                        "frequency_penalty", "presence_penalty"};
	for (size_t i = 0; !ret && i < sizeof(same_name) / sizeof(same_name[0]); i++)
		ret = put_option(&opts, d, same_name[i], same_name[i]);
	if (!ret)
		ret = put_option(&opts, d, json_object_get(d, 0, "max_completion_tokens") >= 0
		                                   ? "max_completion_tokens" : "max_tokens", "num_predict");
	if (!ret && opts.len)
		ret = put_object_member(out, "options", &opts);
	int keep = json_object_get(d, 0, "keep_alive");
	if (!ret && keep >= 0) {
		ret = buf_puts(out, ",\"keep_alive\":");
		if (!ret)
			ret = json_copy_value(out, d, keep);
	}
	/* Ollama streams unless told not to. */
	if (!ret)
		ret = buf_puts(out, pr->stream ? ",\"stream\":true}" : ",\"stream\":false}");
	buf_free(&opts);
	return ret;
}

static int ollama_build_embeddings(const struct json_doc *d, const char *model,
                                   struct provider_request *pr, const char **why)
{
	int input = json_object_get(d, 0, "input");
	if (input < 0) {
		*why = "an embeddings request needs input";
		return LR_EINVAL;
	}
	struct buf *out = &pr->body;
	buf_puts(out, "{\"model\":");
	json_append_string(out, model, strlen(model));
	int ret = put_member(out, "input", d, input);
	int dims = json_object_get(d, 0, "dimensions");
	if (!ret && dims >= 0)
		ret = put_member(out, "dimensions", d, dims);
	return ret ? ret : buf_puts(out, "}");
}

/* ---- responses ---- */

static void counts(struct reply *r, const struct json_doc *d, int obj)
{
	int64_t v;
	int t;
	if ((t = json_object_get(d, obj, "prompt_eval_count")) >= 0 && json_get_int(d, t, &v))
		r->usage.input_tokens = v;
	if ((t = json_object_get(d, obj, "eval_count")) >= 0 && json_get_int(d, t, &v))
		r->usage.output_tokens = v;
}

/* message.content and message.tool_calls of one object (a whole reply or
 * one line of a stream). */
static void take_message(struct reply *r, const struct json_doc *d, int obj, int *calls)
{
	int msg = json_object_get(d, obj, "message");
	if (msg < 0 || d->tok[msg].type != JSON_OBJECT)
		return;
	int content = json_object_get(d, msg, "content");
	if (content >= 0 && d->tok[content].type == JSON_STRING)
		reply_text(r, 0, d->text + d->tok[content].start,
		           (size_t)(d->tok[content].end - d->tok[content].start), true);
	int tc = json_object_get(d, msg, "tool_calls");
	if (tc < 0 || d->tok[tc].type != JSON_ARRAY)
		return;
	int c = tc + 1;
	for (int k = 0; k < d->tok[tc].size; k++, c = json_skip(d, c)) {
		/* The arguments arrive as an object: its text is the JSON. */
		reply_whole_tool_call_tokens(r, (*calls)++, d, json_object_get(d, c, "id"),
		                             json_path(d, c, "function.name"), json_path(d, c, "function.arguments"));
	}
}

static void take_done(struct reply *r, const struct json_doc *d, int obj, int calls)
{
	counts(r, d, obj);
	int dr = json_object_get(d, obj, "done_reason");
	const char *reason = "stop";
	if (dr >= 0 && json_string_eq(d, dr, "length"))
		reason = "length";
	else if (calls > 0)
		reason = "tool_calls";
	reply_finish(r, 0, reason);
	r->done = true;
}

static bool error_in(struct reply *r, const struct json_doc *d, int status, bool stream)
{
	int e = json_object_get(d, 0, "error");
	if (e < 0)
		return false;
	char text[300] = "";
	if (d->tok[e].type == JSON_STRING)
		json_get_string(d, e, text, sizeof(text));
	if (stream)
		reply_fail(r, LR_ESERVER, "error in the stream: %s", text);
	else
		reply_fail(r, LR_ESERVER, "HTTP %d with an error: %s", status, text);
	return true;
}

static void copy_model(struct reply *r, const struct json_doc *d)
{
	int m = json_object_get(d, 0, "model");
	if (m >= 0 && d->tok[m].type == JSON_STRING)
		json_get_string(d, m, r->model, sizeof(r->model));
}

static void ollama_parse(struct json_doc *d, struct reply *r)
{
	if (error_in(r, d, 200, false))
		return;
	lr_delta_fn fn = r->fn;
	r->fn = NULL;
	copy_model(r, d);
	int calls = 0;
	take_message(r, d, 0, &calls);
	take_done(r, d, 0, calls);
	r->fn = fn;
}

static void ollama_error(struct json_doc *d, bool have_doc, int status, struct reply *r)
{
	int e = have_doc ? json_object_get(d, 0, "error") : -1;
	char text[300] = "";
	if (e >= 0)
		json_get_string(d, e, text, sizeof(text));
	r->err.code = provider_status_code(status);
	if (strstr(text, "context length") || strstr(text, "context window"))
		r->err.code = LR_ECONTEXT;
	provider_error_message(r, status, d, e);
}

static int ollama_embed_body(struct json_doc *d, struct reply *r, struct buf *out)
{
	if (error_in(r, d, 200, false))
		return r->err.code;
	int embs = json_object_get(d, 0, "embeddings");
	if (embs < 0 || d->tok[embs].type != JSON_ARRAY)
		return reply_fail(r, LR_EPROTO, "the Ollama response has no embeddings");
	copy_model(r, d);
	counts(r, d, 0);
	int ret = buf_puts(out, "{\"object\":\"list\",\"data\":[");
	int e = embs + 1;
	for (int k = 0; k < d->tok[embs].size && !ret; k++, e = json_skip(d, e)) {
		char head[80];
		int n = snprintf(head, sizeof(head), "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":",
		                 k ? "," : "", k);
		ret = buf_append(out, head, (size_t)n);
		if (!ret)
			ret = json_copy_value(out, d, e);
		if (!ret)
			ret = buf_puts(out, "}");
	}
	if (!ret)
		ret = buf_puts(out, "],\"model\":");
	if (!ret)
		ret = json_append_string(out, r->model, strlen(r->model));
	if (!ret) {
		char usage[96];
		int n = snprintf(usage, sizeof(usage), ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
		                 (long long)r->usage.input_tokens, (long long)r->usage.input_tokens);
		ret = buf_append(out, usage, (size_t)n);
	}
	return ret ? reply_fail(r, ret, "out of memory") : 0;
}

/* ---- streams ---- */

/* What a plain token line carries, picked out while json_scan validates
 * it: the hot path, one pass and no tokens. A line with an error or tool
 * calls (rare) is walked again with tokens by ollama_line_tokens. */
struct line_fields {
	const char *model, *content, *done_reason;
	size_t model_len, content_len, done_reason_len;
	int64_t prompt_eval_count, eval_count;
	bool has_prompt_eval_count, has_eval_count;
	bool done;
	bool walk_tokens; /* error or tool_calls: the token path decides */
};

static void line_field(void *ctx, const struct json_scan_path *p, enum json_type type, const char *v,
                       size_t len)
{
	struct line_fields *lf = ctx;
	if (p->depth == 1) {
		if (KEY_IS(p, 0, "error"))
			lf->walk_tokens = true;
		else if (type == JSON_STRING && KEY_IS(p, 0, "model"))
			lf->model = v, lf->model_len = len;
		else if (type == JSON_STRING && KEY_IS(p, 0, "done_reason"))
			lf->done_reason = v, lf->done_reason_len = len;
		else if (type == JSON_PRIMITIVE && KEY_IS(p, 0, "done"))
			lf->done = v[0] == 't';
		else if (type == JSON_PRIMITIVE && KEY_IS(p, 0, "prompt_eval_count"))
			lf->prompt_eval_count = scanned_count(v, len), lf->has_prompt_eval_count = true;
		else if (type == JSON_PRIMITIVE && KEY_IS(p, 0, "eval_count"))
			lf->eval_count = scanned_count(v, len), lf->has_eval_count = true;
		return;
	}
	if (!KEY_IS(p, 0, "message"))
		return;
	if (KEY_IS(p, 1, "tool_calls"))
		lf->walk_tokens = true;
	else if (p->depth == 2 && type == JSON_STRING && KEY_IS(p, 1, "content"))
		lf->content = v, lf->content_len = len;
}

/* 1 when the line was taken from the scan, 0 when the token path must
 * take it (not an object, not valid JSON, an error or tool calls). */
static int ollama_line_scanned(struct stream_decoder *sd, const char *line, size_t len)
{
	struct reply *r = sd->r;
	struct line_fields lf = {0};
	if (len == 0 || line[0] != '{' || !json_scan(line, len, line_field, &lf) || lf.walk_tokens)
		return 0;
	r->events++;
	if (!r->model[0] && lf.model)
		reply_copy_field(r->model, sizeof(r->model), lf.model, lf.model_len);
	if (lf.content)
		reply_text(r, 0, lf.content, lf.content_len, true);
	if (lf.done) {
		/* As take_done: counts, then the finish reason. */
		if (lf.has_prompt_eval_count)
			r->usage.input_tokens = lf.prompt_eval_count;
		if (lf.has_eval_count)
			r->usage.output_tokens = lf.eval_count;
		bool length = lf.done_reason && lf.done_reason_len == 6 &&
		              memcmp(lf.done_reason, "length", 6) == 0;
		reply_finish(r, 0, length ? "length" : sd->calls > 0 ? "tool_calls" : "stop");
		r->done = true;
	}
	return 1;
}

static int ollama_line(void *ctx, const char *line, size_t len)
{
	struct stream_decoder *sd = ctx;
	struct reply *r = sd->r;
	if (r->err.code || r->done)
		return 0;
	if (ollama_line_scanned(sd, line, len)) {
		if (r->err.code == LR_ENOMEM)
			sd->fatal = true;
		return sd->fatal ? r->err.code : 0;
	}
	/* The token path: a token doc (kept by the decoder) per line. */
	struct json_doc *d = &sd->doc;
	int rc = json_parse(d, line, len);
	if (rc || d->count == 0 || d->tok[0].type != JSON_OBJECT)
		return stream_not_json(sd, rc, line, len, true);
	r->events++;
	if (!error_in(r, d, 200, true)) {
		if (!r->model[0])
			copy_model(r, d);
		take_message(r, d, 0, &sd->calls);
		int done = json_object_get(d, 0, "done");
		if (done >= 0 && d->tok[done].type == JSON_PRIMITIVE && d->text[d->tok[done].start] == 't')
			take_done(r, d, 0, sd->calls);
	}
	if (r->err.code == LR_ENOMEM)
		sd->fatal = true;
	return sd->fatal ? r->err.code : 0;
}

/* ---- the row ---- */

/* OLLAMA_HOST may be "host", "host:port" or a URL, as the Ollama CLI
 * takes it; 0.0.0.0 (a server's listen address) is reached at 127.0.0.1. */
static const char *ollama_base_from_env(const char *v, char *buf, size_t cap)
{
	if (strstr(v, "://"))
		return v;
	const char *host = strncmp(v, "0.0.0.0", 7) == 0 ? "127.0.0.1" : NULL;
	const char *rest = host ? v + 7 : v;
	bool port = strchr(host ? rest : v, ':') != NULL;
	snprintf(buf, cap, "http://%s%s%s", host ? host : "", rest, port ? "" : ":11434");
	return buf;
}

static int ollama_path(struct provider_request *out, enum lr_endpoint ep, const char *base,
                       const char *model, size_t model_len, const char **why)
{
	if (ep == LR_ENDPOINT_COMPLETIONS) {
		*why = "the ollama/ dialect has no text-completions endpoint (Ollama's OpenAI-compatible "
		       "one is an openai/ model with base URL http://HOST:11434/v1)";
		return LR_EUNSUPPORTED;
	}
	return path_join(&out->path, base, "/v1", "/api", ep == LR_ENDPOINT_EMBEDDINGS ? "/embed" : "/chat");
}

const struct provider_row ollama_row = {
	.name = "ollama",
	.base_url = "http://127.0.0.1:11434",
	.base_env = "OLLAMA_HOST",
	.base_from_env = ollama_base_from_env,
	.key_form = KEY_BEARER, /* none is needed; one given goes as OpenAI's */
	.path = ollama_path,
	.build_chat = ollama_build,
	.build_embeddings = ollama_build_embeddings,
	.parse_error = ollama_error,
	.parse_reply = ollama_parse,
	.parse_embeddings = ollama_embed_body,
	.ndjson_line = ollama_line,
};

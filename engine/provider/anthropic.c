/*
 * Anthropic Messages: the unified request translated (system lifted out,
 * max_tokens required, tool_use / tool_result / image blocks), responses
 * and event streams (message_start, content_block_*, message_delta,
 * message_stop, ping, error) normalised into struct reply.
 */
#include "provider/dialect.h"
#include "provider/dialect_util.h"

#include <stdio.h>
#include <string.h>

#define DEFAULT_MAX_TOKENS 4096 /* Anthropic requires one; OpenAI's callers rarely set it */

/* response_format has no Messages field: as LiteLLM does, the schema
 * becomes a tool the model is made to call, and that call's input comes
 * back as the reply text. */
#define JSON_TOOL "json_tool_call"

static int put_blocks_of(struct buf *out, const struct json_doc *d, int content, bool *any,
                         const char **why)
{
	const struct json_token *t = &d->tok[content];
	struct buf url = {0}; /* owner: this function */
	int ret = 0;
	if (t->type == JSON_STRING) {
		if (t->end == t->start)
			return 0;
		buf_puts(out, *any ? ",{\"type\":\"text\",\"text\":" : "{\"type\":\"text\",\"text\":");
		json_copy_value(out, d, content);
		*any = true;
		return buf_puts(out, "}");
	}
	if (t->type != JSON_ARRAY)
		return 0; /* null */
	int part = content + 1;
	for (int k = 0; k < t->size && !ret; k++, part = json_skip(d, part)) {
		int type = json_object_get(d, part, "type");
		if (*any)
			ret = buf_puts(out, ",");
		if (ret)
			break;
		if (type >= 0 && json_string_eq(d, type, "text")) {
			int text = json_object_get(d, part, "text");
			buf_puts(out, "{\"type\":\"text\",\"text\":");
			if (text >= 0)
				json_copy_value(out, d, text);
			else
				buf_puts(out, "\"\"");
			ret = buf_puts(out, "}");
		} else if (type >= 0 && json_string_eq(d, type, "image_url")) {
			const char *mime, *data;
			size_t mime_len, data_len;
			if (image_part(d, part, &url, &mime, &mime_len, &data, &data_len)) {
				*why = "an image part needs an http(s) URL or a base64 data: URL";
				ret = LR_EINVAL;
				break;
			}
			if (data) {
				buf_puts(out, "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":");
				json_append_string(out, mime, mime_len);
				buf_puts(out, ",\"data\":");
				json_append_string(out, data, data_len);
			} else {
				buf_puts(out, "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":");
				json_append_string(out, url.data, url.len);
			}
			ret = buf_puts(out, "}}");
		} else {
			*why = "Anthropic takes text and image_url content parts only";
			ret = LR_EUNSUPPORTED;
		}
		*any = true;
	}
	buf_free(&url);
	return ret;
}

static int put_tool_uses(struct buf *out, const struct json_doc *d, int calls, bool *any,
                         const char **why)
{
	int call = calls + 1, ret = 0;
	for (int k = 0; k < d->tok[calls].size && !ret; k++, call = json_skip(d, call)) {
		int id = json_object_get(d, call, "id");
		int fn = json_object_get(d, call, "function");
		int name = fn >= 0 ? json_object_get(d, fn, "name") : -1;
		if (id < 0 || name < 0) {
			*why = "a tool call needs an id and a function name";
			return LR_EINVAL;
		}
		buf_puts(out, *any ? ",{\"type\":\"tool_use\",\"id\":" : "{\"type\":\"tool_use\",\"id\":");
		json_copy_value(out, d, id);
		buf_puts(out, ",\"name\":");
		json_copy_value(out, d, name);
		ret = buf_puts(out, ",\"input\":");
		if (!ret && (ret = arguments_object(out, d, json_object_get(d, fn, "arguments"))) == LR_EINVAL)
			*why = "tool call arguments are not a JSON object";
		if (!ret)
			ret = buf_puts(out, "}");
		*any = true;
	}
	return ret;
}

/* A tool message as a tool_result block. */
static int put_tool_result(struct buf *out, const struct json_doc *d, int msgs, int m,
                           const char **why)
{
	int content = json_object_get(d, m, "content");
	int id = json_object_get(d, m, "tool_call_id");
	if (id < 0) {
		*why = "a tool message needs its tool_call_id";
		return LR_EINVAL;
	}
	struct buf text = {0}; /* owner: this function */
	int ret = buf_error(out); /* an earlier append failed: that is the error */
	if (!ret && (ret = content_text(&text, d, content)) == LR_EINVAL)
		*why = "a tool message's content is not text";
	if (!ret) {
		buf_puts(out, "{\"type\":\"tool_result\",\"tool_use_id\":");
		json_copy_value(out, d, id);
		buf_puts(out, ",\"content\":");
		json_append_string(out, text.data ? text.data : "", text.len);
		buf_puts(out, "}");
		ret = buf_error(out);
	}
	buf_free(&text);
	return ret; /* LR_EINVAL or LR_ENOMEM */
}

static const struct turn_style messages_style = {
	.user_open = "{\"role\":\"user\",\"content\":[",
	.assistant_open = "{\"role\":\"assistant\",\"content\":[",
	.tool_result = put_tool_result,
	.content_items = put_blocks_of,
	.call_items = put_tool_uses,
};

static int put_tools(struct buf *out, const struct json_doc *d, int tools, const char **why)
{
	int ret = buf_puts(out, ",\"tools\":[");
	if (!ret)
		ret = put_function_list(out, d, tools, "input_schema", "{\"type\":\"object\",\"properties\":{}}", why);
	if (!ret)
		ret = buf_puts(out, "]");
	return ret;
}

static int put_tool_choice(struct buf *out, const struct json_doc *d, int tc, bool parallel_off,
                           const char **why)
{
	int ret = buf_puts(out, ",\"tool_choice\":{\"type\":");
	if (ret)
		return ret;
	if (tc < 0 || json_string_eq(d, tc, "auto")) {
		ret = buf_puts(out, "\"auto\"");
	} else if (json_string_eq(d, tc, "required")) {
		ret = buf_puts(out, "\"any\"");
	} else if (json_string_eq(d, tc, "none")) {
		ret = buf_puts(out, "\"none\"");
	} else {
		int name = json_path(d, tc, "function.name");
		if (name < 0) {
			*why = "tool_choice is \"auto\", \"none\", \"required\" or a function";
			return LR_EINVAL;
		}
		ret = buf_puts(out, "\"tool\",\"name\":");
		if (!ret)
			ret = json_copy_value(out, d, name);
	}
	if (!ret && parallel_off)
		ret = buf_puts(out, ",\"disable_parallel_tool_use\":true");
	if (!ret)
		ret = buf_puts(out, "}");
	return ret;
}

/* The forced tool standing for response_format; *why on a bad one. */
static int put_json_tool(struct buf *out, const struct json_doc *d, int rf, bool first,
                         const char **why)
{
	int type = json_object_get(d, rf, "type");
	int schema = json_path(d, rf, "json_schema.schema");
	if (type >= 0 && json_string_eq(d, type, "json_schema") && schema < 0) {
		*why = "response_format json_schema needs json_schema.schema";
		return LR_EINVAL;
	}
	buf_puts(out, first ? ",\"tools\":[" : ",");
	buf_puts(out, "{\"name\":\"" JSON_TOOL "\",\"description\":\"Respond with JSON\",\"input_schema\":");
	if (schema >= 0)
		json_copy_value(out, d, schema);
	else
		buf_puts(out, "{\"type\":\"object\"}");
	buf_puts(out, "}]");
	return buf_puts(out, ",\"tool_choice\":{\"type\":\"tool\",\"name\":\"" JSON_TOOL "\"}");
}

static bool is_false(const struct json_doc *d, int i)
{
	return i >= 0 && d->tok[i].type == JSON_PRIMITIVE && d->text[d->tok[i].start] == 'f';
}

/* Top-level fields that mean the same in Messages go as they are; the
 * rest are handled apart or have no Anthropic meaning worth an error
 * (seed: best effort; stream_options: usage always comes); any other is
 * refused, named in pr->err. */
static int put_passed_fields(struct buf *out, const struct json_doc *d, struct provider_request *pr,
                             const char **why)
{
	static const char *const skip[] = {"model", "messages", "max_tokens", "max_completion_tokens",
	                                   "stream", "stream_options", "tools", "tool_choice",
	                                   "parallel_tool_calls", "seed", "user", "stop",
	                                   "response_format"};
	static const char *const same[] = {"temperature", "top_p", "top_k", "metadata", "thinking",
	                                   "service_tier"};
	int ret = 0, k = 1;
	for (int m = 0; !ret && m < d->tok[0].size; m++, k = json_skip(d, k + 1)) {
		int v = k + 1;
		bool skipped = false, pass = false;
		for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
			skipped = skipped || json_string_eq(d, k, skip[i]);
		for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
			pass = pass || json_string_eq(d, k, same[i]);
		bool one_choice = json_string_eq(d, k, "n") && d->tok[v].end - d->tok[v].start == 1 &&
		                  d->text[d->tok[v].start] == '1';
		if (skipped || one_choice)
			continue;
		if (!pass) {
			char key[64] = "";
			json_get_string(d, k, key, sizeof(key));
			*why = pr->err.message;
			return error_set(&pr->err, LR_EUNSUPPORTED, 0, "\"%s\" has no Anthropic equivalent", key);
		}
		buf_puts(out, ",");
		json_copy_value(out, d, k);
		buf_puts(out, ":");
		ret = json_copy_value(out, d, v);
	}
	return ret;
}

/* stop as stop_sequences, and user as metadata.user_id unless metadata
 * is given. */
static int put_stop_and_user(struct buf *out, const struct json_doc *d)
{
	int ret = 0;
	int stop = json_object_get(d, 0, "stop");
	if (stop >= 0 && d->tok[stop].type != JSON_PRIMITIVE) {
		buf_puts(out, ",\"stop_sequences\":");
		ret = put_as_list(out, d, stop);
	}
	int user = json_object_get(d, 0, "user");
	if (!ret && user >= 0 && d->tok[user].type == JSON_STRING && json_object_get(d, 0, "metadata") < 0) {
		buf_puts(out, ",\"metadata\":{\"user_id\":");
		json_copy_value(out, d, user);
		ret = buf_puts(out, "}");
	}
	return ret;
}

/* tools, tool_choice, and response_format as the forced JSON tool. */
static int put_tooling(struct buf *out, const struct json_doc *d, const char **why)
{
	int tools = json_object_get(d, 0, "tools");
	int tc = json_object_get(d, 0, "tool_choice");
	int rf = json_object_get(d, 0, "response_format");
	int rf_type = rf >= 0 ? json_object_get(d, rf, "type") : -1;
	bool json_out = rf_type >= 0 && !json_string_eq(d, rf_type, "text");
	bool have_tools = tools >= 0 && d->tok[tools].type == JSON_ARRAY && d->tok[tools].size > 0;
	if (json_out && !json_string_eq(d, rf_type, "json_object") && !json_string_eq(d, rf_type, "json_schema")) {
		*why = "response_format is text, json_object or json_schema";
		return LR_EINVAL;
	}
	if (!have_tools)
		return json_out ? put_json_tool(out, d, rf, true, why) : 0;
	int ret = put_tools(out, d, tools, why);
	if (!ret && json_out) {
		out->len--; /* reopen the tools array for the JSON tool */
		return put_json_tool(out, d, rf, false, why);
	}
	bool parallel_off = is_false(d, json_object_get(d, 0, "parallel_tool_calls"));
	if (!ret && (tc >= 0 || parallel_off))
		ret = put_tool_choice(out, d, tc, parallel_off, why);
	return ret;
}

static int anthropic_build(const struct json_doc *d, const char *model, struct provider_request *pr,
                           const char **why)
{
	int msgs = messages_array(d, why);
	if (msgs < 0)
		return msgs;
	struct buf *out = &pr->body;
	struct buf system = {0}; /* owner: this function */
	buf_puts(out, "{\"model\":");
	int ret = json_append_string(out, model, strlen(model));
	if (!ret)
		ret = buf_puts(out, ",\"messages\":[");
	if (!ret)
		ret = put_turns(out, &system, d, msgs, &messages_style, why);
	if (!ret && system.len) {
		buf_puts(out, ",\"system\":");
		ret = json_append_string(out, system.data, system.len);
	}
	buf_free(&system);
	/* Messages requires max_tokens. */
	int mt = json_object_get(d, 0, "max_completion_tokens");
	if (mt < 0)
		mt = json_object_get(d, 0, "max_tokens");
	if (!ret) {
		buf_puts(out, ",\"max_tokens\":");
		ret = mt >= 0 ? json_copy_value(out, d, mt) : buf_printf(out, "%d", DEFAULT_MAX_TOKENS);
	}
	if (!ret)
		ret = put_passed_fields(out, d, pr, why);
	if (!ret)
		ret = put_stop_and_user(out, d);
	if (!ret)
		ret = put_tooling(out, d, why);
	if (!ret && pr->stream)
		ret = buf_puts(out, ",\"stream\":true");
	if (!ret)
		ret = buf_puts(out, "}");
	return ret;
}

/* ---- responses ---- */

static const char *finish_of(const char *stop, size_t len)
{
	static const struct {
		const char *anthropic, *openai;
	} map[] = {
		{"end_turn", "stop"}, {"stop_sequence", "stop"}, {"pause_turn", "stop"},
		{"max_tokens", "length"}, {"model_context_window_exceeded", "length"},
		{"tool_use", "tool_calls"}, {"refusal", "content_filter"},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strlen(map[i].anthropic) == len && memcmp(map[i].anthropic, stop, len) == 0)
			return map[i].openai;
	return "stop";
}

static void usage_from(struct reply *r, const struct json_doc *d, int usage, bool output_only)
{
	if (usage < 0)
		return;
	int64_t in = 0, read = 0, created = 0, out = 0;
	int v;
	if ((v = json_object_get(d, usage, "output_tokens")) >= 0 && json_get_int(d, v, &out))
		r->usage.output_tokens = out;
	if (output_only && json_object_get(d, usage, "input_tokens") < 0)
		return;
	if ((v = json_object_get(d, usage, "input_tokens")) >= 0)
		json_get_int(d, v, &in);
	if ((v = json_object_get(d, usage, "cache_read_input_tokens")) >= 0)
		json_get_int(d, v, &read);
	if ((v = json_object_get(d, usage, "cache_creation_input_tokens")) >= 0)
		json_get_int(d, v, &created);
	/* OpenAI's prompt_tokens include the cached ones; Anthropic's
	 * input_tokens do not. */
	r->usage.input_tokens = in + read + created;
	r->usage.cached_input_tokens = read;
}

static void copy_string(char *dst, size_t cap, const struct json_doc *d, int i)
{
	if (i >= 0 && d->tok[i].type == JSON_STRING)
		json_get_string(d, i, dst, cap);
}

static void anthropic_parse(struct json_doc *d, struct reply *r)
{
	lr_delta_fn fn = r->fn;
	r->fn = NULL; /* a whole response fires no deltas */
	copy_string(r->id, sizeof(r->id), d, json_object_get(d, 0, "id"));
	copy_string(r->model, sizeof(r->model), d, json_object_get(d, 0, "model"));
	usage_from(r, d, json_object_get(d, 0, "usage"), false);
	int content = json_object_get(d, 0, "content");
	if (content < 0 || d->tok[content].type != JSON_ARRAY) {
		r->fn = fn;
		reply_fail(r, LR_EPROTO, "the Anthropic response has no content array");
		return;
	}
	int b = content + 1, tools = 0;
	bool json_reply = false;
	for (int k = 0; k < d->tok[content].size; k++, b = json_skip(d, b)) {
		int type = json_object_get(d, b, "type");
		if (type >= 0 && json_string_eq(d, type, "text")) {
			int t = json_object_get(d, b, "text");
			if (t >= 0 && d->tok[t].type == JSON_STRING)
				reply_text(r, 0, d->text + d->tok[t].start, (size_t)(d->tok[t].end - d->tok[t].start), true);
		} else if (type >= 0 && json_string_eq(d, type, "tool_use")) {
			int id = json_object_get(d, b, "id"), name = json_object_get(d, b, "name");
			int input = json_object_get(d, b, "input");
			const char *is = "{}";
			size_t il = 2;
			if (input >= 0)
				json_span(d, input, &is, &il);
			if (json_string_eq(d, name, JSON_TOOL)) {
				json_reply = true; /* response_format: the input is the reply */
				reply_text(r, 0, is, il, false);
				continue;
			}
			reply_tool(r, tools++, id >= 0 ? d->text + d->tok[id].start : NULL,
			           id >= 0 ? (size_t)(d->tok[id].end - d->tok[id].start) : 0,
			           name >= 0 ? d->text + d->tok[name].start : NULL,
			           name >= 0 ? (size_t)(d->tok[name].end - d->tok[name].start) : 0, is, il, false);
		}
	}
	int stop = json_object_get(d, 0, "stop_reason");
	if (stop >= 0 && d->tok[stop].type == JSON_STRING)
		reply_finish(r, 0, json_reply && !tools ? "stop"
		                                         : finish_of(d->text + d->tok[stop].start,
		                                                     (size_t)(d->tok[stop].end - d->tok[stop].start)));
	r->fn = fn;
}

/* Anthropic's error types, and the few messages that say more. */
static int error_code(const char *type, const char *message, int status)
{
	static const struct named_code codes[] = {
		{"authentication_error", LR_EAUTH}, {"permission_error", LR_EPERMISSION},
		{"not_found_error", LR_ENOTFOUND}, {"request_too_large", LR_EBADREQUEST},
		{"rate_limit_error", LR_ERATELIMIT}, {"billing_error", LR_EQUOTA},
		{"overloaded_error", LR_EOVERLOADED}, {"api_error", LR_ESERVER},
	};
	if (!strcmp(type, "invalid_request_error")) {
		if (strstr(message, "prompt is too long") || strstr(message, "context window") ||
		    strstr(message, "context length"))
			return LR_ECONTEXT;
		if (strstr(message, "credit balance"))
			return LR_EQUOTA;
		return LR_EBADREQUEST;
	}
	return named_code(codes, sizeof(codes) / sizeof(codes[0]), type,
	                  status ? provider_status_code(status) : LR_ESERVER);
}

static void anthropic_error(struct json_doc *d, bool have_doc, int status, struct reply *r)
{
	int err = have_doc ? json_object_get(d, 0, "error") : -1;
	char type[64] = "", message[300] = "";
	if (err >= 0 && d->tok[err].type == JSON_OBJECT) {
		copy_string(type, sizeof(type), d, json_object_get(d, err, "type"));
		copy_string(message, sizeof(message), d, json_object_get(d, err, "message"));
	}
	r->err.code = type[0] ? error_code(type, message, status) : provider_status_code(status);
	provider_error_message(r, status, d, err >= 0 ? json_object_get(d, err, "message") : -1);
}

/* ---- streams ---- */

/* One event's fields, picked out while json_scan validates it. */
struct event_fields {
	const char *type, *delta_type, *text, *partial, *stop, *block_type, *id, *name, *model;
	const char *err_type, *err_message;
	size_t type_len, delta_type_len, text_len, partial_len, stop_len, block_type_len, id_len,
		name_len, model_len, err_type_len, err_message_len;
	int64_t index;
	bool has_usage, has_input;
	lr_usage usage;
	int64_t cache_read, cache_created;
};

#define SET(field, v, len) (ef->field = (v), ef->field##_len = (len))

static void event_field(void *ctx, const struct json_scan_path *p, enum json_type type, const char *v,
                        size_t len)
{
	struct event_fields *ef = ctx;
	if (p->depth == 1) {
		if (type == JSON_STRING && KEY_IS(p, 0, "type"))
			SET(type, v, len);
		else if (type == JSON_PRIMITIVE && KEY_IS(p, 0, "index"))
			ef->index = scanned_count(v, len);
		return;
	}
	/* usage lives at the top of message_delta and in message_start's message */
	int u = KEY_IS(p, 0, "usage") ? 1 : (KEY_IS(p, 0, "message") && KEY_IS(p, 1, "usage")) ? 2 : 0;
	if (u && p->depth == u + 1 && type == JSON_PRIMITIVE) {
		ef->has_usage = true;
		if (KEY_IS(p, u, "input_tokens"))
			ef->usage.input_tokens = scanned_count(v, len), ef->has_input = true;
		else if (KEY_IS(p, u, "output_tokens"))
			ef->usage.output_tokens = scanned_count(v, len);
		else if (KEY_IS(p, u, "cache_read_input_tokens"))
			ef->cache_read = scanned_count(v, len);
		else if (KEY_IS(p, u, "cache_creation_input_tokens"))
			ef->cache_created = scanned_count(v, len);
		return;
	}
	if (p->depth != 2 || type != JSON_STRING)
		return;
	if (KEY_IS(p, 0, "delta")) {
		if (KEY_IS(p, 1, "type"))
			SET(delta_type, v, len);
		else if (KEY_IS(p, 1, "text"))
			SET(text, v, len);
		else if (KEY_IS(p, 1, "partial_json"))
			SET(partial, v, len);
		else if (KEY_IS(p, 1, "stop_reason"))
			SET(stop, v, len);
	} else if (KEY_IS(p, 0, "content_block")) {
		if (KEY_IS(p, 1, "type"))
			SET(block_type, v, len);
		else if (KEY_IS(p, 1, "id"))
			SET(id, v, len);
		else if (KEY_IS(p, 1, "name"))
			SET(name, v, len);
	} else if (KEY_IS(p, 0, "message")) {
		if (KEY_IS(p, 1, "id"))
			SET(id, v, len);
		else if (KEY_IS(p, 1, "model"))
			SET(model, v, len);
	} else if (KEY_IS(p, 0, "error")) {
		if (KEY_IS(p, 1, "type"))
			SET(err_type, v, len);
		else if (KEY_IS(p, 1, "message"))
			SET(err_message, v, len);
	}
}

#define TYPE_IS(lit) (ef.type_len == sizeof(lit) - 1 && memcmp(ef.type, lit, sizeof(lit) - 1) == 0)

static int anthropic_sse_event(struct stream_decoder *sd, const struct sse_event *ev)
{
	struct reply *r = sd->r;
	if (r->done)
		return 0;
	struct event_fields ef = {0};
	if (!json_scan(ev->data, ev->data_len, event_field, &ef))
		return stream_not_json(sd, 0, ev->data, ev->data_len, false);
	if (!ef.type) {
		ef.type = ev->type;
		ef.type_len = ev->type_len;
	}
	if (TYPE_IS("ping"))
		return 0; /* keep-alive: not progress */
	r->events++;
	if (ef.has_usage) {
		if (ef.has_input) {
			r->usage.input_tokens = ef.usage.input_tokens + ef.cache_read + ef.cache_created;
			r->usage.cached_input_tokens = ef.cache_read;
		}
		if (ef.usage.output_tokens)
			r->usage.output_tokens = ef.usage.output_tokens;
	}
	if (TYPE_IS("content_block_delta")) {
		if (ef.text && (int)ef.index == sd->block && sd->block_tool < 0)
			reply_text(r, 0, ef.text, ef.text_len, true);
		else if (ef.partial && (int)ef.index == sd->block && sd->json_block)
			reply_text(r, 0, ef.partial, ef.partial_len, true); /* response_format's JSON */
		else if (ef.partial && (int)ef.index == sd->block && sd->block_tool >= 0)
			reply_tool(r, sd->block_tool, NULL, 0, NULL, 0, ef.partial, ef.partial_len, true);
	} else if (TYPE_IS("content_block_start")) {
		sd->block = (int)ef.index;
		sd->block_tool = -1;
		sd->json_block = false;
		bool tool_use = ef.block_type && ef.block_type_len == 8 && memcmp(ef.block_type, "tool_use", 8) == 0;
		if (tool_use && ef.name_len == sizeof(JSON_TOOL) - 1 && memcmp(ef.name, JSON_TOOL, ef.name_len) == 0) {
			sd->json_block = true;
			sd->json_reply = true;
		} else if (tool_use) {
			sd->block_tool = sd->tools++;
			reply_tool(r, sd->block_tool, ef.id, ef.id_len, ef.name, ef.name_len, NULL, 0, true);
		}
	} else if (TYPE_IS("content_block_stop")) {
		sd->block = sd->block_tool = -1;
		sd->json_block = false;
	} else if (TYPE_IS("message_start")) {
		if (ef.id)
			reply_copy_field(r->id, sizeof(r->id), ef.id, ef.id_len);
		if (ef.model)
			reply_copy_field(r->model, sizeof(r->model), ef.model, ef.model_len);
	} else if (TYPE_IS("message_delta")) {
		if (ef.stop)
			reply_finish(r, 0, sd->json_reply && !sd->tools ? "stop" : finish_of(ef.stop, ef.stop_len));
	} else if (TYPE_IS("message_stop")) {
		r->done = true;
	} else if (TYPE_IS("error")) {
		struct buf m = {0}; /* owner: this block */
		char type[64] = "";
		if (ef.err_type)
			reply_copy_field(type, sizeof(type), ef.err_type, ef.err_type_len);
		bool ok = ef.err_message && json_unescape_append(&m, ef.err_message, ef.err_message_len) == 0 &&
		          buf_append(&m, "", 1) == 0;
		reply_fail(r, error_code(type, ok ? m.data : "", 0), "error event in the stream: %s%s%s",
		           type[0] ? type : "error", ok ? ": " : "", ok ? m.data : "");
		buf_free(&m);
	}
	return r->err.code && r->err.code == LR_ENOMEM ? (sd->fatal = true, r->err.code) : 0;
}

/* ---- the row ---- */

static int anthropic_path(struct provider_request *out, enum lr_endpoint ep, const char *base,
                          const char *model, size_t model_len, const char **why)
{
	if (ep == LR_ENDPOINT_EMBEDDINGS) {
		*why = "Anthropic has no embeddings endpoint";
		return LR_EUNSUPPORTED;
	}
	if (ep == LR_ENDPOINT_COMPLETIONS) {
		*why = "Anthropic has no text-completions endpoint (its legacy /v1/complete is not supported)";
		return LR_EUNSUPPORTED;
	}
	return path_join(&out->path, base, NULL, "/v1", "/messages");
}

const struct provider_row anthropic_row = {
	.name = "anthropic",
	.base_url = "https://api.anthropic.com",
	.base_env = "ANTHROPIC_BASE_URL",
	.key_env = "ANTHROPIC_API_KEY",
	.key_form = KEY_HEADER,
	.key_header = "x-api-key",
	.fixed_headers = {{"anthropic-version", "2023-06-01"}},
	.request_id_header = "request-id",
	.ratelimit_requests_header = "anthropic-ratelimit-requests-remaining",
	.ratelimit_tokens_headers = {"anthropic-ratelimit-tokens-remaining",
	                             "anthropic-ratelimit-input-tokens-remaining"},
	.path = anthropic_path,
	.build_chat = anthropic_build,
	.parse_error = anthropic_error,
	.parse_reply = anthropic_parse,
	.sse_event = anthropic_sse_event,
};

/* Helpers the dialects share (dialect_util.h). */
#include "provider/dialect_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- scanned and token values ---- */

int64_t scanned_count(const char *v, size_t len)
{
	int64_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9' || n > INT64_MAX / 10 - 10)
			return 0; /* not a plain count: treat as absent */
		n = n * 10 + (v[i] - '0');
	}
	return n;
}

bool json_string_span(const struct json_doc *d, int i, const char **s, size_t *n)
{
	bool is = i >= 0 && i < d->count && d->tok[i].type == JSON_STRING;
	*s = is ? d->text + d->tok[i].start : NULL;
	*n = is ? (size_t)(d->tok[i].end - d->tok[i].start) : 0;
	return is;
}

int json_copy_value(struct buf *b, const struct json_doc *d, int i)
{
	const char *s;
	size_t n;
	json_span(d, i, &s, &n);
	return s ? buf_append(b, s, n) : LR_EINVAL;
}

int json_unescape_token(struct buf *b, const struct json_doc *d, int i)
{
	if (i < 0 || i >= d->count || d->tok[i].type != JSON_STRING)
		return LR_EINVAL;
	return json_unescape_append(b, d->text + d->tok[i].start, (size_t)(d->tok[i].end - d->tok[i].start));
}

int put_member(struct buf *out, const char *name, const struct json_doc *d, int v)
{
	buf_puts(out, ",");
	json_append_string(out, name, strlen(name));
	buf_puts(out, ":");
	int ret = buf_error(out);
	return ret ? ret : json_copy_value(out, d, v);
}

int put_as_list(struct buf *out, const struct json_doc *d, int v)
{
	if (d->tok[v].type != JSON_STRING)
		return json_copy_value(out, d, v);
	buf_puts(out, "[");
	json_copy_value(out, d, v); /* a string token always has a span */
	buf_puts(out, "]");
	return buf_error(out);
}

int put_object_member(struct buf *out, const char *name, const struct buf *members)
{
	buf_puts(out, ",");
	json_append_string(out, name, strlen(name));
	buf_puts(out, ":{");
	buf_append(out, members->data, members->len);
	return buf_puts(out, "}");
}

/* ---- the unified request ---- */

int messages_array(const struct json_doc *d, const char **why)
{
	int msgs = json_object_get(d, 0, "messages");
	if (msgs < 0 || d->tok[msgs].type != JSON_ARRAY) {
		*why = "request has no messages";
		return LR_EINVAL;
	}
	return msgs;
}

bool role_is_system(const struct json_doc *d, int role)
{
	return role >= 0 && (json_string_eq(d, role, "system") || json_string_eq(d, role, "developer"));
}

int lift_system_message(struct buf *system, const struct json_doc *d, int content, const char **why)
{
	int ret = system->len ? buf_puts(system, "\n") : 0;
	if (!ret && (ret = content_text(system, d, content)) == LR_EINVAL)
		*why = "a system message's content is not text";
	return ret;
}

int put_turns(struct buf *out, struct buf *system, const struct json_doc *d, int msgs,
              const struct turn_style *style, const char **why)
{
	int m = msgs + 1, ret = 0;
	bool first = true, in_tool_results = false;
	for (int k = 0; k < d->tok[msgs].size; k++, m = json_skip(d, m)) {
		int role = d->tok[m].type == JSON_OBJECT ? json_object_get(d, m, "role") : -1;
		int content = role >= 0 ? json_object_get(d, m, "content") : -1;
		if (role < 0) {
			*why = d->tok[m].type == JSON_OBJECT ? "a message needs a role" : "a message is not a JSON object";
			return LR_EINVAL;
		}
		if (role_is_system(d, role)) {
			if ((ret = lift_system_message(system, d, content, why)))
				return ret; /* LR_EINVAL or LR_ENOMEM */
			continue;
		}
		if (json_string_eq(d, role, "tool")) {
			if (!first)
				buf_puts(out, ",");
			if (!in_tool_results)
				buf_puts(out, style->user_open);
			if ((ret = style->tool_result(out, d, msgs, m, why)))
				return ret;
			in_tool_results = true;
			first = false;
			continue;
		}
		if (in_tool_results)
			buf_puts(out, "]}");
		in_tool_results = false;
		bool assistant = json_string_eq(d, role, "assistant");
		if (!assistant && !json_string_eq(d, role, "user")) {
			*why = "message roles are system, developer, user, assistant and tool";
			return LR_EINVAL;
		}
		if (!first)
			buf_puts(out, ",");
		buf_puts(out, assistant ? style->assistant_open : style->user_open);
		bool any = false;
		int calls = assistant ? json_object_get(d, m, "tool_calls") : -1;
		ret = buf_error(out);
		if (!ret && content >= 0)
			ret = style->content_items(out, d, content, &any, why);
		if (!ret && calls >= 0 && d->tok[calls].type == JSON_ARRAY)
			ret = style->call_items(out, d, calls, &any, why);
		if (ret)
			return ret;
		if (!any) {
			*why = "a message has no content";
			return LR_EINVAL;
		}
		buf_puts(out, "]}");
		first = false;
	}
	if (in_tool_results)
		buf_puts(out, "]}");
	return buf_puts(out, "]");
}

int content_text(struct buf *out, const struct json_doc *d, int content)
{
	if (content < 0)
		return 0;
	const struct json_token *t = &d->tok[content];
	int ret = 0;
	if (t->type == JSON_STRING) {
		ret = json_unescape_token(out, d, content);
		return ret && ret != LR_ENOMEM ? LR_EINVAL : ret;
	}
	if (t->type == JSON_PRIMITIVE) /* null */
		return 0;
	if (t->type != JSON_ARRAY)
		return LR_EINVAL;
	int part = content + 1;
	bool first = true;
	for (int k = 0; k < t->size && !ret; k++, part = json_skip(d, part)) {
		if (d->tok[part].type != JSON_OBJECT)
			return LR_EINVAL;
		int type = json_object_get(d, part, "type");
		int text = json_object_get(d, part, "text");
		if (type >= 0 && !json_string_eq(d, type, "text"))
			continue;
		if (text < 0)
			continue;
		if (!first)
			ret = buf_append(out, "\n", 1);
		if (!ret)
			ret = json_unescape_token(out, d, text);
		first = false;
	}
	return ret && ret != LR_ENOMEM ? LR_EINVAL : ret;
}

int image_part(const struct json_doc *d, int part, struct buf *url, const char **mime,
               size_t *mime_len, const char **data, size_t *data_len)
{
	int iu = json_object_get(d, part, "image_url");
	int u = iu >= 0 && d->tok[iu].type == JSON_OBJECT ? json_object_get(d, iu, "url") : iu;
	buf_clear(url);
	*mime = *data = NULL;
	*mime_len = *data_len = 0;
	if (u < 0 || json_unescape_token(url, d, u) || buf_append(url, "", 1))
		return LR_EINVAL;
	url->len--;
	const char *s = url->data;
	if (url->len > 5 && strncasecmp(s, "data:", 5) == 0) {
		const char *comma = memchr(s, ',', url->len);
		const char *semi = memchr(s, ';', url->len);
		if (!comma || !semi || semi > comma || (size_t)(comma - semi) != 7 ||
		    strncasecmp(semi, ";base64", 7) != 0)
			return LR_EINVAL; /* only base64 data URLs carry images */
		*mime = s + 5;
		*mime_len = (size_t)(semi - *mime);
		*data = comma + 1;
		*data_len = url->len - (size_t)(*data - s);
	}
	return 0;
}

int tool_call_name(const struct json_doc *d, int msgs, int upto, int id)
{
	int m = msgs + 1, found = -1;
	const char *want;
	size_t want_len;
	json_span(d, id, &want, &want_len);
	for (int k = 0; want && k < d->tok[msgs].size && m < upto; k++, m = json_skip(d, m)) {
		int calls = json_object_get(d, m, "tool_calls");
		if (calls < 0 || d->tok[calls].type != JSON_ARRAY)
			continue;
		int c = calls + 1;
		for (int j = 0; j < d->tok[calls].size; j++, c = json_skip(d, c)) {
			const char *have;
			size_t have_len;
			json_span(d, json_object_get(d, c, "id"), &have, &have_len);
			if (have && have_len == want_len && memcmp(have, want, want_len) == 0)
				found = json_path(d, c, "function.name");
		}
	}
	return found;
}

int arguments_object(struct buf *out, const struct json_doc *d, int args)
{
	if (args < 0)
		return buf_puts(out, "{}");
	if (d->tok[args].type == JSON_OBJECT) /* some clients send the object itself */
		return json_copy_value(out, d, args);
	struct buf text = {0}; /* owner: this function */
	int ret = json_unescape_token(&text, d, args);
	if (!ret && text.len == 0)
		ret = buf_puts(&text, "{}");
	struct json_doc inner = {0}; /* owner: this function */
	if (!ret && (ret = json_parse(&inner, text.data, text.len)) != LR_ENOMEM &&
	    (ret || inner.count == 0 || inner.tok[0].type != JSON_OBJECT))
		ret = LR_EINVAL;
	if (!ret)
		ret = buf_append(out, text.data, text.len);
	json_doc_free(&inner);
	buf_free(&text);
	return ret;
}

int put_function_list(struct buf *out, const struct json_doc *d, int tools, const char *schema_key,
                      const char *default_schema, const char **why)
{
	int ret = 0, t = tools + 1;
	for (int k = 0; k < d->tok[tools].size && !ret; k++, t = json_skip(d, t)) {
		int fn = json_object_get(d, t, "function");
		int name = fn >= 0 ? json_object_get(d, fn, "name") : -1;
		if (name < 0) {
			*why = "a tool needs function.name";
			return LR_EINVAL;
		}
		buf_puts(out, k ? ",{\"name\":" : "{\"name\":");
		json_copy_value(out, d, name);
		int desc = json_object_get(d, fn, "description");
		if (desc >= 0)
			put_member(out, "description", d, desc);
		int params = json_object_get(d, fn, "parameters");
		if (params >= 0)
			put_member(out, schema_key, d, params);
		else if (default_schema)
			buf_printf(out, ",\"%s\":%s", schema_key, default_schema);
		ret = buf_puts(out, "}");
	}
	return ret;
}

/* ---- endpoint paths ---- */

bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t sl = strlen(suffix);
	return n >= sl && memcmp(s + n - sl, suffix, sl) == 0;
}

int path_join(struct buf *out, const char *base, const char *drop,
                     const char *version, const char *rest)
{
	/* One reservation and plain copies: it runs per request. */
	size_t bl = strlen(base), vl = strlen(version), rl = strlen(rest);
	if (drop && ends_with(base, bl, drop))
		bl -= strlen(drop);
	if (vl && ends_with(base, bl, version))
		vl = 0;
	int ret = buf_reserve(out, bl + vl + rl + 1);
	if (ret)
		return ret;
	char *w = out->data + out->len;
	memcpy(w, base, bl);
	memcpy(w + bl, version, vl);
	memcpy(w + bl + vl, rest, rl);
	out->len += bl + vl + rl;
	return 0;
}

/* ---- replies ---- */

void reply_whole_tool_call(struct reply *r, int at, const char *id, size_t id_len, const char *name,
                           size_t name_len, const char *args, size_t args_len)
{
	if (id) {
		reply_tool(r, at, id, id_len, NULL, 0, NULL, 0, true);
	} else {
		char made[32];
		int n = snprintf(made, sizeof(made), "call_%d", at);
		reply_tool(r, at, made, (size_t)n, NULL, 0, NULL, 0, false);
	}
	if (name)
		reply_tool(r, at, NULL, 0, name, name_len, NULL, 0, true);
	reply_tool(r, at, NULL, 0, NULL, 0, args ? args : "{}", args ? args_len : 2, false);
}

void reply_whole_tool_call_tokens(struct reply *r, int at, const struct json_doc *d, int id, int name,
                                  int args)
{
	const char *id_s, *name_s, *args_s = NULL;
	size_t id_len, name_len, args_len = 0;
	json_string_span(d, id, &id_s, &id_len);
	json_string_span(d, name, &name_s, &name_len);
	if (args >= 0)
		json_span(d, args, &args_s, &args_len);
	reply_whole_tool_call(r, at, id_s, id_len, name_s, name_len, args_s, args_len);
}

int stream_not_json(struct stream_decoder *sd, int rc, const char *data, size_t len, bool line)
{
	sd->fatal = true;
	if (rc == LR_ENOMEM)
		return reply_fail(sd->r, rc, "out of memory parsing a stream %s", line ? "line" : "event");
	char why[96];
	return reply_fail(sd->r, LR_EPROTO, "a stream %s is not a JSON object: %s",
	                  line ? "line" : "event's data", json_invalid_reason(data, len, why, sizeof(why)));
}

void provider_error_message(struct reply *r, int status, struct json_doc *d, int msg)
{
	char text[300];
	if (msg >= 0 && d->tok[msg].type == JSON_STRING && json_get_string(d, msg, text, sizeof(text)) >= 0)
		error_set(&r->err, r->err.code, 0, "HTTP %d: %s", status, text);
	else
		error_set(&r->err, r->err.code, 0, "HTTP %d from the server", status);
}

int named_code(const struct named_code *table, size_t n, const char *name, int fallback)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(table[i].name, name))
			return table[i].code;
	return fallback;
}

int provider_status_code(int status)
{
	switch (status) {
	case 400: case 413: case 422: return LR_EBADREQUEST;
	case 401: return LR_EAUTH;
	case 403: return LR_EPERMISSION;
	case 404: return LR_ENOTFOUND;
	case 408: return LR_ETIMEOUT;
	case 429: return LR_ERATELIMIT;
	case 503: case 529: return LR_EOVERLOADED;
	}
	if (status >= 500)
		return LR_ESERVER;
	return LR_EHTTP;
}


#include "openai.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

const char *openai_endpoint_path(enum lr_endpoint ep)
{
	return ep == LR_ENDPOINT_EMBEDDINGS ? "/embeddings" : "/chat/completions";
}

static int body_with_model(const struct lr_request *rq, struct http_buf *out, const char **why)
{
	struct json_doc doc = {0};
	int ret = json_parse(&doc, rq->body.data, rq->body.len);
	if (ret < 0 || doc.count == 0 || doc.tok[0].type != JSON_OBJECT) {
		json_doc_free(&doc);
		*why = "request body is not a JSON object";
		return LR_EINVAL;
	}
	int v = json_object_get(&doc, 0, "model");
	const char *b = rq->body.data;
	if (v >= 0) {
		const char *vs;
		size_t vl;
		json_span(&doc, v, &vs, &vl);
		size_t pre = (size_t)(vs - b);
		ret = http_buf_append(out, b, pre);
		if (!ret)
			ret = json_append_string(out, rq->model, strlen(rq->model));
		if (!ret)
			ret = http_buf_append(out, vs + vl, rq->body.len - pre - vl);
	} else {
		/* No model key: insert one right after the opening brace. */
		size_t open = (size_t)doc.tok[0].start + 1;
		ret = http_buf_append(out, b, open);
		if (!ret)
			ret = http_buf_append(out, "\"model\":", 8);
		if (!ret)
			ret = json_append_string(out, rq->model, strlen(rq->model));
		if (!ret && doc.tok[0].size > 0)
			ret = http_buf_append(out, ",", 1);
		if (!ret)
			ret = http_buf_append(out, b + open, rq->body.len - open);
	}
	json_doc_free(&doc);
	return ret;
}

int openai_build_body(const struct lr_request *rq, struct http_buf *out, const char **why)
{
	if (rq->body.len) {
		if (rq->model)
			return body_with_model(rq, out, why);
		return http_buf_append(out, rq->body.data, rq->body.len);
	}
	if (!rq->model) {
		*why = "request has neither a model nor a body";
		return LR_EINVAL;
	}
	if (rq->messages.len == 0) {
		*why = "request has no messages";
		return LR_EINVAL;
	}
	int ret = http_buf_append(out, "{\"model\":", 9);
	if (!ret)
		ret = json_append_string(out, rq->model, strlen(rq->model));
	if (rq->endpoint == LR_ENDPOINT_EMBEDDINGS) {
		/* Embeddings take the message texts as the input list. */
		*why = "embeddings requests need a JSON body (input)";
		return LR_EINVAL;
	}
	if (!ret)
		ret = http_buf_append(out, ",\"messages\":[", 13);
	if (!ret)
		ret = http_buf_append(out, rq->messages.data, rq->messages.len);
	if (!ret)
		ret = http_buf_append(out, "]", 1);
	if (!ret && rq->on_delta)
		ret = http_buf_append(out, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}", 54);
	if (!ret && rq->max_tokens > 0) {
		char num[32];
		int n = snprintf(num, sizeof(num), ",\"max_tokens\":%d", rq->max_tokens);
		ret = http_buf_append(out, num, (size_t)n);
	}
	if (!ret)
		ret = http_buf_append(out, "}", 1);
	return ret;
}

/* Maps an HTTP error status plus the provider's error body to a code.
 * The body decides between rate limiting and an exhausted quota. */
static int classify_status(int status, const struct json_doc *d, bool have_doc)
{
	int err_obj = have_doc ? json_object_get(d, 0, "error") : -1;
	if (err_obj >= 0) {
		int code = json_object_get(d, err_obj, "code");
		int type = json_object_get(d, err_obj, "type");
		if ((code >= 0 && json_string_eq(d, code, "insufficient_quota")) ||
		    (type >= 0 && json_string_eq(d, type, "insufficient_quota")))
			return LR_EQUOTA;
		if (code >= 0 && json_string_eq(d, code, "context_length_exceeded"))
			return LR_ECONTEXT;
	}
	switch (status) {
	case 400: case 422: return LR_EBADREQUEST;
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

static bool key_is(const struct json_scan_path *p, int level, const char *lit, size_t n)
{
	return p->key[level] && p->key_len[level] == n && memcmp(p->key[level], lit, n) == 0;
}
#define KEY_IS(p, level, lit) key_is(p, level, lit, sizeof(lit) - 1)

static int64_t parse_count(const char *v, size_t len)
{
	int64_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9' || n > INT64_MAX / 10 - 10)
			return 0; /* not a plain count: treat as absent */
		n = n * 10 + (v[i] - '0');
	}
	return n;
}

/* Picks model and usage out of a success body while json_scan validates it. */
static void success_field(void *ctx, const struct json_scan_path *p, enum json_type type,
                          const char *v, size_t len)
{
	struct openai_outcome *out = ctx;
	switch (p->depth) {
	case 1:
		if (type == JSON_STRING && KEY_IS(p, 0, "model") && len < sizeof(out->model) &&
		    !memchr(v, '\\', len)) {
			memcpy(out->model, v, len);
			out->model[len] = '\0';
		}
		break;
	case 2:
		if (type != JSON_PRIMITIVE || !KEY_IS(p, 0, "usage"))
			break;
		if (KEY_IS(p, 1, "prompt_tokens"))
			out->usage.input_tokens = parse_count(v, len);
		else if (KEY_IS(p, 1, "completion_tokens"))
			out->usage.output_tokens = parse_count(v, len);
		break;
	case 3:
		if (type == JSON_PRIMITIVE && KEY_IS(p, 0, "usage") &&
		    KEY_IS(p, 1, "prompt_tokens_details") && KEY_IS(p, 2, "cached_tokens"))
			out->usage.cached_input_tokens = parse_count(v, len);
		else if (type == JSON_STRING && out->choices_closed == 0 && KEY_IS(p, 0, "choices") &&
		         KEY_IS(p, 2, "finish_reason") && len < sizeof(out->finish_reason))
			memcpy(out->finish_reason, v, len), out->finish_reason[len] = '\0';
		break;
	case 4:
		/* choices[0].message.content: the reply text */
		if (type == JSON_STRING && out->text && out->choices_closed == 0 &&
		    KEY_IS(p, 0, "choices") && KEY_IS(p, 2, "message") && KEY_IS(p, 3, "content") &&
		    json_unescape_append(out->text, v, len))
			out->text_error = true;
		break;
	}
	if (p->depth == 2 && type == JSON_OBJECT && KEY_IS(p, 0, "choices"))
		out->choices_closed++;
}

static bool starts_with_object(const char *body, size_t len)
{
	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
		i++;
	return i < len && body[i] == '{';
}

void openai_parse_response(struct json_doc *doc, int status, const char *body, size_t len,
                           struct openai_outcome *out, struct http_buf *text)
{
	memset(out, 0, sizeof(*out));
	out->text = text;
	if (status >= 200 && status < 300) {
		/* The hot path: one validating pass, no tokens. */
		if (!starts_with_object(body, len) || !json_scan(body, len, success_field, out)) {
			memset(&out->usage, 0, sizeof(out->usage));
			out->model[0] = '\0';
			out->error = LR_EPROTO;
			snprintf(out->message, sizeof(out->message),
			         "HTTP %d response body is not a JSON object", status);
			return;
		}
		out->body_is_json = true;
		return;
	}
	bool have_doc = len > 0 && json_parse(doc, body, len) == 0 && doc->count > 0 &&
	                doc->tok[0].type == JSON_OBJECT;
	out->body_is_json = have_doc;
	out->error = classify_status(status, doc, have_doc);
	int msg = have_doc ? json_path(doc, 0, "error.message") : -1;
	char provider_msg[300];
	if (msg >= 0 && json_get_string(doc, msg, provider_msg, sizeof(provider_msg)) >= 0)
		snprintf(out->message, sizeof(out->message), "HTTP %d: %s", status, provider_msg);
	else
		snprintf(out->message, sizeof(out->message), "HTTP %d from the server", status);
}

/* ---- streams ---- */

/* What one chunk event carries, picked out while json_scan validates it. */
struct chunk_fields {
	struct openai_stream *st;
	const char *content;        /* raw span of choices[i].delta.content */
	size_t content_len;
	int64_t index;
	const char *finish;         /* raw span of choices[i].finish_reason (a string) */
	size_t finish_len;
	bool error;                 /* an {"error":{...}} event */
	const char *error_message;
	size_t error_message_len;
	int delivered_error;
};

static void chunk_emit_choice(struct chunk_fields *cf)
{
	struct openai_stream *st = cf->st;
	st->scratch.len = 0;
	if (cf->content && json_unescape_append(&st->scratch, cf->content, cf->content_len)) {
		cf->delivered_error = LR_EPROTO;
		return;
	}
	char finish[32] = "";
	if (cf->finish) {
		size_t n = cf->finish_len < sizeof(finish) - 1 ? cf->finish_len : sizeof(finish) - 1;
		memcpy(finish, cf->finish, n);
		finish[n] = '\0';
	}
	if (cf->index == 0) {
		if (st->scratch.len && http_buf_append(&st->text, st->scratch.data, st->scratch.len)) {
			cf->delivered_error = LR_ENOMEM;
			return;
		}
		if (finish[0])
			memcpy(st->finish_reason, finish, sizeof(finish));
	}
	if (st->fn && (st->scratch.len || finish[0])) {
		lr_delta d = {
			.text = st->scratch.len ? st->scratch.data : "",
			.text_len = st->scratch.len,
			.choice = (int)cf->index,
			.finish_reason = finish[0] ? finish : NULL,
		};
		st->fn(st->user, &d);
	}
	cf->content = cf->finish = NULL;
	cf->index = 0;
}

static void chunk_field(void *ctx, const struct json_scan_path *p, enum json_type type,
                        const char *v, size_t len)
{
	struct chunk_fields *cf = ctx;
	struct openai_stream *st = cf->st;
	if (p->depth == 1) {
		if (type == JSON_STRING && KEY_IS(p, 0, "model") && len < sizeof(st->model) &&
		    !memchr(v, '\\', len)) {
			memcpy(st->model, v, len);
			st->model[len] = '\0';
		} else if (type == JSON_STRING && KEY_IS(p, 0, "id") && len < sizeof(st->id) &&
		           !memchr(v, '\\', len)) {
			memcpy(st->id, v, len);
			st->id[len] = '\0';
		} else if (type == JSON_OBJECT && KEY_IS(p, 0, "error")) {
			cf->error = true;
		}
		return;
	}
	if (!KEY_IS(p, 0, "choices")) {
		if (p->depth == 2 && type == JSON_PRIMITIVE && KEY_IS(p, 0, "usage")) {
			if (KEY_IS(p, 1, "prompt_tokens"))
				st->usage.input_tokens = parse_count(v, len);
			else if (KEY_IS(p, 1, "completion_tokens"))
				st->usage.output_tokens = parse_count(v, len);
		} else if (p->depth == 3 && type == JSON_PRIMITIVE && KEY_IS(p, 0, "usage") &&
		           KEY_IS(p, 1, "prompt_tokens_details") && KEY_IS(p, 2, "cached_tokens")) {
			st->usage.cached_input_tokens = parse_count(v, len);
		} else if (p->depth == 2 && type == JSON_STRING && KEY_IS(p, 0, "error") &&
		           KEY_IS(p, 1, "message")) {
			cf->error_message = v;
			cf->error_message_len = len;
		}
		return;
	}
	/* Inside choices[i]: keys are [choices, (index), field, ...]. */
	if (p->depth == 2 && type == JSON_OBJECT) {
		chunk_emit_choice(cf); /* choices[i] closed: one delta */
	} else if (p->depth == 3) {
		if (KEY_IS(p, 2, "index") && type == JSON_PRIMITIVE)
			cf->index = parse_count(v, len);
		else if (KEY_IS(p, 2, "finish_reason") && type == JSON_STRING)
			cf->finish = v, cf->finish_len = len;
	} else if (p->depth == 4 && KEY_IS(p, 2, "delta") && KEY_IS(p, 3, "content") &&
	           type == JSON_STRING) {
		cf->content = v, cf->content_len = len;
	}
}

static int stream_fail(struct openai_stream *st, int err, const char *msg)
{
	if (!st->error) {
		st->error = err;
		snprintf(st->message, sizeof(st->message), "%s", msg);
	}
	return st->error;
}

static int stream_event(void *ctx, const struct sse_event *ev)
{
	struct openai_stream *st = ctx;
	if (st->done || st->error)
		return 0;
	if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
		st->done = true;
		st->events++;
		return 0;
	}
	struct chunk_fields cf = {.st = st};
	if (!json_scan(ev->data, ev->data_len, chunk_field, &cf))
		return stream_fail(st, LR_EPROTO, "a stream event's data is not valid JSON");
	st->events++;
	if (cf.delivered_error)
		return stream_fail(st, cf.delivered_error, "a stream event could not be decoded");
	if (cf.error) {
		char text[300] = "error event in the stream";
		if (cf.error_message) {
			struct http_buf m = {0};
			if (json_unescape_append(&m, cf.error_message, cf.error_message_len) == 0)
				snprintf(text, sizeof(text), "error event in the stream: %s", m.data);
			http_buf_free(&m);
		}
		return stream_fail(st, LR_ESERVER, text);
	}
	return 0;
}

static const struct sse_callbacks stream_callbacks = {.on_event = stream_event};

void openai_stream_init(struct openai_stream *st, lr_delta_fn fn, void *user)
{
	memset(st, 0, sizeof(*st));
	sse_parser_init(&st->sse, 0, 0);
	st->fn = fn;
	st->user = user;
}

void openai_stream_free(struct openai_stream *st)
{
	sse_parser_free(&st->sse);
	http_buf_free(&st->text);
	http_buf_free(&st->scratch);
}

int openai_stream_feed(struct openai_stream *st, const char *data, size_t len)
{
	if (st->error)
		return st->error;
	int r = sse_parser_feed(&st->sse, data, len, &stream_callbacks, st);
	if (r && !st->error)
		stream_fail(st, r, r == LR_ETOOLARGE ? "a stream event exceeds the size cap"
		                                     : "the stream could not be parsed");
	return st->error;
}

int openai_stream_finish(struct openai_stream *st)
{
	if (st->error)
		return st->error;
	sse_parser_finish(&st->sse);
	/* OpenAI ends with data: [DONE]; servers that omit it have at least
	 * said why the reply ended. */
	if (!st->done && !st->finish_reason[0])
		return stream_fail(st, LR_EPROTO, "the stream ended before its last event");
	return 0;
}

int openai_stream_body(const struct openai_stream *st, struct http_buf *out)
{
	char num[160];
	int ret = http_buf_append(out, "{\"id\":", 6);
	if (!ret)
		ret = json_append_string(out, st->id, strlen(st->id));
	if (!ret)
		ret = http_buf_append(out, ",\"object\":\"chat.completion\",\"model\":", 36);
	if (!ret)
		ret = json_append_string(out, st->model, strlen(st->model));
	if (!ret)
		ret = http_buf_append(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":", 63);
	if (!ret)
		ret = json_append_string(out, st->text.data ? st->text.data : "", st->text.len);
	if (!ret)
		ret = http_buf_append(out, "},\"finish_reason\":", 18);
	if (!ret)
		ret = st->finish_reason[0] ? json_append_string(out, st->finish_reason, strlen(st->finish_reason))
		                           : http_buf_append(out, "null", 4);
	if (!ret) {
		int n = snprintf(num, sizeof(num),
		                 "}],\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
		                 "\"total_tokens\":%lld,\"prompt_tokens_details\":{\"cached_tokens\":%lld}}}",
		                 (long long)st->usage.input_tokens, (long long)st->usage.output_tokens,
		                 (long long)(st->usage.input_tokens + st->usage.output_tokens),
		                 (long long)st->usage.cached_input_tokens);
		ret = http_buf_append(out, num, (size_t)n);
	}
	return ret;
}

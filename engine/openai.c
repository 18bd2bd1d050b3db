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
		break;
	}
}

static bool starts_with_object(const char *body, size_t len)
{
	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' || body[i] == '\t'))
		i++;
	return i < len && body[i] == '{';
}

void openai_parse_response(struct json_doc *doc, int status, const char *body, size_t len,
                           struct openai_outcome *out)
{
	memset(out, 0, sizeof(*out));
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
	char text[300];
	if (msg >= 0 && json_get_string(doc, msg, text, sizeof(text)) >= 0)
		snprintf(out->message, sizeof(out->message), "HTTP %d: %s", status, text);
	else
		snprintf(out->message, sizeof(out->message), "HTTP %d from the server", status);
}

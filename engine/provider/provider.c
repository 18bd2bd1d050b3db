/* Routing, the unified request body, and dispatch to each provider. */
#include "http/http_writer.h"
#include "provider/provider_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct provider_info providers[PROVIDER_COUNT] = {
	[PROVIDER_OPENAI] = {"openai", "https://api.openai.com/v1", "OPENAI_BASE_URL", "OPENAI_API_KEY"},
	[PROVIDER_ANTHROPIC] = {"anthropic", "https://api.anthropic.com", "ANTHROPIC_BASE_URL",
	                        "ANTHROPIC_API_KEY"},
	[PROVIDER_OLLAMA] = {"ollama", "http://127.0.0.1:11434", "OLLAMA_HOST", NULL},
	[PROVIDER_GEMINI] = {"gemini", "https://generativelanguage.googleapis.com", "GEMINI_BASE_URL",
	                     "GEMINI_API_KEY"},
	[PROVIDER_MOCK] = {"mock", NULL, "LLMRING_MOCK_URL", NULL},
};

const struct provider_info *provider_info(enum provider p)
{
	return p < PROVIDER_COUNT ? &providers[p] : &providers[PROVIDER_OPENAI];
}

enum provider provider_route(const char *model, size_t len, const char **name, size_t *name_len)
{
	const char *slash = memchr(model, '/', len);
	*name = model;
	*name_len = len;
	if (!slash)
		return PROVIDER_OPENAI;
	size_t plen = (size_t)(slash - model);
	for (int p = 0; p < PROVIDER_COUNT; p++) {
		if (strlen(providers[p].name) == plen && memcmp(model, providers[p].name, plen) == 0) {
			*name = slash + 1;
			*name_len = len - plen - 1;
			return (enum provider)p;
		}
	}
	return PROVIDER_OPENAI;
}

LR_API const char *lr_model_provider(const char *model, const char **model_out)
{
	if (!model)
		return NULL;
	const char *name;
	size_t name_len;
	enum provider p = provider_route(model, strlen(model), &name, &name_len);
	if (model_out)
		*model_out = name; /* a suffix of model: NUL-terminated there */
	return providers[p].name;
}

static int header(struct buf *b, const char *name, const char *value)
{
	return http_write_header(b, name, strlen(name), value, strlen(value));
}

int provider_auth_headers(enum provider p, struct buf *b, const char *key)
{
	int ret = 0;
	if (p == PROVIDER_ANTHROPIC)
		ret = header(b, "anthropic-version", "2023-06-01");
	if (ret || !key || !key[0])
		return ret;
	switch (p) {
	case PROVIDER_ANTHROPIC:
		return header(b, "x-api-key", key);
	case PROVIDER_GEMINI:
		return header(b, "x-goog-api-key", key);
	default: {
		size_t klen = strlen(key);
		char *auth = malloc(klen + 8); /* owner: this block */
		if (!auth)
			return LR_ENOMEM;
		memcpy(auth, "Bearer ", 7);
		memcpy(auth + 7, key, klen + 1);
		ret = header(b, "Authorization", auth);
		memset(auth, 0, klen + 7); /* keys do not linger in freed memory */
		free(auth);
		return ret;
	}
	}
}

/* ---- helpers shared by the provider files ---- */

int64_t provider_count(const char *v, size_t len)
{
	int64_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9' || n > INT64_MAX / 10 - 10)
			return 0; /* not a plain count: treat as absent */
		n = n * 10 + (v[i] - '0');
	}
	return n;
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

void provider_error_message(struct reply *r, int status, struct json_doc *d, int msg)
{
	char text[300];
	if (msg >= 0 && d->tok[msg].type == JSON_STRING && json_get_string(d, msg, text, sizeof(text)) >= 0)
		snprintf(r->message, sizeof(r->message), "HTTP %d: %s", status, text);
	else
		snprintf(r->message, sizeof(r->message), "HTTP %d from the server", status);
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

/* ---- the unified body ---- */

void provider_request_free(struct provider_request *pr)
{
	buf_free(&pr->body);
	buf_free(&pr->path);
}

/*
 * Finds a top-level "model" with a known provider prefix without parsing
 * the body. The pattern `"model"` with real quotes cannot occur inside a
 * JSON string (its quotes would be escaped), so a body without a match
 * routes to openai as it is; a match is confirmed by a real parse.
 */
static const char *skip_json_ws(const char *q, const char *end)
{
	while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
		q++;
	return q;
}

/* At a "model" key's closing quote + 1: the span of its string value. */
static bool model_value(const char *q, const char *end, const char **v, size_t *len)
{
	q = skip_json_ws(q, end);
	if (q >= end || *q != ':')
		return false;
	q = skip_json_ws(q + 1, end);
	if (q >= end || *q != '"')
		return false;
	const char *close = memchr(q + 1, '"', (size_t)(end - q - 1));
	if (!close)
		return false;
	*v = q + 1;
	*len = (size_t)(close - *v);
	return true;
}

/* Whether a model value names a provider (openai/ included: it is
 * stripped); also keeps the first one seen for accounting. */
static bool names_provider(const char *v, size_t n, char *first, size_t first_cap)
{
	if (!first[0] && n < first_cap && !memchr(v, '\\', n)) {
		memcpy(first, v, n);
		first[n] = '\0';
	}
	const char *name;
	size_t name_len;
	return provider_route(v, n, &name, &name_len) != PROVIDER_OPENAI || (n > 7 && memcmp(v, "openai/", 7) == 0);
}

static bool body_may_name_provider(const char *b, size_t len, char *first, size_t first_cap)
{
	const char *end = b + len, *p = b;
	const char *v;
	size_t n;
	first[0] = '\0';
	/* Most bodies open with their model: that is the top-level one. */
	p = skip_json_ws(p, end);
	if (p < end && *p == '{') {
		p = skip_json_ws(p + 1, end);
		if (end - p >= 7 && memcmp(p, "\"model\"", 7) == 0 && model_value(p + 7, end, &v, &n))
			return names_provider(v, n, first, first_cap);
	}
	p = b;
	while ((p = memmem(p, (size_t)(end - p), "\"model\"", 7))) {
		if (model_value(p + 7, end, &v, &n) && names_provider(v, n, first, first_cap))
			return true;
		p += 7;
	}
	return false;
}

/* The body from the message and parameter calls. */
static int body_from_parts(const struct lr_request *rq, const char *model, size_t model_len,
                           bool force_stream, struct buf *out, const char **why)
{
	int ret = buf_puts(out, "{\"model\":");
	if (!ret)
		ret = json_append_string(out, model, model_len);
	if (rq->endpoint == LR_ENDPOINT_EMBEDDINGS) {
		if (!rq->inputs.len) {
			*why = "an embeddings request needs inputs (lr_request_add_input or a JSON body)";
			return LR_EINVAL;
		}
		if (!ret)
			ret = buf_puts(out, ",\"input\":[");
		if (!ret)
			ret = buf_append(out, rq->inputs.data, rq->inputs.len);
		if (!ret)
			ret = buf_puts(out, "]");
	} else {
		if (!rq->messages.len) {
			*why = "request has no messages";
			return LR_EINVAL;
		}
		if (!ret)
			ret = buf_puts(out, ",\"messages\":[");
		if (!ret)
			ret = buf_append(out, rq->messages.data, rq->messages.len);
		if (!ret)
			ret = buf_puts(out, "]");
		if (!ret && rq->tools.len) {
			ret = buf_puts(out, ",\"tools\":[");
			if (!ret)
				ret = buf_append(out, rq->tools.data, rq->tools.len);
			if (!ret)
				ret = buf_puts(out, "]");
		}
		if (!ret && rq->nstops) {
			ret = buf_puts(out, ",\"stop\":[");
			if (!ret)
				ret = buf_append(out, rq->stops.data, rq->stops.len);
			if (!ret)
				ret = buf_puts(out, "]");
		}
		if (!ret && rq->max_tokens > 0) {
			char num[32];
			int n = snprintf(num, sizeof(num), ",\"max_tokens\":%d", rq->max_tokens);
			ret = buf_append(out, num, (size_t)n);
		}
		if (!ret && force_stream)
			ret = buf_puts(out, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
	}
	for (unsigned i = 0; !ret && i < rq->nparams; i++) {
		ret = buf_puts(out, ",");
		if (!ret)
			ret = json_append_string(out, rq->params[i].key, strlen(rq->params[i].key));
		if (!ret)
			ret = buf_puts(out, ":");
		if (!ret)
			ret = buf_puts(out, rq->params[i].value);
	}
	if (!ret)
		ret = buf_puts(out, "}");
	return ret;
}

static bool key_eq(const struct json_doc *d, int k, const char *s)
{
	return json_string_eq(d, k, s);
}

/* The caller's body with model set (and a stream asked for). */
static int body_rewrite(const struct json_doc *d, const char *model, size_t model_len,
                        bool force_stream, struct buf *out)
{
	int ret = buf_puts(out, "{\"model\":");
	if (!ret)
		ret = json_append_string(out, model, model_len);
	int n = d->tok[0].size, k = 1;
	for (int m = 0; !ret && m < n; m++) {
		int v = k + 1;
		int next = json_skip(d, v);
		bool drop = key_eq(d, k, "model") ||
		            (force_stream && (key_eq(d, k, "stream") || key_eq(d, k, "stream_options")));
		if (!drop) {
			ret = buf_puts(out, ",");
			if (!ret)
				ret = json_copy_value(out, d, k);
			if (!ret)
				ret = buf_puts(out, ":");
			if (!ret)
				ret = json_copy_value(out, d, v);
		}
		k = next;
	}
	if (!ret && force_stream)
		ret = buf_puts(out, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
	if (!ret)
		ret = buf_puts(out, "}");
	return ret;
}

static bool doc_stream(const struct json_doc *d)
{
	int s = json_object_get(d, 0, "stream");
	return s >= 0 && d->tok[s].type == JSON_PRIMITIVE && d->tok[s].end - d->tok[s].start == 4 &&
	       memcmp(d->text + d->tok[s].start, "true", 4) == 0;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t sl = strlen(suffix);
	return n >= sl && memcmp(s + n - sl, suffix, sl) == 0;
}

/*
 * "{base}/v1/messages", without doubling a version the base already ends
 * in. `drop` is a suffix of the base that names another API's prefix and
 * is left out (Ollama's native API is beside its OpenAI one at /v1, so one
 * --base-url ending in /v1 serves both), or NULL.
 */
static int path_join(struct buf *out, const char *base, const char *drop,
                     const char *version, const char *rest)
{
	size_t bl = strlen(base);
	if (drop && ends_with(base, bl, drop))
		bl -= strlen(drop);
	int ret = buf_append(out, base, bl);
	if (!ret && !ends_with(base, bl, version))
		ret = buf_append(out, version, strlen(version));
	if (!ret)
		ret = buf_puts(out, rest);
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

static int provider_path(struct provider_request *out, enum lr_endpoint ep, const char *base,
                         const char *model, size_t model_len, const char **why)
{
	switch (out->provider) {
	case PROVIDER_ANTHROPIC:
		if (ep == LR_ENDPOINT_EMBEDDINGS)
			break;
		return path_join(&out->path, base, NULL, "/v1", "/messages");
	case PROVIDER_OLLAMA:
		return path_join(&out->path, base, "/v1", "/api",
		                 ep == LR_ENDPOINT_EMBEDDINGS ? "/embed" : "/chat");
	case PROVIDER_GEMINI: {
		if (ep == LR_ENDPOINT_EMBEDDINGS)
			break;
		if (model_len > 7 && memcmp(model, "models/", 7) == 0)
			model += 7, model_len -= 7;
		if (!model_is_path_safe(model, model_len)) {
			*why = "a Gemini model name may hold only letters, digits and - _ . :";
			return LR_EINVAL;
		}
		/* A base ending in Gemini's stable version /v1 keeps it. */
		const char *version = ends_with(base, strlen(base), "/v1") ? "/v1" : "/v1beta";
		int ret = path_join(&out->path, base, NULL, version, "/models/");
		if (!ret)
			ret = buf_append(&out->path, model, model_len);
		if (!ret)
			ret = buf_puts(&out->path, out->stream ? ":streamGenerateContent?alt=sse" : ":generateContent");
		return ret;
	}
	default:
		return path_join(&out->path, base, NULL, "",
		                 ep == LR_ENDPOINT_EMBEDDINGS ? "/embeddings" : "/chat/completions");
	}
	*why = out->provider == PROVIDER_ANTHROPIC ? "Anthropic has no embeddings endpoint"
	                                           : "Gemini embeddings are not supported";
	return LR_EUNSUPPORTED;
}

int provider_build_request(const struct lr_request *rq, const char *const *base_paths,
                           struct provider_request *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	bool want_stream = rq->on_delta || rq->stream;
	if (rq->body.len && request_has_parts(rq)) {
		*why = "a JSON body excludes the message and parameter calls";
		return LR_EINVAL;
	}
	struct json_doc doc = {0}; /* owner: this function */
	const char *model = rq->model;
	size_t model_len = model ? strlen(model) : 0;
	bool have_doc = false;
	int ret = 0;
	if (rq->body.len && (model || want_stream ||
	                     body_may_name_provider(rq->body.data, rq->body.len, out->model, sizeof(out->model)))) {
		int rc = json_parse(&doc, rq->body.data, rq->body.len);
		if (rc || doc.count == 0 || doc.tok[0].type != JSON_OBJECT) {
			ret = rc == LR_ENOMEM ? LR_ENOMEM : LR_EINVAL;
			*why = ret == LR_ENOMEM ? "out of memory reading the request body"
			                        : "request body is not a JSON object";
			goto done;
		}
		have_doc = true;
		int m = json_object_get(&doc, 0, "model");
		if (!model && m >= 0 && doc.tok[m].type == JSON_STRING) {
			model = doc.text + doc.tok[m].start;
			model_len = (size_t)(doc.tok[m].end - doc.tok[m].start);
		}
	} else if (rq->body.len) {
		/* The hot path of bulk jobs: an OpenAI body sent as it is. */
		out->provider = PROVIDER_OPENAI;
		out->body_is_input = true;
		ret = provider_path(out, rq->endpoint, base_paths[PROVIDER_OPENAI], NULL, 0, why);
		goto done;
	}
	if (!model) {
		*why = "request has neither a model nor a body";
		ret = LR_EINVAL;
		goto done;
	}
	const char *name;
	size_t name_len;
	out->provider = provider_route(model, model_len, &name, &name_len);
	if (!name_len) {
		*why = "the model name after the provider prefix is empty";
		ret = LR_EINVAL;
		goto done;
	}
	/* name may point into doc's text or rq->model: copy before rebuilding. */
	char *model_name = strndup(name, name_len); /* owner: this function */
	if (!model_name) {
		ret = LR_ENOMEM;
		goto done;
	}
	snprintf(out->model, sizeof(out->model), "%s", model_name);
	struct buf unified = {0}; /* owner: this function */
	bool openai_dialect = out->provider == PROVIDER_OPENAI || out->provider == PROVIDER_MOCK;
	bool force_stream = want_stream && rq->endpoint == LR_ENDPOINT_CHAT && !(have_doc && doc_stream(&doc));
	if (have_doc)
		ret = body_rewrite(&doc, model_name, name_len, force_stream, openai_dialect ? &out->body : &unified);
	else
		ret = body_from_parts(rq, model_name, name_len, force_stream && openai_dialect,
		                      openai_dialect ? &out->body : &unified, why);
	if (!ret && !openai_dialect) {
		/* Other dialects translate the unified body. */
		int rc = json_parse(&doc, unified.data, unified.len);
		if (rc || doc.count == 0 || doc.tok[0].type != JSON_OBJECT) {
			ret = rc == LR_ENOMEM ? LR_ENOMEM : LR_EINVAL;
			*why = ret == LR_ENOMEM ? "out of memory translating the request body"
			                        : "request body is not a JSON object";
		}
		bool stream = want_stream || doc_stream(&doc);
		out->stream = stream && rq->endpoint == LR_ENDPOINT_CHAT;
		if (!ret) {
			if (rq->endpoint == LR_ENDPOINT_EMBEDDINGS) {
				ret = out->provider == PROVIDER_OLLAMA ? ollama_build_embed(&doc, model_name, &out->body, why)
				                                       : 0;
			} else if (out->provider == PROVIDER_ANTHROPIC) {
				ret = anthropic_build(&doc, model_name, out->stream, &out->body, out->why_text,
				                      sizeof(out->why_text), why);
			} else if (out->provider == PROVIDER_OLLAMA) {
				ret = ollama_build(&doc, model_name, out->stream, &out->body, why);
			} else {
				ret = gemini_build(&doc, model_name, &out->body, why);
			}
		}
	} else if (!ret) {
		out->stream = want_stream || (have_doc && doc_stream(&doc));
	}
	if (!ret)
		ret = provider_path(out, rq->endpoint, base_paths[out->provider], model_name, name_len, why);
	buf_free(&unified);
	free(model_name);
done:
	json_doc_free(&doc);
	if (ret)
		provider_request_free(out);
	return ret;
}

/* ---- responses ---- */

void provider_parse_response(enum provider p, enum lr_endpoint ep, struct json_doc *doc, int status,
                             const char *body, size_t len, struct reply *r, bool *body_is_json,
                             struct buf *normalized, bool *rewritten)
{
	*rewritten = false;
	*body_is_json = false;
	if (p == PROVIDER_OPENAI || p == PROVIDER_MOCK) {
		openai_parse(status, body, len, doc, r, body_is_json);
		return;
	}
	int rc = len > 0 ? json_parse(doc, body, len) : LR_EPROTO;
	if (rc == LR_ENOMEM && status >= 200 && status < 300) {
		/* An error status stays the outcome: only its message is lost. */
		reply_fail(r, LR_ENOMEM, "out of memory parsing the response body");
		return;
	}
	bool have = rc == 0 && doc->count > 0 && doc->tok[0].type == JSON_OBJECT;
	*body_is_json = have;
	if (status < 200 || status >= 300) {
		if (p == PROVIDER_ANTHROPIC)
			anthropic_error(doc, have, status, r);
		else if (p == PROVIDER_OLLAMA)
			ollama_error(doc, have, status, r);
		else
			gemini_error(doc, have, status, r);
		return;
	}
	if (!have) {
		char why[96];
		reply_fail(r, LR_EPROTO, "HTTP %d response body is not a JSON object: %s", status,
		           json_invalid_reason(body, len, why, sizeof(why)));
		return;
	}
	int calls = 0;
	if (p == PROVIDER_OLLAMA && ep == LR_ENDPOINT_EMBEDDINGS) {
		if (ollama_embed_body(doc, r, normalized) == 0 && !r->error)
			*rewritten = true;
		return;
	}
	if (p == PROVIDER_ANTHROPIC)
		anthropic_parse(doc, r);
	else if (p == PROVIDER_OLLAMA)
		ollama_parse(doc, r);
	else
		gemini_parse(doc, r, &calls);
	if (!r->error) {
		if (reply_openai_body(r, normalized))
			reply_fail(r, LR_ENOMEM, "out of memory");
		else
			*rewritten = true;
	}
}

/* ---- streams ---- */

static int decoder_event(void *ctx, const struct sse_event *ev)
{
	struct stream_decoder *sd = ctx;
	if (sd->r->error)
		return 0; /* the provider reported an error: the rest is ignored */
	switch (sd->p) {
	case PROVIDER_ANTHROPIC: return anthropic_sse_event(sd, ev);
	case PROVIDER_GEMINI: return gemini_sse_event(sd, ev);
	default: return openai_sse_event(sd, ev); /* OpenAI, mock, Ollama's /v1 */
	}
}

static const struct sse_callbacks decoder_callbacks = {.on_event = decoder_event};

struct stream_decoder *stream_decoder_new(enum provider p, bool ndjson, struct reply *r)
{
	struct stream_decoder *sd = calloc(1, sizeof(*sd)); /* owner: the caller */
	if (!sd)
		return NULL;
	sd->p = p;
	sd->ndjson = ndjson;
	sd->r = r;
	sd->block = sd->block_tool = -1;
	if (ndjson)
		ndjson_parser_init(&sd->nd, 0);
	else
		sse_parser_init(&sd->sse, 0, 0);
	return sd;
}

void stream_decoder_free(struct stream_decoder *sd)
{
	if (!sd)
		return;
	if (sd->ndjson)
		ndjson_parser_free(&sd->nd);
	else
		sse_parser_free(&sd->sse);
	json_doc_free(&sd->doc);
	free(sd);
}

static void framing_failed(struct stream_decoder *sd, int rc)
{
	sd->fatal = true;
	reply_fail(sd->r, rc, "%s", rc == LR_ETOOLARGE ? "a stream event exceeds the size cap"
	                            : rc == LR_ENOMEM ? "out of memory"
	                                              : "the stream could not be parsed");
}

int stream_decoder_feed(struct stream_decoder *sd, const char *data, size_t len)
{
	if (sd->fatal)
		return sd->r->error;
	int rc = sd->ndjson ? ndjson_parser_feed(&sd->nd, data, len, ollama_line, sd)
	                    : sse_parser_feed(&sd->sse, data, len, &decoder_callbacks, sd);
	if (rc)
		framing_failed(sd, rc);
	return sd->r->error;
}

bool stream_decoder_fatal(const struct stream_decoder *sd)
{
	return sd->fatal;
}

int stream_decoder_finish(struct stream_decoder *sd)
{
	struct reply *r = sd->r;
	if (r->error)
		return r->error;
	int rc = sd->ndjson ? ndjson_parser_finish(&sd->nd, ollama_line, sd) : sse_parser_finish(&sd->sse);
	if (rc)
		framing_failed(sd, rc);
	if (r->error)
		return r->error;
	/* OpenAI ([DONE]), Anthropic (message_stop) and Ollama ("done":true)
	 * say when the reply is complete, after the usage; Gemini only names
	 * a finish reason on its last chunk. */
	bool complete = sd->p == PROVIDER_GEMINI ? r->finish_reason[0] != '\0' : r->done;
	if (!complete)
		return reply_fail(r, LR_EPROTO, "the stream ended before its last event");
	return 0;
}

/* ---- translation helpers ---- */

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
		ret = buf_puts(out, k ? ",{\"name\":" : "{\"name\":");
		if (!ret)
			ret = json_copy_value(out, d, name);
		int desc = json_object_get(d, fn, "description");
		if (!ret && desc >= 0) {
			ret = buf_puts(out, ",\"description\":");
			if (!ret)
				ret = json_copy_value(out, d, desc);
		}
		int params = json_object_get(d, fn, "parameters");
		if (!ret && (params >= 0 || default_schema)) {
			ret = buf_puts(out, ",\"");
			if (!ret)
				ret = buf_puts(out, schema_key);
			if (!ret)
				ret = buf_puts(out, "\":");
			if (!ret)
				ret = params >= 0 ? json_copy_value(out, d, params) : buf_puts(out, default_schema);
		}
		if (!ret)
			ret = buf_puts(out, "}");
	}
	return ret;
}

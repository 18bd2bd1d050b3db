/* Routing, the table of provider rows, the unified request body, and
 * dispatch through the rows. */
#include "http/http_writer.h"
#include "provider/dialect_util.h"
#include "provider/dialects.h"
#include "provider/provider.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct provider_row *const rows[PROVIDER_COUNT] = {
	[PROVIDER_OPENAI] = &openai_row,
	[PROVIDER_ANTHROPIC] = &anthropic_row,
	[PROVIDER_OLLAMA] = &ollama_row,
	[PROVIDER_GEMINI] = &gemini_row,
	[PROVIDER_MOCK] = &mock_row,
};

const struct provider_row *provider_row(enum provider p)
{
	return p < PROVIDER_COUNT ? rows[p] : rows[PROVIDER_OPENAI];
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
		if (strlen(rows[p]->name) == plen && memcmp(model, rows[p]->name, plen) == 0) {
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
	return rows[p]->name;
}

/* ---- endpoints and request headers ---- */

int provider_endpoint_resolve(enum provider p, const char *base, const char *key,
                              struct provider_endpoint *out, char *why, size_t why_len)
{
	const struct provider_row *row = provider_row(p);
	out->base = base && base[0] ? base : NULL;
	out->key = key && key[0] ? key : NULL;
	out->needs_key = false;
	bool own_endpoint = !out->base;
	if (!out->base && row->base_env) {
		const char *v = getenv(row->base_env);
		if (v && v[0])
			out->base = row->base_from_env ? row->base_from_env(v, out->buf, sizeof(out->buf)) : v;
	}
	bool public_endpoint = !out->base;
	if (!out->base)
		out->base = row->base_url;
	if (!out->base) {
		snprintf(why, why_len, "%s/ models need a base URL (lr_config.base_url or %s)", row->name,
		         row->base_env);
		return LR_EINVAL;
	}
	if (!out->key && row->key_env) {
		const char *k = getenv(row->key_env);
		out->key = k && k[0] ? k : NULL;
		/* Only the public endpoint needs one: a server named by the
		 * variable may be a local one that takes none. */
		out->needs_key = !out->key && public_endpoint && own_endpoint;
	}
	return 0;
}

static int header(struct buf *b, const char *name, const char *value)
{
	return http_write_header(b, name, strlen(name), value, strlen(value));
}

int provider_auth_headers(enum provider p, struct buf *b, const char *key)
{
	const struct provider_row *row = provider_row(p);
	int ret = 0;
	for (const struct fixed_header *h = row->fixed_headers; !ret && h->name; h++)
		ret = header(b, h->name, h->value);
	if (ret || !key || !key[0])
		return ret;
	if (row->key_form == KEY_HEADER)
		return header(b, row->key_header, key);
	size_t klen = strlen(key);
	char *auth = malloc(klen + 8); /* owner: this function */
	if (!auth)
		return LR_ENOMEM;
	memcpy(auth, "Bearer ", 7);
	memcpy(auth + 7, key, klen + 1);
	ret = header(b, "Authorization", auth);
	memset(auth, 0, klen + 7); /* keys do not linger in freed memory */
	free(auth);
	return ret;
}

/* ---- response headers ---- */

/* Headers every provider's responses may carry: HTTP's own and those of
 * the OpenAI and Anthropic SDKs' retry logic. */
static const struct {
	const char *name;
	enum response_header kind;
} common_headers[] = {
	{"retry-after", RESPONSE_HEADER_RETRY_AFTER},
	{"retry-after-ms", RESPONSE_HEADER_RETRY_AFTER_MS},
	{"x-should-retry", RESPONSE_HEADER_SHOULD_RETRY},
	{"content-type", RESPONSE_HEADER_CONTENT_TYPE},
	{"content-encoding", RESPONSE_HEADER_CONTENT_ENCODING},
};

/*
 * Every name provider_header_kind would try for a provider, in its order
 * (the common names, OpenAI's row, the provider's row), then grouped by
 * length (a stable sort: names of one length keep that order, so the
 * first match is the same), with the folded first byte that turns most
 * of a group away in one compare: each response header was compared with
 * a dozen names, and the strlen per name was most of the cost. Built once
 * for all providers.
 */
#define HEADER_NAMES_MAX (sizeof(common_headers) / sizeof(common_headers[0]) + 2 * 4)
struct header_name {
	const char *name;
	size_t len;
	unsigned char first; /* name[0] | 0x20 */
	unsigned char kind;  /* enum response_header */
	unsigned char rank;
};
#define HEADER_NAME_LEN_MAX 63 /* longer names are no kind (none is near) */
static struct {
	struct header_name of[HEADER_NAMES_MAX];
	size_t count;
	unsigned char of_len[HEADER_NAME_LEN_MAX + 2]; /* names of length n: of[of_len[n] .. of_len[n + 1]) */
} header_names[PROVIDER_COUNT];
static pthread_once_t header_names_once = PTHREAD_ONCE_INIT;

static void header_name_add(enum provider p, const char *name, enum response_header kind, int rank)
{
	if (!name || !name[0] || strlen(name) > HEADER_NAME_LEN_MAX)
		return;
	struct header_name *e = &header_names[p].of[header_names[p].count++];
	*e = (struct header_name){name, strlen(name), (unsigned char)(name[0] | 0x20),
	                          (unsigned char)kind, (unsigned char)rank};
}

static void header_names_build(void)
{
	for (int p = 0; p < PROVIDER_COUNT; p++) {
		for (size_t i = 0; i < sizeof(common_headers) / sizeof(common_headers[0]); i++)
			header_name_add(p, common_headers[i].name, common_headers[i].kind, 0);
		/* OpenAI's names first (ranks 0 and 1), then the provider's own (2, 3). */
		const struct provider_row *by_rank[2] = {&openai_row, provider_row(p)};
		for (int r = 0; r < 2; r++) {
			const struct provider_row *row = by_rank[r];
			header_name_add(p, row->request_id_header, RESPONSE_HEADER_REQUEST_ID, 2 * r);
			header_name_add(p, row->ratelimit_requests_header, RESPONSE_HEADER_RATELIMIT_REQUESTS, 2 * r);
			for (int order = 0; order < 2; order++)
				header_name_add(p, row->ratelimit_tokens_headers[order], RESPONSE_HEADER_RATELIMIT_TOKENS,
				                2 * r + order);
		}
		/* Insertion sort by length: stable. */
		struct header_name *of = header_names[p].of;
		size_t count = header_names[p].count;
		for (size_t i = 1; i < count; i++) {
			struct header_name e = of[i];
			size_t j = i;
			for (; j > 0 && of[j - 1].len > e.len; j--)
				of[j] = of[j - 1];
			of[j] = e;
		}
		size_t k = 0;
		for (size_t n = 0; n <= HEADER_NAME_LEN_MAX + 1; n++) {
			while (k < count && of[k].len < n)
				k++;
			header_names[p].of_len[n] = (unsigned char)k;
		}
	}
}

static enum response_header header_kind(enum provider p, const char *name, size_t len, int *rank)
{
	*rank = 0;
	if (!len || len > HEADER_NAME_LEN_MAX)
		return RESPONSE_HEADER_OTHER;
	p = p < PROVIDER_COUNT ? p : PROVIDER_OPENAI; /* as provider_row() */
	unsigned char first = (unsigned char)(name[0] | 0x20);
	const struct header_name *e = header_names[p].of + header_names[p].of_len[len];
	const struct header_name *end = header_names[p].of + header_names[p].of_len[len + 1];
	for (; e < end; e++) {
		if (e->first == first && strncasecmp(name, e->name, len) == 0) {
			*rank = e->rank;
			return (enum response_header)e->kind;
		}
	}
	return RESPONSE_HEADER_OTHER;
}

enum response_header provider_header_kind(enum provider p, const char *name, size_t len, int *rank)
{
	int unused;
	pthread_once(&header_names_once, header_names_build);
	return header_kind(p, name, len, rank ? rank : &unused);
}

void provider_find_headers(enum provider p, const struct http_head *h, struct provider_headers *out)
{
	int best[RESPONSE_HEADER_KINDS];
	memset(out, 0, sizeof(*out));
	pthread_once(&header_names_once, header_names_build);
	for (size_t i = 0; i < h->num_headers; i++) {
		const struct http_header *hd = &h->headers[i];
		int rank;
		enum response_header kind = header_kind(p, hd->name, hd->name_len, &rank);
		if (kind == RESPONSE_HEADER_OTHER || (out->of[kind] && rank > best[kind]))
			continue;
		out->of[kind] = hd;
		best[kind] = rank;
	}
}

const char *provider_request_id(enum provider p, const char *header_id, const char *reply_id)
{
	if (header_id && header_id[0])
		return header_id;
	return provider_row(p)->reply_id_is_request_id && reply_id && reply_id[0] ? reply_id : NULL;
}

/* ---- the unified body ---- */

void provider_request_free(struct provider_request *pr)
{
	buf_free(&pr->body);
	buf_free(&pr->path);
	buf_free(&pr->unified);
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

/* Appends ,"key":[ITEMS] (items: comma-joined JSON, already written). */
static void put_array_member(struct buf *out, const char *key, const struct buf *items)
{
	buf_puts(out, ",\"");
	buf_puts(out, key);
	buf_puts(out, "\":[");
	buf_append(out, items->data, items->len);
	buf_puts(out, "]");
}

#define STREAM_WITH_USAGE ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"

/* stop, max_tokens and the stream flags: chat's and completions' alike. */
static void put_generation_fields(const struct lr_request *rq, bool force_stream, struct buf *out)
{
	if (rq->nstops)
		put_array_member(out, "stop", &rq->stops);
	if (rq->max_tokens > 0)
		buf_printf(out, ",\"max_tokens\":%d", rq->max_tokens);
	if (force_stream)
		buf_puts(out, STREAM_WITH_USAGE);
}

/* The members each endpoint's body takes from the calls, after "model";
 * what belongs to another endpoint is refused, not dropped. */
static int put_endpoint_members(const struct lr_request *rq, bool force_stream, struct buf *out,
                                const char **why)
{
	if (rq->prompt.len && rq->endpoint != LR_ENDPOINT_COMPLETIONS) {
		*why = "a prompt is for the completions endpoint (LR_ENDPOINT_COMPLETIONS)";
		return LR_EINVAL;
	}
	switch (rq->endpoint) {
	case LR_ENDPOINT_EMBEDDINGS:
		if (!rq->inputs.len) {
			*why = "an embeddings request needs inputs (lr_request_add_input or a JSON body)";
			return LR_EINVAL;
		}
		put_array_member(out, "input", &rq->inputs);
		return 0;
	case LR_ENDPOINT_COMPLETIONS:
		if (rq->messages.len || rq->tools.len || rq->inputs.len) {
			*why = "a completions request takes a prompt (lr_request_set_prompt), not messages, "
			       "tools or inputs";
			return LR_EINVAL;
		}
		if (!rq->prompt.len) {
			*why = "a completions request needs a prompt (lr_request_set_prompt or a JSON body)";
			return LR_EINVAL;
		}
		buf_puts(out, ",\"prompt\":");
		buf_append(out, rq->prompt.data, rq->prompt.len); /* a JSON string already */
		put_generation_fields(rq, force_stream, out);
		return 0;
	case LR_ENDPOINT_CHAT:
		break;
	}
	if (!rq->messages.len) {
		*why = "request has no messages";
		return LR_EINVAL;
	}
	put_array_member(out, "messages", &rq->messages);
	if (rq->tools.len)
		put_array_member(out, "tools", &rq->tools);
	put_generation_fields(rq, force_stream, out);
	return 0;
}

/* The body from the message and parameter calls. The buffer's error is
 * sticky: the appends are checked once, at the end. */
static int body_from_parts(const struct lr_request *rq, const char *model, size_t model_len,
                           bool force_stream, struct buf *out, const char **why)
{
	buf_puts(out, "{\"model\":");
	json_append_string(out, model, model_len);
	int ret = put_endpoint_members(rq, force_stream, out, why);
	if (ret)
		return ret;
	for (unsigned i = 0; i < rq->nparams; i++) {
		buf_puts(out, ",");
		json_append_string(out, rq->params[i].key, strlen(rq->params[i].key));
		buf_puts(out, ":");
		buf_puts(out, rq->params[i].value);
	}
	return buf_puts(out, "}");
}

/* The caller's body with model set (and a stream asked for). */
static int body_rewrite(const struct json_doc *d, const char *model, size_t model_len,
                        bool force_stream, struct buf *out)
{
	buf_puts(out, "{\"model\":");
	json_append_string(out, model, model_len);
	int n = d->tok[0].size, k = 1;
	for (int m = 0; m < n; m++) {
		int v = k + 1;
		int next = json_skip(d, v);
		bool drop = json_string_eq(d, k, "model") ||
		            (force_stream && (json_string_eq(d, k, "stream") || json_string_eq(d, k, "stream_options")));
		if (!drop) {
			buf_puts(out, ",");
			json_copy_value(out, d, k);
			buf_puts(out, ":");
			json_copy_value(out, d, v);
		}
		k = next;
	}
	if (force_stream)
		buf_puts(out, STREAM_WITH_USAGE);
	return buf_puts(out, "}");
}

static bool doc_stream(const struct json_doc *d)
{
	int s = json_object_get(d, 0, "stream");
	return s >= 0 && d->tok[s].type == JSON_PRIMITIVE && d->tok[s].end - d->tok[s].start == 4 &&
	       memcmp(d->text + d->tok[s].start, "true", 4) == 0;
}

int provider_build_request(const struct lr_request *rq, const char *const *base_paths,
                           struct provider_request *out)
{
	return provider_build_request_into(rq, base_paths, out, NULL);
}

/* Other dialects translate the unified (OpenAI-shaped) body: parsed
 * into doc (reused), then the row's builder writes out->body. */
static int translate_for_dialect(const struct lr_request *rq, const struct provider_row *row,
                                 struct json_doc *doc, const struct buf *unified,
                                 const char *model_name, bool want_stream,
                                 struct provider_request *out, const char **why)
{
	int ret = 0;
	int rc = json_parse(doc, unified->data, unified->len);
	if (rc || doc->count == 0 || doc->tok[0].type != JSON_OBJECT) {
		ret = rc == LR_ENOMEM ? LR_ENOMEM : LR_EINVAL;
		*why = ret == LR_ENOMEM ? "out of memory translating the request body"
		                        : "request body is not a JSON object";
	}
	bool stream = want_stream || doc_stream(doc);
	out->stream = stream && rq->endpoint == LR_ENDPOINT_CHAT;
	if (!ret && rq->endpoint == LR_ENDPOINT_EMBEDDINGS)
		ret = row->build_embeddings ? row->build_embeddings(doc, model_name, out, why) : 0;
	else if (!ret && rq->endpoint == LR_ENDPOINT_CHAT)
		ret = row->build_chat(doc, model_name, out, why);
	/* Completions are OpenAI's body alone: the dialect's path refuses them. */
	return ret;
}

int provider_build_request_into(const struct lr_request *rq, const char *const *base_paths,
                                struct provider_request *out, struct buf *path_memory)
{
	memset(out, 0, sizeof(*out));
	/* The builders name a failure with static text, or text composed in
	 * out->err.message; it ends in out->err either way. */
	const char *text = NULL, **why = &text;
	bool want_stream = rq->on_delta || rq->stream;
	if (rq->body.len && request_has_parts(rq)) {
		return error_set(&out->err, LR_EINVAL, 0, "a JSON body excludes the message and parameter calls");
	}
	if (path_memory) { /* from here on, a failure frees it with the rest (done:) */
		out->path = *path_memory;
		buf_clear(&out->path);
		*path_memory = (struct buf){0};
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
		ret = rows[PROVIDER_OPENAI]->path(out, rq->endpoint, base_paths[PROVIDER_OPENAI], NULL, 0, why);
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
	const struct provider_row *row = rows[out->provider];
	bool openai_dialect = !row->build_chat; /* the unified body is its own */
	bool force_stream = want_stream && rq->endpoint != LR_ENDPOINT_EMBEDDINGS && !(have_doc && doc_stream(&doc));
	if (have_doc)
		ret = body_rewrite(&doc, model_name, name_len, force_stream, openai_dialect ? &out->body : &unified);
	else
		ret = body_from_parts(rq, model_name, name_len, force_stream && openai_dialect,
		                      openai_dialect ? &out->body : &unified, why);
	if (!ret && !openai_dialect) {
		ret = translate_for_dialect(rq, row, &doc, &unified, model_name, want_stream, out, why);
	} else if (!ret) {
		out->stream = want_stream || (have_doc && doc_stream(&doc));
	}
	if (!ret)
		ret = row->path(out, rq->endpoint, base_paths[out->provider], model_name, name_len, why);
	out->unified = unified; /* the cache's key is made from it */
	free(model_name);
done:
	json_doc_free(&doc);
	if (ret) {
		provider_request_free(out);
		if (text == out->err.message)
			out->err.code = ret;
		else
			error_set(&out->err, ret, 0, "%s", text ? text : ""); /* "": nothing to add */
	}
	return ret;
}

/* ---- responses ---- */

void provider_parse_response(enum provider p, enum lr_endpoint ep, struct json_doc *doc, int status,
                             const char *body, size_t len, struct reply *r, bool *body_is_json,
                             struct buf *normalized, bool *rewritten)
{
	const struct provider_row *row = provider_row(p);
	*rewritten = false;
	*body_is_json = false;
	if (row->parse_body) {
		row->parse_body(status, body, len, doc, r, body_is_json);
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
		row->parse_error(doc, have, status, r);
		return;
	}
	if (!have) {
		char why[96];
		reply_fail(r, LR_EPROTO, "HTTP %d response body is not a JSON object: %s", status,
		           json_invalid_reason(body, len, why, sizeof(why)));
		return;
	}
	if (ep == LR_ENDPOINT_EMBEDDINGS && row->parse_embeddings) {
		if (row->parse_embeddings(doc, r, normalized) == 0 && !r->err.code)
			*rewritten = true;
		return;
	}
	row->parse_reply(doc, r);
	if (!r->err.code) {
		if (reply_openai_body(r, normalized))
			reply_fail(r, LR_ENOMEM, "out of memory");
		else
			*rewritten = true;
	}
}

/* ---- streams ---- */

/* Framings any server may answer in, whatever its dialect: OpenAI's
 * chunk events (OpenAI-compatible servers, Ollama's /v1) and Ollama's
 * NDJSON lines. */
static const struct provider_row *const sse_default = &openai_row;
static const struct provider_row *const ndjson_default = &ollama_row;

static int decoder_event(void *ctx, const struct sse_event *ev)
{
	struct stream_decoder *sd = ctx;
	if (sd->r->err.code)
		return 0; /* the provider reported an error: the rest is ignored */
	return (sd->row->sse_event ? sd->row->sse_event : sse_default->sse_event)(sd, ev);
}

static const struct sse_callbacks decoder_callbacks = {.on_event = decoder_event};

static int decoder_line(void *ctx, const char *line, size_t len)
{
	struct stream_decoder *sd = ctx;
	return (sd->row->ndjson_line ? sd->row->ndjson_line : ndjson_default->ndjson_line)(sd, line, len);
}

struct stream_decoder *stream_decoder_new(enum provider p, bool ndjson, struct reply *r)
{
	struct stream_decoder *sd = calloc(1, sizeof(*sd)); /* owner: the caller */
	if (!sd)
		return NULL;
	sd->row = provider_row(p);
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
		return sd->r->err.code;
	int rc = sd->ndjson ? ndjson_parser_feed(&sd->nd, data, len, decoder_line, sd)
	                    : sse_parser_feed(&sd->sse, data, len, &decoder_callbacks, sd);
	if (rc)
		framing_failed(sd, rc);
	return sd->r->err.code;
}

bool stream_decoder_fatal(const struct stream_decoder *sd)
{
	return sd->fatal;
}

int stream_decoder_finish(struct stream_decoder *sd)
{
	struct reply *r = sd->r;
	if (r->err.code)
		return r->err.code;
	int rc = sd->ndjson ? ndjson_parser_finish(&sd->nd, decoder_line, sd) : sse_parser_finish(&sd->sse);
	if (rc)
		framing_failed(sd, rc);
	if (r->err.code)
		return r->err.code;
	/* OpenAI ([DONE]), Anthropic (message_stop) and Ollama ("done":true)
	 * say when the reply is complete, after the usage; Gemini only names
	 * a finish reason on its last chunk. */
	bool complete = sd->row->stream_ends_at_finish ? r->finish_reason[0] != '\0' : r->done;
	if (!complete)
		return reply_fail(r, LR_EPROTO, "the stream ended before its last event");
	return 0;
}

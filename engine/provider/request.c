/* lr_request: built on the caller's thread, turned into bytes in lr_submit. */
#include "http/http_writer.h"
#include "provider/request.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/json.h"

/*
 * One freed request per thread is kept, with its body's memory, for the
 * next lr_request_new on that thread: a bulk caller builds and submits
 * one request after another (lr_submit frees each), and then a request
 * costs no allocation of its own. The kept one is freed when its thread
 * ends (the key's destructor); the main thread's stays reachable to exit.
 */
#define REQUEST_KEEP_BODY (16 * 1024)

static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static bool spare_ready;

/* Frees what the request holds but its body and the struct itself. */
static void request_free_parts(lr_request *rq)
{
	free(rq->model);
	rq->model = NULL;
	free(rq->base_url);
	rq->base_url = NULL;
	buf_free(&rq->messages);
	buf_free(&rq->tools);
	buf_free(&rq->inputs);
	buf_free(&rq->prompt);
	buf_free(&rq->stops);
	buf_free(&rq->headers);
	for (unsigned i = 0; i < rq->nparams; i++) {
		free(rq->params[i].key);
		free(rq->params[i].value);
	}
	free(rq->params);
	rq->params = NULL;
	rq->nparams = 0;
	http_call_free(rq->call);
	rq->call = NULL;
}

static void request_destroy(lr_request *rq)
{
	request_free_parts(rq);
	buf_free(&rq->body);
	free(rq);
}

static void spare_destroy(void *rq)
{
	request_destroy(rq);
}

static void spare_setup(void)
{
	spare_ready = pthread_key_create(&spare_key, spare_destroy) == 0;
}

/* This thread's kept request, taken; NULL when there is none. */
static lr_request *spare_take(void)
{
	pthread_once(&spare_once, spare_setup);
	if (!spare_ready)
		return NULL;
	lr_request *rq = pthread_getspecific(spare_key);
	if (rq)
		pthread_setspecific(spare_key, NULL);
	return rq;
}

LR_API lr_request *lr_request_new(const char *model)
{
	lr_request *rq = spare_take();
	if (rq) {
		struct buf body = rq->body; /* kept: the rest was freed by lr_request_free */
		memset(rq, 0, sizeof(*rq));
		buf_clear(&body);
		rq->body = body;
	} else {
		rq = calloc(1, sizeof(*rq)); /* owner: the caller until lr_submit */
		if (!rq)
			return NULL;
	}
	rq->max_tokens = -1;
	rq->max_retries = -1;
	if (model && !(rq->model = strdup(model))) {
		request_destroy(rq);
		return NULL;
	}
	return rq;
}

LR_API void lr_request_free(lr_request *rq)
{
	if (!rq)
		return;
	pthread_once(&spare_once, spare_setup);
	if (!spare_ready || rq->body.cap > REQUEST_KEEP_BODY || pthread_getspecific(spare_key)) {
		request_destroy(rq);
		return;
	}
	/* Kept: everything but the struct and the body's memory goes now. */
	request_free_parts(rq);
	if (pthread_setspecific(spare_key, rq))
		request_destroy(rq);
}

bool request_has_parts(const struct lr_request *rq)
{
	return rq->messages.len || rq->tools.len || rq->inputs.len || rq->prompt.len || rq->nstops ||
	       rq->nparams || rq->max_tokens > 0;
}

LR_API int lr_request_set_endpoint(lr_request *rq, enum lr_endpoint ep)
{
	if (!rq || (ep != LR_ENDPOINT_CHAT && ep != LR_ENDPOINT_EMBEDDINGS && ep != LR_ENDPOINT_COMPLETIONS))
		return LR_EINVAL;
	rq->endpoint = ep;
	return 0;
}

static const char *role_name(enum lr_role role)
{
	switch (role) {
	case LR_ROLE_SYSTEM: return "system";
	case LR_ROLE_USER: return "user";
	case LR_ROLE_ASSISTANT: return "assistant";
	case LR_ROLE_TOOL: return "tool";
	}
	return NULL;
}

static int append_cstr(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

static int append_jstr(struct buf *b, const char *s)
{
	return json_append_string(b, s, strlen(s));
}

/* 0 when text is one JSON value of the given type (JSON_UNDEFINED: any),
 * else LR_EINVAL, or LR_ENOMEM when it could not be looked at. */
static int json_check(const char *text, enum json_type type)
{
	struct json_doc doc = {0}; /* owner: this function */
	int rc = json_parse(&doc, text, strlen(text));
	if (rc != LR_ENOMEM)
		rc = rc == 0 && doc.count > 0 && (type == JSON_UNDEFINED || doc.tok[0].type == type) ? 0
		                                                                                     : LR_EINVAL;
	json_doc_free(&doc);
	return rc;
}

/* Appends ",item" (or "item" first) to a comma-joined list, all or nothing. */
struct list_append {
	struct buf *b;
	size_t mark;
	int ret;
};

static struct list_append list_begin(struct buf *b)
{
	struct list_append la = {.b = b, .mark = b->len};
	if (b->len)
		la.ret = buf_append(b, ",", 1);
	return la;
}

static void list_put(struct list_append *la, const char *s)
{
	if (!la->ret)
		la->ret = append_cstr(la->b, s);
}

static void list_put_str(struct list_append *la, const char *s)
{
	if (!la->ret)
		la->ret = append_jstr(la->b, s);
}

static int list_end(struct list_append *la)
{
	if (la->ret)
		la->b->len = la->mark;
	return la->ret;
}

LR_API int lr_request_add_message(lr_request *rq, enum lr_role role, const char *text)
{
	const char *name = role_name(role);
	if (!rq || !name || !text || role == LR_ROLE_TOOL)
		return LR_EINVAL; /* a tool message needs its call id */
	struct list_append la = list_begin(&rq->messages);
	list_put(&la, "{\"role\":\"");
	list_put(&la, name);
	list_put(&la, "\",\"content\":");
	list_put_str(&la, text);
	list_put(&la, "}");
	return list_end(&la);
}

LR_API int lr_request_add_message_json(lr_request *rq, const char *json)
{
	if (!rq || !json)
		return LR_EINVAL;
	int rc = json_check(json, JSON_OBJECT);
	if (rc)
		return rc;
	struct list_append la = list_begin(&rq->messages);
	list_put(&la, json);
	return list_end(&la);
}

LR_API int lr_request_add_image(lr_request *rq, const char *text, const char *image_url,
                                const char *detail)
{
	if (!rq || !image_url || !image_url[0])
		return LR_EINVAL;
	struct list_append la = list_begin(&rq->messages);
	list_put(&la, "{\"role\":\"user\",\"content\":[");
	if (text) {
		list_put(&la, "{\"type\":\"text\",\"text\":");
		list_put_str(&la, text);
		list_put(&la, "},");
	}
	list_put(&la, "{\"type\":\"image_url\",\"image_url\":{\"url\":");
	list_put_str(&la, image_url);
	if (detail) {
		list_put(&la, ",\"detail\":");
		list_put_str(&la, detail);
	}
	list_put(&la, "}}]}");
	return list_end(&la);
}

LR_API int lr_request_add_tool_result(lr_request *rq, const char *tool_call_id, const char *content)
{
	if (!rq || !tool_call_id || !content)
		return LR_EINVAL;
	struct list_append la = list_begin(&rq->messages);
	list_put(&la, "{\"role\":\"tool\",\"tool_call_id\":");
	list_put_str(&la, tool_call_id);
	list_put(&la, ",\"content\":");
	list_put_str(&la, content);
	list_put(&la, "}");
	return list_end(&la);
}

LR_API int lr_request_add_input(lr_request *rq, const char *text)
{
	if (!rq || !text)
		return LR_EINVAL;
	struct list_append la = list_begin(&rq->inputs);
	list_put_str(&la, text);
	return list_end(&la);
}

/* Refused before the endpoint says completions, so a chat request never
 * carries a prompt it would not send (provider.c checks again: the
 * endpoint may change after). */
LR_API int lr_request_set_prompt(lr_request *rq, const char *prompt)
{
	if (!rq || !prompt || rq->endpoint != LR_ENDPOINT_COMPLETIONS)
		return LR_EINVAL;
	struct buf b = {0}; /* owner: this function until it replaces rq->prompt */
	int ret = append_jstr(&b, prompt);
	if (ret) {
		buf_free(&b);
		return ret;
	}
	buf_free(&rq->prompt);
	rq->prompt = b;
	return 0;
}

LR_API int lr_request_add_tool(lr_request *rq, const char *name, const char *description,
                               const char *parameters_json)
{
	if (!rq || !name || !name[0])
		return LR_EINVAL;
	int rc = parameters_json ? json_check(parameters_json, JSON_OBJECT) : 0;
	if (rc)
		return rc;
	struct list_append la = list_begin(&rq->tools);
	list_put(&la, "{\"type\":\"function\",\"function\":{\"name\":");
	list_put_str(&la, name);
	if (description) {
		list_put(&la, ",\"description\":");
		list_put_str(&la, description);
	}
	if (parameters_json) {
		list_put(&la, ",\"parameters\":");
		list_put(&la, parameters_json);
	}
	list_put(&la, "}}");
	return list_end(&la);
}

LR_API int lr_request_set_param(lr_request *rq, const char *key, const char *json_value)
{
	if (!rq || !key || !key[0] || !json_value)
		return LR_EINVAL;
	int rc = json_check(json_value, JSON_UNDEFINED);
	if (rc)
		return rc;
	/* The body builder owns these keys; a param must not duplicate them. */
	static const char *const reserved[] = {"model", "messages", "tools", "stop", "max_tokens",
	                                       "input", "prompt", "stream", "stream_options"};
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcmp(key, reserved[i]) == 0)
			return LR_EINVAL;
	char *k = strdup(key), *v = strdup(json_value);
	if (!k || !v) {
		free(k);
		free(v);
		return LR_ENOMEM;
	}
	for (unsigned i = 0; i < rq->nparams; i++) {
		if (strcmp(rq->params[i].key, key) == 0) {
			free(k);
			free(rq->params[i].value);
			rq->params[i].value = v;
			return 0;
		}
	}
	struct request_param *p = realloc(rq->params, (rq->nparams + 1) * sizeof(*p));
	if (!p) {
		free(k);
		free(v);
		return LR_ENOMEM;
	}
	rq->params = p;
	p[rq->nparams++] = (struct request_param){.key = k, .value = v};
	return 0;
}

static int set_number(lr_request *rq, const char *key, double v, double lo, double hi)
{
	if (!rq || !isfinite(v) || v < lo || v > hi)
		return LR_EINVAL;
	/* The shortest text that reads back as v (0.2, not 0.20000000000000001). */
	char num[40];
	for (int digits = 15; digits <= 17; digits++) {
		snprintf(num, sizeof(num), "%.*g", digits, v);
		if (strtod(num, NULL) == v)
			break;
	}
	return lr_request_set_param(rq, key, num);
}

LR_API int lr_request_set_temperature(lr_request *rq, double temperature)
{
	return set_number(rq, "temperature", temperature, 0, 2);
}

LR_API int lr_request_set_top_p(lr_request *rq, double top_p)
{
	return set_number(rq, "top_p", top_p, 0, 1);
}

LR_API int lr_request_set_seed(lr_request *rq, int64_t seed)
{
	if (!rq)
		return LR_EINVAL;
	char num[32];
	snprintf(num, sizeof(num), "%lld", (long long)seed);
	return lr_request_set_param(rq, "seed", num);
}

LR_API int lr_request_set_n(lr_request *rq, int n)
{
	return set_number(rq, "n", n, 1, 128);
}

LR_API int lr_request_add_stop(lr_request *rq, const char *stop)
{
	if (!rq || !stop || !stop[0] || rq->nstops >= 4)
		return LR_EINVAL;
	struct list_append la = list_begin(&rq->stops);
	list_put_str(&la, stop);
	int ret = list_end(&la);
	if (!ret)
		rq->nstops++;
	return ret;
}

static int set_string_param(lr_request *rq, const char *key, const char *s)
{
	if (!rq || !s)
		return LR_EINVAL;
	struct buf b = {0}; /* owner: this function */
	int ret = json_append_string(&b, s, strlen(s));
	if (!ret)
		ret = buf_append(&b, "", 1);
	if (!ret)
		ret = lr_request_set_param(rq, key, b.data);
	buf_free(&b);
	return ret;
}

LR_API int lr_request_set_user(lr_request *rq, const char *user)
{
	return set_string_param(rq, "user", user);
}

LR_API int lr_request_set_tool_choice(lr_request *rq, const char *choice)
{
	if (!rq || !choice || !choice[0])
		return LR_EINVAL;
	if (!strcmp(choice, "auto") || !strcmp(choice, "none") || !strcmp(choice, "required"))
		return set_string_param(rq, "tool_choice", choice);
	struct buf b = {0}; /* owner: this function */
	int ret = append_cstr(&b, "{\"type\":\"function\",\"function\":{\"name\":");
	if (!ret)
		ret = append_jstr(&b, choice);
	if (!ret)
		ret = buf_append(&b, "}}", 3); /* with the NUL */
	if (!ret)
		ret = lr_request_set_param(rq, "tool_choice", b.data);
	buf_free(&b);
	return ret;
}

LR_API int lr_request_set_response_format(lr_request *rq, const char *json)
{
	if (!rq || !json)
		return LR_EINVAL;
	int rc = json_check(json, JSON_OBJECT);
	return rc ? rc : lr_request_set_param(rq, "response_format", json);
}

LR_API int lr_request_set_stream(lr_request *rq, int stream)
{
	if (!rq)
		return LR_EINVAL;
	rq->stream = stream != 0;
	return 0;
}

LR_API int lr_request_set_max_tokens(lr_request *rq, int max_tokens)
{
	if (!rq || max_tokens <= 0)
		return LR_EINVAL;
	rq->max_tokens = max_tokens;
	return 0;
}

LR_API int lr_request_set_body(lr_request *rq, const char *json, size_t len)
{
	if (!rq || !json)
		return LR_EINVAL;
	buf_clear(&rq->body);
	return buf_append(&rq->body, json, len);
}

LR_API int lr_request_set_base_url(lr_request *rq, const char *url)
{
	if (!rq || !url)
		return LR_EINVAL;
	char *copy = strdup(url);
	if (!copy)
		return LR_ENOMEM;
	free(rq->base_url);
	rq->base_url = copy;
	return 0;
}

LR_API int lr_request_add_header(lr_request *rq, const char *name, const char *value)
{
	if (!rq || !name || !value)
		return LR_EINVAL;
	return http_write_header(&rq->headers, name, strlen(name), value, strlen(value));
}

LR_API int lr_request_set_max_retries(lr_request *rq, int max_retries)
{
	if (!rq || max_retries < 0 || max_retries > 100)
		return LR_EINVAL;
	rq->max_retries = max_retries;
	return 0;
}

LR_API int lr_request_set_cache_only(lr_request *rq, int only)
{
	if (!rq || rq->call)
		return LR_EINVAL; /* an HTTP call is never cached */
	rq->cache_only = only != 0;
	return 0;
}

LR_API int lr_request_set_timeouts(lr_request *rq, double connect_s, double idle_s, double total_s)
{
	if (!rq)
		return LR_EINVAL;
	rq->connect_s = connect_s;
	rq->idle_s = idle_s;
	rq->total_s = total_s;
	return 0;
}

LR_API int lr_request_on_delta(lr_request *rq, lr_delta_fn fn, void *user)
{
	if (!rq || !fn)
		return LR_EINVAL;
	rq->on_delta = fn;
	rq->on_delta_user = user;
	return 0;
}

LR_API void lr_request_set_user_data(lr_request *rq, void *data)
{
	if (rq)
		rq->user_data = data;
}

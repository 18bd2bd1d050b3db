/* lr_request: built on the caller's thread, turned into bytes in lr_submit. */
#include "request.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"

LR_API lr_request *lr_request_new(const char *model)
{
	lr_request *rq = calloc(1, sizeof(*rq)); /* owner: the caller until lr_submit */
	if (!rq)
		return NULL;
	rq->max_tokens = -1;
	if (model && !(rq->model = strdup(model))) {
		free(rq);
		return NULL;
	}
	return rq;
}

LR_API void lr_request_free(lr_request *rq)
{
	if (!rq)
		return;
	free(rq->model);
	free(rq->base_url);
	http_buf_free(&rq->body);
	http_buf_free(&rq->messages);
	http_buf_free(&rq->headers);
	free(rq);
}

LR_API int lr_request_set_endpoint(lr_request *rq, enum lr_endpoint ep)
{
	if (!rq || (ep != LR_ENDPOINT_CHAT && ep != LR_ENDPOINT_EMBEDDINGS))
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
	}
	return NULL;
}

LR_API int lr_request_add_message(lr_request *rq, enum lr_role role, const char *text)
{
	const char *name = role_name(role);
	if (!rq || !name || !text)
		return LR_EINVAL;
	struct http_buf *m = &rq->messages;
	size_t mark = m->len;
	int ret = 0;
	if (m->len)
		ret = http_buf_append(m, ",", 1);
	if (!ret)
		ret = http_buf_append(m, "{\"role\":\"", 9);
	if (!ret)
		ret = http_buf_append(m, name, strlen(name));
	if (!ret)
		ret = http_buf_append(m, "\",\"content\":", 12);
	if (!ret)
		ret = json_append_string(m, text, strlen(text));
	if (!ret)
		ret = http_buf_append(m, "}", 1);
	if (ret)
		m->len = mark; /* all or nothing */
	return ret;
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
	rq->body.len = 0;
	return http_buf_append(&rq->body, json, len);
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

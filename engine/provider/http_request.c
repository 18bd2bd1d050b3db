/*
 * lr_request for a plain HTTP call (lr_request_new_http): method, target,
 * body parts and the response sink, checked on the caller's thread. The
 * engine turns it into bytes in core/http_call.c.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "provider/provider.h"
#include "provider/request.h"
#include "llmring.h"

/* A target goes on the request line: visible characters only. */
static bool target_ok(const char *t)
{
	if (!*t)
		return false;
	for (const unsigned char *c = (const unsigned char *)t; *c; c++)
		if (*c <= ' ' || *c == 0x7f)
			return false;
	return true;
}

LR_API lr_request *lr_request_new_http(const char *provider, enum lr_method method, const char *target)
{
	if (!target || !target_ok(target) ||
	    (method != LR_METHOD_GET && method != LR_METHOD_POST && method != LR_METHOD_DELETE))
		return NULL;
	int p = -1;
	for (int i = 0; i < PROVIDER_COUNT; i++)
		if (strcmp(provider ? provider : "openai", provider_row((enum provider)i)->name) == 0)
			p = i;
	if (p < 0)
		return NULL;
	lr_request *rq = lr_request_new(NULL);
	struct http_call *c = calloc(1, sizeof(*c)); /* owner: rq until lr_submit */
	char *copy = strdup(target);                 /* owner: c */
	if (!rq || !c || !copy) {
		free(copy);
		free(c);
		lr_request_free(rq);
		return NULL;
	}
	c->provider = p;
	c->method = method;
	c->target = copy;
	c->sink_fd = -1;
	c->content_length = -1;
	rq->call = c;
	return rq;
}

static struct body_part *next_part(lr_request *rq)
{
	if (!rq || !rq->call || rq->call->nparts >= HTTP_CALL_MAX_PARTS)
		return NULL;
	return &rq->call->parts[rq->call->nparts];
}

LR_API int lr_request_add_body_bytes(lr_request *rq, const void *data, size_t len, lr_release_fn release,
                                     void *user)
{
	struct body_part *bp = next_part(rq);
	if (!bp || (!data && len) || len > UINT64_MAX - rq->call->body_len)
		return LR_EINVAL;
	memset(bp, 0, sizeof(*bp));
	bp->fd = -1;
	bp->len = len;
	if (release) {
		bp->data = data;
		bp->release = release;
		bp->release_user = user;
	} else if (len) {
		bp->copy = malloc(len);
		if (!bp->copy)
			return LR_ENOMEM;
		memcpy(bp->copy, data, len);
		bp->data = bp->copy;
	} else {
		bp->data = "";
	}
	rq->call->nparts++;
	rq->call->body_len += len;
	rq->call->has_body = true;
	return 0;
}

LR_API int lr_request_add_body_file(lr_request *rq, int fd, int64_t offset, int64_t len)
{
	struct body_part *bp = next_part(rq);
	if (!bp || fd < 0 || offset < 0)
		return LR_EINVAL;
	if (len < 0) {
		struct stat st;
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < offset)
			return LR_EINVAL;
		len = st.st_size - offset;
	}
	if ((uint64_t)len > UINT64_MAX - rq->call->body_len)
		return LR_EINVAL;
	memset(bp, 0, sizeof(*bp));
	bp->fd = fd;
	bp->offset = (uint64_t)offset;
	bp->len = (uint64_t)len;
	rq->call->nparts++;
	rq->call->body_len += (uint64_t)len;
	rq->call->has_body = true;
	return 0;
}

LR_API int lr_request_on_response_body(lr_request *rq, lr_body_fn fn, void *user)
{
	if (!rq || !rq->call || !fn)
		return LR_EINVAL;
	rq->call->sink = fn;
	rq->call->sink_user = user;
	rq->call->sink_fd = -1;
	return 0;
}

LR_API int lr_request_set_response_fd(lr_request *rq, int fd)
{
	if (!rq || !rq->call || fd < 0)
		return LR_EINVAL;
	rq->call->sink = NULL;
	rq->call->sink_fd = fd;
	return 0;
}

void http_call_release(struct http_call *c)
{
	if (!c || c->released)
		return;
	c->released = true;
	for (unsigned i = 0; i < c->nparts; i++)
		if (c->parts[i].release)
			c->parts[i].release(c->parts[i].release_user, c->parts[i].data);
}

void http_call_free(struct http_call *c)
{
	if (!c)
		return;
	http_call_release(c);
	for (unsigned i = 0; i < c->nparts; i++)
		free(c->parts[i].copy);
	free(c->target);
	free(c->chunk);
	buf_free(&c->head);
	free(c);
}

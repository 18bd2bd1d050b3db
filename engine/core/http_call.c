/*
 * Plain HTTP calls (lr_request_new_http): the request bytes and where they
 * go (submit side), the body read a piece at a time from the caller's
 * bytes or files, the response's headers kept for lr_future_response_header,
 * and its body handed to the caller's sink. What is common with chat
 * (deadlines, retries, completion) stays in schedule.c, response.c and
 * future.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/engine_internal.h"
#include "http/http_writer.h"
#include "io/url.h"
#include "provider/request.h"
#include "llmring.h"

/* A file part is read into a buffer this big, then sent; bytes parts go
 * out in pieces of at most CALL_SEND_PIECE so TLS never encrypts a
 * 256 MB body into one ciphertext buffer. */
#define CALL_FILE_CHUNK (256u * 1024u)
#define CALL_SEND_PIECE (1024u * 1024u)

static const char *method_name(enum lr_method m)
{
	return m == LR_METHOD_POST ? "POST" : m == LR_METHOD_DELETE ? "DELETE" : "GET";
}

static bool is_absolute(const char *t)
{
	return strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0;
}

/* Whether the caller's header block has a Content-Type line. */
static bool has_content_type(const struct buf *h)
{
	static const char name[] = "content-type:";
	for (size_t i = 0; i + sizeof(name) - 1 <= h->len;) {
		if (strncasecmp(h->data + i, name, sizeof(name) - 1) == 0)
			return true;
		const char *nl = memchr(h->data + i, '\n', h->len - i);
		if (!nl)
			break;
		i = (size_t)(nl - h->data) + 1;
	}
	return false;
}

/* f->own_url from url (a query after '?' goes to *query, borrowed from
 * url). 0, or the code with f->err set. */
static int parse_own_url(struct lr_future *f, const char *url, const char **query, char *scratch,
                         size_t cap)
{
	const char *q = strchr(url, '?');
	size_t n = q ? (size_t)(q - url) : strlen(url);
	if (n >= cap)
		return error_set(&f->err, LR_EINVAL, 0, "the request URL is too long");
	memcpy(scratch, url, n);
	scratch[n] = '\0';
	*query = q ? q : "";
	f->own_url = malloc(sizeof(*f->own_url)); /* owner: the future */
	if (!f->own_url)
		return error_set(&f->err, LR_ENOMEM, 0, "%s", lr_strerror(LR_ENOMEM));
	const char *why = NULL;
	int ret = url_parse(scratch, f->own_url, &why);
	if (ret) {
		char shown[200];
		url_redact(scratch, shown, sizeof(shown));
		return error_set(&f->err, ret, 0, "request URL %.150s: %s", shown, why ? why : "invalid");
	}
	return 0;
}

/* The request target into t: the absolute URL's path and query, or the
 * base URL's path joined to the relative target with one '/'. */
static int build_target(struct lr_future *f, const struct http_call *c, const char *base_url,
                        const struct url *ep_url, struct buf *t)
{
	char scratch[1400];
	const char *query = "";
	int ret = 0;
	if (is_absolute(c->target)) {
		ret = parse_own_url(f, c->target, &query, scratch, sizeof(scratch));
		if (!ret) {
			buf_puts(t, f->own_url->path[0] ? f->own_url->path : "/");
			buf_puts(t, query);
		}
	} else {
		if (base_url)
			ret = parse_own_url(f, base_url, &query, scratch, sizeof(scratch));
		if (!ret && query[0])
			ret = error_set(&f->err, LR_EINVAL, 0, "a base URL may not carry a query");
		const char *rel = c->target;
		while (*rel == '/')
			rel++;
		const char *base = f->own_url ? f->own_url->path : ep_url->path;
		/* A version the base path ends in is not repeated, as for chat:
		 * "v1/files" under ".../v1" is /v1/files, under "" too. */
		const char *last = strrchr(base, '/');
		size_t seg = last ? strlen(last + 1) : 0;
		if (seg && strncmp(rel, last + 1, seg) == 0 && (rel[seg] == '/' || rel[seg] == '\0'))
			rel += seg + (rel[seg] == '/');
		if (!ret) {
			buf_puts(t, base);
			buf_puts(t, "/");
			buf_puts(t, rel);
		}
	}
	if (!ret && buf_error(t))
		ret = error_set(&f->err, LR_ENOMEM, 0, "%s", lr_strerror(LR_ENOMEM));
	if (!ret && buf_reserve(t, 1) == 0)
		t->data[t->len] = '\0';
	else if (!ret)
		ret = error_set(&f->err, LR_ENOMEM, 0, "%s", lr_strerror(LR_ENOMEM));
	return ret;
}

/* The head, then (when every part is a copy) the body, into req_bytes. */
static int write_request(struct lr_future *f, const struct http_call *c, const lr_request *rq,
                         const struct url *u, const char *target, const struct buf *auth)
{
	struct buf *b = &f->req_bytes;
	int ret = http_write_request_line(b, method_name(c->method), target, u->host_header);
	if (ret == LR_EINVAL)
		return error_set(&f->err, ret, 0, "the request target is not a valid HTTP request target");
	buf_append(b, auth->data, auth->len);
	buf_puts(b, "Accept-Encoding: identity\r\nUser-Agent: llmring/" LR_VERSION_STRING "\r\n");
	buf_append(b, rq->headers.data, rq->headers.len);
	if (c->has_body && !has_content_type(&rq->headers))
		buf_puts(b, "Content-Type: application/json\r\n");
	bool all_copied = true;
	for (unsigned i = 0; i < c->nparts; i++)
		all_copied = all_copied && c->parts[i].copy;
	if (c->has_body || c->method == LR_METHOD_POST) {
		char cl[48];
		snprintf(cl, sizeof(cl), "Content-Length: %llu\r\n", (unsigned long long)c->body_len);
		buf_puts(b, cl);
	}
	buf_puts(b, "\r\n");
	f->call->send_len = c->body_len;
	if (all_copied) {
		/* Small JSON bodies, the usual case: one send. */
		for (unsigned i = 0; i < c->nparts; i++)
			buf_append(b, c->parts[i].data, (size_t)c->parts[i].len);
		f->call->send_len = 0;
	}
	if (buf_error(b))
		return error_set(&f->err, LR_ENOMEM, 0, "%s", lr_strerror(LR_ENOMEM));
	return 0;
}

int future_build_http(lr_engine *e, struct lr_future *f, lr_request *rq)
{
	struct http_call *c = rq->call;
	rq->call = NULL;
	f->call = c;
	f->provider = (enum provider)c->provider;
	f->endpoint = LR_ENDPOINT_CHAT;
	if (request_has_parts(rq) || rq->body.len || rq->on_delta || rq->stream)
		return error_set(&f->err, LR_EINVAL, 0,
		                 "an HTTP request (lr_request_new_http) takes no messages, chat body or stream");
	const struct endpoint *ep = &e->ep[f->provider];
	if (ep->err.code)
		return error_copy(&f->err, &ep->err);
	struct buf target = {0}; /* owner: this function */
	struct buf other = {0};  /* owner: this function; headers for another origin */
	int ret = build_target(f, c, rq->base_url, &ep->url, &target);
	const struct url *u = f->own_url ? f->own_url : &ep->url;
	/* The key goes only to the origin it was configured for. */
	bool same_origin = url_same_origin(u, &ep->url);
	if (!ret && same_origin && ep->needs_key)
		ret = error_set(&f->err, LR_EAUTH, 0, "%s is not set; %s needs a key",
		                provider_row(f->provider)->key_env, ep->url.host);
	if (!ret && !same_origin && provider_auth_headers(f->provider, &other, NULL))
		ret = error_set(&f->err, LR_ENOMEM, 0, "%s", lr_strerror(LR_ENOMEM));
	if (!ret)
		ret = write_request(f, c, rq, u, target.data, same_origin ? &ep->auth_headers : &other);
	buf_free(&target);
	buf_free(&other);
	return ret;
}

/* A file part's piece at rel into the call's chunk buffer. */
static int read_file_piece(struct lr_future *f, const struct body_part *bp, uint64_t rel,
                           const char **data, size_t *len)
{
	struct http_call *c = f->call;
	if (!c->chunk && !(c->chunk = malloc(CALL_FILE_CHUNK))) /* owner: the call */
		return error_set(&f->ex.err, LR_ENOMEM, 0, "out of memory reading the request body");
	size_t want = bp->len - rel < CALL_FILE_CHUNK ? (size_t)(bp->len - rel) : CALL_FILE_CHUNK;
	ssize_t n;
	do {
		n = pread(bp->fd, c->chunk, want, (off_t)(bp->offset + rel));
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return error_set(&f->ex.err, LR_EIO, errno, "reading the request body file failed: %s",
		                 strerror(errno));
	if (n == 0)
		return error_set(&f->ex.err, LR_EIO, 0,
		                 "the request body file ended %llu bytes early (it changed after the request "
		                 "was made)",
		                 (unsigned long long)(bp->len - rel));
	*data = c->chunk;
	*len = (size_t)n;
	return 0;
}

int future_body_at(struct http_exchange *ex, uint64_t offset, const char **data, size_t *len)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	struct http_call *c = f->call;
	*len = 0;
	for (unsigned i = 0; c && i < c->nparts; i++) {
		const struct body_part *bp = &c->parts[i];
		if (offset >= bp->len) {
			offset -= bp->len;
			continue;
		}
		if (bp->fd >= 0)
			return read_file_piece(f, bp, offset, data, len);
		*data = bp->data + offset;
		*len = bp->len - offset < CALL_SEND_PIECE ? (size_t)(bp->len - offset) : CALL_SEND_PIECE;
		return 0;
	}
	return 0; /* past the end: the pool names the short body */
}

void call_on_head(struct lr_future *f, const struct http_head *h)
{
	struct http_call *c = f->call;
	buf_clear(&c->head);
	for (size_t i = 0; i < h->num_headers; i++) {
		buf_append(&c->head, h->headers[i].name, h->headers[i].name_len);
		buf_append(&c->head, "", 1);
		buf_append(&c->head, h->headers[i].value, h->headers[i].value_len);
		buf_append(&c->head, "", 1);
	}
	if (buf_error(&c->head))
		buf_free(&c->head); /* headers are a convenience: out of memory loses them only */
	c->content_length = h->content_length;
	c->body_bytes = 0;
	c->to_sink = (c->sink || c->sink_fd >= 0) && h->status >= 200 && h->status < 300;
}

/* A sink piece: to the caller's function or fd. 0, or LR_E* with f->err. */
int call_deliver(struct lr_future *f, const char *data, size_t len)
{
	struct http_call *c = f->call;
	c->delivered = true;
	if (c->sink) {
		int r = c->sink(c->sink_user, data, len);
		if (!r)
			return 0;
		int code = r < 0 && r >= LR_EIO ? r : LR_EIO;
		return error_set(&f->err, code, 0, "the response body callback stopped the download (%d)", r);
	}
	while (len > 0) {
		ssize_t n = write(c->sink_fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return error_set(&f->err, LR_EIO, n < 0 ? errno : 0,
			                 "writing the response body to fd %d failed: %s", c->sink_fd,
			                 n < 0 ? strerror(errno) : "nothing written");
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

LR_API const char *lr_future_response_header(const lr_future *f, const char *name)
{
	if (!name || !lr_future_result(f) || !f->call || !f->call->head.data)
		return NULL;
	const struct buf *h = &f->call->head;
	const char *found = NULL;
	for (size_t i = 0; i < h->len;) {
		const char *n = h->data + i;
		const char *v = n + strlen(n) + 1;
		if (v >= h->data + h->len)
			break; /* a name without its value: never written, but never read past */
		if (strcasecmp(n, name) == 0)
			found = v;
		i = (size_t)(v - h->data) + strlen(v) + 1;
	}
	return found;
}

LR_API uint64_t lr_future_response_bytes(const lr_future *f)
{
	return lr_future_result(f) && f->call ? f->call->body_bytes : 0;
}

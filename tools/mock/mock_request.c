/*
 * The mock's HTTP/1.1 request parser: the head of one request (request
 * line and header fields) in a connection's input buffer.
 *
 * This is the mock's own parser on purpose, and it must not include
 * engine/http: a mock that shared the client's parser would hide the bugs
 * the two would share (both sides agreeing on a wrong framing).
 *
 * It is strict where a sloppy client shows: obsolete line folding, spaces
 * in field names and conflicting Content-Length values are 400, a chunked
 * request body is 411, a head over HEAD_MAX is 431, a body over BODY_MAX
 * is 413 (BATCH_BODY_MAX for the batch APIs' uploads). The path is classified by mock_route_path (the route and the
 * dialect, which an error reply already needs).
 */
#include "mock_batch.h"
#include "mock_internal.h"

#include <strings.h>

static bool hdr_is(const char *name, size_t nlen, const char *want)
{
	return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

static bool has_token(const char *v, size_t vlen, const char *tok)
{
	size_t tl = strlen(tok);
	for (size_t i = 0; i + tl <= vlen; i++)
		if (strncasecmp(v + i, tok, tl) == 0)
			return true;
	return false;
}

/* What the header fields say about framing and the connection. */
struct head_fields {
	bool conn_close, conn_keep; /* Connection: close / keep-alive */
	bool have_cl, have_te;      /* Content-Length / Transfer-Encoding seen */
	uint64_t cl;
};

/* One field line [h, eol) into f (and rq->fault); 0, or 400 when it is
 * malformed. */
static int parse_field(struct req *rq, struct head_fields *f, const char *head, const char *h,
		       const char *eol)
{
	if (*h == ' ' || *h == '\t')
		return 400; /* obsolete line folding */
	const char *colon = memchr(h, ':', (size_t)(eol - h));
	if (!colon || colon == h)
		return 400;
	size_t nlen = (size_t)(colon - h);
	if (memchr(h, ' ', nlen) || memchr(h, '\n', (size_t)(eol - h)))
		return 400;
	const char *v = colon + 1, *ve = eol;
	while (v < ve && (*v == ' ' || *v == '\t'))
		v++;
	while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	size_t vlen = (size_t)(ve - v);
	if (hdr_is(h, nlen, "content-length")) {
		uint64_t x = 0;
		if (vlen == 0 || vlen > 12)
			return 400;
		for (size_t i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9')
				return 400;
			x = x * 10 + (uint64_t)(v[i] - '0');
		}
		if (f->have_cl && x != f->cl)
			return 400;
		f->have_cl = true;
		f->cl = x;
	} else if (hdr_is(h, nlen, "transfer-encoding")) {
		f->have_te = true;
	} else if (hdr_is(h, nlen, "connection")) {
		if (has_token(v, vlen, "close"))
			f->conn_close = true;
		if (has_token(v, vlen, "keep-alive"))
			f->conn_keep = true;
	} else if (hdr_is(h, nlen, "x-mock-fault")) {
		int fault = mock_fault_from_mem(v, vlen);
		rq->fault = fault < 0 ? -2 : fault;
	} else if (hdr_is(h, nlen, "x-mock-batch-fault")) {
		int fault = mock_batch_fault_from_mem(v, vlen);
		rq->batch_fault = fault <= 0 ? -2 : fault;
	} else if (hdr_is(h, nlen, "content-type")) {
		rq->ctype_off = (uint32_t)(v - head);
		rq->ctype_len = (uint32_t)vlen;
	} else if (hdr_is(h, nlen, "range")) {
		/* Anything but one byte range is ignored, as RFC 9110 allows. */
		rq->has_range = mock_parse_range(v, vlen, &rq->range_from, &rq->range_to);
	}
	return 0;
}

int mock_parse_head(struct conn *c)
{
	const char *p = c->in.p + c->in_start;
	size_t n = c->in.len - c->in_start;
	size_t from = c->scan > 3 ? c->scan - 3 : 0;
	const char *e = n > from ? memmem(p + from, n - from, "\r\n\r\n", 4) : NULL;
	if (!e) {
		c->scan = n;
		if (n <= HEAD_MAX)
			return 0;
		memset(&c->rq, 0, sizeof(c->rq)); /* no stale dialect for the 431 */
		return 431;
	}
	struct req *rq = &c->rq;
	memset(rq, 0, sizeof(*rq));
	rq->fault = -1;
	rq->batch_fault = -1;
	size_t head_len = (size_t)(e - p) + 4;
	if (head_len > HEAD_MAX)
		return 431;

	/* The request line: METHOD SP target SP HTTP/1.x */
	const char *le = memmem(p, head_len, "\r\n", 2);
	const char *sp1 = memchr(p, ' ', (size_t)(le - p));
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(le - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1 || le - sp2 - 1 != 8 ||
	    memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
		return 400;
	bool http11 = sp2[8] == '1';

	size_t ll = (size_t)(sp2 - p);
	rq->line_len = ll < sizeof(rq->line) ? ll : sizeof(rq->line);
	memcpy(rq->line, p, rq->line_len);

	const char *path = sp1 + 1;
	const char *pe = memchr(path, '?', (size_t)(sp2 - path));
	size_t plen = (size_t)((pe ? pe : sp2) - path);
	mock_route_path(rq, path, plen, pe, sp2, p);
	bool post = sp1 - p == 4 && memcmp(p, "POST", 4) == 0;
	if (rq->route == R_BATCH) {
		rq->method = post ? M_POST
			   : sp1 - p == 3 && memcmp(p, "GET", 3) == 0 ? M_GET
			   : sp1 - p == 6 && memcmp(p, "DELETE", 6) == 0 ? M_DELETE : M_OTHER;
		rq->path_off = (uint32_t)(path - p);
		rq->path_len = (uint32_t)plen;
		if (pe) {
			rq->query_off = (uint32_t)(pe + 1 - p);
			rq->query_len = (uint32_t)(sp2 - pe - 1);
		}
	} else if (!post) {
		rq->route = R_NOTFOUND; /* dialect kept for the 404 body */
	}

	struct head_fields f = {0};
	const char *h = le + 2;
	const char *hend = p + head_len - 2;
	while (h < hend) {
		const char *eol = memmem(h, (size_t)(hend - h), "\r\n", 2);
		int st = parse_field(rq, &f, p, h, eol);
		if (st)
			return st;
		h = eol + 2;
	}
	if (f.have_te)
		return 411; /* chunked request bodies are not supported */
	if (f.cl > (rq->route == R_BATCH ? BATCH_BODY_MAX : BODY_MAX))
		return 413;
	rq->head_len = head_len;
	rq->body_len = (size_t)f.cl;
	rq->keep_alive = !f.conn_close && (http11 || f.conn_keep);
	return 1;
}

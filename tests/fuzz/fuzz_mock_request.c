/*
 * libFuzzer: the mock server's own request parser (tools/mock/mock_request.c)
 * and what it answers, reached through the mock's private header and
 * library.
 *
 * The input is the byte stream a client sends on one connection. It goes
 * through the mock's connection loop (mock_conn.c's conn_process without
 * the ring): mock_parse_head, mock_dispatch (which reads the body with the
 * mock's key scanners) and mock_job_run with every delay off, first with
 * the bytes up to data[0] / 255 of the way in, then with all of them (so
 * the parser's resumed head search is fuzzed too).
 *
 * The batch APIs' store is in memory, new for every input (so their
 * endpoints are fuzzed too: uploads, creates, downloads, lists).
 *
 * Oracles: sanitizers; every answer is one complete HTTP response the
 * engine's reader accepts (but for the truncate and reset faults, which
 * a download the cut fault struck also counts as); a batch API's application/json answer
 * is valid JSON whatever the request; and,
 * when the request body is valid JSON and no fault asked for breakage,
 * the engine reads the answer in its dialect without error: a JSON body
 * is valid JSON (an error body too), a 200 chat or embeddings body parses
 * with provider_parse_response, and a stream decodes to its end.
 */
#include "mock_batches.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http_reader.h"
#include "format/json.h"
#include "provider/provider.h"
#include "provider/reply.h"

static struct mock_server srv;

/* ---- reading an answer back with the engine ---- */

struct answer {
	int status;
	bool sse, ndjson, json, done;
	struct buf body; /* owner: the answer */
};

static int on_head(void *ctx, const struct http_head *h)
{
	struct answer *a = ctx;
	a->status = h->status;
	const struct http_header *ct = http_head_find(h, "content-type");
	if (ct) {
		a->sse = ct->value_len >= 17 && strncasecmp(ct->value, "text/event-stream", 17) == 0;
		a->ndjson = ct->value_len >= 20 && strncasecmp(ct->value, "application/x-ndjson", 20) == 0;
		a->json = ct->value_len >= 16 && strncasecmp(ct->value, "application/json", 16) == 0;
	}
	return 0;
}
static int on_body(void *ctx, const char *d, size_t n)
{
	return buf_append(&((struct answer *)ctx)->body, d, n);
}
static int on_done(void *ctx)
{
	((struct answer *)ctx)->done = true;
	return 0;
}
static const struct http_reader_callbacks answer_cb = {on_head, on_body, on_done};

static bool valid_json(const char *s, size_t n)
{
	struct json_doc d = {0};
	int rc = json_parse(&d, s, n);
	json_doc_free(&d);
	return rc == 0 || rc == LR_ENOMEM;
}

static void fail(const char *what, const char *resp, size_t len)
{
	fprintf(stderr, "mock answer: %s\n%.*s\n", what, (int)(len > 3000 ? 3000 : len), resp);
	abort();
}

static const enum provider dialect_provider[4] = {PROVIDER_OPENAI, PROVIDER_ANTHROPIC,
                                                  PROVIDER_OLLAMA, PROVIDER_GEMINI};

/* What mock_dispatch decided for the request just answered. */
struct asked {
	bool parse_error;     /* answered from mock_parse_head's status */
	bool body_json;       /* the request body is valid JSON */
	uint8_t route, dialect, fault;
	bool stream;
};

static void check_answer(const struct asked *q, const char *resp, size_t len)
{
	bool cut = !q->parse_error && (q->fault == MOCK_FAULT_TRUNCATE || q->fault == MOCK_FAULT_RESET);
	char *copy = malloc(len ? len : 1); /* the reader strips chunk framing in place */
	if (!copy)
		abort();
	memcpy(copy, resp, len);
	struct answer a = {0};
	struct http_reader r;
	http_reader_init(&r, 0, 0);
	long n = http_reader_feed(&r, copy, len, &answer_cb, &a);
	http_reader_free(&r);
	free(copy);
	if (cut)
		goto out;
	if (n < 0 || !a.done)
		fail("not one complete HTTP response", resp, len);
	if ((size_t)n != len)
		fail("bytes after the response", resp, len);
	if (!q->parse_error && q->route == R_BATCH) {
		if (a.json && !valid_json(a.body.data, a.body.len))
			fail("a batch API's JSON answer is not valid JSON", resp, len);
		goto out;
	}
	bool strict = q->parse_error || q->route == R_NOTFOUND || q->body_json;
	if (!strict || (!q->parse_error && q->fault == MOCK_FAULT_MALFORMED))
		goto out;
	enum provider p = dialect_provider[q->dialect & 3];
	if (a.sse || a.ndjson) {
		if (q->fault == MOCK_FAULT_STREAM_ERROR)
			goto out;
		struct reply rp;
		reply_init(&rp, NULL, NULL);
		struct stream_decoder *sd = stream_decoder_new(p, a.ndjson, &rp);
		if (!sd)
			abort();
		int rc = stream_decoder_feed(sd, a.body.data, a.body.len);
		if (!rc)
			rc = stream_decoder_finish(sd);
		if (rc) {
			fprintf(stderr, "stream decoder: %s (%s)\n", lr_error_name(rc), rp.err.message);
			fail("the engine cannot decode the stream", resp, len);
		}
		stream_decoder_free(sd);
		reply_free(&rp);
		goto out;
	}
	if (!valid_json(a.body.data, a.body.len))
		fail("the body is not valid JSON", resp, len);
	if (a.status == 200 && !q->parse_error && q->route != R_NOTFOUND) {
		enum lr_endpoint ep = q->route == R_EMBED || q->route == R_OLLAMA_EMBED ? LR_ENDPOINT_EMBEDDINGS
		                                                                        : LR_ENDPOINT_CHAT;
		struct reply rp;
		reply_init(&rp, NULL, NULL);
		struct json_doc doc = {0};
		struct buf norm = {0};
		bool is_json, rewritten;
		provider_parse_response(p, ep, &doc, 200, a.body.data, a.body.len, &rp, &is_json, &norm,
		                        &rewritten);
		if (rp.err.code) {
			fprintf(stderr, "provider_parse_response: %s (%s)\n", lr_error_name(rp.err.code), rp.err.message);
			fail("the engine cannot parse the body", resp, len);
		}
		buf_free(&norm);
		json_doc_free(&doc);
		reply_free(&rp);
	}
out:
	buf_free(&a.body);
}

/* ---- the connection loop, without the ring ---- */

static void run_job(struct conn *c)
{
	c->job.slow = false; /* the slow-headers fault would arm a ring timer */
	c->job.ttft_us = 0;
	mock_job_run(&srv, c);
	while (c->job.active && c->job.wait_send) { /* no sends here: let pend grow */
		c->job.wait_send = false;
		mock_job_run(&srv, c);
	}
}

/* mock_conn.c's conn_process: answers every complete request in c->in. */
static void process(struct conn *c)
{
	while (!c->want_close && !c->job.active) {
		struct asked q = {0};
		size_t before = c->pend.len;
		if (!c->head_done) {
			int r = mock_parse_head(c);
			if (r == 0)
				break;
			if (r != 1) {
				mock_respond_parse_error(&srv, c, r);
				run_job(c);
				q.parse_error = true;
				check_answer(&q, c->pend.p + before, c->pend.len - before);
				break;
			}
			c->head_done = true;
		}
		if (c->in.len - c->in_start < c->rq.head_len + c->rq.body_len)
			break;
		q.body_json = valid_json(c->in.p + c->in_start + c->rq.head_len, c->rq.body_len);
		mock_dispatch(&srv, c);
		q.route = c->rq.route;
		q.dialect = c->job.dialect;
		q.fault = c->job.fault;
		q.stream = c->job.stream;
		c->in_start += c->rq.head_len + c->rq.body_len;
		c->head_done = false;
		c->scan = 0;
		run_job(c);
		if (c->job.active)
			abort(); /* with no delays a job finishes at once */
		check_answer(&q, c->pend.p + before, c->pend.len - before);
	}
}

/* c->in becomes exactly data[0..n) (an exact allocation, for ASan). */
static void set_input(struct conn *c, const uint8_t *data, size_t n)
{
	char *p = malloc(n ? n : 1);
	if (!p)
		abort();
	memcpy(p, data, n);
	free(c->in.p);
	c->in.p = p;
	c->in.len = c->in.cap = n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!srv.o.tokens) {
		mock_options_default(&srv.o);
		srv.o.ttft_ms = srv.o.itl_ms = 0;
	}
	if (size < 1)
		return 0;
	if (mock_bstore_new(&srv.o, &srv.bs, NULL, 0) < 0)
		abort();
	const uint8_t *in = data + 1;
	size_t n = size - 1;
	size_t first = n * data[0] / 255;
	struct conn c = {0};
	set_input(&c, in, first);
	process(&c);
	if (!c.want_close) {
		set_input(&c, in, n);
		process(&c);
	}
	free(c.in.p);
	mock_buf_free(&c.out);
	mock_buf_free(&c.pend);
	mock_buf_free(&c.tpend);
	mock_buf_free(&c.job.whole);
	mock_buf_free(&c.job.prefix);
	mock_bfile_unref(c.job.src);
	mock_bstore_free(srv.bs);
	srv.bs = NULL;
	return 0;
}

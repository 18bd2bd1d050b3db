/*
 * One attempt's exchange callbacks: the response head (request id, retry
 * hints, rate-limit headers, framing), the body or stream, and the end of
 * the attempt (parse, then complete or retry).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/engine_internal.h"
#include "core/ratelimit.h"
#include "core/retry.h"
#include "http/http_reader.h"
#include "provider/provider.h"
#include "provider/reply.h"
#include "util/clock.h"
#include "llmring.h"

static size_t header_copy(char *dst, size_t cap, const struct http_header *h)
{
	size_t n = h->value_len < cap - 1 ? h->value_len : cap - 1;
	memcpy(dst, h->value, n);
	dst[n] = '\0';
	return n;
}

/* A header's value as a number, or -1 when absent or not a number. */
static double header_number(const struct http_header *hd)
{
	if (!hd)
		return -1;
	char num[32];
	header_copy(num, sizeof(num), hd);
	char *end;
	double v = strtod(num, &end);
	return end != num && v >= 0 ? v : -1;
}

static int future_on_head(struct http_exchange *ex, const struct http_head *h)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	/* Which headers mean what is the provider row's knowledge. */
	struct provider_headers hs;
	provider_find_headers(f->provider, h, &hs);
	const struct http_header *const *of = hs.of;
	f->result.http_status = h->status;
	const struct http_header *rid = of[RESPONSE_HEADER_REQUEST_ID];
	if (rid)
		header_copy(f->request_id, sizeof(f->request_id), rid);
	f->result.retry_after_s = -1;
	f->should_retry = -1;
	const struct http_header *sr = of[RESPONSE_HEADER_SHOULD_RETRY];
	const struct http_header *ra_ms = of[RESPONSE_HEADER_RETRY_AFTER_MS];
	const struct http_header *ra = of[RESPONSE_HEADER_RETRY_AFTER];
	if (sr)
		f->should_retry = retry_parse_should_retry(sr->value, sr->value_len);
	if (ra_ms)
		f->result.retry_after_s = retry_parse_after_ms(ra_ms->value, ra_ms->value_len);
	else if (ra)
		f->result.retry_after_s = retry_parse_after(ra->value, ra->value_len, time(NULL));
	struct lr_engine *e = f->eng;
	if (limits_enabled(&e->limits) && !f->call) {
		/* The buckets follow what the provider says remains, and a 429's
		 * wait holds every request back, not just this one. */
		double rq = header_number(of[RESPONSE_HEADER_RATELIMIT_REQUESTS]);
		double tk = header_number(of[RESPONSE_HEADER_RATELIMIT_TOKENS]);
		limits_follow(&e->limits, e->ring.now_ns, rq, tk);
		if (h->status == 429 && f->result.retry_after_s >= 0)
			limits_pause(&e->limits, e->ring.now_ns + clock_seconds_to_ns(f->result.retry_after_s));
	}
	buf_clear(&f->resp_body);
	/* Requests say Accept-Encoding: identity; a server that compresses
	 * anyway gets a named error, not "not valid JSON" about gzip bytes. */
	f->encoded_body = false;
	const struct http_header *ce = of[RESPONSE_HEADER_CONTENT_ENCODING];
	if (ce && !(ce->value_len == 8 && strncasecmp(ce->value, "identity", 8) == 0)) {
		char coding[48];
		header_copy(coding, sizeof(coding), ce);
		for (char *c = coding; *c; c++)
			if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e)
				*c = '?';
		f->encoded_body = true;
		return error_set(&f->err, LR_EPROTO, 0,
		                 "HTTP %d response body is encoded (Content-Encoding: %s), which llmring does "
		                 "not decode; it asked for identity (check the server or proxy)",
		                 h->status, coding);
	}
	if (f->call) {
		/* Plain HTTP: no stream decoding, whatever the content type. */
		call_on_head(f, h);
		if (!f->call->to_sink && h->content_length > 0 &&
		    (uint64_t)h->content_length <= f->eng->cfg.max_body_bytes)
			return buf_reserve(future_body_buf(f), (size_t)h->content_length + 1);
		return 0;
	}
	const struct http_header *ct = of[RESPONSE_HEADER_CONTENT_TYPE];
	bool sse = ct && ct->value_len >= 17 && strncasecmp(ct->value, "text/event-stream", 17) == 0;
	bool ndjson = ct && ct->value_len >= 20 && strncasecmp(ct->value, "application/x-ndjson", 20) == 0;
	if (h->status >= 200 && h->status < 300 && (sse || ndjson) && !f->stream) {
		f->stream = stream_decoder_new(f->provider, ndjson, &f->reply); /* owner: the future */
		if (!f->stream)
			return LR_ENOMEM;
		/* Only events count as progress for the idle deadline. */
		ex->owner_tracks_progress = true;
		return 0;
	}
	if (h->content_length > 0 && (uint64_t)h->content_length <= f->eng->cfg.max_body_bytes)
		return buf_reserve(future_body_buf(f), (size_t)h->content_length + 1);
	return 0;
}

/*
 * The engine-wide cap on response bytes held for requests in flight:
 * without it, a few hundred endless bodies each under the per-response
 * cap exhaust memory. f's holding just changed; while the sum is over
 * the cap the largest holder fails. Returns LR_ETOOLARGE when that is f.
 */
static int engine_check_buffered(struct lr_engine *e, struct lr_future *f)
{
	size_t held = f->stream ? f->reply.text.cap + f->reply.scratch.cap : f->resp_body.cap;
	e->buffered_bytes += held - f->buffered;
	f->buffered = held;
	while (e->buffered_bytes > e->cfg.max_buffered_bytes) {
		struct lr_future *largest = f;
		for (struct lr_future *a = e->active.head; a; a = a->wait_next)
			if (a->buffered > largest->buffered)
				largest = a;
		largest->over_budget = true;
		if (largest == f)
			return LR_ETOOLARGE;
		pool_abort(&e->pool, &largest->ex, LR_ETOOLARGE, "response too large");
	}
	return 0;
}

static int future_on_body(struct http_exchange *ex, const char *data, size_t len)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	if (f->call) {
		f->call->body_bytes += len;
		if (f->call->to_sink)
			return call_deliver(f, data, len);
		/* The reader's cap is off for a request with a sink: an error
		 * body, buffered, keeps the usual one. */
		if (f->resp_body.len + len > f->eng->cfg.max_body_bytes)
			return error_set(&f->err, LR_ETOOLARGE, 0,
			                 "response body too large: over max_body_bytes (%zu) while buffered",
			                 f->eng->cfg.max_body_bytes);
	}
	if (!f->stream) {
		int r = buf_append(future_body_buf(f), data, len);
		return r ? r : engine_check_buffered(f->eng, f);
	}
	unsigned long before = f->reply.events;
	int r = stream_decoder_feed(f->stream, data, len);
	if (f->reply.events != before)
		ex->last_byte_ns = f->eng->ring.now_ns;
	int cap = engine_check_buffered(f->eng, f);
	if (cap)
		return cap;
	/* An error event from the provider still lets the response end
	 * normally (the connection stays reusable); broken framing or no
	 * memory stops it. */
	return stream_decoder_fatal(f->stream) || r == LR_ENOMEM ? r : 0;
}

/* Clears what one attempt left behind, keeping the request bytes. */
static void attempt_reset(struct lr_future *f)
{
	stream_decoder_free(f->stream);
	f->stream = NULL;
	reply_reset(&f->reply);
	buf_clear(&f->resp_body);
	f->request_id[0] = '\0';
	f->result.http_status = 0;
	f->result.body_is_json = 0;
	f->result.retry_after_s = -1;
	f->should_retry = -1;
	memset(&f->ex, 0, sizeof(f->ex));
	if (f->call) {
		buf_clear(&f->call->head);
		f->call->body_bytes = 0;
		f->call->to_sink = false;
		f->call->content_length = -1;
	}
}

/* An attempt ended: complete the future, or schedule the next attempt. */
static void future_finish(struct lr_future *f, int err, const char *msg)
{
	struct lr_engine *e = f->eng;
	struct attempt_outcome o = {
		.error = err,
		.http_status = f->result.http_status,
		.should_retry = f->should_retry,
		.attempts = f->attempts,
		.max_retries = f->max_retries,
		/* Bytes a caller already has are never sent twice. */
		.delivered = f->reply.deltas > 0 || (f->call && f->call->delivered),
	};
	if (e->shutting_down || !retry_allowed(&o)) {
		future_complete(f, err, msg);
		return;
	}
	uint64_t delay = retry_delay_ns(f->result.retry_after_s, f->attempts,
	                                retry_jitter_draw(retry_jitter_next(&e->jitter_state)));
	if (ring_timer_set(&e->ring, &f->deadline, e->ring.now_ns + delay)) {
		future_complete(f, LR_ENOMEM, NULL); /* nothing would wake the retry */
		return;
	}
	attempt_reset(f);
	atomic_fetch_add_explicit(&e->stat_retries, 1, memory_order_relaxed);
	f->state = F_BACKOFF;
	flist_push_back(&e->backoff, f);
}

static void active_unlink(struct lr_engine *e, struct lr_future *f)
{
	flist_unlink(&e->active, f);
	e->active_count--;
	e->buffered_bytes -= f->buffered;
	f->buffered = 0;
}

/* The end of an HTTP call's attempt: a 2xx is success, another status
 * the provider's error; a body cut after the head is LR_ECONNRESET with
 * what arrived, so the caller can resume. */
static void call_on_done(struct lr_future *f, int err, const char *msg)
{
	struct http_call *c = f->call;
	int status = f->result.http_status;
	if (err && f->err.code == err && msg && strcmp(msg, lr_strerror(err)) == 0)
		msg = f->err.message; /* a callback's own text, not the generic one */
	if ((err == LR_EPROTO || err == LR_ECONNRESET) && f->ex.cut && status) {
		char len[48] = "";
		if (c->content_length >= 0)
			snprintf(len, sizeof(len), " of %lld", (long long)c->content_length);
		char why[160];
		snprintf(why, sizeof(why), "%.150s", msg ? msg : lr_strerror(err));
		error_set(&f->err, LR_ECONNRESET, 0,
		          "the HTTP %d response was cut after %llu%s body bytes (%s); resume with Range: "
		          "bytes=N- past what arrived",
		          status, (unsigned long long)c->body_bytes, len, why);
		err = LR_ECONNRESET;
		msg = f->err.message;
	}
	if (err == LR_ETOOLARGE)
		buf_free(&f->resp_body); /* a partial body that broke a cap is of no use */
	if (f->resp_body.data && buf_reserve(&f->resp_body, 1) == 0)
		f->resp_body.data[f->resp_body.len] = '\0';
	if (!err && (status < 200 || status >= 300)) {
		struct buf normalized = {0}; /* owner: this block; unused for an error status */
		bool body_is_json, rewritten;
		provider_parse_response(f->provider, LR_ENDPOINT_CHAT, &f->eng->doc, status,
		                        f->resp_body.data, f->resp_body.len, &f->reply, &body_is_json,
		                        &normalized, &rewritten);
		buf_free(&normalized);
		f->result.body_is_json = body_is_json;
		if (f->reply.err.code)
			error_copy(&f->err, &f->reply.err);
		else
			error_set(&f->err, LR_EHTTP, 0, "HTTP %d", status);
		err = f->err.code;
		msg = f->err.message;
	}
	future_finish(f, err, msg);
}

static void future_on_done(struct http_exchange *ex, int err, const char *msg)
{
	struct lr_future *f = container_of(ex, struct lr_future, ex);
	struct lr_engine *e = f->eng;
	active_unlink(e, f);
	if (f->encoded_body && err == LR_EPROTO)
		msg = f->err.message;
	if (f->over_budget && err == LR_ETOOLARGE) {
		error_set(&f->err, err, 0,
		          "response too large: responses in flight held more than %zu bytes together "
		          "(the largest fails; raise lr_config.max_buffered_bytes or "
		          "LLMRING_MAX_BUFFERED_BYTES, or lower concurrency)",
		          e->cfg.max_buffered_bytes);
		msg = f->err.message;
	}
	if (f->call) {
		call_on_done(f, err, msg);
		engine_start_waiting(e);
		return;
	}
	if (err == LR_ETOOLARGE) {
		/* A partial body that broke a cap is of no use to anyone. */
		buf_free(&f->resp_body);
		f->result.http_status = 0;
	}
	if (err == 0 || f->result.http_status) {
		/* NUL-terminate the body so callers may treat it as a string. */
		if (buf_reserve(&f->resp_body, 1) == 0)
			f->resp_body.data[f->resp_body.len] = '\0';
	}
	if (f->stream) {
		int r = err ? err : stream_decoder_finish(f->stream);
		buf_clear(&f->resp_body);
		/* The body a whole response of this endpoint would have had. */
		int (*assemble)(const struct reply *, struct buf *) =
		    f->endpoint == LR_ENDPOINT_COMPLETIONS ? reply_text_completion_body : reply_openai_body;
		if (assemble(&f->reply, &f->resp_body) == 0 && buf_reserve(&f->resp_body, 1) == 0) {
			f->resp_body.data[f->resp_body.len] = '\0';
			f->result.body_is_json = 1;
		} else if (!r) {
			/* A success without its assembled body would be a silent loss. */
			r = reply_fail(&f->reply, LR_ENOMEM, "out of memory assembling the body");
		}
		/* The text so far is the result's, complete or not. */
		if (!err && r)
			error_copy(&f->err, &f->reply.err);
		future_finish(f, r, err ? msg : (r ? f->err.message : NULL));
		engine_start_waiting(e);
		return;
	}
	if (err == 0) {
		struct buf normalized = {0}; /* owner: this block until swapped in */
		bool body_is_json, rewritten;
		provider_parse_response(f->provider, f->endpoint, &e->doc, f->result.http_status,
		                        f->resp_body.data, f->resp_body.len, &f->reply, &body_is_json,
		                        &normalized, &rewritten);
		if (rewritten && buf_reserve(&normalized, 1) == 0) {
			/* Batch output is OpenAI-shaped whatever the provider. */
			normalized.data[normalized.len] = '\0';
			struct buf raw = f->resp_body;
			f->resp_body = normalized;
			normalized = raw;
		} else if (rewritten) {
			reply_fail(&f->reply, LR_ENOMEM, "out of memory rewriting the body");
		}
		buf_free(&normalized);
		f->result.body_is_json = body_is_json;
		int code = f->reply.err.code;
		if (code)
			error_copy(&f->err, &f->reply.err);
		future_finish(f, code, code ? f->err.message : NULL);
	} else {
		future_finish(f, err, msg);
	}
	engine_start_waiting(e);
}

const struct http_exchange_handler future_exchange_handler = {
	.on_head = future_on_head,
	.on_body = future_on_body,
	.on_done = future_on_done,
	.body_at = future_body_at,
};

/*
 * libFuzzer: each provider's response parser and stream decoder.
 *
 * data[0] picks the case: bits 0-1 the dialect (OpenAI, Anthropic,
 * Ollama, Gemini), bit 2 a stream (else a whole response), bit 3 NDJSON
 * framing for a stream (else SSE; the engine picks by Content-Type, so any
 * dialect can meet either) or, for a whole response, the completions
 * endpoint, bit 4 the embeddings endpoint (before completions), bits 5-7
 * the HTTP status of a whole response. data[1] / 255 is where a stream is
 * split; the rest is the body. (A stream's decoder does not know its
 * endpoint: OpenAI's reads chat and text_completion chunks alike.)
 *
 * Oracles: sanitizers; a stream fed whole and fed in two parts ends the
 * same (as tests/test_providers.c stream_all_ways asks); every body the
 * batch output would embed raw is valid JSON: a whole response with
 * body_is_json and not rewritten, the rewritten (normalized) body, and the
 * chat.completion and text_completion a stream or a reply is turned into.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/json.h"
#include "llmring.h"
#include "provider/provider.h"
#include "provider/reply.h"

static const enum provider dialects[4] = {PROVIDER_OPENAI, PROVIDER_ANTHROPIC, PROVIDER_OLLAMA,
                                          PROVIDER_GEMINI};
static const int statuses[8] = {200, 201, 400, 401, 429, 500, 503, 302};

struct deltas { unsigned long n, text, args, finish, tools; };

static void on_delta(void *user, const lr_delta *d)
{
	struct deltas *s = user;
	s->n++;
	s->text += d->text_len;
	s->args += d->tool_arguments_len;
	if (d->finish_reason)
		s->finish += strlen(d->finish_reason) + 1;
	if (d->tool_index >= 0)
		s->tools += (unsigned long)d->tool_index + 1 + (d->tool_id ? strlen(d->tool_id) : 0) +
		            (d->tool_name ? strlen(d->tool_name) : 0);
}

/* Aborts unless text[0..len) is one valid JSON value. */
static void expect_json(const char *what, const char *text, size_t len)
{
	struct json_doc d = {0};
	int rc = json_parse(&d, text, len);
	json_doc_free(&d);
	if (rc != 0 && rc != LR_ENOMEM) {
		fprintf(stderr, "%s is not valid JSON (%d): %.*s\n", what, rc, (int)(len > 2000 ? 2000 : len),
		        text);
		abort();
	}
}

/* What a stream run leaves behind, compared across feeds. */
struct snap {
	int feed_rc, finish_rc, error;
	bool fatal, done;
	struct deltas dl;
	struct buf body; /* reply_openai_body; owner: the snap */
	struct buf completion; /* reply_text_completion_body; owner: the snap */
	char message[400];
};

static void run_stream(enum provider p, bool ndjson, const char *in, size_t len, size_t cut,
                       struct snap *s)
{
	memset(s, 0, sizeof(*s));
	struct reply r;
	reply_init(&r, on_delta, &s->dl);
	struct stream_decoder *sd = stream_decoder_new(p, ndjson, &r);
	if (!sd)
		abort();
	size_t parts[2] = {cut, len - cut}, pos = 0;
	for (int i = 0; i < 2 && !stream_decoder_fatal(sd); i++) {
		/* A private copy of exactly this part: ASan sees any overread. */
		char *copy = malloc(parts[i] ? parts[i] : 1);
		if (!copy)
			abort();
		memcpy(copy, in + pos, parts[i]);
		int rc = stream_decoder_feed(sd, copy, parts[i]);
		free(copy);
		if (rc && !s->feed_rc)
			s->feed_rc = rc;
		pos += parts[i];
	}
	s->finish_rc = stream_decoder_finish(sd);
	s->fatal = stream_decoder_fatal(sd);
	s->error = r.err.code;
	s->done = r.done;
	memcpy(s->message, r.err.message, sizeof(s->message));
	if (reply_openai_body(&r, &s->body) == 0)
		expect_json("the chat.completion of a stream", s->body.data, s->body.len);
	if (reply_text_completion_body(&r, &s->completion) == 0)
		expect_json("the text_completion of a stream", s->completion.data, s->completion.len);
	if (r.ncalls)
		(void)reply_publish_calls(&r);
	stream_decoder_free(sd);
	reply_free(&r);
}

static void stream_case(enum provider p, bool ndjson, const char *in, size_t len, size_t cut)
{
	struct snap a, b;
	run_stream(p, ndjson, in, len, len, &a);
	run_stream(p, ndjson, in, len, cut, &b);
	const char *diff = a.feed_rc != b.feed_rc ? "feed result"
	                 : a.finish_rc != b.finish_rc ? "finish result"
	                 : a.fatal != b.fatal ? "fatal"
	                 : a.error != b.error ? "reply error"
	                 : a.done != b.done ? "done"
	                 : strcmp(a.message, b.message) ? "message"
	                 : memcmp(&a.dl, &b.dl, sizeof(a.dl)) ? "deltas"
	                 : a.body.len != b.body.len || memcmp(a.body.data, b.body.data, a.body.len)
	                         ? "chat.completion body"
	                 : a.completion.len != b.completion.len ||
	                           memcmp(a.completion.data, b.completion.data, a.completion.len)
	                         ? "text_completion body"
	                         : NULL;
	if (diff) {
		fprintf(stderr, "dialect %d ndjson %d split at %zu of %zu: %s differs\n", (int)p, ndjson, cut,
		        len, diff);
		abort();
	}
	buf_free(&a.body);
	buf_free(&b.body);
	buf_free(&a.completion);
	buf_free(&b.completion);
}

static void whole_case(enum provider p, enum lr_endpoint ep, int status, const char *in, size_t len)
{
	/* The engine hands over its own buffer; a private copy lets ASan see
	 * reads past the body. */
	char *body = malloc(len ? len : 1);
	if (!body)
		abort();
	memcpy(body, in, len);
	struct deltas dl = {0};
	struct reply r;
	reply_init(&r, on_delta, &dl);
	struct json_doc doc = {0};
	struct buf norm = {0};
	bool body_is_json = false, rewritten = false;
	provider_parse_response(p, ep, &doc, status, body, len, &r, &body_is_json, &norm, &rewritten);
	if (rewritten)
		expect_json("a normalized body", norm.data, norm.len);
	else if (body_is_json)
		expect_json("a body marked JSON", body, len);
	if (dl.n)
		abort(); /* whole responses fire no deltas */
	if (ep == LR_ENDPOINT_COMPLETIONS && !r.err.code) {
		struct buf tc = {0}; /* owner: this block */
		if (reply_text_completion_body(&r, &tc) == 0)
			expect_json("the text_completion of a reply", tc.data, tc.len);
		buf_free(&tc);
	}
	if (r.ncalls)
		(void)reply_publish_calls(&r);
	buf_free(&norm);
	json_doc_free(&doc);
	reply_free(&r);
	free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t sel = data[0];
	enum provider p = dialects[sel & 3];
	const char *in = (const char *)data + 2;
	size_t len = size - 2;
	if (sel & 4)
		stream_case(p, (sel & 8) != 0, in, len, len * data[1] / 255);
	else
		whole_case(p, (sel & 16) ? LR_ENDPOINT_EMBEDDINGS : (sel & 8) ? LR_ENDPOINT_COMPLETIONS : LR_ENDPOINT_CHAT,
		           statuses[sel >> 5], in, len);
	return 0;
}

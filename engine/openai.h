/* The OpenAI provider (and every OpenAI-compatible server): request
 * bodies and paths, and the parse of responses into results. */
#ifndef LR_OPENAI_H
#define LR_OPENAI_H

#include <stddef.h>

#include "json.h"
#include "llmring.h"
#include "request.h"

/* "/chat/completions" or "/embeddings", appended to the base URL path. */
const char *openai_endpoint_path(enum lr_endpoint ep);

/* The JSON body of rq: its own body (with "model" replaced when rq names
 * a model) or one built from its messages. LR_EINVAL with *why. */
int openai_build_body(const struct lr_request *rq, struct http_buf *out, const char **why);

struct openai_outcome {
	int error;                  /* LR_OK or LR_E* */
	char message[400];          /* for errors */
	char model[128];            /* "" when absent */
	lr_usage usage;
	bool body_is_json;          /* the body is one valid JSON object */
	char finish_reason[32];     /* choices[0].finish_reason, "" when absent */
	struct http_buf *text;      /* borrowed: receives choices[0].message.content */
	bool text_error;
	unsigned choices_closed;
};

/* Interprets a complete response. doc is scratch space reused per call;
 * text (may be NULL) receives the reply text of a success. */
void openai_parse_response(struct json_doc *doc, int status, const char *body, size_t len,
                           struct openai_outcome *out, struct http_buf *text);

#endif

/* ---- streams (SSE, "data: {chat.completion.chunk}" ... "data: [DONE]") ---- */

#include "sse.h"

struct openai_stream {
	struct sse_parser sse;      /* owner: the stream */
	struct http_buf text;       /* owner: the stream; choices[0]'s content so far */
	struct http_buf scratch;    /* owner: the stream; one event's delta, unescaped */
	lr_delta_fn fn;             /* borrowed: the caller's callback, or NULL */
	void *user;
	char id[128];
	char model[128];
	char finish_reason[32];
	lr_usage usage;
	unsigned long events;       /* data events seen (progress) */
	bool done;                  /* data: [DONE] arrived */
	int error;                  /* LR_E* from the stream itself, or 0 */
	char message[400];
};

void openai_stream_init(struct openai_stream *st, lr_delta_fn fn, void *user);
void openai_stream_free(struct openai_stream *st);
/* Body bytes of the SSE response. 0, or LR_E* (also kept in st->error). */
int openai_stream_feed(struct openai_stream *st, const char *data, size_t len);
/* The response ended: 0 when the stream was complete, else LR_EPROTO. */
int openai_stream_finish(struct openai_stream *st);
/* A chat.completion body assembled from the stream (OpenAI's shape). */
int openai_stream_body(const struct openai_stream *st, struct http_buf *out);

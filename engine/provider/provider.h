/*
 * The providers layer as the engine sees it: the table of provider rows
 * (dialect.h) and routing of "provider/model" strings; where each
 * provider's requests go and with which headers; the request built from
 * the unified OpenAI-shaped body; response and stream parsers into struct
 * reply. provider.c implements it through the rows that openai.c,
 * anthropic.c, ollama.c and gemini.c define.
 */
#ifndef LR_PROVIDER_H
#define LR_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http_reader.h"
#include "format/json.h"
#include "llmring.h"
#include "provider/dialect.h"
#include "provider/reply.h"
#include "provider/request.h"

/* The row of provider p (an unknown p: OpenAI's). */
const struct provider_row *provider_row(enum provider p);

/* The provider a model string names and the model sent to it (the prefix
 * stripped when it names a known provider). */
enum provider provider_route(const char *model, size_t len, const char **name, size_t *name_len);

/* Where provider p's requests go and with which key (base may point into
 * buf: use it in place, do not copy it). */
struct provider_endpoint {
	const char *base;           /* borrowed: the given base, the environment, the row or buf */
	const char *key;            /* borrowed: the given key or the environment; NULL: none */
	bool needs_key;             /* the provider's own public endpoint, and its key is missing */
	char buf[600];              /* a base made from the environment (OLLAMA_HOST=host:port) */
};
/*
 * base and key (NULL or "": not given) apply to every provider; without
 * a base, the row's variable (base_env) and then its default; without a
 * key, the row's key variable, also under a given base (a mixed batch
 * must never send one provider's key to another). 0, or LR_EINVAL with
 * why (a provider without a default, mock/, and no base).
 */
int provider_endpoint_resolve(enum provider p, const char *base, const char *key,
                              struct provider_endpoint *out, char *why, size_t why_len);

/* Headers that carry the key (and any fixed ones the provider requires). */
int provider_auth_headers(enum provider p, struct buf *b, const char *key);

/* What a response header tells, for a provider's response. */
enum response_header {
	RESPONSE_HEADER_OTHER = 0,
	RESPONSE_HEADER_REQUEST_ID,
	RESPONSE_HEADER_RATELIMIT_REQUESTS, /* requests remaining */
	RESPONSE_HEADER_RATELIMIT_TOKENS,   /* tokens remaining */
	RESPONSE_HEADER_RETRY_AFTER,        /* seconds or an HTTP date */
	RESPONSE_HEADER_RETRY_AFTER_MS,
	RESPONSE_HEADER_SHOULD_RETRY,       /* x-should-retry: true / false */
	RESPONSE_HEADER_CONTENT_TYPE,
	RESPONSE_HEADER_CONTENT_ENCODING,
	RESPONSE_HEADER_KINDS
};
/* The kind of header name (len bytes, any case); *rank (may be NULL)
 * orders names of one kind: 0 for OpenAI's (any provider's proxy may send
 * them), then the provider's own in the row's order. */
enum response_header provider_header_kind(enum provider p, const char *name, size_t len, int *rank);
/* A response's headers by kind, in one pass: of each kind the best
 * ranked name (of equals, the last). NULL: absent. */
struct provider_headers {
	const struct http_header *of[RESPONSE_HEADER_KINDS]; /* borrowed: the head */
};
void provider_find_headers(enum provider p, const struct http_head *h, struct provider_headers *out);
/* The request id a result reports: the header's (header_id, "" or NULL:
 * none) or, for a provider that sends none, the reply's id; NULL when
 * neither. */
const char *provider_request_id(enum provider p, const char *header_id, const char *reply_id);

void provider_request_free(struct provider_request *pr);

/* Routes and builds rq; base_paths[p] is the path of provider p's base
 * URL. 0, or LR_EINVAL / LR_EUNSUPPORTED / LR_ENOMEM with out->err
 * holding the code and what was wrong ("" when the code says it all). */
int provider_build_request(const struct lr_request *rq, const char *const *base_paths,
                           struct provider_request *out);
/* The same, with out->path built in path_memory's memory (taken, left
 * empty): a caller that builds one request after another gives the path
 * back to path_memory afterwards and allocates it once. */
int provider_build_request_into(const struct lr_request *rq, const char *const *base_paths,
                                struct provider_request *out, struct buf *path_memory);

/*
 * A whole (non-streamed) response. Fills r; for a provider whose shape is
 * not OpenAI's, a success is rewritten into *normalized (chat.completion or
 * embeddings list) and *rewritten set. doc is scratch space.
 */
void provider_parse_response(enum provider p, enum lr_endpoint ep, struct json_doc *doc, int status,
                             const char *body, size_t len, struct reply *r, bool *body_is_json,
                             struct buf *normalized, bool *rewritten);

/* A streamed response, decoded as its bytes arrive into r: NDJSON lines
 * when ndjson (the response said application/x-ndjson), else server-sent
 * events. NULL when out of memory. */
struct stream_decoder *stream_decoder_new(enum provider p, bool ndjson, struct reply *r);
/* 0, or the LR_E* that ended the stream (also in r->error). A provider's
 * error event returns LR_ESERVER-class codes with r->error set and the
 * connection still usable: stream_decoder_fatal tells them apart. */
int stream_decoder_feed(struct stream_decoder *d, const char *data, size_t len);
/* The response ended: 0 when the stream was complete, else LR_EPROTO. */
int stream_decoder_finish(struct stream_decoder *d);
/* Whether the error so far makes the rest of the response unreadable
 * (framing, JSON) rather than a reported provider error. */
bool stream_decoder_fatal(const struct stream_decoder *d);
void stream_decoder_free(struct stream_decoder *d);

#endif

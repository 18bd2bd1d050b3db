/*
 * The providers layer: routing of "provider/model" strings, each
 * provider's request builder (from the unified OpenAI-shaped body) and its
 * response and stream parsers (into struct reply). The engine sees only
 * this header; openai.c, anthropic.c, ollama.c and gemini.c implement it.
 */
#ifndef LR_PROVIDER_H
#define LR_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http_reader.h"
#include "format/json.h"
#include "llmring.h"
#include "provider/reply.h"
#include "provider/request.h"

enum provider {
	PROVIDER_OPENAI = 0,
	PROVIDER_ANTHROPIC,
	PROVIDER_OLLAMA,
	PROVIDER_GEMINI,
	PROVIDER_MOCK,              /* the OpenAI dialect at a base URL that must be given */
	PROVIDER_COUNT
};

struct provider_info {
	const char *name;           /* the model prefix ("anthropic") */
	const char *base_url;       /* default base URL; NULL: none (mock) */
	const char *base_env;       /* environment variable that overrides it, or NULL */
	const char *key_env;        /* environment variable of the key, or NULL (none needed) */
};
const struct provider_info *provider_info(enum provider p);

/* The provider a model string names and the model sent to it (the prefix
 * stripped when it names a known provider). */
enum provider provider_route(const char *model, size_t len, const char **name, size_t *name_len);

/* Headers that carry the key (and any fixed ones the provider requires). */
int provider_auth_headers(enum provider p, struct buf *b, const char *key);

/* What a request becomes on the wire. */
struct provider_request {
	struct buf body;       /* owner: the caller (provider_request_free) */
	struct buf path;       /* owner: the caller; appended to the base URL's path */
	enum provider provider;
	bool stream;                /* a streamed response was asked for */
	bool body_is_input;         /* the caller's body goes out untouched (body is empty) */
	char model[96];             /* the model sent, for accounting ("" when unknown) */
	char why_text[160];         /* a composed *why of provider_build_request points here */
};
void provider_request_free(struct provider_request *pr);

/* Routes and builds rq; base_paths[p] is the path of provider p's base
 * URL. 0, or LR_EINVAL / LR_EUNSUPPORTED with *why: static text, or text
 * in out->why_text (valid while *out is). */
int provider_build_request(const struct lr_request *rq, const char *const *base_paths,
                           struct provider_request *out, const char **why);

/*
 * A whole (non-streamed) response. Fills r; for a provider whose shape is
 * not OpenAI's, a success is rewritten into *normalized (chat.completion or
 * embeddings list) and *rewritten set. doc is scratch space.
 */
void provider_parse_response(enum provider p, enum lr_endpoint ep, struct json_doc *doc, int status,
                             const char *body, size_t len, struct reply *r, bool *body_is_json,
                             struct buf *normalized, bool *rewritten);

/* A streamed response, decoded as its bytes arrive into r. */
struct stream_decoder;
/* content_type decides the framing (text/event-stream or NDJSON). NULL
 * when out of memory. */
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

/* HTTP status to code, for responses whose body says nothing finer. */
int provider_status_code(int status);

#endif

/*
 * What a dialect file provides (openai.c, anthropic.c, ollama.c,
 * gemini.c): one const struct provider_row with everything llmring knows
 * of that provider, from its default base URL and key header to the
 * functions that translate requests and replies. provider.c keeps the
 * table of rows (dialects.h) and routes through it; dialects see this
 * header and dialect_util.h, never provider.c or each other.
 */
#ifndef LR_DIALECT_H
#define LR_DIALECT_H

#include <stdbool.h>
#include <stddef.h>

#include "format/json.h"
#include "format/ndjson.h"
#include "format/sse.h"
#include "llmring.h"
#include "provider/reply.h"
#include "util/buf.h"
#include "util/errors.h"

/* The providers, each a row of the table in provider.c. */
enum provider {
	PROVIDER_OPENAI = 0,
	PROVIDER_ANTHROPIC,
	PROVIDER_OLLAMA,
	PROVIDER_GEMINI,
	PROVIDER_MOCK,              /* the OpenAI dialect at a base URL that must be given */
	PROVIDER_COUNT
};

/* What a request becomes on the wire. */
struct provider_request {
	struct buf body;            /* owner: the caller (provider_request_free) */
	struct buf path;            /* owner: the caller; the base URL's path and the endpoint's */
	/* owner: the caller; the unified (OpenAI-shaped) body a dialect that
	 * is not OpenAI's translated into body (empty for OpenAI's dialect,
	 * whose body is the unified one): what the response cache keys on. */
	struct buf unified;
	enum provider provider;
	bool stream;                /* a streamed response was asked for */
	bool body_is_input;         /* the caller's body goes out untouched (body is empty) */
	char model[96];             /* the model sent, for accounting ("" when unknown) */
	struct error_info err;      /* provider_build_request's failure; dialects compose *why here */
};

struct provider_row;

/* A streamed response's decoding state; the dialects' event functions
 * update it. */
struct stream_decoder {
	const struct provider_row *row; /* borrowed: the static table */
	bool ndjson;
	bool fatal;                 /* framing or JSON broke: stop reading */
	struct sse_parser sse;      /* owner: the decoder */
	struct ndjson_parser nd;    /* owner: the decoder */
	struct reply *r;            /* borrowed: the future's reply */
	/* Anthropic: content blocks arrive one at a time. */
	int block;                  /* index of the open block, -1 none */
	int block_tool;             /* its tool-call index, -1 for a text block */
	int tools;                  /* tool blocks so far */
	bool json_block;            /* the open block is response_format's JSON tool */
	bool json_reply;            /* such a block was seen */
	/* Gemini and Ollama number calls themselves. */
	int calls;
	struct json_doc doc;        /* owner: the decoder; Ollama lines and Gemini chunks */
};

/* How the key goes on the wire. */
enum key_form {
	KEY_BEARER,                 /* Authorization: Bearer KEY */
	KEY_HEADER,                 /* key_header: KEY */
};

struct fixed_header {
	const char *name, *value;
};

struct provider_row {
	const char *name;           /* the model prefix ("anthropic") */

	/* Where requests go, and with which key. */
	const char *base_url;       /* default base URL; NULL: none (mock) */
	const char *base_env;       /* environment variable that overrides it, or NULL */
	/* base_env's value made a URL in buf (cap bytes), for a variable that
	 * need not hold one; NULL: the value is the URL. */
	const char *(*base_from_env)(const char *value, char *buf, size_t cap);
	const char *key_env;        /* environment variable of the key, or NULL (none needed) */
	enum key_form key_form;
	const char *key_header;     /* KEY_HEADER's name */
	struct fixed_header fixed_headers[2]; /* sent on every request, key or not; name NULL ends */

	/* Response headers of the provider's own, read after OpenAI's names
	 * (which proxies in front of any provider send); NULL: none. */
	const char *request_id_header;
	const char *ratelimit_requests_header;
	const char *ratelimit_tokens_headers[2]; /* the first one present counts */
	bool reply_id_is_request_id; /* no request-id header: the reply's id stands in */

	/* Requests. path appends the endpoint's path for model to the base
	 * URL's path base (out->path); LR_EUNSUPPORTED for an endpoint the
	 * provider lacks. */
	int (*path)(struct provider_request *out, enum lr_endpoint ep, const char *base,
	            const char *model, size_t model_len, const char **why);
	/* The unified (OpenAI-shaped) body d translated for model into
	 * out->body (out->stream says whether to stream; a composed *why goes
	 * to out->err.message). build_chat NULL: the unified body is sent as it
	 * is. build_embeddings NULL: nothing to build (path refuses). */
	int (*build_chat)(const struct json_doc *d, const char *model, struct provider_request *out,
	                  const char **why);
	int (*build_embeddings)(const struct json_doc *d, const char *model, struct provider_request *out,
	                        const char **why);

	/* Whole responses. parse_body, when set, reads the raw body itself
	 * (the OpenAI hot path: one scan, no rewrite) and the three below are
	 * unused. Otherwise provider.c parses the body into d and calls
	 * parse_error for an error status, parse_embeddings (when set) for an
	 * embeddings success, else parse_reply, whose reply is written back
	 * out in OpenAI's shape. */
	void (*parse_body)(int status, const char *body, size_t len, struct json_doc *doc,
	                   struct reply *r, bool *body_is_json);
	void (*parse_error)(struct json_doc *d, bool have_doc, int status, struct reply *r);
	void (*parse_reply)(struct json_doc *d, struct reply *r);
	int (*parse_embeddings)(struct json_doc *d, struct reply *r, struct buf *openai_body);

	/* Streams. NULL: OpenAI's chunk events (SSE) and Ollama's lines
	 * (NDJSON), the framings any server may answer in. */
	int (*sse_event)(struct stream_decoder *sd, const struct sse_event *ev);
	int (*ndjson_line)(void *decoder, const char *line, size_t len);
	/* No end event: a finish reason completes the stream (Gemini);
	 * otherwise the reply's own done flag does. */
	bool stream_ends_at_finish;
};

#endif

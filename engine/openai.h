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
};

/* Interprets a complete response. doc is scratch space reused per call. */
void openai_parse_response(struct json_doc *doc, int status, const char *body, size_t len,
                           struct openai_outcome *out);

#endif

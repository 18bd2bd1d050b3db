/* struct lr_request: what a caller asks for, before it becomes bytes. */
#ifndef LR_REQUEST_H
#define LR_REQUEST_H

#include <stdbool.h>

#include "util/buf.h"
#include "llmring.h"

/* One top-level body field set by a C call ("temperature": 0.2). */
struct request_param {
	char *key;                  /* owner: the request */
	char *value;                /* owner: the request; raw JSON */
};

struct lr_request {
	char *model;                /* owner: request; NULL keeps the body's model */
	enum lr_endpoint endpoint;
	struct buf body;       /* owner: request; a complete JSON body, if set */
	struct buf messages;   /* owner: request; comma-joined message objects */
	struct buf tools;      /* owner: request; comma-joined tool objects */
	struct buf inputs;     /* owner: request; comma-joined embedding inputs */
	struct buf prompt;     /* owner: request; the completions prompt as a JSON string, if set */
	struct buf stops;      /* owner: request; comma-joined stop strings */
	unsigned nstops;
	struct request_param *params; /* owner: request; nparams used */
	unsigned nparams;
	int max_tokens;             /* < 0: not set */
	int max_retries;            /* < 0: the engine's */
	bool stream;                /* a stream without a callback (pull iterator) */
	char *base_url;             /* owner: request; NULL: the engine's */
	struct buf headers;    /* owner: request; validated "Name: value\r\n" lines */
	double connect_s, idle_s, total_s; /* <= 0: engine default */
	void *user_data;
	lr_delta_fn on_delta;       /* NULL: no streaming callback */
	void *on_delta_user;
};

/* Whether the request was built with message or parameter calls. */
bool request_has_parts(const struct lr_request *rq);

#endif

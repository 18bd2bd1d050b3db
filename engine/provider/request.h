/* struct lr_request: what a caller asks for, before it becomes bytes. */
#ifndef LR_REQUEST_H
#define LR_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "util/buf.h"
#include "llmring.h"

/* One top-level body field set by a C call ("temperature": 0.2). */
struct request_param {
	char *key;                  /* owner: the request */
	char *value;                /* owner: the request; raw JSON */
};

/* One piece of an HTTP call's request body (lr_request_add_body_*). */
struct body_part {
	const char *data;           /* bytes: copy, or the caller's until release; NULL: a file */
	char *copy;                 /* owner: the part; the copied bytes (release NULL) */
	lr_release_fn release;      /* borrowed bytes: called once when the engine is done */
	void *release_user;
	int fd;                     /* a file part: borrowed, read with pread; -1 for bytes */
	uint64_t offset, len;
};

#define HTTP_CALL_MAX_PARTS 8

/*
 * A plain HTTP call (lr_request_new_http): what was asked for, then, once
 * lr_submit moved it into the future (owner: the future), what the
 * engine keeps per attempt.
 */
struct http_call {
	int provider;               /* enum provider */
	enum lr_method method;
	char *target;               /* owner: the call; a path under the base URL, or a URL */
	struct body_part parts[HTTP_CALL_MAX_PARTS];
	unsigned nparts;
	uint64_t body_len;          /* the parts' bytes together */
	bool has_body;              /* a body part was added (even an empty one) */
	bool released;              /* borrowed parts were handed back */
	lr_body_fn sink;            /* a 2xx body goes here instead of lr_result.body */
	void *sink_user;
	int sink_fd;                /* or is written to this fd (borrowed); -1: none */
	int sink_kind;              /* 0 not looked at yet, 1 a file, 2 a pipe or socket (SIGPIPE) */

	/* Engine side (core/http_call.c, core/response.c). */
	uint64_t send_len;          /* body bytes sent after the head (0: all in the head) */
	char *chunk;                /* owner: the call; file parts are read into it */
	struct buf head;            /* owner: the call; the last response's "name\0value\0" pairs */
	int64_t content_length;     /* of the last response, -1 unknown */
	uint64_t body_bytes;        /* body bytes of the last response so far */
	bool to_sink;               /* this response's body goes to the sink */
	bool delivered;             /* some byte reached the sink: never retried */
};

/* Hands borrowed body parts back (once) and closes nothing: fds are the
 * caller's. Then frees what the call owns, c included. */
void http_call_release(struct http_call *c);
void http_call_free(struct http_call *c);

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
	struct http_call *call;     /* owner: request until lr_submit moves it; NULL: a chat request */
	bool cache_only;            /* lr_request_set_cache_only */
};

/* Whether the request was built with message or parameter calls. */
bool request_has_parts(const struct lr_request *rq);

#endif

/* struct lr_request: what a caller asks for, before it becomes bytes. */
#ifndef LR_REQUEST_H
#define LR_REQUEST_H

#include "http_reader.h"
#include "llmring.h"

struct lr_request {
	char *model;                /* owner: request; NULL keeps the body's model */
	enum lr_endpoint endpoint;
	struct http_buf body;       /* owner: request; a complete JSON body, if set */
	struct http_buf messages;   /* owner: request; comma-joined message objects */
	int max_tokens;             /* < 0: not set */
	char *base_url;             /* owner: request; NULL: the engine's */
	struct http_buf headers;    /* owner: request; validated "Name: value\r\n" lines */
	double connect_s, idle_s, total_s; /* <= 0: engine default */
	void *user_data;
	lr_delta_fn on_delta;       /* NULL: no streaming callback */
	void *on_delta_user;
};

#endif

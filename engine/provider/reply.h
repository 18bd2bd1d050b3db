/*
 * The unified reply every provider parser fills: text, tool calls, finish
 * reason (OpenAI's values), usage, ids. Stream parsers feed it delta by
 * delta and it calls the caller's delta callback for each one; whole
 * responses of other providers are parsed into it and written back out as
 * an OpenAI chat.completion body (what batch output promises), and a
 * stream as the chat.completion or text_completion its events make.
 */
#ifndef LR_REPLY_H
#define LR_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/errors.h"
#include "llmring.h"

struct reply_tool_call {
	int index;                  /* the provider's position (OpenAI tool_calls[].index) */
	struct buf id;         /* owner: the reply; NUL-terminated when non-empty */
	struct buf name;       /* owner: the reply */
	struct buf args;       /* owner: the reply; JSON text of the arguments */
};

/* More tool calls than any model makes in one reply; past it the reply
 * fails with LR_ETOOLARGE (response_too_large) rather than grow without
 * bound on a hostile or broken stream. */
#define REPLY_MAX_TOOL_CALLS 4096

struct reply {
	struct buf text;       /* owner: the reply; choices[0]'s content */
	struct reply_tool_call *calls; /* owner: the reply; ncalls used, cap allocated */
	unsigned ncalls, cap;
	unsigned *slots;            /* owner: the reply; hash of index -> calls[] + 1, 0 empty */
	unsigned nslots;            /* a power of two, 2 x cap */
	unsigned long call_probes;  /* work counter: slots examined finding calls (tests) */
	lr_tool_call *public_calls; /* owner: the reply; lr_result's view, built at the end */
	struct buf scratch;    /* owner: the reply; one delta's text, unescaped */
	/* owner: the reply; memory kept from an earlier reply (a reused
	 * future), taken by the first text byte: text.data stays NULL until
	 * there is text, as in a new reply (reply_text_buf). */
	struct buf spare_text;
	lr_delta_fn fn;             /* borrowed: the caller's callback, or NULL */
	void *user;
	char id[128];
	char model[128];
	char finish_reason[32];
	lr_usage usage;
	unsigned long events;       /* events that carried data (progress) */
	unsigned long deltas;       /* deltas handed to the caller */
	uint64_t first_token_ns;    /* when the first text or tool call was parsed, or 0 */
	bool done;                  /* the provider said the reply is complete */
	struct error_info err;      /* code: LR_E* from the reply itself, or 0 */
};

void reply_init(struct reply *r, lr_delta_fn fn, void *user);
/* Frees what a reused reply does not keep and empties it; the text's
 * memory (up to keep_cap bytes) moves to spare_text, scratch stays. A
 * zeroed reply with those two is ready for reply_set_callback. */
void reply_recycle(struct reply *r, size_t keep_cap);
static inline void reply_set_callback(struct reply *r, lr_delta_fn fn, void *user)
{
	r->fn = fn;
	r->user = user;
}
/* r->text for an append of len bytes: the spare memory is taken only
 * when bytes come. */
static inline struct buf *reply_text_buf(struct reply *r, size_t len)
{
	if (len && !r->text.data && r->spare_text.data) {
		r->text = r->spare_text;
		r->spare_text = (struct buf){0};
	}
	return &r->text;
}
/* Keeps allocations and the callback; clears the rest (a retry). */
void reply_reset(struct reply *r);
void reply_free(struct reply *r);

/* Records the first error only; returns the recorded one. */
int reply_fail(struct reply *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Copies a short raw field (no escapes) into dst; longer or escaped
 * values are left out rather than cut. */
void reply_copy_field(char *dst, size_t cap, const char *v, size_t len);

/* A content delta of choice `choice`, raw JSON string span (escaped) or
 * plain bytes (escaped = false). Choice 0 accumulates into text. */
int reply_text(struct reply *r, int choice, const char *v, size_t len, bool escaped);
/* A tool-call delta: any of id, name, args may be NULL. args is a
 * fragment of the arguments' JSON text, raw-escaped when escaped. */
int reply_tool(struct reply *r, int index, const char *id, size_t id_len, const char *name,
               size_t name_len, const char *args, size_t args_len, bool escaped);
/* The reply ended for this reason (already in OpenAI's vocabulary). */
int reply_finish(struct reply *r, int choice, const char *reason);
/* An event with both: one delta carrying the text and the reason (reason
 * NULL or "": reply_text), so each event of a stream is one delta. */
int reply_text_finish(struct reply *r, int choice, const char *v, size_t len, bool escaped,
                      const char *reason);
/* An event that carries choice `choice` but nothing to add (OpenAI's
 * role-only first chunk, an empty content): a delta of empty text, so the
 * caller sees every event a server sends for a choice (load generators
 * take the time to first token at the first such event, as vLLM's does). */
void reply_empty_event(struct reply *r, int choice);

/* The chat.completion body (OpenAI's shape) for what the reply holds. */
int reply_openai_body(const struct reply *r, struct buf *out);
/* The text_completion body (OpenAI's legacy completions) for the reply's
 * text, finish reason and usage (a completion has no tool calls). */
int reply_text_completion_body(const struct reply *r, struct buf *out);
/* Builds public_calls; NULL-terminates strings. 0 or LR_ENOMEM. */
int reply_publish_calls(struct reply *r);

#endif

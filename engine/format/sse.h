/*
 * Server-sent events parser (WHATWG HTML, "Server-sent events",
 * "Interpreting an event stream"), feed-and-callback.
 *
 * The caller feeds response body bytes as they arrive, split anywhere;
 * the parser calls back once per dispatched event, per comment line and
 * per valid retry field, in stream order. Chunk boundaries never change
 * what is reported.
 *
 * Zero copy where it can be: an event whose lines all lie inside one fed
 * buffer is reported with pointers into that buffer (an event with one
 * data line is never copied). Only a line split across feeds, or the
 * second and later data lines of one event, are copied into the parser's
 * own buffers, which grow geometrically up to the caps and are kept for
 * the next event, so a steady stream allocates nothing.
 *
 * Deviations from a browser: bytes are passed through as they are (no
 * UTF-8 decoding, so invalid sequences are not replaced by U+FFFD; the
 * JSON layer validates), and there is no reconnection.
 */
#ifndef LR_SSE_H
#define LR_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One dispatched event; every pointer is valid only during on_event and
 * none is NUL-terminated. */
struct sse_event {
	const char *type;  /* the event field, or "message" when absent or empty */
	size_t type_len;
	const char *data;  /* data lines joined with LF, the final LF stripped */
	size_t data_len;
	const char *id;    /* last event ID: persists across events; "" until set */
	size_t id_len;
};

/* Each returns 0 to go on, or a negative LR_E* code that stops the parser
 * (feed returns it, and so does every later feed until reset). Any may be
 * NULL. A callback must not feed the same parser. */
struct sse_callbacks {
	int (*on_event)(void *ctx, const struct sse_event *ev);
	/* A line starting with ':'; text is what follows the colon, unaltered.
	 * Servers send these as keep-alives: they prove the peer is alive but
	 * carry no progress. */
	int (*on_comment)(void *ctx, const char *text, size_t len);
	/* A retry field whose value is one or more ASCII digits (saturates at
	 * UINT64_MAX). Others are ignored, as the standard says. */
	int (*on_retry)(void *ctx, uint64_t retry_ms);
};

/* A growable byte buffer owned by the parser. */
struct sse_buf {
	char *data; /* owner: the sse_parser holding this sse_buf */
	size_t len, cap;
};

struct sse_parser {
	size_t max_line_bytes;  /* default 1 MiB: one line, terminator excluded */
	size_t max_event_bytes; /* default 1 MiB: one event's joined data */
	/* Private to sse.c. */
	int error;              /* sticky LR_E* once stopped; 0 while running */
	unsigned bom_matched;   /* leading BOM bytes seen so far (0..3) */
	bool bom_done;          /* past the stream's first bytes */
	bool skip_lf;           /* the last feed ended in CR: a leading LF ends that line */
	bool has_data;          /* the event has at least one data line */
	bool type_borrowed;     /* type points into the current fed buffer */
	struct sse_buf line;    /* a line split across feeds */
	struct sse_buf data;    /* joined data, each value plus LF (WHATWG data buffer) */
	struct sse_buf type;    /* event type that outlived its feed */
	struct sse_buf id;      /* last event ID buffer */
	const char *bdata;      /* the one data value, borrowed from the fed buffer */
	size_t bdata_len;
	const char *type_ptr;   /* event type buffer: into type.data or the fed buffer */
	size_t type_len;
};

/* Initialise for a new stream. Zero limits mean the defaults. */
void sse_parser_init(struct sse_parser *p, size_t max_line_bytes, size_t max_event_bytes);
/* Start a new stream: keeps the limits and the allocations, clears the
 * rest (last event ID and a sticky error included). */
void sse_parser_reset(struct sse_parser *p);
void sse_parser_free(struct sse_parser *p);

/*
 * Feed len bytes of the stream (buf may be NULL when len is 0). All of
 * them are consumed. Returns 0, or a
 * negative LR_E* code: LR_ETOOLARGE (a line or an event past its cap),
 * LR_ENOMEM, or whatever a callback returned. After an error the parser
 * stays stopped until reset.
 */
int sse_parser_feed(struct sse_parser *p, const char *buf, size_t len,
                    const struct sse_callbacks *cb, void *ctx);

/* The stream ended. An unfinished event or line is discarded unreported,
 * as the standard says. Returns 0, or the sticky error. Reset the parser
 * before feeding it another stream. */
int sse_parser_finish(struct sse_parser *p);

/* True when bytes of an event or line not yet dispatched are pending
 * (the stream would end mid-event); lets the caller tell a clean end from
 * a truncated one. */
bool sse_parser_mid_event(const struct sse_parser *p);

#endif

/*
 * Incremental HTTP/1.1 response reader (RFC 9112), feed-and-pull.
 *
 * The caller feeds whatever bytes arrived (split anywhere); the reader
 * calls back once with the response head (interim 1xx responses are
 * skipped), with body bytes as they are decoded (chunked framing removed),
 * and once at the end of the message. It allocates only to reassemble a
 * head that arrives in pieces (capped by max_head_bytes); a head that
 * arrives whole is parsed in place. Body bytes are passed through, never
 * copied: the callback gets pointers into the fed buffer (which the
 * reader may modify in place while it strips chunk framing).
 */
#ifndef LR_HTTP_READER_H
#define LR_HTTP_READER_H

#include <stddef.h>
#include <stdint.h>

struct http_header {
	const char *name;   /* not NUL-terminated */
	size_t name_len;
	const char *value;  /* leading/trailing whitespace trimmed */
	size_t value_len;
};

#define HTTP_MAX_HEADERS 64

/* The parsed response head; every pointer is valid only during on_head. */
struct http_head {
	int status;                 /* 100..999 */
	int minor_version;          /* 0 or 1 */
	const char *reason;
	size_t reason_len;
	int64_t content_length;     /* -1 when absent */
	unsigned chunked : 1;       /* Transfer-Encoding ends in chunked */
	unsigned conn_close : 1;    /* Connection: close, or HTTP/1.0 without keep-alive */
	unsigned no_body : 1;       /* 204, 304, or a response to HEAD */
	unsigned close_delimited : 1; /* body runs until the connection closes */
	size_t num_headers;         /* headers stored (the first HTTP_MAX_HEADERS) */
	struct http_header headers[HTTP_MAX_HEADERS];
};

/* Returns 0 to go on, or a negative LR_E* code to stop the reader. */
struct http_reader_callbacks {
	int (*on_head)(void *ctx, const struct http_head *head);
	int (*on_body)(void *ctx, const char *data, size_t len);
	int (*on_done)(void *ctx);
};

enum http_reader_state {
	HTTP_READ_HEAD = 0,
	HTTP_READ_BODY_LENGTH,
	HTTP_READ_BODY_CLOSE,
	HTTP_READ_CHUNK_SIZE,
	HTTP_READ_CHUNK_DATA,
	HTTP_READ_CHUNK_DATA_END,
	HTTP_READ_TRAILERS,
	HTTP_READ_DONE,
	HTTP_READ_ERROR,
};

struct http_reader {
	enum http_reader_state state;
	size_t max_head_bytes;      /* default 64 KiB */
	uint64_t max_body_bytes;    /* default 64 MiB; counts decoded bytes */
	unsigned request_was_head : 1;
	/* Owner: this reader. Head (or trailer) bytes split across feeds. */
	char *partial;
	size_t partial_len, partial_cap;
	uint64_t body_remaining;    /* Content-Length left, or current chunk left */
	uint64_t body_received;     /* decoded body bytes so far */
	int status;                 /* final status, once the head is in */
	unsigned chunk_state;       /* private sub-state of chunk size lines */
	/* Private to http_reader.c. */
	unsigned got_bytes : 1;     /* some byte of this response arrived */
	unsigned hex_digits;        /* digits in the chunk size being read */
	size_t framing_bytes;       /* bytes of the chunk line or trailers so far */
	int error;                  /* LR_E* once in HTTP_READ_ERROR */
	const char *error_message;  /* static string describing the error;
	                               NULL when a callback's code stopped it */
};

/* Initialise (or reset for the next response on the same connection).
 * Zero limits mean the defaults. Reset keeps the limits and partial's
 * allocation and clears everything else, request_was_head included: set
 * it after the reset. */
void http_reader_init(struct http_reader *r, size_t max_head_bytes, uint64_t max_body_bytes);
void http_reader_reset(struct http_reader *r);
void http_reader_free(struct http_reader *r);

/*
 * Feed len bytes. Returns the number of bytes consumed (>= 0) or a
 * negative LR_E* code (LR_EPROTO malformed, LR_ETOOLARGE cap exceeded, or
 * whatever a callback returned). Consumption stops right after on_done:
 * any bytes after the end of the message are not consumed (the caller
 * decides; with no pipelining they are a protocol error).
 * buf may be modified in place.
 */
long http_reader_feed(struct http_reader *r, char *buf, size_t len,
                      const struct http_reader_callbacks *cb, void *ctx);

/* The peer closed the connection. Completes a close-delimited body
 * (calls on_done and returns 0); otherwise returns LR_ECONNRESET when
 * no byte of the response arrived yet, LR_EPROTO when it arrived
 * truncated. */
int http_reader_eof(struct http_reader *r, const struct http_reader_callbacks *cb, void *ctx);

/* Case-insensitive header lookup in a parsed head; NULL if absent. */
const struct http_header *http_head_find(const struct http_head *h, const char *name);

/* Nonzero for the RFC 9110 token characters (header names, methods). */
extern const unsigned char http_token_char[256];

#endif

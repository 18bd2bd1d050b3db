/*
 * A growable byte buffer: the one every layer appends to (requests,
 * bodies, TLS records, JSON output).
 *
 * The error is sticky: once an append fails, every later append is a no-op
 * that returns the same error, so a builder may append a run of pieces and
 * check once at the end (buf_error) instead of after each call. Functions
 * still return the error for callers that stop early.
 */
#ifndef LR_BUF_H
#define LR_BUF_H

#include <stddef.h>
#include <string.h>

struct buf {
	char *data;   /* owner: whoever owns the struct buf */
	size_t len, cap;
	int error;    /* 0, or the first append's failure (LR_ENOMEM) */
};
/* Growth, out of line; the appends below try the room they have first. */
int buf_grow(struct buf *b, size_t extra);

static inline int buf_reserve(struct buf *b, size_t extra)
{
	if (b->error || extra > b->cap - b->len)
		return buf_grow(b, extra);
	return 0;
}

static inline int buf_append(struct buf *b, const void *data, size_t len)
{
	if (b->error || len > b->cap - b->len) {
		int rc = buf_grow(b, len);
		if (rc < 0)
			return rc;
	}
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

/* Inline so a literal's length is known when it is compiled. */
static inline int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}
/* Formats at most 255 bytes; longer output fails with LR_EINVAL. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int buf_error(const struct buf *b) { return b->error; }
/* Empties the buffer for reuse, keeping its memory, and clears the error. */
static inline void buf_clear(struct buf *b) { b->len = 0; b->error = 0; }
/* buf_free's half for a buffer that holds memory. */
void buf_free_data(struct buf *b);
/* Frees the bytes and clears the error: the buffer can be used again.
 * Inline: most buffers freed per request never held memory, and they
 * cost no call. */
static inline void buf_free(struct buf *b)
{
	if (b->data) {
		buf_free_data(b);
		return;
	}
	b->len = b->cap = 0;
	b->error = 0;
}

#endif

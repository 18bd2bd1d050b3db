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

struct buf {
	char *data;   /* owner: whoever owns the struct buf */
	size_t len, cap;
	int error;    /* 0, or the first append's failure (LR_ENOMEM) */
};
int buf_reserve(struct buf *b, size_t extra);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
/* Formats at most 255 bytes; longer output fails with LR_EINVAL. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int buf_error(const struct buf *b) { return b->error; }
/* Empties the buffer for reuse, keeping its memory, and clears the error. */
static inline void buf_clear(struct buf *b) { b->len = 0; b->error = 0; }
/* Frees the bytes and clears the error: the buffer can be used again. */
void buf_free(struct buf *b);

#endif

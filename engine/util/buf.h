/*
 * A growable byte buffer: the one every layer appends to (requests,
 * bodies, TLS records, JSON output).
 */
#ifndef LR_BUF_H
#define LR_BUF_H

#include <stddef.h>

struct http_buf {
	char *data;   /* owner: whoever owns the http_buf */
	size_t len, cap;
};
int http_buf_reserve(struct http_buf *b, size_t extra);
int http_buf_append(struct http_buf *b, const void *data, size_t len);
void http_buf_free(struct http_buf *b);

#endif

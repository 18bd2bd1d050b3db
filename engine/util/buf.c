/* The growable byte buffer (buf.h). */
#include "util/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmring.h"

#define HTTP_BUF_MIN_CAP ((size_t)512)

int http_buf_reserve(struct http_buf *b, size_t extra)
{
	if (extra <= b->cap - b->len)
		return 0;
	if (extra > SIZE_MAX - b->len)
		return LR_ENOMEM;
	size_t need = b->len + extra;
	size_t cap = b->cap ? b->cap : HTTP_BUF_MIN_CAP;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	char *p = realloc(b->data, cap);
	if (!p)
		return LR_ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int http_buf_append(struct http_buf *b, const void *data, size_t len)
{
	int rc = http_buf_reserve(b, len);
	if (rc < 0)
		return rc;
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

void http_buf_free(struct http_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* The growable byte buffer (buf.h). */
#include "util/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmring.h"

#define BUF_MIN_CAP ((size_t)512)

static int buf_fail(struct buf *b, int err)
{
	if (!b->error)
		b->error = err;
	return b->error;
}

int buf_grow(struct buf *b, size_t extra)
{
	if (b->error)
		return b->error;
	if (extra <= b->cap - b->len)
		return 0;
	if (extra > SIZE_MAX - b->len)
		return buf_fail(b, LR_ENOMEM);
	size_t need = b->len + extra;
	size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need) {
		if (cap > SIZE_MAX / 2) {
			cap = need;
			break;
		}
		cap *= 2;
	}
	char *p = realloc(b->data, cap);
	if (!p)
		return buf_fail(b, LR_ENOMEM);
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof tmp)
		return buf_fail(b, LR_EINVAL);
	return buf_append(b, tmp, (size_t)n);
}

void buf_free_data(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->error = 0;
}

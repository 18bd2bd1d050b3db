/* libFuzzer: HTTP response reader, whole feed vs a two-part feed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "http/http_reader.h"

struct out { uint64_t body; int done; };

static int on_head(void *ctx, const struct http_head *h) { (void)ctx; (void)h; return 0; }
static int on_body(void *ctx, const char *d, size_t n)
{
	struct out *o = ctx;
	(void)d;
	o->body += n;
	return 0;
}
static int on_done(void *ctx) { ((struct out *)ctx)->done++; return 0; }
static const struct http_reader_callbacks cb = { on_head, on_body, on_done };

/* Feeds data in up to two parts (split at cut); returns error flag. */
static int run(const uint8_t *data, size_t size, size_t cut, struct out *o)
{
	char *buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	struct http_reader r;
	http_reader_init(&r, 4096, 65536);
	int err = 0;
	size_t off = 0;
	size_t parts[2] = { cut, size - cut };
	for (int i = 0; i < 2 && !err && !o->done; i++) {
		long n = http_reader_feed(&r, buf + off, parts[i], &cb, o);
		if (n < 0)
			err = 1;
		off += parts[i];
	}
	if (!err && !o->done && http_reader_eof(&r, &cb, o) < 0)
		err = 1;
	http_reader_free(&r);
	free(buf);
	return err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct out a = {0}, b = {0};
	int ea = run(data, size, size, &a);
	if (size == 0)
		return 0;
	int eb = run(data, size, data[0] % size, &b);
	if (ea != eb || a.body != b.body || a.done != b.done)
		abort();
	return 0;
}

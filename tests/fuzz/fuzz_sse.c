/* libFuzzer: SSE parser, whole feed vs a two-part feed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "format/sse.h"

/* Counts and a hash of everything reported, in order, so the two feeds
 * must agree on the bytes as well as the number of events. */
struct out { size_t events, comments, retries; uint64_t hash; };

static void mix(struct out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		o->hash = (o->hash ^ (unsigned char)s[i]) * 0x100000001b3ull; /* FNV-1a */
	o->hash = (o->hash ^ n) * 0x100000001b3ull;
}

static int on_event(void *ctx, const struct sse_event *ev)
{
	struct out *o = ctx;
	o->events++;
	mix(o, ev->type, ev->type_len);
	mix(o, ev->data, ev->data_len);
	mix(o, ev->id, ev->id_len);
	return 0;
}
static int on_comment(void *ctx, const char *t, size_t n) { ((struct out *)ctx)->comments++; mix(ctx, t, n); return 0; }
static int on_retry(void *ctx, uint64_t ms) { ((struct out *)ctx)->retries++; mix(ctx, (const char *)&ms, sizeof ms); return 0; }
static const struct sse_callbacks cb = { on_event, on_comment, on_retry };

static int run(const uint8_t *data, size_t size, size_t cut, struct out *o)
{
	char *buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	struct sse_parser p;
	sse_parser_init(&p, 1024, 4096);
	int rc = sse_parser_feed(&p, buf, cut, &cb, o);
	if (rc == 0)
		rc = sse_parser_feed(&p, buf + cut, size - cut, &cb, o);
	int fin = sse_parser_finish(&p);
	sse_parser_free(&p);
	free(buf);
	return rc < 0 || fin < 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct out a = {0}, b = {0};
	int ea = run(data, size, size, &a);
	if (size == 0)
		return 0;
	int eb = run(data, size, data[0] % size, &b);
	if (ea != eb || memcmp(&a, &b, sizeof a) != 0)
		abort();
	return 0;
}

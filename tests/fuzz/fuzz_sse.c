/* libFuzzer: SSE parser, whole feed vs a two-part feed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "format/sse.h"

struct out { size_t events, comments, retries; };

static int on_event(void *ctx, const struct sse_event *ev) { (void)ev; ((struct out *)ctx)->events++; return 0; }
static int on_comment(void *ctx, const char *t, size_t n) { (void)t; (void)n; ((struct out *)ctx)->comments++; return 0; }
static int on_retry(void *ctx, uint64_t ms) { (void)ms; ((struct out *)ctx)->retries++; return 0; }
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

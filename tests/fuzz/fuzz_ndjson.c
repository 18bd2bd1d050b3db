/* libFuzzer: NDJSON framer, whole feed vs a two-part feed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "format/ndjson.h"

static int on_line(void *ctx, const char *l, size_t n) { (void)l; (void)n; (*(size_t *)ctx)++; return 0; }

static int run(const uint8_t *data, size_t size, size_t cut, size_t *lines)
{
	char *buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	struct ndjson_parser p;
	ndjson_parser_init(&p, 1024);
	int rc = ndjson_parser_feed(&p, buf, cut, on_line, lines);
	if (rc == 0)
		rc = ndjson_parser_feed(&p, buf + cut, size - cut, on_line, lines);
	if (rc == 0)
		rc = ndjson_parser_finish(&p, on_line, lines);
	ndjson_parser_free(&p);
	free(buf);
	return rc < 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t a = 0, b = 0;
	int ea = run(data, size, size, &a);
	if (size == 0)
		return 0;
	int eb = run(data, size, data[0] % size, &b);
	if (ea != eb || a != b)
		abort();
	return 0;
}

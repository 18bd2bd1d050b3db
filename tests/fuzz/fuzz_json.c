/* libFuzzer: json_parse (jsmn) vs json_scan must agree on validity. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "format/json.h"
#include "llmring.h"

static void on_scalar(void *ctx, const struct json_scan_path *path, enum json_type type,
                      const char *value, size_t len)
{
	(void)ctx; (void)path; (void)type; (void)value; (void)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);
	if (!buf)
		abort();
	memcpy(buf, data, size);
	struct json_doc d = {0};
	int rc = json_parse(&d, buf, size);
	json_doc_free(&d);
	bool ok = json_scan(buf, size, on_scalar, NULL);
	free(buf);
	if (rc == LR_ENOMEM)
		return 0;
	if ((rc == 0) != ok)
		abort();
	return 0;
}

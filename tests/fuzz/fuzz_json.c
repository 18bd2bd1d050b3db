/* libFuzzer: json_parse (jsmn) vs json_scan must agree on validity, and
 * every value json_scan reports must be a span of the input that is what
 * its type says (a string between quotes, a container between its
 * brackets, the keys leading to it inside the input too). The input as
 * a string (json_append_string) must be valid JSON, and the input itself
 * between quotes when no byte of it needs an escape. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "format/json.h"
#include "llmring.h"

struct input {
	const char *p;
	size_t n;
};

static bool inside(const struct input *in, const char *s, size_t len)
{
	return s >= in->p && len <= in->n && (size_t)(s - in->p) <= in->n - len;
}

static void on_scalar(void *ctx, const struct json_scan_path *path, enum json_type type,
                      const char *value, size_t len)
{
	const struct input *in = ctx;
	if (path->depth < 0 || path->depth > JSON_SCAN_MAX_DEPTH || !inside(in, value, len))
		abort();
	for (int i = 0; i < path->depth; i++)
		if (path->key[i] && !inside(in, path->key[i], path->key_len[i]))
			abort();
	switch (type) {
	case JSON_STRING:
		if (value == in->p || value[-1] != '"' || !inside(in, value, len + 1) || value[len] != '"')
			abort();
		break;
	case JSON_OBJECT:
		if (len < 2 || value[0] != '{' || value[len - 1] != '}')
			abort();
		break;
	case JSON_ARRAY:
		if (len < 2 || value[0] != '[' || value[len - 1] != ']')
			abort();
		break;
	default:
		if (len == 0)
			abort();
		break;
	}
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
	struct input in = {buf, size};
	bool ok = json_scan(buf, size, on_scalar, &in);
	struct buf out = {0};
	if (json_append_string(&out, buf, size) == 0) {
		struct json_doc s = {0};
		int src = json_parse(&s, out.data, out.len);
		if (src != LR_ENOMEM && (src != 0 || s.count != 1 || s.tok[0].type != JSON_STRING))
			abort();
		json_doc_free(&s);
		bool plain = true;
		for (size_t i = 0; i < size && plain; i++)
			plain = data[i] >= 0x20 && data[i] < 0x80 && data[i] != '"' && data[i] != '\\';
		if (plain && (out.len != size + 2 || out.data[0] != '"' || out.data[size + 1] != '"' ||
		              memcmp(out.data + 1, data, size) != 0))
			abort();
	}
	buf_free(&out);
	free(buf);
	if (rc == LR_ENOMEM)
		return 0;
	if ((rc == 0) != ok)
		abort();
	return 0;
}

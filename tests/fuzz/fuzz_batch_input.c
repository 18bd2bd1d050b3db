/*
 * libFuzzer: one `llmring batch` input line, fast path vs full path.
 *
 * fast_input and check_input live in tools/cli/batch_input.c (declared in
 * tools/cli/batch.h); the whole CLI is linked beside this file with its
 * main renamed (tests/fuzz/meson.build), since libFuzzer brings its own.
 *
 * data[0] bit 0: --model given (else each line names its model). The rest
 * up to the first LF is the line, trailing CR/LF stripped as
 * take_input_line does.
 *
 * Oracles: sanitizers; a line fast_input accepts, json_parse + check_input
 * accept too, with the same endpoint, body span, model and custom_id; a
 * line without any backslash that the full path accepts with a model, the
 * fast path accepts too (it may only give up on escapes).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

static struct batch fb;

static bool has_backslash(const char *s, size_t n)
{
	return memchr(s, '\\', n) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	fb.opt.model = (data[0] & 1) ? "opt/model" : NULL;
	const char *src = (const char *)data + 1;
	size_t len = size - 1;
	const char *lf = memchr(src, '\n', len);
	if (lf)
		len = (size_t)(lf - src);
	while (len > 0 && (src[len - 1] == '\n' || src[len - 1] == '\r'))
		len--;
	if (line_is_blank(src, len))
		return 0;
	/* Exactly the line's bytes: ASan sees any read past it. */
	char *line = malloc(len);
	if (!line)
		abort();
	memcpy(line, src, len);

	struct input_request fast = {0};
	const char *id = NULL;
	size_t id_len = 0;
	bool ok_fast = fast_input(&fb, line, len, &fast, &id, &id_len);

	struct input_request full = {0};
	long full_id_len = -1;
	int prc = json_parse(&fb.doc, line, len);
	const char *why = prc == 0 ? check_input(&fb, &full_id_len, &full) : "not valid JSON";
	if (prc == LR_ENOMEM)
		goto out;

	if (ok_fast) {
		if (why) {
			fprintf(stderr, "fast_input accepted a line check_input rejects: %s\n", why);
			abort();
		}
		if (fast.endpoint != full.endpoint || fast.body != full.body ||
		    fast.body_len != full.body_len || fast.model != full.model ||
		    (long)id_len != full_id_len || memcmp(id, fb.scratch, id_len) != 0) {
			fprintf(stderr, "fast_input and check_input read the line differently\n");
			abort();
		}
		if (!fast.model || !fast.body || fast.body < line || fast.body + fast.body_len > line + len ||
		    id < line || id + id_len > line + len)
			abort();
	} else if (!why && full.model && !has_backslash(line, len)) {
		fprintf(stderr, "fast_input gave up on a plain line check_input accepts\n");
		abort();
	}
out:
	model_names_free(&fb.requested);
	free(line);
	return 0;
}

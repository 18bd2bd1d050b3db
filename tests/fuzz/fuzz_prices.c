/*
 * libFuzzer: a prices file (LLMRING_PRICES) through price_table_load.
 *
 * The loader reads only from a path, so the input goes into a memfd and
 * is loaded as /proc/self/fd/N. A loaded table is then looked up with the
 * model names the input itself holds (each string literal of it, and the
 * dated, prefixed and "-latest" forms price_lookup strips).
 *
 * Oracles: sanitizers; a load returns 0 with a table, or LR_EINVAL /
 * LR_EIO / LR_ENOMEM with none and a one-line reason; every price found is
 * a non-negative finite number (batch rates too), and a cost from it is
 * not negative.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "llmring.h"
#include "core/prices.h"

static int fd = -1;
static char path[64];

static void check_price(const struct price *p)
{
	if (!isfinite(p->input) || !isfinite(p->output) || !isfinite(p->cached_input) || p->input < 0 ||
	    p->output < 0 || p->cached_input < 0)
		abort();
	double c = price_cost(p, 1000, 10, 1000);
	if (!(c >= 0))
		abort();
}

static void lookup(const struct price_table *t, const char *name, size_t len)
{
	struct price p;
	if (price_lookup(t, name, len, &p))
		check_price(&p);
	if (price_lookup_batch(t, name, len, &p))
		check_price(&p);
	/* The forms price_lookup strips back off. */
	static const char *const pre[] = {"", "openai/", "models/", "gemini/models/"};
	static const char *const suf[] = {"-latest", "-2024-07-18", "-20250101", "-001", "-latest-001"};
	char buf[256];
	if (len > 200)
		return;
	for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
		for (size_t k = 0; k < sizeof suf / sizeof suf[0]; k++) {
			int n = snprintf(buf, sizeof buf, "%s%.*s%s", pre[i], (int)len, name, suf[k]);
			if (price_lookup(t, buf, (size_t)n, &p))
				check_price(&p);
			if (price_lookup_batch(t, buf, (size_t)n, &p))
				check_price(&p);
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fd < 0) {
		fd = memfd_create("fuzz-prices", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();

	struct price_table *t = (struct price_table *)1;
	struct error_info why;
	memset(&why, 'x', sizeof why);
	int rc = price_table_load(&t, path, &why);
	if (rc == 0) {
		if (!t || why.message[0] != '\0')
			abort();
	} else {
		if (t || (rc != LR_EINVAL && rc != LR_EIO && rc != LR_ENOMEM) || why.code != rc ||
		    !memchr(why.message, '\0', sizeof why.message) || why.message[0] == '\0' ||
		    strchr(why.message, '\n'))
			abort();
		return 0;
	}
	(void)price_table_count(t);
	/* Every string in the input as a model name (escapes left in). */
	const char *s = (const char *)data, *end = s + size;
	for (const char *q = memchr(s, '"', size); q && q + 1 < end;) {
		const char *e = memchr(q + 1, '"', (size_t)(end - q - 1));
		if (!e)
			break;
		lookup(t, q + 1, (size_t)(e - q - 1));
		q = e + 1 < end ? memchr(e + 1, '"', (size_t)(end - e - 1)) : NULL;
	}
	lookup(t, "", 0);
	price_table_free(t);
	return 0;
}

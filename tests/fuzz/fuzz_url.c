/* libFuzzer: base URL parser on a NUL-terminated copy. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	struct url u;
	const char *why = NULL;
	if (url_parse(s, &u, &why) == 0 && (strlen(u.host) >= sizeof u.host ||
	                                    strlen(u.path) >= sizeof u.path))
		abort();
	free(s);
	return 0;
}

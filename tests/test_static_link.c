/*
 * The static library exposes only lr_* names: this program defines its own
 * ring_init, json_parse, pool_start and http_reader_feed (names the library
 * uses inside) and must link against libllmring.a without a clash and call
 * both its own functions and the library's.
 */
#include <stdio.h>
#include <string.h>

#include "llmring.h"

int ring_init(void) { return 1; }
int json_parse(void) { return 2; }
int pool_start(void) { return 3; }
int http_reader_feed(void) { return 4; }

int main(void)
{
	int own = ring_init() + json_parse() + pool_start() + http_reader_feed();
	if (own != 10 || strcmp(lr_error_name(LR_ETIMEOUT), "timeout") != 0 ||
	    strcmp(lr_version(), LR_VERSION_STRING) != 0) {
		fprintf(stderr, "static link: wrong symbols resolved\n");
		return 1;
	}
	printf("[  PASSED  ] 1 test(s).\n");
	return 0;
}

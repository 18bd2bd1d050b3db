/*
 * SHA-256 of a message given in parts (the response cache's key): the
 * x86 SHA extensions when the CPU has them (several times faster than
 * mbedTLS's portable code, which was the largest single cost of a cache
 * lookup), mbedTLS otherwise. Both give the same digest.
 */
#ifndef LR_UTIL_SHA256_H
#define LR_UTIL_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sha256_part {
	const void *data;
	size_t len;
};

/* The digest of the parts, concatenated, into out. */
void sha256_parts(const struct sha256_part *parts, size_t nparts, unsigned char out[32]);
/* The portable path whatever the CPU (for tests that compare the two). */
void sha256_parts_portable(const struct sha256_part *parts, size_t nparts, unsigned char out[32]);
/* True when sha256_parts uses the SHA extensions. */
bool sha256_accelerated(void);

#endif

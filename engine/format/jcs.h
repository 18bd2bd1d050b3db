/*
 * RFC 8785 (JCS) canonical JSON: the form in which two JSON texts that
 * mean the same value are the same bytes. Object members sorted by their
 * keys' UTF-16 code units, no whitespace, numbers in ECMAScript's
 * shortest form (1.0 and 1 are both "1"), strings with only the escapes
 * JSON.stringify writes. The response cache hashes requests in this form,
 * so key order, spacing and escapes do not change the key.
 */
#ifndef LR_JCS_H
#define LR_JCS_H

#include <stddef.h>

#include "util/buf.h"

#define JCS_MAX_DEPTH 128

/*
 * Appends the canonical form of the JSON text text[0..len) to out,
 * leaving out the top-level object's members named in drop[0..ndrop)
 * (raw names, compared after unescaping). 0; LR_EPROTO when the text is
 * not one valid JSON value, or holds what JCS cannot represent (a lone
 * surrogate escape, a number out of double range, nesting past
 * JCS_MAX_DEPTH); LR_ENOMEM. out may hold a partial form on failure.
 */
int jcs_canonicalize(const char *text, size_t len, const char *const *drop, int ndrop, struct buf *out);

/* ECMAScript's Number::toString of a finite v (shortest round trip):
 * 1 -> "1", 0.1 -> "0.1", 1e21 -> "1e+21", -0 -> "0". out holds at
 * least 32 bytes; returns the length written (NUL-terminated). */
size_t jcs_number(double v, char out[32]);

#endif

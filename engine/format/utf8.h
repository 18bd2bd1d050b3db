/*
 * UTF-8, checked and written in one place: JSON text is UTF-8 (RFC 8259),
 * so both JSON parsers refuse anything else and the writers replace it.
 */
#ifndef LR_UTF8_H
#define LR_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the valid UTF-8 character at p, of which avail (> 0)
 * bytes are readable; 0 when it is not one (a stray continuation byte,
 * an overlong form, a surrogate, past U+10FFFF, cut short). */
size_t utf8_char_len(const char *p, size_t avail);

/* Writes code point cp (at most U+10FFFF; a surrogate is the caller's to
 * replace) into out; returns its length, 1..4. */
size_t utf8_encode(uint32_t cp, char out[4]);

#endif

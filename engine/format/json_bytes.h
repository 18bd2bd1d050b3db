/*
 * The byte classes a JSON string body is checked against, shared by the
 * scanner (json_scan.c) and the writer (json.c): one 16-byte SSE2 step
 * (every x86-64 has SSE2) or one table lookup per byte elsewhere.
 */
#ifndef LR_JSON_BYTES_H
#define LR_JSON_BYTES_H

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* 1 for bytes a string may hold without a closer look (ASCII only:
 * a byte from 0x80 up starts a sequence to check). */
static const unsigned char json_plain_byte[256] = {
	[0x20] = 1, [0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7f] = 1,
};

#ifdef __SSE2__
/* The bytes of v that end a plain run, as a bit mask: quote, backslash,
 * and in one signed compare both the control characters (0x00-0x1f) and
 * the bytes from 0x80 up (negative as signed). */
static inline unsigned json_special_mask(__m128i v)
{
	__m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
	                           _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
	hit = _mm_or_si128(hit, _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
	return (unsigned)_mm_movemask_epi8(hit);
}
#endif

#endif

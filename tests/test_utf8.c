/*
 * UTF-8 as format/utf8.h checks and writes it: every well-formed
 * character of each length is accepted whole; overlongs, surrogates,
 * code points past U+10FFFF, stray continuation bytes and cut sequences
 * are not; every code point encodes to what it decodes from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "format/utf8.h"

static size_t len_of(const char *s)
{
	return utf8_char_len(s, strlen(s));
}

static void ascii_is_one_byte(void **state)
{
	assert_int_equal(len_of("a"), 1);
	assert_int_equal(utf8_char_len("\0", 1), 1);
	assert_int_equal(len_of("\x7f"), 1);
}

static void well_formed_characters_of_each_length(void **state)
{
	assert_int_equal(len_of("\xc2\x80"), 2);         /* U+0080 */
	assert_int_equal(len_of("\xdf\xbf"), 2);         /* U+07FF */
	assert_int_equal(len_of("\xe0\xa0\x80"), 3);     /* U+0800 */
	assert_int_equal(len_of("\xed\x9f\xbf"), 3);     /* U+D7FF, before the surrogates */
	assert_int_equal(len_of("\xef\xbf\xbd"), 3);     /* U+FFFD */
	assert_int_equal(len_of("\xf0\x90\x80\x80"), 4); /* U+10000 */
	assert_int_equal(len_of("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF */
}

static void malformed_sequences_are_refused(void **state)
{
	assert_int_equal(len_of("\x80"), 0);             /* a stray continuation byte */
	assert_int_equal(len_of("\xc0\xaf"), 0);         /* overlong '/' */
	assert_int_equal(len_of("\xc1\xbf"), 0);
	assert_int_equal(len_of("\xe0\x9f\xbf"), 0);     /* overlong U+07FF */
	assert_int_equal(len_of("\xf0\x8f\xbf\xbf"), 0); /* overlong U+FFFF */
	assert_int_equal(len_of("\xed\xa0\x80"), 0);     /* U+D800, a surrogate */
	assert_int_equal(len_of("\xed\xbf\xbf"), 0);     /* U+DFFF */
	assert_int_equal(len_of("\xf4\x90\x80\x80"), 0); /* U+110000 */
	assert_int_equal(len_of("\xf5\x80\x80\x80"), 0);
	assert_int_equal(len_of("\xff"), 0);
	assert_int_equal(len_of("\xe2\x82("), 0);        /* a continuation that is not one */
}

static void a_cut_sequence_is_refused(void **state)
{
	assert_int_equal(utf8_char_len("\xe2\x82\xac", 2), 0);
	assert_int_equal(utf8_char_len("\xf0\x9f\x98\x80", 3), 0);
	assert_int_equal(utf8_char_len("\xc3\xa9", 1), 0);
}

static void every_code_point_round_trips(void **state)
{
	for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		char out[4];
		size_t n = utf8_encode(cp, out);
		assert_int_equal(n, cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4);
		assert_int_equal(utf8_char_len(out, n), n);
	}
}

static void encodings_are_the_standard_bytes(void **state)
{
	char out[4];
	assert_int_equal(utf8_encode(0xe9, out), 2);
	assert_memory_equal(out, "\xc3\xa9", 2);
	assert_int_equal(utf8_encode(0x20ac, out), 3);
	assert_memory_equal(out, "\xe2\x82\xac", 3);
	assert_int_equal(utf8_encode(0x1f600, out), 4);
	assert_memory_equal(out, "\xf0\x9f\x98\x80", 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ascii_is_one_byte),
		cmocka_unit_test(well_formed_characters_of_each_length),
		cmocka_unit_test(malformed_sequences_are_refused),
		cmocka_unit_test(a_cut_sequence_is_refused),
		cmocka_unit_test(every_code_point_round_trips),
		cmocka_unit_test(encodings_are_the_standard_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

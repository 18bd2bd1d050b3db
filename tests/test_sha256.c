/*
 * sha256.c: the accelerated path (when this CPU has it) gives mbedTLS's
 * digest for every length around the block and padding boundaries and
 * for any split into parts; both give the FIPS 180-2 test vectors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/sha256.h"

static void hex(const unsigned char d[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_known_vectors(void **state)
{
	(void)state;
	static const struct {
		const char *msg, *digest;
	} v[] = {
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct sha256_part p = {v[i].msg, strlen(v[i].msg)};
		unsigned char d[32];
		char h[65];
		sha256_parts(&p, 1, d);
		hex(d, h);
		assert_string_equal(h, v[i].digest);
		sha256_parts_portable(&p, 1, d);
		hex(d, h);
		assert_string_equal(h, v[i].digest);
	}
}

static void test_every_length_and_split_matches_the_portable_path(void **state)
{
	(void)state;
	static unsigned char msg[1100];
	uint32_t x = 12345;
	for (size_t i = 0; i < sizeof(msg); i++) {
		x = x * 1103515245u + 12345u;
		msg[i] = (unsigned char)(x >> 16);
	}
	for (size_t len = 0; len <= sizeof(msg); len++) {
		unsigned char want[32], got[32];
		struct sha256_part whole = {msg, len};
		sha256_parts_portable(&whole, 1, want);
		sha256_parts(&whole, 1, got);
		assert_memory_equal(got, want, 32);
		/* Three parts cut at varied places, one of them empty. */
		size_t a = len ? (len * 7 + 3) % (len + 1) : 0, b = a + (len - a) / 3;
		struct sha256_part split[4] = {{msg, a}, {msg + a, 0}, {msg + a, b - a}, {msg + b, len - b}};
		sha256_parts(split, 4, got);
		assert_memory_equal(got, want, 32);
	}
	printf("sha256: %s path checked\n", sha256_accelerated() ? "SHA-NI" : "portable");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test(test_every_length_and_split_matches_the_portable_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

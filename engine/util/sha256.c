/*
 * SHA-256 (sha256.h). The accelerated path is the usual SHA-NI block
 * function (four rounds per step, the message schedule with
 * sha256msg1/msg2), chosen once by CPUID; padding is done here.
 */
#include "util/sha256.h"

#include <pthread.h>
#include <string.h>

#include <mbedtls/sha256.h>

void sha256_parts_portable(const struct sha256_part *parts, size_t nparts, unsigned char out[32])
{
	mbedtls_sha256_context sha;
	mbedtls_sha256_init(&sha);
	mbedtls_sha256_starts_ret(&sha, 0);
	for (size_t i = 0; i < nparts; i++)
		mbedtls_sha256_update_ret(&sha, parts[i].data, parts[i].len);
	mbedtls_sha256_finish_ret(&sha, out);
	mbedtls_sha256_free(&sha);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <cpuid.h>
#include <immintrin.h>

static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

__attribute__((target("sha,sse4.1,ssse3"))) static void ni_blocks(uint32_t state[8],
                                                                 const unsigned char *data,
                                                                 size_t blocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i tmp = _mm_loadu_si128((const __m128i *)&state[0]);
	__m128i s1 = _mm_loadu_si128((const __m128i *)&state[4]);
	tmp = _mm_shuffle_epi32(tmp, 0xB1);       /* CDAB */
	s1 = _mm_shuffle_epi32(s1, 0x1B);         /* EFGH */
	__m128i s0 = _mm_alignr_epi8(tmp, s1, 8); /* ABEF */
	s1 = _mm_blend_epi16(s1, tmp, 0xF0);      /* CDGH */
	for (; blocks; blocks--, data += 64) {
		__m128i abef = s0, cdgh = s1, w[4];
		for (int i = 0; i < 4; i++)
			w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), bswap);
		for (int i = 0; i < 16; i++) {
			__m128i msg = _mm_add_epi32(w[i & 3], _mm_loadu_si128((const __m128i *)&sha256_k[4 * i]));
			s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
			s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(msg, 0x0E));
			if (i < 12) { /* words 4i+16..4i+19 of the schedule, in w[i]'s place */
				__m128i t = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);
				t = _mm_add_epi32(t, _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4));
				w[i & 3] = _mm_sha256msg2_epu32(t, w[(i + 3) & 3]);
			}
		}
		s0 = _mm_add_epi32(s0, abef);
		s1 = _mm_add_epi32(s1, cdgh);
	}
	tmp = _mm_shuffle_epi32(s0, 0x1B);   /* FEBA */
	s1 = _mm_shuffle_epi32(s1, 0xB1);    /* DCHG */
	s0 = _mm_blend_epi16(tmp, s1, 0xF0); /* DCBA */
	s1 = _mm_alignr_epi8(s1, tmp, 8);    /* HGFE */
	_mm_storeu_si128((__m128i *)&state[0], s0);
	_mm_storeu_si128((__m128i *)&state[4], s1);
}

static bool have_ni;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1))
		return;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return;
	have_ni = (b & bit_SHA) != 0;
}

bool sha256_accelerated(void)
{
	pthread_once(&probe_once, probe);
	return have_ni;
}

static void ni_parts(const struct sha256_part *parts, size_t nparts, unsigned char out[32])
{
	uint32_t state[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	unsigned char block[128];
	size_t have = 0;  /* bytes in block */
	uint64_t total = 0;
	for (size_t i = 0; i < nparts; i++) {
		const unsigned char *p = parts[i].data;
		size_t len = parts[i].len;
		total += len;
		if (have) {
			size_t take = 64 - have < len ? 64 - have : len;
			memcpy(block + have, p, take);
			have += take;
			p += take;
			len -= take;
			if (have < 64)
				continue;
			ni_blocks(state, block, 1);
			have = 0;
		}
		if (len >= 64) {
			ni_blocks(state, p, len / 64);
			p += len & ~(size_t)63;
			len &= 63;
		}
		memcpy(block, p, len);
		have = len;
	}
	/* 0x80, zeros, the length in bits (big-endian) ending a block. */
	block[have++] = 0x80;
	size_t end = have <= 56 ? 64 : 128;
	memset(block + have, 0, end - have);
	uint64_t bits = total * 8;
	for (int i = 0; i < 8; i++)
		block[end - 1 - i] = (unsigned char)(bits >> (8 * i));
	ni_blocks(state, block, end / 64);
	for (int i = 0; i < 8; i++) {
		out[4 * i] = (unsigned char)(state[i] >> 24);
		out[4 * i + 1] = (unsigned char)(state[i] >> 16);
		out[4 * i + 2] = (unsigned char)(state[i] >> 8);
		out[4 * i + 3] = (unsigned char)state[i];
	}
}

void sha256_parts(const struct sha256_part *parts, size_t nparts, unsigned char out[32])
{
	if (sha256_accelerated())
		ni_parts(parts, nparts, out);
	else
		sha256_parts_portable(parts, nparts, out);
}

#else

bool sha256_accelerated(void)
{
	return false;
}

void sha256_parts(const struct sha256_part *parts, size_t nparts, unsigned char out[32])
{
	sha256_parts_portable(parts, nparts, out);
}

#endif

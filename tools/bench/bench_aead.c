/*
 * The TLS record layer's ciphers alone (engine/io/tls_rec.c): CPU time to
 * seal one record and open it again, for each AEAD suite and a few record
 * sizes, alternating suites in one process so that a loaded machine moves
 * them alike; best of the rounds. A pooled request is one record each way
 * (about 300 bytes out, 600 back against llmring mock), so a request's
 * cipher time is about one seal+open of each size.
 *
 * usage: bench_aead [RECORDS [SIZE...]]   (defaults: 100000; 300 600 1024)
 * env BENCH_AEAD_EVICT=KIB: before each seal+open, read KIB KiB of other
 *   memory (more than the L2 cache: the caches as a request finds them
 *   after the kernel's network path and the rest of the loop ran), and
 *   time each seal+open alone by the monotonic clock: the median is the
 *   cold cost of a record (RECORDS about 2000 is enough).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/tls_rec.h"
#include "util/buf.h"

static double cpu_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double mono_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static unsigned char *evict_mem; /* owner: main (static for the process) */
static size_t evict_len;
static volatile unsigned evict_sink;

static void evict(void)
{
	unsigned x = 0;
	for (size_t i = 0; i < evict_len; i += 64)
		x += evict_mem[i];
	evict_sink = x;
}

/* ns per seal+open of a record of len bytes, or -1 on an error. */
static double run(enum tls_rec_cipher c, size_t len, int n)
{
	struct tls_rec_keys k = {.cipher = c};
	for (int i = 0; i < 32; i++)
		k.write_key[i] = k.read_key[i] = (unsigned char)(i + 1);
	for (int i = 0; i < 12; i++)
		k.write_iv[i] = k.read_iv[i] = (unsigned char)(i * 5 + 3);
	struct tls_rec *a = tls_rec_new(&k), *b = tls_rec_new(&k); /* owner: here */
	char *plain = calloc(1, len + 1);                         /* owner: here */
	struct buf wire = {0};                                    /* owner: here */
	double ns = -1, *cold = evict_len ? calloc((size_t)n, sizeof(double)) : NULL; /* owner: here */
	if (!a || !b || !plain || (evict_len && !cold))
		goto out;
	double t0 = cpu_s();
	for (int i = 0; i < n; i++) {
		double c0 = 0;
		if (cold) {
			evict();
			c0 = mono_s();
		}
		buf_clear(&wire);
		char msg[160], *p;
		if (tls_rec_seal(a, TLS_REC_APPLICATION_DATA, plain, len, &wire) ||
		    tls_rec_feed(b, wire.data, wire.len) ||
		    tls_rec_open(b, &p, msg, sizeof(msg)) != (long)len ||
		    tls_rec_open(b, &p, msg, sizeof(msg)) != 0)
			goto out;
		if (cold)
			cold[i] = mono_s() - c0;
	}
	ns = (cpu_s() - t0) / n * 1e9;
	if (cold) {
		qsort(cold, (size_t)n, sizeof(double), cmp_double);
		ns = cold[n / 2] * 1e9;
	}
out:
	free(cold);
	tls_rec_free(a);
	tls_rec_free(b);
	free(plain);
	buf_free(&wire);
	return ns;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100000;
	size_t sizes[16] = {300, 600, 1024};
	int ns = 3;
	if (argc > 2) {
		ns = 0;
		for (int i = 2; i < argc && ns < 16; i++)
			sizes[ns++] = (size_t)atol(argv[i]);
	}
	if (n <= 0 || ns == 0) {
		fprintf(stderr, "usage: bench_aead [RECORDS [SIZE...]]\n");
		return 2;
	}
	const char *ev = getenv("BENCH_AEAD_EVICT");
	if (ev && atol(ev) > 0) {
		evict_len = (size_t)atol(ev) * 1024;
		evict_mem = malloc(evict_len);
		if (!evict_mem)
			return 1;
		memset(evict_mem, 1, evict_len);
	}
	static const struct {
		enum tls_rec_cipher c;
		const char *name;
	} ciphers[] = {{TLS_REC_AES_128_GCM, "AES-128-GCM"},
	               {TLS_REC_AES_256_GCM, "AES-256-GCM"},
	               {TLS_REC_CHACHA20_POLY1305, "ChaCha20-Poly1305"}};
	double best[3][16];
	for (int r = 0; r < 3; r++)
		for (int s = 0; s < ns; s++)
			for (int c = 0; c < 3; c++) {
				double t = run(ciphers[c].c, sizes[s], n);
				if (t < 0) {
					fprintf(stderr, "%s: record layer error\n", ciphers[c].name);
					return 1;
				}
				if (r == 0 || t < best[c][s])
					best[c][s] = t;
			}
	printf("%-18s", "ns per seal+open");
	for (int s = 0; s < ns; s++)
		printf(" %7zu B", sizes[s]);
	printf("\n");
	for (int c = 0; c < 3; c++) {
		printf("%-18s", ciphers[c].name);
		for (int s = 0; s < ns; s++)
			printf(" %9.0f", best[c][s]);
		printf("\n");
	}
	return 0;
}

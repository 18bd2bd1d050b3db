/*
 * Allocation-failure injection for tests linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup,
 * --wrap=pthread_create (as SQLite's test_malloc): every call from the
 * objects of that link (the engine's static library among them) goes
 * through a counter; calls from shared libraries (libc, mbedTLS) do not.
 *
 * Threads can be exempt (the mock server's, the scripted server's): a
 * thread created by an exempt thread is exempt too, so start servers
 * between alloc_fail_exempt_begin/end and none of their allocations count.
 */
#ifndef LR_TESTS_ALLOC_FAIL_H
#define LR_TESTS_ALLOC_FAIL_H

#include <stdbool.h>

/* Counting from zero, nothing fails. */
void alloc_fail_reset(void);
/* The nth counted call from now (1-based) fails; with persist, every
 * call after it too. n <= 0: none fails. Also resets the counts. */
void alloc_fail_arm(long n, bool persist);
long alloc_fail_calls(void);    /* counted calls since the last reset/arm */
long alloc_fail_failed(void);   /* calls made to fail since then */
/* The return address of the first call made to fail since the last
 * reset/arm (NULL: none): tells failure sites apart. */
void *alloc_fail_site(void);
/* A hash of that call's innermost ALLOC_FAIL_DEPTH callers (0: none):
 * tells apart the callers of shared helpers (buf_reserve...). */
#define ALLOC_FAIL_DEPTH 3
unsigned long alloc_fail_path(void);
/* Whether that call came from mbedTLS (linked in with its calloc renamed
 * alloc_fail_mbedtls_calloc: tests/meson.build). */
bool alloc_fail_in_mbedtls(void);
/* on: the stack of each call made to fail is printed to stderr
 * (addresses: feed them to addr2line -e PROGRAM -f). */
void alloc_fail_trace(bool on);
/* The calling thread (and threads it creates) stop/start counting. */
void alloc_fail_exempt_begin(void);
void alloc_fail_exempt_end(void);

#endif

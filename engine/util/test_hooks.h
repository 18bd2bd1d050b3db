/*
 * Seams for deterministic tests: weak definitions in the library that a
 * test program replaces with strong ones (the library holds no mutable
 * hook state of its own). Never called for anything else.
 */
#ifndef LR_TEST_HOOKS_H
#define LR_TEST_HOOKS_H

#include <netdb.h>

#include "llmring.h"

/* In lr_submit, after the stopping check passed and before the push
 * (core/submit.c); the library's does nothing. */
void engine_submit_window_hook(lr_engine *e);

/* The resolver's helper threads look names up through this (io/resolve.c);
 * the library's is getaddrinfo. A replacement's list is released with
 * freeaddrinfo, so it must build it with getaddrinfo. */
int resolve_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                        struct addrinfo **res);

/* Called before each io_uring enter of a loop turn (io/ring.c); nonzero
 * is taken as the enter's result, a -errno the kernel refused with. The
 * library's returns 0. */
int ring_enter_fault(void);

/* Called when a connection's records move to libcrypto after the
 * handshake (io/tls.c), with the cipher (enum tls_rec_cipher); the
 * library's does nothing. */
void tls_offload_hook(int cipher);

/* The name a library loaded on first use is opened by (util/lazy_lib.c);
 * the library's returns soname. A test returns a missing one to see the
 * engine without that library. */
const char *lazy_lib_soname(const char *soname);

/* In cache_submit, when a lookup goes to the cache's thread rather than
 * being decided on the submitting thread (core/cache.c); the library's
 * does nothing. */
void cache_lookup_queued_hook(void);

#endif

/* See alloc_fail.h. */
#include "alloc_fail.h"

#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);

static atomic_long calls, failed, fail_at, fail_persist;
static _Atomic(void *) fail_site;
static atomic_ulong fail_path;
static atomic_bool trace;
static atomic_bool fail_mbedtls; /* the first failed call was mbedTLS's */
static _Thread_local int exempt;

void alloc_fail_arm(long n, bool persist)
{
	void *warm[1];
	backtrace(warm, 1); /* its first call loads libgcc_s: not inside an allocation */
	atomic_store(&fail_at, 0); /* no failure while the counts reset */
	atomic_store(&calls, 0);
	atomic_store(&failed, 0);
	atomic_store(&fail_site, NULL);
	atomic_store(&fail_path, 0);
	atomic_store(&fail_mbedtls, false);
	atomic_store(&fail_persist, persist);
	atomic_store(&fail_at, n);
}

void alloc_fail_reset(void) { alloc_fail_arm(0, false); }
long alloc_fail_calls(void) { return atomic_load(&calls); }
long alloc_fail_failed(void) { return atomic_load(&failed); }
void *alloc_fail_site(void) { return atomic_load(&fail_site); }
unsigned long alloc_fail_path(void) { return atomic_load(&fail_path); }
void alloc_fail_trace(bool on) { atomic_store(&trace, on); }
bool alloc_fail_in_mbedtls(void) { return atomic_load(&fail_mbedtls); }

/* Frames 0 and 1 are this file's (path_hash, should_fail); 2 the wrapper. */
__attribute__((noinline)) static unsigned long path_hash(void)
{
	void *frames[3 + ALLOC_FAIL_DEPTH];
	int n = backtrace(frames, 3 + ALLOC_FAIL_DEPTH);
	unsigned long h = 14695981039346656037ul;
	for (int i = 3; i < n; i++)
		h = (h ^ (unsigned long)(uintptr_t)frames[i]) * 1099511628211ul;
	if (atomic_load(&trace)) {
		void *all[32];
		int k = backtrace(all, 32);
		backtrace_symbols_fd(all, k, 2);
	}
	return h ? h : 1;
}
void alloc_fail_exempt_begin(void) { exempt++; }
void alloc_fail_exempt_end(void) { exempt--; }

/* true: this call (from site; of mbedTLS: mbed) fails. */
__attribute__((noinline)) static bool should_fail_from(void *site, bool mbed)
{
	if (exempt)
		return false;
	long n = atomic_fetch_add(&calls, 1) + 1;
	long at = atomic_load(&fail_at);
	if (at <= 0 || n < at || (n > at && !atomic_load(&fail_persist)))
		return false;
	if (atomic_fetch_add(&failed, 1) == 0) {
		atomic_store(&fail_site, site);
		atomic_store(&fail_path, path_hash());
		atomic_store(&fail_mbedtls, mbed);
	}
	return true;
}

#define should_fail(site) should_fail_from(site, false)

/* The call site inside the engine: the wrapper's return address. */
#define CALLER __builtin_return_address(0)

void *__wrap_malloc(size_t n) { return should_fail(CALLER) ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return should_fail(CALLER) ? NULL : __real_calloc(n, size); }
/* realloc(p, 0) frees in glibc; counted anyway (the engine never does it). */
void *__wrap_realloc(void *p, size_t n) { return should_fail(CALLER) ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return should_fail(CALLER) ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return should_fail(CALLER) ? NULL : __real_strndup(s, n); }
/* mbedTLS's only allocator (it never calls malloc or realloc). */
void *alloc_fail_mbedtls_calloc(size_t n, size_t size);
void *alloc_fail_mbedtls_calloc(size_t n, size_t size)
{
	return should_fail_from(CALLER, true) ? NULL : __real_calloc(n, size);
}

/* Exemption is inherited: a server started by an exempt thread keeps
 * its threads' allocations out of the count. */
struct start {
	void *(*fn)(void *);
	void *arg;
	int exempt;
};

static void *trampoline(void *p)
{
	struct start st = *(struct start *)p;
	free(p);
	exempt = st.exempt;
	return st.fn(st.arg);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
	/* The thread record itself is engine memory: a failure here is what
	 * a failed pthread_create would be (EAGAIN). */
	if (should_fail(CALLER))
		return EAGAIN;
	struct start *st = __real_malloc(sizeof(*st));
	if (!st)
		return EAGAIN;
	*st = (struct start){fn, arg, exempt};
	int rc = __real_pthread_create(t, a, trampoline, st);
	if (rc)
		free(st);
	return rc;
}

/* Libraries loaded on first use (lazy_lib.h). */
#include "util/lazy_lib.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* pthread_once's routine takes no argument: the library being loaded is
 * handed over in a thread-local, set by the caller of pthread_once. */
static _Thread_local struct lazy_lib *loading;

__attribute__((weak)) const char *lazy_lib_soname(const char *soname)
{
	return soname;
}

void (*lazy_lib_sym(void *handle, const char *name))(void)
{
	void *p = dlsym(handle, name);
	/* POSIX: dlsym's result converts to a function pointer; through
	 * memcpy, since ISO C has no cast between the two kinds. */
	void (*f)(void);
	memcpy(&f, &p, sizeof(f));
	return f;
}

static void load_once(void)
{
	struct lazy_lib *l = loading;
	/* RTLD_LOCAL: its symbols serve only these lookups, never another
	 * library's, so a program that links a different version of the same
	 * library keeps its own. */
	void *h = dlopen(lazy_lib_soname(l->soname), RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(l->why, sizeof(l->why), "%s", e ? e : "dlopen failed");
		return;
	}
	const char *missing = l->bind(h);
	if (missing) {
		snprintf(l->why, sizeof(l->why), "%s has no %s", l->soname, missing);
		/* The table may hold some of its pointers: never read, since
		 * loaded stays false. The handle stays open (no dangling). */
		return;
	}
	l->loaded = true; /* published by pthread_once to every later caller */
}

bool lazy_lib_load(struct lazy_lib *l)
{
	loading = l;
	pthread_once(&l->once, load_once);
	loading = NULL;
	return l->loaded;
}

/*
 * A shared library loaded the first time something needs it, not at
 * start-up: libcrypto for TLS records and SQLite for the response cache.
 * Linked normally, the dynamic loader maps them and applies their own
 * relocations (libcrypto.so.3 alone has 4,191) in every process, whether
 * or not it ever speaks TLS or opens a cache: most of the instructions of
 * `llmring --version` and megabytes of resident memory.
 */
#ifndef LR_UTIL_LAZY_LIB_H
#define LR_UTIL_LAZY_LIB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct lazy_lib {
	const char *soname;          /* static: the library's name for dlopen */
	/* Fills the user's table of functions from the handle (lazy_lib_sym
	 * for each); NULL when all were found, else the first name missing. */
	const char *(*bind)(void *handle);
	pthread_once_t once;         /* PTHREAD_ONCE_INIT */
	bool loaded;                 /* after once: bind found every function */
	char why[192];               /* after once, when not loaded: what failed */
};

/* Loads l once per process (the first call loads; the others, on any
 * thread, wait for it and see the same outcome). True when bind found
 * every function; false with l->why set otherwise, and every call after
 * says false again without trying. The library stays loaded until exit. */
bool lazy_lib_load(struct lazy_lib *l);

/* A function of the library being bound, or NULL. Cast it to its type:
 * every function pointer converts to and from this one. */
void (*lazy_lib_sym(void *handle, const char *name))(void);

/* The name to dlopen for soname; the library's returns soname. A test
 * program replaces it to make a load fail (util/test_hooks.h). */
const char *lazy_lib_soname(const char *soname);

#endif

/* SQLite loaded on first use (sqlite_lib.h). */
#define SQLITE_LIB_BINDING /* the real names, for the binding below */
#include "core/sqlite_lib.h"

#include <stdio.h>

#include "util/lazy_lib.h"

struct sqlite_lib sqlite_lib;

static const char *bind(void *handle)
{
#define SQLITE_LIB_BIND(f)                                                                     \
	if (!(sqlite_lib.f = (__typeof__(sqlite_lib.f))lazy_lib_sym(handle, #f)))                    \
		return #f;
	SQLITE_FUNCTIONS(SQLITE_LIB_BIND)
#undef SQLITE_LIB_BIND
	return NULL;
}

static struct lazy_lib libsqlite = {
	.soname = LR_LIBSQLITE_SONAME,
	.bind = bind,
	.once = PTHREAD_ONCE_INIT,
};

bool sqlite_lib_load(char *why, size_t why_cap)
{
	if (lazy_lib_load(&libsqlite))
		return true;
	snprintf(why, why_cap, "%s", libsqlite.why);
	return false;
}

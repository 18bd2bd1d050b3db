/*
 * SQLite for the response cache, loaded when a cache is first opened
 * (util/lazy_lib.h): a process without a cache never maps it. The cache's
 * files include this instead of <sqlite3.h>; their sqlite3_* calls go
 * through the table, which sqlite_lib_load() fills.
 */
#ifndef LR_CORE_SQLITE_LIB_H
#define LR_CORE_SQLITE_LIB_H

#include <stdbool.h>
#include <stddef.h>

#include <sqlite3.h>

#define SQLITE_FUNCTIONS(X)                                                                    \
	X(sqlite3_bind_blob) X(sqlite3_bind_int) X(sqlite3_bind_int64) X(sqlite3_bind_text)       \
	X(sqlite3_busy_timeout) X(sqlite3_close) X(sqlite3_column_blob) X(sqlite3_column_bytes)   \
	X(sqlite3_column_int) X(sqlite3_column_int64) X(sqlite3_column_text)                      \
	X(sqlite3_column_type) X(sqlite3_create_function) X(sqlite3_errmsg) X(sqlite3_errstr)     \
	X(sqlite3_exec) X(sqlite3_finalize) X(sqlite3_get_autocommit)                             \
	X(sqlite3_last_insert_rowid) X(sqlite3_open_v2) X(sqlite3_prepare_v2) X(sqlite3_reset)    \
	X(sqlite3_result_int64) X(sqlite3_result_null) X(sqlite3_step) X(sqlite3_value_blob)      \
	X(sqlite3_value_bytes)

#define SQLITE_LIB_FIELD(f) __typeof__(&f) f;
struct sqlite_lib {
	SQLITE_FUNCTIONS(SQLITE_LIB_FIELD)
};
#undef SQLITE_LIB_FIELD

/* Filled once by sqlite_lib_load; read-only after. */
extern struct sqlite_lib sqlite_lib;

/* Loads SQLite on the first call (any thread). True when its functions
 * are in the table; false with dlopen's words in why otherwise, and no
 * sqlite3_* call may be made. */
bool sqlite_lib_load(char *why, size_t why_cap);

#ifndef SQLITE_LIB_BINDING
/* The cache's calls through the table (a name is not expanded again
 * inside its own expansion, so the member keeps its name). */
#define sqlite3_bind_blob sqlite_lib.sqlite3_bind_blob
#define sqlite3_bind_int sqlite_lib.sqlite3_bind_int
#define sqlite3_bind_int64 sqlite_lib.sqlite3_bind_int64
#define sqlite3_bind_text sqlite_lib.sqlite3_bind_text
#define sqlite3_busy_timeout sqlite_lib.sqlite3_busy_timeout
#define sqlite3_close sqlite_lib.sqlite3_close
#define sqlite3_column_blob sqlite_lib.sqlite3_column_blob
#define sqlite3_column_bytes sqlite_lib.sqlite3_column_bytes
#define sqlite3_column_int sqlite_lib.sqlite3_column_int
#define sqlite3_column_int64 sqlite_lib.sqlite3_column_int64
#define sqlite3_column_text sqlite_lib.sqlite3_column_text
#define sqlite3_column_type sqlite_lib.sqlite3_column_type
#define sqlite3_create_function sqlite_lib.sqlite3_create_function
#define sqlite3_errmsg sqlite_lib.sqlite3_errmsg
#define sqlite3_errstr sqlite_lib.sqlite3_errstr
#define sqlite3_exec sqlite_lib.sqlite3_exec
#define sqlite3_finalize sqlite_lib.sqlite3_finalize
#define sqlite3_get_autocommit sqlite_lib.sqlite3_get_autocommit
#define sqlite3_last_insert_rowid sqlite_lib.sqlite3_last_insert_rowid
#define sqlite3_open_v2 sqlite_lib.sqlite3_open_v2
#define sqlite3_prepare_v2 sqlite_lib.sqlite3_prepare_v2
#define sqlite3_reset sqlite_lib.sqlite3_reset
#define sqlite3_result_int64 sqlite_lib.sqlite3_result_int64
#define sqlite3_result_null sqlite_lib.sqlite3_result_null
#define sqlite3_step sqlite_lib.sqlite3_step
#define sqlite3_value_blob sqlite_lib.sqlite3_value_blob
#define sqlite3_value_bytes sqlite_lib.sqlite3_value_bytes
#endif

#endif

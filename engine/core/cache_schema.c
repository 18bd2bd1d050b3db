/*
 * The cache file's format (cache_internal.h: cache_schema_setup).
 *
 * Format 2 (PRAGMA user_version 2): table llmring_entries, its rows
 * appended in id order, found through an index on k64, the key's first
 * 64 bits as a signed integer (cache_k64). Format 1 (user_version 0,
 * table llmring_responses, UNIQUE on the 32-byte key) cost a cold run
 * three times the index pages, and its constraints made every
 * multi-row INSERT keep a statement journal: two thirds of the writer's
 * page writes. A format 1 file is migrated in one transaction when it
 * may be written (another process doing the same waits for the lock,
 * then finds it done); opened read-only it is read as it is. A file of a
 * later format is refused, never changed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cache_filter.h"
#include "core/cache_internal.h"

#define FORMAT_NOW 2

int64_t cache_k64(const unsigned char key[32])
{
	return (int64_t)cache_filter_word(key); /* the filter's words are the index's */
}

/* llmring_k64(key): the migration's k64 of a format 1 row. */
static void k64_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	const unsigned char *key = sqlite3_value_blob(argv[0]);
	if (key && sqlite3_value_bytes(argv[0]) == 32)
		sqlite3_result_int64(ctx, cache_k64(key));
	else
		sqlite3_result_null(ctx); /* never found: no filter word, no key */
}

static int format_of(sqlite3 *db, int *format)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db,
	                            "SELECT (SELECT user_version FROM pragma_user_version),"
	                            " EXISTS(SELECT 1 FROM sqlite_master WHERE name='llmring_responses')",
	                            -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int uv = sqlite3_column_int(st, 0);
		*format = uv ? uv : sqlite3_column_int(st, 1) ? 1 : 0; /* 0: empty */
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

/* The table (a new file), or format 1's rows moved over (in their id
 * order, so ids still only grow), in one write transaction. */
static int make_format_2(sqlite3 *db, int *format, char *why, size_t why_cap)
{
	int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = format_of(db, format); /* again, under the lock: another process may have */
	if (rc == SQLITE_OK && *format < FORMAT_NOW) {
		/* No NOT NULL or UNIQUE: a statement that cannot fail half way
		 * needs no statement journal (the writer binds every column). */
		rc = sqlite3_exec(db,
		                  "CREATE TABLE IF NOT EXISTS llmring_entries("
		                  " id INTEGER PRIMARY KEY, k64 INTEGER, key BLOB, provider TEXT,"
		                  " endpoint TEXT, model TEXT, status INTEGER, request_id TEXT,"
		                  " body BLOB, created INTEGER);"
		                  "CREATE INDEX IF NOT EXISTS llmring_entries_k64 ON llmring_entries(k64);",
		                  NULL, NULL, NULL);
		if (rc == SQLITE_OK && *format == 1)
			rc = sqlite3_create_function(db, "llmring_k64", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
			                             NULL, k64_fn, NULL, NULL);
		if (rc == SQLITE_OK && *format == 1)
			rc = sqlite3_exec(db,
			                  "INSERT INTO llmring_entries(k64,key,provider,endpoint,model,status,"
			                  "request_id,body,created) SELECT llmring_k64(key),key,provider,endpoint,"
			                  "model,status,request_id,body,created FROM llmring_responses ORDER BY id;"
			                  "DROP TABLE llmring_responses;",
			                  NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, "PRAGMA user_version=2", NULL, NULL, NULL);
		if (rc == SQLITE_OK)
			*format = FORMAT_NOW;
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(db)) {
		snprintf(why, why_cap, "%s", sqlite3_errmsg(db)); /* before ROLLBACK's own */
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
	return rc;
}

int cache_schema_setup(sqlite3 *db, bool writes, int *format, const char **step, char *why,
                       size_t why_cap)
{
	*step = "setting WAL mode";
	/* A new file's pages (an existing file keeps its own): a WAL frame is
	 * two writes, and a row's share of them falls with the page's size. */
	if (writes)
		sqlite3_exec(db, "PRAGMA page_size=" CACHE_PAGE_SIZE, NULL, NULL, NULL);
	int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
	if (rc == SQLITE_READONLY && !writes)
		rc = SQLITE_OK; /* an existing read-only WAL file is still readable */
	if (rc == SQLITE_OK && writes)
		rc = sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return rc;
	*step = "reading its format";
	rc = format_of(db, format);
	if (rc == SQLITE_OK && *format > FORMAT_NOW) {
		snprintf(why, why_cap, "its format is %d, from a later llmring than this one (format %d); "
		         "it is left as it is", *format, FORMAT_NOW);
		return SQLITE_ERROR;
	}
	if (rc == SQLITE_OK && writes && *format < FORMAT_NOW) {
		*step = *format ? "moving it to format 2" : "creating its table";
		rc = make_format_2(db, format, why, why_cap);
	}
	if (rc == SQLITE_OK && *format == 0) {
		/* Read-only and empty: nothing to find until someone writes it. */
		*step = "reading its table";
		snprintf(why, why_cap, "it has no table of responses (it was never written)");
		return SQLITE_ERROR;
	}
	return rc;
}

/* The hash of the WAL-index header's two copies (fresh_tag). */
uint64_t cache_shm_tag(int fd)
{
	uint32_t h[24];
	if (fd < 0 || pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return 0; /* not there, or truncated: nothing is fresh */
	uint64_t t = 0xcbf29ce484222325ull;
	for (int i = 0; i < 24; i++)
		t = (t ^ h[i]) * 0x100000001b3ull;
	return t | 1;
}

int cache_shm_open(const char *path)
{
	char shm_path[4200];
	if (snprintf(shm_path, sizeof(shm_path), "%s-shm", path) >= (int)sizeof(shm_path))
		return -1;
	/* Non-blocking: a FIFO of that name must not hang the cache thread
	 * (pread then fails: no shortcut). */
	return open(shm_path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
}

const char *cache_schema_sql(int format, enum cache_sql which)
{
	static const char *const f2[] = {
		[SQL_GET] = ("SELECT key, status, request_id, body FROM llmring_entries WHERE k64=?1"
		             " ORDER BY id DESC"),
		[SQL_MAX_ID] = "SELECT max(id) FROM llmring_entries",
		[SQL_SCAN_ALL] = "SELECT id, k64 FROM llmring_entries",
		[SQL_SCAN_FROM] = "SELECT id, k64 FROM llmring_entries WHERE id > ?",
	};
	static const char *const f1[] = {
		[SQL_GET] = "SELECT key, status, request_id, body FROM llmring_responses WHERE key=?2",
		[SQL_MAX_ID] = "SELECT max(id) FROM llmring_responses",
		[SQL_SCAN_ALL] = "SELECT id, key FROM llmring_responses",
		[SQL_SCAN_FROM] = "SELECT id, key FROM llmring_responses WHERE id > ?",
	};
	return format == 1 ? f1[which] : f2[which];
}

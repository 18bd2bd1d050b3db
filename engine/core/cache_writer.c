/* The cache's writer thread (cache_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/cache_internal.h"

/* Rows per INSERT statement: a statement's start and end cost as much
 * as a row's insert, so most rows go 16 to a statement. */
#define ROWS_PER_INSERT 16

static int prepare_insert(sqlite3 *db, int rows, sqlite3_stmt **out)
{
	char sql[96 + ROWS_PER_INSERT * 22];
	int n = snprintf(sql, sizeof(sql), "INSERT INTO llmring_entries"
	                 "(k64,key,provider,endpoint,model,status,request_id,body,created) VALUES");
	for (int i = 0; i < rows; i++)
		n += snprintf(sql + n, sizeof(sql) - (size_t)n, "%s(?,?,?,?,?,?,?,?,?)", i ? "," : "");
	return sqlite3_prepare_v2(db, sql, n, out, NULL);
}

static void bind_row(sqlite3_stmt *st, int first, const struct cache_put *q, int64_t now)
{
	sqlite3_bind_int64(st, first, cache_k64(q->key));
	sqlite3_bind_blob(st, first + 1, q->key, 32, SQLITE_STATIC);
	sqlite3_bind_text(st, first + 2, q->provider, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, first + 3, cache_endpoint_name(q->endpoint), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, first + 4, q->model, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, first + 5, q->status);
	sqlite3_bind_text(st, first + 6, q->request_id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, first + 7, q->body, (int)q->body_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, first + 8, now);
}

static void writer_open(struct cache_writer *w)
{
	/* The cache thread has set the file up (WAL, the table): this
	 * connection only writes rows. */
	int rc = sqlite3_open_v2(w->path, &w->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(w->db, CACHE_BUSY_MS);
		/* No mapping, as for the cache thread's connection (a truncated
		 * file would be a SIGBUS); pages kept in a larger page cache. */
		rc = sqlite3_exec(w->db, "PRAGMA synchronous=NORMAL; PRAGMA mmap_size=0;"
		                  " PRAGMA cache_size=-32768", NULL, NULL, NULL);
	}
	/* A checkpoint (the WAL's pages copied into the file, two fsyncs)
	 * at 16 MiB of WAL with format 2's 16 KiB pages. */
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(w->db, "PRAGMA wal_autocheckpoint=1024", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = prepare_insert(w->db, 1, &w->put);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(w->db, "DELETE FROM llmring_entries WHERE k64=?1 AND key=?2 AND id<=?3",
		                        -1, &w->del, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(w->db, "SELECT max(id) FROM llmring_entries", -1, &w->max_id, NULL);
	if (rc == SQLITE_OK)
		rc = prepare_insert(w->db, ROWS_PER_INSERT, &w->put_many);
	if (rc != SQLITE_OK) {
		cache_problem(w->c, PROBLEM_WRITE,
		              "cache %s cannot be written (%s); requests are not affected", w->path,
		              w->db ? sqlite3_errmsg(w->db) : sqlite3_errstr(rc));
		sqlite3_finalize(w->put);
		sqlite3_finalize(w->put_many);
		sqlite3_finalize(w->del);
		sqlite3_finalize(w->max_id);
		sqlite3_close(w->db);
		w->put = w->put_many = w->del = w->max_id = NULL;
		w->db = NULL;
	}
}

/* The rows the batch's stores replace (a later store of a key is its
 * answer), only for keys that may have one (cache_put.maybe_dup): those
 * up to first, the largest id before the batch. After the inserts, so
 * the largest id is never one deleted: SQLite gives a new row the
 * largest id plus one, and an id deleted, then given to another key,
 * would be missed by the other processes' sets (they read ids past the
 * last they saw). */
static int delete_old(struct cache_writer *w, const struct cache_put *q, int64_t first)
{
	int rc = SQLITE_OK;
	for (; q && rc == SQLITE_OK; q = q->next) {
		if (!q->maybe_dup)
			continue;
		sqlite3_reset(w->del);
		sqlite3_bind_int64(w->del, 1, cache_k64(q->key));
		sqlite3_bind_blob(w->del, 2, q->key, 32, SQLITE_STATIC);
		sqlite3_bind_int64(w->del, 3, first);
		rc = sqlite3_step(w->del);
		rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
		sqlite3_reset(w->del);
	}
	return rc;
}

/* One batch, one transaction; *from, *to: the ids it took (from+1..to). */
static void write_batch(struct cache_writer *w, struct cache_put *p, int64_t *from, int64_t *to)
{
	*from = *to = 0;
	if (!w->db)
		return;
	unsigned n = 0;
	for (struct cache_put *q = p; q; q = q->next)
		n++;
	int rc = sqlite3_exec(w->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	int64_t now = (int64_t)time(NULL), first = 0;
	/* Under the write lock: the ids past it are this batch's. */
	if (rc == SQLITE_OK && (rc = sqlite3_step(w->max_id)) == SQLITE_ROW) {
		first = sqlite3_column_int64(w->max_id, 0);
		rc = SQLITE_OK;
	}
	sqlite3_reset(w->max_id);
	/* Rows in order (a later store of a key replaces an earlier one). */
	const struct cache_put *q = p;
	for (unsigned left = n; rc == SQLITE_OK && q;) {
		sqlite3_stmt *st = left >= ROWS_PER_INSERT ? w->put_many : w->put;
		int rows = st == w->put ? 1 : ROWS_PER_INSERT;
		sqlite3_reset(st);
		for (int i = 0; i < rows; i++, q = q->next)
			bind_row(st, 9 * i + 1, q, now);
		left -= (unsigned)rows;
		rc = sqlite3_step(st);
		rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
		sqlite3_reset(st);
	}
	if (rc == SQLITE_OK)
		rc = delete_old(w, p, first);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(w->db, "COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_OK) {
		*from = first;
		*to = sqlite3_last_insert_rowid(w->db);
		cache_count_stores(w->c, n);
	} else {
		cache_problem(w->c, PROBLEM_WRITE,
		              "cache %s could not store %u response%s (%s); requests are not affected",
		              w->path, n, n == 1 ? "" : "s", sqlite3_errmsg(w->db));
		sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
	}
}

static void *writer_thread(void *arg)
{
	struct cache_writer *w = arg;
	pthread_setname_np(pthread_self(), "llmring-cachew");
	writer_open(w);
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->batch && !w->stop)
			pthread_cond_wait(&w->wake, &w->lock);
		struct cache_put *b = w->batch;
		if (!b)
			break; /* stopped, nothing handed */
		w->batch = NULL;
		pthread_mutex_unlock(&w->lock);
		int64_t from, to;
		write_batch(w, b, &from, &to);
		pthread_mutex_lock(&w->lock);
		w->written = b;
		w->own_from = from;
		w->own_to = to;
		atomic_store(&w->done, true);
		pthread_cond_signal(&w->done_cond);
		pthread_mutex_unlock(&w->lock);
		cache_wake(w->c); /* the batch can be freed, the next handed */
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	sqlite3_finalize(w->put);
	sqlite3_finalize(w->put_many);
	sqlite3_finalize(w->del);
	sqlite3_finalize(w->max_id);
	sqlite3_close(w->db); /* the last connection to close checkpoints the WAL */
	w->put = w->put_many = w->del = w->max_id = NULL;
	w->db = NULL;
	return NULL;
}

int cache_writer_start(struct cache_writer *w, struct cache *c, const char *path)
{
	w->c = c;
	w->path = path;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	pthread_cond_init(&w->done_cond, NULL);
	w->started = pthread_create(&w->thread, NULL, writer_thread, w) == 0;
	if (!w->started)
		cache_problem(c, PROBLEM_WRITE, "cache %s cannot be written (no thread for it); requests "
		              "are not affected", path);
	return w->started ? 0 : -1;
}

void cache_writer_hand(struct cache_writer *w, struct cache_put *batch)
{
	pthread_mutex_lock(&w->lock);
	w->busy = true;
	if (w->started) {
		w->batch = batch;
		pthread_cond_signal(&w->wake);
	} else {
		w->written = batch; /* dropped: the problem was said at the start */
		atomic_store(&w->done, true);
	}
	pthread_mutex_unlock(&w->lock);
}

struct cache_put *cache_writer_take_done(struct cache_writer *w, bool wait, int64_t *from,
                                         int64_t *to)
{
	*from = *to = 0;
	if (!wait && !atomic_load(&w->done))
		return NULL;
	pthread_mutex_lock(&w->lock);
	while (wait && w->busy && !w->written)
		pthread_cond_wait(&w->done_cond, &w->lock);
	struct cache_put *b = w->written;
	if (b) {
		*from = w->own_from;
		*to = w->own_to;
		w->own_from = w->own_to = 0;
		w->written = NULL;
		w->busy = false;
		atomic_store(&w->done, false);
	}
	pthread_mutex_unlock(&w->lock);
	return b;
}

void cache_writer_stop(struct cache_writer *w)
{
	if (!w->c)
		return; /* never started */
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
		w->started = false;
	}
	pthread_cond_destroy(&w->done_cond);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	w->c = NULL;
}

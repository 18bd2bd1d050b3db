/*
 * The response cache (cache.h): SQLite on two threads of its own.
 * lr_submit keys each request (cache_key.c) and decides the misses that
 * the set of the file's keys rules out (cache_filter.h) itself: those
 * go to the network at once. The rest, and responses to store, arrive
 * on two lock-free stacks; the cache thread takes each whole, looks the
 * futures up in one read transaction, hands them back to the engine's
 * submit stack with one wake-up, and holds the responses in memory,
 * where lookups find them at once, until the writer thread
 * (cache_writer.c) has committed them, in big batches on a connection of
 * its own: no lookup waits for a commit. WAL mode and a busy timeout let
 * several processes share one file.
 */
#include "core/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/sqlite_lib.h"

#include "core/cache_filter.h"
#include "core/cache_internal.h"
#include "core/engine_internal.h"
#include "provider/provider.h"
#include "util/clock.h"
#include "util/test_hooks.h"

void cache_wake(struct cache *c)
{
	/* The pushes (lookups, stores, the writer's done) are seq_cst, as are
	 * this load and the thread's store of sleeping and loads of the
	 * queues: either the thread sees the push, or this sees it sleeping. */
	if (!atomic_load(&c->sleeping))
		return; /* awake: it looks at the queues again before sleeping */
	pthread_mutex_lock(&c->lock);
	pthread_cond_signal(&c->wake);
	pthread_mutex_unlock(&c->lock);
}

void cache_problem(struct cache *c, unsigned kind, const char *fmt, ...)
{
	atomic_fetch_add_explicit(&c->errors, 1, memory_order_relaxed);
	if (atomic_fetch_or(&c->seen, kind) & kind)
		return;
	int slot = kind == PROBLEM_OPEN ? 0 : kind == PROBLEM_READ ? 1 : 2;
	pthread_mutex_lock(&c->log_lock);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->log[slot], sizeof(c->log[slot]), fmt, ap);
	va_end(ap);
	c->log_pending |= kind;
	pthread_mutex_unlock(&c->log_lock);
	atomic_store(&c->has_log, 1);
	eventfd_signal(c->e->wake_fd); /* the engine's next turn logs it */
}

void cache_count_stores(struct cache *c, unsigned n)
{
	atomic_fetch_add_explicit(&c->stores, n, memory_order_relaxed);
}

void cache_flush_log(struct lr_engine *e)
{
	struct cache *c = e->cache;
	if (!c || !atomic_load_explicit(&c->has_log, memory_order_acquire))
		return;
	atomic_store(&c->has_log, 0);
	char lines[3][256];
	unsigned pending;
	pthread_mutex_lock(&c->log_lock);
	pending = c->log_pending;
	c->log_pending = 0;
	memcpy(lines, c->log, sizeof(lines));
	pthread_mutex_unlock(&c->log_lock);
	for (int i = 0; i < 3; i++)
		if ((pending & (1u << i)) && e->cfg.on_log)
			e->cfg.on_log(e->cfg.log_user, lines[i]);
}

/* ---- the file ---------------------------------------------------------- */

/* The filter off for good (this file): lookups SELECT as before. Its
 * memory stays until cache_free: a submitting thread may be reading it. */
void filter_give_up(struct cache *c)
{
	atomic_store(&c->filter_on, false);
	atomic_store(&c->fresh_tag, 0);
	c->filter_failed = true;
}

static void db_close(struct cache *c)
{
	filter_give_up(c);
	if (!c->db)
		return; /* never opened: SQLite may not even be loaded */
	sqlite3_finalize(c->get);
	sqlite3_finalize(c->version);
	sqlite3_close(c->db);
	c->get = c->version = NULL;
	c->db = NULL;
}

static int db_setup(struct cache *c, const char **stepp, char *why, size_t why_cap);

/* Opens (creates, when it may write) the file: WAL, the busy timeout,
 * the table. Failing, the cache stays off and says so once. */
static void db_open(struct cache *c)
{
	struct stat st;
	if (stat(c->path, &st) == 0 && !S_ISREG(st.st_mode)) {
		/* SQLite would put its journal beside it (/dev/null-journal). */
		cache_problem(c, PROBLEM_OPEN,
		              "cache %s cannot be used (it is not a regular file); requests go to the "
		              "network without it", c->path);
		return;
	}
	char loaded_why[192];
	if (!sqlite_lib_load(loaded_why, sizeof(loaded_why))) {
		cache_problem(c, PROBLEM_OPEN,
		              "cache %s cannot be used (SQLite could not be loaded: %s); requests go to "
		              "the network without it", c->path, loaded_why);
		return;
	}
	int flags = SQLITE_OPEN_NOMUTEX | (c->writes ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
	                                             : SQLITE_OPEN_READWRITE);
	if (c->writes) {
		/* Replies may be private: a new file is the user's alone (SQLite
		 * gives its -wal and -shm files the same mode). */
		int fd = open(c->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
	}
	int rc = sqlite3_open_v2(c->path, &c->db, flags, NULL);
	if (rc != SQLITE_OK && !c->writes) {
		/* A read-only cache may sit on read-only media. */
		sqlite3_close(c->db);
		rc = sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
	}
	const char *step = "opening it";
	char why[160] = ""; /* what SQLite has no message for */
	/* Another process setting up the same new file holds locks that the
	 * busy handler does not wait for (changing the journal mode): the
	 * setup is tried again, for as long as a busy lock is waited for. */
	bool opened = rc == SQLITE_OK;
	for (int tries = 0; opened && tries < CACHE_BUSY_MS / 10; tries++) {
		rc = db_setup(c, &step, why, sizeof(why));
		if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (rc != SQLITE_OK) {
		cache_problem(c, PROBLEM_OPEN,
		              "cache %s cannot be used (%s: %s); requests go to the network without it",
		              c->path, step,
		              why[0] ? why : c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		db_close(c);
	}
}

/* The steps after opening: WAL, the table, the statements. */
static int db_setup(struct cache *c, const char **stepp, char *why, size_t why_cap)
{
	sqlite3_finalize(c->get);
	sqlite3_finalize(c->version);
	c->get = c->version = NULL;
	sqlite3_busy_timeout(c->db, CACHE_BUSY_MS);
	/* A larger page cache, and no memory mapping: a mapped file that
	 * another process truncates ends this process with SIGBUS, where
	 * pread gives SQLite an error to report. */
	sqlite3_exec(c->db, "PRAGMA mmap_size=0; PRAGMA cache_size=-32768", NULL, NULL, NULL);
	int rc = cache_schema_setup(c->db, c->writes, &c->format, stepp, why, why_cap);
	if (rc == SQLITE_OK) {
		*stepp = "reading its table";
		rc = sqlite3_prepare_v2(c->db, cache_schema_sql(c->format, SQL_GET), -1, &c->get, NULL);
	}
	if (rc == SQLITE_OK) {
		sqlite3_stmt *max = NULL;
		if (sqlite3_prepare_v2(c->db, cache_schema_sql(c->format, SQL_MAX_ID), -1, &max, NULL) ==
		        SQLITE_OK &&
		    sqlite3_step(max) == SQLITE_ROW)
			c->filter_after = (uint64_t)sqlite3_column_int64(max, 0) / 16;
		sqlite3_finalize(max);
		if (sqlite3_prepare_v2(c->db, "PRAGMA data_version", -1, &c->version, NULL) != SQLITE_OK)
			c->filter_failed = true; /* SELECTs only */
	}
	return rc;
}

/* ---- the thread -------------------------------------------------------- */

static unsigned pend_slot(const unsigned char key[32])
{
	uint32_t h;
	memcpy(&h, key, sizeof(h)); /* a hash already */
	return h & (PEND_SLOTS - 1);
}

static struct cache_put *slots_find(struct cache_put **slots, const unsigned char key[32])
{
	for (unsigned i = pend_slot(key);; i = (i + 1) & (PEND_SLOTS - 1)) {
		struct cache_put *p = slots[i];
		if (!p || memcmp(p->key, key, 32) == 0)
			return p;
	}
}

/* The store of key not yet committed, or NULL: a pending one first (the
 * newer), then one of the writer's batch. */
static struct cache_put *pend_find(struct cache *c, const unsigned char key[32])
{
	struct cache_put *p = c->pend_n ? slots_find(c->slots[c->cur], key) : NULL;
	return p || !c->out_head ? p : slots_find(c->slots[!c->cur], key);
}

/* Empties the slots of a list's entries (only those: a table is 64 KiB). */
static void slots_clear(struct cache_put **slots, const struct cache_put *list)
{
	for (; list; list = list->next)
		for (unsigned i = pend_slot(list->key); slots[i]; i = (i + 1) & (PEND_SLOTS - 1))
			slots[i] = NULL;
}

static void pend_add(struct cache *c, struct cache_put *p)
{
	p->next = NULL;
	if (c->pend_tail)
		c->pend_tail->next = p;
	else
		c->pend_head = p;
	c->pend_tail = p;
	if (!c->pend_n++)
		c->pend_since_ns = clock_now_ns();
	c->pend_bytes += p->body_len;
	/* At most CACHE_WRITE_BATCH are pending: the table stays half full. */
	struct cache_put **slots = c->slots[c->cur];
	unsigned i = pend_slot(p->key);
	while (slots[i] && memcmp(slots[i]->key, p->key, 32) != 0)
		i = (i + 1) & (PEND_SLOTS - 1);
	slots[i] = p; /* the newer of two for one key is the answer (the filter has it: cache_store) */
}

static void filter_refresh(struct cache *c);

/* The writer's batch, once it is done with it: out of its table, freed.
 * false: the writer still has it (with wait, never). */
static bool out_collect(struct cache *c, bool wait)
{
	if (!c->out_head)
		return true;
	int64_t own_from, own_to;
	struct cache_put *p = cache_writer_take_done(&c->writer, wait, &own_from, &own_to);
	if (!p)
		return false;
	/* Rows own_from+1..own_to are this batch's, in the filter already:
	 * once the rows up to own_from have been read, the catch-up below
	 * need not read them back. */
	if (c->filter_max_id >= own_from && own_to > c->filter_max_id)
		c->filter_max_id = own_to;
	slots_clear(c->slots[!c->cur], p);
	c->out_head = NULL;
	while (p) {
		struct cache_put *next = p->next;
		free(p);
		p = next;
	}
	/* The commit changed the file's header: until the filter has caught
	 * up with it, every lookup would come here. */
	filter_refresh(c);
	return true;
}

/* Hands what is pending to the writer, in one transaction, once it is
 * done with the batch before (at once, with wait). */
static void pend_flush(struct cache *c, bool wait)
{
	if (!c->pend_n || !out_collect(c, wait))
		return;
	c->out_head = c->pend_head;
	c->cur = !c->cur;
	c->pend_head = c->pend_tail = NULL;
	c->pend_n = 0;
	c->pend_bytes = 0;
	cache_writer_hand(&c->writer, c->out_head);
}

/* Adds the rows past filter_max_id; in a read transaction, so the rows
 * read and the data_version they go with are one snapshot. */
static void filter_read_rows(struct cache *c, int64_t version)
{
	/* From nothing, the key's index holds all it needs (key, id), and is
	 * far smaller than the table; later, ids past the last seen are the
	 * rows appended since (ids only grow: a replaced row is deleted only
	 * below the largest id, cache_writer.c). */
	const char *sql = cache_schema_sql(c->format, c->filter_max_id ? SQL_SCAN_FROM : SQL_SCAN_ALL);
	sqlite3_stmt *scan = NULL;
	int rc = sqlite3_prepare_v2(c->db, sql, -1, &scan, NULL);
	if (rc == SQLITE_OK && c->filter_max_id)
		sqlite3_bind_int64(scan, 1, c->filter_max_id);
	int64_t max_id = c->filter_max_id;
	while (rc == SQLITE_OK && (rc = sqlite3_step(scan)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(scan, 0);
		uint64_t w = 0; /* format 2 reads k64, format 1 the key */
		if (sqlite3_column_type(scan, 1) == SQLITE_INTEGER) {
			w = (uint64_t)sqlite3_column_int64(scan, 1);
		} else {
			const void *key = sqlite3_column_blob(scan, 1);
			if (key && sqlite3_column_bytes(scan, 1) == 32)
				w = cache_filter_word(key);
		}
		rc = w && cache_filter_add(&c->filter, w, NULL) != 0 ? SQLITE_NOMEM : SQLITE_OK;
		if (id > max_id)
			max_id = id;
	}
	sqlite3_finalize(scan);
	if (rc != SQLITE_DONE) {
		filter_give_up(c);
		return;
	}
	c->filter_max_id = max_id;
	c->data_version = version;
}

/* In a read transaction, before a lookup batch's lookups or after the
 * writer committed: the filter built when it is due, and caught up when
 * another connection wrote (the writer's commits count: they are another
 * connection's). tag: shm_tag as read before the transaction began; the
 * filter is complete for it once this is done, and says so. */
static void filter_catch_up(struct cache *c, uint64_t tag)
{
	bool on = atomic_load_explicit(&c->filter_on, memory_order_relaxed);
	if (c->filter_failed || (!on && c->looked_up < c->filter_after))
		return;
	int64_t version = -1;
	if (sqlite3_step(c->version) == SQLITE_ROW)
		version = sqlite3_column_int64(c->version, 0);
	sqlite3_reset(c->version);
	if (version < 0) {
		filter_give_up(c);
		return;
	}
	/* Unchanged: only this connection (which never writes) ran since. */
	if (!on || version != c->data_version)
		filter_read_rows(c, version);
	if (c->filter_failed)
		return;
	/* This process's stores are in already (cache_store adds them, from
	 * the first, built or not). The tag before filter_on: a reader that
	 * sees filter_on and an older tag sends its lookup here. */
	atomic_store_explicit(&c->fresh_tag, tag, memory_order_release);
	atomic_store_explicit(&c->filter_on, true, memory_order_release);
	if (atomic_load(&c->filter_failed)) /* cache_store ran out of memory meanwhile */
		atomic_store(&c->filter_on, false);
}

/* The filter caught up in a transaction of its own (after a commit of
 * the writer's, and when the file is opened). */
static void filter_refresh(struct cache *c)
{
	if (!c->db || !c->reads || c->filter_failed)
		return;
	uint64_t tag = cache_shm_tag(c->shm_fd);
	if (sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return;
	filter_catch_up(c, tag);
	sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
}

/* One lookup: f->resp_body gets the stored body on a hit. */
static void lookup_one(struct cache *c, struct lr_future *f)
{
	struct cache_put *p = pend_find(c, f->cache_key);
	if (p) {
		buf_clear(&f->resp_body);
		if (buf_append(&f->resp_body, p->body, p->body_len) == 0) {
			f->result.http_status = p->status;
			snprintf(f->request_id, sizeof(f->request_id), "%s", p->request_id);
			f->cache_state = CACHE_HIT;
		}
		return;
	}
	if (!c->db || (atomic_load_explicit(&c->filter_on, memory_order_relaxed) &&
	                   !cache_filter_may_hold(&c->filter, cache_filter_word(f->cache_key))))
		return;
	sqlite3_reset(c->get);
	sqlite3_bind_int64(c->get, 1, cache_k64(f->cache_key));
	sqlite3_bind_blob(c->get, 2, f->cache_key, 32, SQLITE_STATIC);
	int rc;
	/* Rows of the key's 64 bits, newest first: the first with the whole key. */
	while ((rc = sqlite3_step(c->get)) == SQLITE_ROW) {
		const void *key = sqlite3_column_blob(c->get, 0);
		if (!key || sqlite3_column_bytes(c->get, 0) != 32 || memcmp(key, f->cache_key, 32) != 0)
			continue;
		const void *body = sqlite3_column_blob(c->get, 3);
		int len = sqlite3_column_bytes(c->get, 3);
		const unsigned char *rid = sqlite3_column_text(c->get, 2);
		buf_clear(&f->resp_body);
		if (body && len > 0 && buf_append(&f->resp_body, body, (size_t)len) == 0) {
			f->result.http_status = sqlite3_column_int(c->get, 1);
			snprintf(f->request_id, sizeof(f->request_id), "%s", rid ? (const char *)rid : "");
			f->cache_state = CACHE_HIT;
		}
		rc = SQLITE_DONE;
		break;
	}
	if (rc != SQLITE_DONE) {
		cache_problem(c, PROBLEM_READ, "cache %s could not be read (%s); those requests go to the network",
		              c->path, sqlite3_errmsg(c->db));
		if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) {
			sqlite3_reset(c->get);
			db_close(c); /* a corrupt file gives only more errors */
			return;
		}
	}
	sqlite3_reset(c->get);
}

/* The futures of one round (keyed by cache_submit), FIFO: looked up,
 * handed back to the engine in one push. */
static void lookup_batch(struct cache *c, struct lr_future *fifo)
{
	struct lr_future *chain = NULL, *last = NULL; /* newest first, for stack_push */
	uint64_t tag = cache_shm_tag(c->shm_fd); /* before the snapshot */
	bool txn = c->db && sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
	if (txn)
		filter_catch_up(c, tag);
	while (fifo) {
		struct lr_future *f = fifo;
		fifo = f->next;
		f->cache_state = CACHE_MISS;
		c->looked_up++;
		lookup_one(c, f);
		f->next = chain;
		chain = f;
		if (!last)
			last = f;
	}
	if (txn && c->db)
		sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
	if (chain && stack_push(&c->e->submit_head, chain, &last->next))
		eventfd_signal(c->e->wake_fd);
}

/* Reverses a stack of puts into arrival order. */
static struct cache_put *puts_fifo(struct cache_put *p)
{
	struct cache_put *fifo = NULL;
	while (p) {
		struct cache_put *next = p->next;
		p->next = fifo;
		fifo = p;
		p = next;
	}
	return fifo;
}

static void *cache_thread(void *arg)
{
	struct cache *c = arg;
	pthread_setname_np(pthread_self(), "llmring-cache");
	db_open(c);
	if (c->db && c->reads)
		c->shm_fd = cache_shm_open(c->path);
	if (c->db && c->writes)
		cache_writer_start(&c->writer, c, c->path);
	filter_refresh(c); /* built now when the file is new or small (filter_after 0) */
	for (;;) {
		/* Lookups taken first, stores added first: a request sent after
		 * another one completed finds its response (its store was pushed
		 * before its lookup, so it is in this round or an earlier one). */
		/* Read before the stores are taken: the stores of a flush asked
		 * for are all in this round or an earlier one. */
		uint64_t flush = atomic_load(&c->flush_asked);
		struct lr_future *fs = stack_take_fifo(&c->lookup_head, offsetof(struct lr_future, next));
		struct cache_put *ps = puts_fifo(atomic_exchange_explicit(&c->put_head, NULL,
		                                                          memory_order_acquire));
		while (ps) {
			struct cache_put *next = ps->next;
			if (c->pend_n == CACHE_WRITE_BATCH || c->pend_bytes >= CACHE_WRITE_BYTES)
				pend_flush(c, true); /* the writer is behind: held up here, stores kept */
			if (c->db)
				pend_add(c, ps);
			else
				free(ps); /* no file to write it to: not an answer either */
			ps = next;
		}
		if (fs)
			lookup_batch(c, fs);
		if (flush != c->flush_done) { /* lr_engine_cache_flush: written, then answered */
			pend_flush(c, true);
			out_collect(c, true);
			pthread_mutex_lock(&c->lock);
			c->flush_done = flush;
			pthread_cond_broadcast(&c->flushed);
			pthread_mutex_unlock(&c->lock);
		}
		out_collect(c, false);
		bool due = c->pend_n &&
		           clock_now_ns() - c->pend_since_ns >= CACHE_WRITE_DELAY_MS * 1000000ull;
		if (c->pend_n == CACHE_WRITE_BATCH || c->pend_bytes >= CACHE_WRITE_BYTES || due)
			pend_flush(c, false); /* when the writer is free: no lookup waits for it */
		if (fs)
			continue;
		pthread_mutex_lock(&c->lock);
		bool stop = c->stop;
		atomic_store(&c->sleeping, true);
		if (!stop && !atomic_load(&c->lookup_head) && !atomic_load(&c->put_head) &&
		    !atomic_load(&c->writer.done) && atomic_load(&c->flush_asked) == c->flush_done) {
			if (c->pend_n) {
				/* Wakes to write what is pending, if nothing else comes. */
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				ts.tv_nsec += CACHE_WRITE_DELAY_MS * 1000000L;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				pthread_cond_timedwait(&c->wake, &c->lock, &ts);
			} else {
				pthread_cond_wait(&c->wake, &c->lock);
			}
		}
		atomic_store(&c->sleeping, false);
		pthread_mutex_unlock(&c->lock);
		if (stop && !atomic_load(&c->lookup_head) && !atomic_load(&c->put_head))
			break;
	}
	/* Everything stored is written before the engine is gone. */
	pend_flush(c, true);
	out_collect(c, true);
	pthread_mutex_lock(&c->lock);
	c->flush_done = atomic_load(&c->flush_asked);
	pthread_cond_broadcast(&c->flushed);
	pthread_mutex_unlock(&c->lock);
	cache_writer_stop(&c->writer);
	db_close(c);
	return NULL;
}

/* ---- the engine's side ------------------------------------------------- */

int cache_new(struct lr_engine *e, struct cache **out, struct error_info *err)
{
	*out = NULL;
	const char *path = e->cfg.cache_path;
	int mode = e->cfg.cache_mode;
	if (!path || !path[0] || mode == LR_CACHE_OFF)
		return 0;
	if (mode < LR_CACHE_READWRITE || mode > LR_CACHE_OFF)
		return error_set(err, LR_EINVAL, 0, "cache_mode %d is not an enum lr_cache_mode", mode);
	struct cache *c = calloc(1, sizeof(*c)); /* owner: the engine (e->cache) */
	if (!c || !(c->path = strdup(path))) {
		free(c);
		return error_set(err, LR_ENOMEM, 0, "out of memory for the cache");
	}
	c->e = e;
	c->shm_fd = -1;
	c->reads = mode != LR_CACHE_WRITE;
	c->writes = mode != LR_CACHE_READ;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->log_lock, NULL);
	pthread_cond_init(&c->wake, NULL);
	pthread_cond_init(&c->flushed, NULL);
	cache_filter_init(&c->filter);
	*out = c;
	return 0;
}

int cache_start(struct cache *c, struct error_info *err)
{
	int rc = pthread_create(&c->thread, NULL, cache_thread, c);
	if (rc)
		return error_set(err, error_from_errno(-rc), rc, "starting the cache's thread failed: %s",
		                 strerror(rc));
	c->started = true;
	return 0;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	if (c->started) {
		pthread_mutex_lock(&c->lock);
		c->stop = true;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->thread, NULL);
	}
	if (c->shm_fd >= 0)
		close(c->shm_fd);
	cache_filter_free(&c->filter);
	pthread_cond_destroy(&c->wake);
	pthread_cond_destroy(&c->flushed);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->log_lock);
	free(c->path);
	free(c);
}

/* A miss the filter rules out, here and now: it is complete (filter_on),
 * for the file as it is (the -shm header unchanged since it caught up),
 * and has no entry of the key's first 64 bits. */
static bool miss_ruled_out(struct cache *c, const unsigned char key[32])
{
	if (!atomic_load_explicit(&c->filter_on, memory_order_acquire))
		return false;
	uint64_t tag = atomic_load_explicit(&c->fresh_tag, memory_order_acquire);
	if (!tag || cache_shm_tag(c->shm_fd) != tag)
		return false;
	return !cache_filter_may_hold(&c->filter, cache_filter_word(key));
}

/* A test counts the lookups that go to the thread (util/test_hooks.h).
 * Weak, so never inlined away. */
__attribute__((weak)) void cache_lookup_queued_hook(void)
{
}

bool cache_submit(struct cache *c, struct lr_future *f)
{
	int ret = cache_make_key(c->e, f, f->cache_key);
	buf_free(&f->key_body);
	if (ret) {
		f->cache_state = CACHE_NONE; /* no canonical form: not cached */
		return false;
	}
	f->cache_state = CACHE_MISS;
	if (!c->reads)
		return false; /* write-only: stored, never looked up */
	atomic_fetch_add_explicit(&c->lookups, 1, memory_order_relaxed);
	if (miss_ruled_out(c, f->cache_key))
		return false; /* straight to the network; only its store is the cache's */
	f->cache_state = CACHE_LOOKUP;
	cache_lookup_queued_hook();
	struct lr_future *old = atomic_load_explicit(&c->lookup_head, memory_order_relaxed);
	do {
		f->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&c->lookup_head, &old, f, memory_order_seq_cst,
	                                                memory_order_relaxed));
	if (old)
		return true; /* whoever pushed first wakes it */
	if (engine_on_owner(c->e))
		c->kick = true;
	else
		cache_wake(c);
	return true;
}

void cache_kick(struct lr_engine *e)
{
	struct cache *c = e->cache;
	if (c && c->kick) {
		c->kick = false;
		cache_wake(c);
	}
}

void cache_count_hit(struct cache *c)
{
	atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
}

void cache_count_saved(struct cache *c, double usd)
{
	double v = atomic_load_explicit(&c->saved, memory_order_relaxed);
	atomic_store_explicit(&c->saved, v + usd, memory_order_relaxed);
}

void cache_read_stats(struct cache *c, lr_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	out->lookups = atomic_load_explicit(&c->lookups, memory_order_relaxed);
	out->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
	out->stores = atomic_load_explicit(&c->stores, memory_order_relaxed);
	out->errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
	out->cost_saved_usd = atomic_load_explicit(&c->saved, memory_order_relaxed);
}

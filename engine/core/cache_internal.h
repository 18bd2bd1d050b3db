/*
 * What cache.c (the cache thread: keys, lookups, pending stores),
 * cache_writer.c (the writer thread: the INSERTs), cache_store.c (what
 * is queued for storing, from any thread) and cache_key.c share.
 */
#ifndef LR_CACHE_INTERNAL_H
#define LR_CACHE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cache_filter.h"
#include "core/sqlite_lib.h"
#include "llmring.h"

struct cache;
struct lr_engine;
struct lr_future;

/* Stores written together: a transaction at this many, or once the
 * oldest has waited CACHE_WRITE_DELAY_MS, or when the cache stops. */
#define CACHE_WRITE_BATCH 4096
#define CACHE_WRITE_DELAY_MS 50
#define CACHE_WRITE_BYTES (16u << 20) /* or once the bodies pending hold this much */
#define PEND_SLOTS (2 * CACHE_WRITE_BATCH)

/* Another process holding the write lock longer than this is a problem
 * to report, not a reason to hold requests back further. */
#define CACHE_BUSY_MS 5000

/* A new file's page size (cache_schema.c). */
#define CACHE_PAGE_SIZE "16384"

/* What the cache reports, each once. */
enum cache_problem { PROBLEM_OPEN = 1, PROBLEM_READ = 2, PROBLEM_WRITE = 4 };

/* One success to store; owner: the store stack, then the cache thread
 * (the writer borrows a handed batch until it is done with it). */
struct cache_put {
	struct cache_put *next;
	unsigned char key[32];
	int status;
	const char *provider;       /* static: the provider row's name */
	enum lr_endpoint endpoint;
	char model[128];
	char request_id[128];
	bool maybe_dup;             /* the key may have a row already: the writer deletes it first */
	size_t body_len;
	char body[];
};

/* The file's format (cache_schema.c): WAL mode, synchronous NORMAL when
 * written, format 2's table (a format 1 file migrated when it may be
 * written). *format: 1 or 2 (the SQL to use). An SQLite code, with the
 * step that failed in *step, and why in why when SQLite has no message. */
int cache_schema_setup(sqlite3 *db, bool writes, int *format, const char **step, char *why,
                       size_t why_cap);
enum cache_sql {
	SQL_GET,       /* ?1 k64, ?2 key: rows (key, status, request_id, body), newest first */
	SQL_MAX_ID,
	SQL_SCAN_ALL,  /* (id, k64 or key) of every row */
	SQL_SCAN_FROM, /* the same past the id bound to ? */
};
const char *cache_schema_sql(int format, enum cache_sql which);
/* The -shm file opened for reading (cache_schema.c), or -1 (no such file
 * yet). Read with pread, never mapped: SQLite truncates the file when a
 * connection opens it with no other process holding it, and a mapping
 * read then is a SIGBUS (seen with two processes sharing a cache). */
int cache_shm_open(const char *path);
/* A hash of the WAL-index header's two copies at the file's start,
 * rewritten by every commit (never 0); 0 when fd is -1 or the header
 * cannot be read whole. */
uint64_t cache_shm_tag(int fd);
/* The key's k64 column (format 2). */
int64_t cache_k64(const unsigned char key[32]);

/*
 * The writer: a thread with a connection of its own that writes the
 * batches the cache thread hands it, one at a time, each in one
 * transaction. A commit (thousands of WAL pages) and the checkpoint's
 * fsync took the cache thread tens of milliseconds, and every lookup
 * queued behind them: a cold run stalled there more than it computed.
 */
struct cache_writer {
	struct cache *c;            /* borrowed: the cache it writes for */
	const char *path;           /* borrowed: the cache's */
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;       /* with wake and done_cond */
	pthread_cond_t wake, done_cond;
	struct cache_put *batch;    /* under lock: handed, not yet taken by the thread */
	struct cache_put *written;  /* under lock: done with, for the cache thread to free */
	bool busy;                  /* under lock: a batch handed and not yet taken back */
	bool stop;                  /* under lock */
	int64_t own_from, own_to;   /* under lock: the written batch's ids are own_from+1..own_to */
	_Atomic bool done;          /* written is set: the cache thread looks without the lock */
	sqlite3 *db;                /* owner: the writer thread; NULL: stores dropped */
	sqlite3_stmt *put, *put_many; /* owner: the writer thread; one row, ROWS_PER_INSERT rows */
	sqlite3_stmt *del;          /* owner: the writer thread; a key's old rows */
	sqlite3_stmt *max_id;       /* owner: the writer thread */
};

/* Starts w's thread for c's file (it opens its own connection there). 0,
 * or -1: then cache_writer_hand drops what it is handed. */
int cache_writer_start(struct cache_writer *w, struct cache *c, const char *path);
/* Hands a batch (arrival order) to the writer, which must not be busy. */
void cache_writer_hand(struct cache_writer *w, struct cache_put *batch);
/* The batch handed last once the writer is done with it (written, or
 * dropped after a problem it reported), else NULL; with wait, waits for
 * it. NULL at once when none is out. Its rows' ids (the file's largest
 * before it, and its last: *from = *to when nothing was written). */
struct cache_put *cache_writer_take_done(struct cache_writer *w, bool wait, int64_t *from,
                                         int64_t *to);
/* Ends the thread (nothing may be out) and frees what it holds. */
void cache_writer_stop(struct cache_writer *w);

/*
 * The cache: the engine's (e->cache), worked by its thread (cache.c) and
 * the writer's; stores are queued from any thread (cache_store.c).
 */
struct cache {
	struct lr_engine *e;        /* borrowed: the engine that owns this cache */
	char *path;                 /* owner: the cache */
	bool reads, writes;
	pthread_t thread;
	bool started;               /* thread runs (cache_start) */
	pthread_mutex_t lock;       /* with wake: the thread's sleep */
	pthread_cond_t wake;
	/* Set (under lock) just before the thread checks its queues a last
	 * time and sleeps: a push wakes it only then, so a busy thread costs
	 * the engine no lock (the lock was contended at every push). */
	_Atomic bool sleeping;
	bool stop;                  /* under lock */
	_Atomic(struct lr_future *) lookup_head;
	/* Engine thread: lookups were pushed onto an empty queue during this
	 * turn; the thread is woken once, before the loop waits (a wake-up
	 * per submission cost the loop more than the lookups). */
	bool kick;
	_Atomic(struct cache_put *) put_head;
	/* lr_engine_cache_flush: a count of the waits asked for (raised
	 * under lock, read by the thread without it) and the last one the
	 * thread answered (under lock), once what was queued before it was
	 * committed; `flushed` wakes the waiters. */
	_Atomic uint64_t flush_asked;
	uint64_t flush_done;
	pthread_cond_t flushed;
	/* The thread's own. */
	sqlite3 *db;                /* owner: the thread; NULL: no usable file */
	sqlite3_stmt *get;          /* owner: the thread */
	sqlite3_stmt *version;      /* owner: the thread; PRAGMA data_version */
	int format;                 /* the file's (cache_schema.c): 1 read as it is, or 2 */
	/* Stores not yet written, in arrival order, and by key for lookups:
	 * written in big transactions (each one rewrites the index pages it
	 * touches: a few rows per transaction made a cold run several times
	 * slower than no cache), yet found by a lookup at once. Two tables:
	 * the stores pending (slots[cur]), and the batch the writer has
	 * (slots[!cur]), found in memory until its commit is done. */
	struct cache_writer writer;
	struct cache_put *pend_head, *pend_tail; /* owner: the thread */
	struct cache_put *out_head; /* owner: the thread; lent to the writer */
	struct cache_put *slots[2][PEND_SLOTS]; /* borrowed from those lists */
	unsigned cur;
	unsigned pend_n;
	size_t pend_bytes;          /* their bodies' bytes */
	uint64_t pend_since_ns;     /* when the oldest pending store arrived */
	/* The keys the file holds (cache_filter.h): a miss without a SELECT,
	 * and without a trip to this thread (cache_submit). Built once this
	 * process has looked up a sixteenth as many keys as the file had rows
	 * when opened (a reading of every key then pays; a new file's at
	 * once); kept whole with this process's stores (cache_store adds
	 * them before the request completes), and with other connections'
	 * rows (ids past filter_max_id) whenever PRAGMA data_version says
	 * one committed. */
	struct cache_filter filter; /* owner: the cache; any thread reads it */
	_Atomic bool filter_on;     /* complete for fresh_tag's file: a key not in it is not there */
	_Atomic bool filter_failed; /* could not be built or kept: SELECTs only */
	/* Whether the file changed since the filter was last caught up, for
	 * any thread and without SQLite (whose connection is this thread's):
	 * the WAL-index header at the start of the -shm file, which every
	 * commit of every process rewrites (https://sqlite.org/walformat.html,
	 * "the WAL-index header": two copies of 48 bytes). fresh_tag is a hash
	 * of it as read before the filter's last catch-up began; a submission
	 * that reads the same hash now knows the filter is complete. */
	int shm_fd;                 /* owner: the cache (closed in cache_free); -1: no shortcut */
	_Atomic uint64_t fresh_tag; /* 0: not fresh */
	int64_t filter_max_id;      /* rows up to this id are in it */
	int64_t data_version;       /* PRAGMA data_version it is complete for */
	uint64_t filter_after;      /* lookups before it is built */
	uint64_t looked_up;         /* lookups so far */
	/* Problems for on_log: set by the thread, logged by the engine's. */
	pthread_mutex_t log_lock;
	char log[3][256];           /* under log_lock; one per enum cache_problem bit */
	unsigned log_pending;       /* under log_lock */
	_Atomic unsigned seen;      /* problems met (each is logged once) */
	_Atomic int has_log;
	/* Counts (lr_cache_stats). */
	_Atomic uint64_t lookups, hits, stores, errors;
	_Atomic double saved;       /* written by the engine thread only */
};

/* The filter off for good (this file): lookups SELECT as before. Its
 * memory stays until cache_free: a submitting thread may be reading it. */
void filter_give_up(struct cache *c);

/* Any thread: counted always, passed to on_log the first time of its kind. */
__attribute__((format(printf, 3, 4))) void cache_problem(struct cache *c, unsigned kind,
                                                         const char *fmt, ...);
void cache_count_stores(struct cache *c, unsigned n);
void cache_count_hit(struct cache *c);
void cache_wake(struct cache *c);
const char *cache_endpoint_name(enum lr_endpoint ep);
/* f's key (cache_key.c), on the submitting thread: 0, or LR_EPROTO when
 * its body has no canonical form. */
int cache_make_key(const struct lr_engine *e, struct lr_future *f, unsigned char key[32]);

#endif

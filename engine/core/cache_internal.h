/*
 * What cache.c (the cache thread: keys, lookups, pending stores) and
 * cache_writer.c (the writer thread: the INSERTs) share.
 */
#ifndef LR_CACHE_INTERNAL_H
#define LR_CACHE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <sqlite3.h>

#include "llmring.h"

struct cache;

/* Another process holding the write lock longer than this is a problem
 * to report, not a reason to hold requests back further. */
#define CACHE_BUSY_MS 5000

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
	size_t body_len;
	char body[];
};

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
	_Atomic bool done;          /* written is set: the cache thread looks without the lock */
	sqlite3 *db;                /* owner: the writer thread; NULL: stores dropped */
	sqlite3_stmt *put, *put_many; /* owner: the writer thread; one row, ROWS_PER_INSERT rows */
};

/* Starts w's thread for c's file (it opens its own connection there). 0,
 * or -1: then cache_writer_hand drops what it is handed. */
int cache_writer_start(struct cache_writer *w, struct cache *c, const char *path);
/* Hands a batch (arrival order) to the writer, which must not be busy. */
void cache_writer_hand(struct cache_writer *w, struct cache_put *batch);
/* The batch handed last once the writer is done with it (written, or
 * dropped after a problem it reported), else NULL; with wait, waits for
 * it. NULL at once when none is out. */
struct cache_put *cache_writer_take_done(struct cache_writer *w, bool wait);
/* Ends the thread (nothing may be out) and frees what it holds. */
void cache_writer_stop(struct cache_writer *w);

/* Any thread: counted always, passed to on_log the first time of its kind. */
__attribute__((format(printf, 3, 4))) void cache_problem(struct cache *c, unsigned kind,
                                                         const char *fmt, ...);
void cache_count_stores(struct cache *c, unsigned n);
void cache_count_hit(struct cache *c);
void cache_wake(struct cache *c);
const char *cache_endpoint_name(enum lr_endpoint ep);

#endif

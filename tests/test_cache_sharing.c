/*
 * The response cache's shortcuts must not change what it answers: a
 * miss that the set of the file's keys rules out skips the SELECT, and
 * stores are written later, in batches, by a thread of their own. So: a
 * row another connection or process writes after this one opened (and
 * built its set) is still found; stores held in memory are on disk once
 * the engine is destroyed, and on disk while it runs once a batch is
 * full or has waited; rows in the file when it is opened are found
 * before and after the set is built.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "llmring.h"
#include "test_server.h"

static _Atomic unsigned served_n; /* requests that reached the server */
static _Atomic int gate_closed;   /* the server holds its answers while set */
static _Thread_local char reply_buf[2048];

/* Lookups that went to the cache's thread (the library's hook counts nothing). */
static _Atomic unsigned queued;
void cache_lookup_queued_hook(void)
{
	atomic_fetch_add(&queued, 1);
}

/* Every answer names the request's number: a second answer differs.
 * A "probe" fails (500: never stored). */
static void handler(void *arg, const struct ts_request *rq, struct ts_reply *reply)
{
	(void)arg;
	while (atomic_load(&gate_closed))
		usleep(1000);
	unsigned n = atomic_fetch_add(&served_n, 1) + 1;
	if (strstr(rq->body, "probe")) {
		static const char fail[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: "
		                           "application/json\r\nContent-Length: 2\r\n\r\n{}";
		reply->data = fail;
		reply->len = sizeof(fail) - 1;
		return;
	}
	char body[512];
	int bl = snprintf(body, sizeof(body),
	                  "{\"id\":\"chatcmpl-%u\",\"object\":\"chat.completion\",\"model\":\"m-1\","
	                  "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
	                  "\"content\":\"answer %u\"},\"finish_reason\":\"stop\"}],"
	                  "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}",
	                  n, n);
	reply->len = (size_t)snprintf(reply_buf, sizeof(reply_buf),
	                              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	                              "Content-Length: %d\r\n\r\n%s",
	                              bl, body);
	reply->data = reply_buf;
}

static struct test_server *srv;
static char url[64], path[64];
static int logs;

static void remove_db(void)
{
	char p[80];
	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

static int setup(void **state)
{
	(void)state;
	assert_int_equal(test_server_start(handler, NULL, &srv), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1", test_server_port(srv));
	snprintf(path, sizeof(path), "/tmp/llmring-test-cache-sharing-%d.db", (int)getpid());
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_server_stop(srv);
	remove_db();
	return 0;
}

static int fresh(void **state)
{
	(void)state;
	remove_db();
	logs = 0;
	return 0;
}

#if defined(__SANITIZE_THREAD__)
#define SKIP_FORK_UNDER_TSAN() skip() /* TSan cannot follow a threaded child of a fork */
#else
#define SKIP_FORK_UNDER_TSAN() ((void)0)
#endif

static void on_log(void *user, const char *msg)
{
	(void)user;
	logs++;
	fprintf(stderr, "on_log: %s\n", msg);
}

/* The engines of this test: the test server, no retries, the file. */
static lr_config config_of(int mode)
{
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.api_key = "k";
	cfg.max_retries = 0;
	cfg.cache_path = path;
	cfg.cache_mode = mode;
	cfg.on_log = on_log;
	return cfg;
}

static lr_engine *engine(int mode)
{
	lr_config cfg = config_of(mode);
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	return e;
}

static void body_of(char *out, size_t cap, const char *tag, int i)
{
	snprintf(out, cap, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"%s %d\"}]}",
	         tag, i);
}

/* 1 when answered from the cache, 0 when it went to the server. */
static int ask(lr_engine *e, const char *tag, int i)
{
	char body[160];
	body_of(body, sizeof(body), tag, i);
	lr_request *rq = lr_request_new(NULL);
	assert_int_equal(lr_request_set_body(rq, body, strlen(body)), 0);
	lr_future *f = lr_complete(e, rq, 10000);
	const lr_result *r = lr_future_result(f);
	assert_non_null(r);
	assert_int_equal(r->error, LR_OK);
	int cached = r->cached;
	lr_future_release(f);
	return cached;
}

/* n requests at once; how many were answered from the cache. */
static int ask_many(lr_engine *e, const char *tag, int n)
{
	lr_future **fs = calloc((size_t)n, sizeof(*fs)); /* owner: this function */
	assert_non_null(fs);
	for (int i = 0; i < n; i++) {
		char body[160];
		body_of(body, sizeof(body), tag, i);
		lr_request *rq = lr_request_new(NULL);
		lr_request_set_body(rq, body, strlen(body));
		fs[i] = lr_submit(e, rq);
	}
	assert_int_equal(lr_wait_all(fs, n, 60000), n);
	int cached = 0;
	for (int i = 0; i < n; i++) {
		assert_int_equal(lr_future_result(fs[i])->error, LR_OK);
		cached += lr_future_result(fs[i])->cached;
		lr_future_release(fs[i]);
	}
	free(fs);
	return cached;
}

/* Rows in the file, read by a connection of the test's own. */
static int rows_on_disk(void)
{
	sqlite3 *db = NULL;
	int n = -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
		sqlite3_stmt *st = NULL;
		if (sqlite3_prepare_v2(db, "SELECT count(*) FROM llmring_entries", -1, &st, NULL) ==
		        SQLITE_OK &&
		    sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return n;
}

/* A and B share the file: A opens it (empty, so A's set of keys is built
 * at its first lookup and every miss after skips the SELECT); B, another
 * connection, stores rows; A must find them. */
static void test_a_row_another_connection_writes_later_is_found(void **state)
{
	(void)state;
	lr_engine *a = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask(a, "a-own", 0), 0);
	assert_int_equal(ask(a, "a-own", 0), 1); /* A's own store: found in memory */
	lr_engine *b = engine(LR_CACHE_READWRITE);
	for (int i = 0; i < 20; i++)
		assert_int_equal(ask(b, "from-b", i), 0);
	lr_engine_destroy(b); /* B's stores are committed */
	unsigned before = atomic_load(&served_n);
	for (int i = 0; i < 20; i++)
		assert_int_equal(ask(a, "from-b", i), 1);
	assert_int_equal(atomic_load(&served_n), before);
	/* And again after more of A's own stores (commits of A's writer
	 * change what A's reader sees, as another process's would). */
	assert_int_equal(ask_many(a, "a-more", 300), 0);
	b = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask(b, "from-b-later", 0), 0);
	lr_engine_destroy(b);
	assert_int_equal(ask(a, "from-b-later", 0), 1);
	assert_int_equal(ask(a, "a-more", 299), 1);
	lr_engine_destroy(a);
	assert_int_equal(logs, 0);
}

/* The same with a second process, which writes while this one runs. */
static pid_t spawn_asker(const char *tag, int n, int want_hits);

static void test_a_row_another_process_writes_later_is_found(void **state)
{
	(void)state;
	SKIP_FORK_UNDER_TSAN();
	lr_engine *a = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask_many(a, "before", 50), 0);
	pid_t pid = spawn_asker("child", 100, 0);
	assert_true(pid > 0);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	unsigned before = atomic_load(&served_n);
	assert_int_equal(ask_many(a, "child", 100), 100);
	assert_int_equal(ask_many(a, "before", 50), 50);
	assert_int_equal(atomic_load(&served_n), before);
	lr_engine_destroy(a);
}

/* Stores held in memory (well inside the write delay) are on disk once
 * the engine is destroyed: none is lost at a normal end. */
static void test_stores_are_on_disk_when_the_engine_is_destroyed(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask_many(e, "kept", 200), 0);
	lr_engine_destroy(e);
	assert_int_equal(rows_on_disk(), 200);
	/* A write-only engine too, and a new engine finds them all. */
	e = engine(LR_CACHE_WRITE);
	assert_int_equal(ask_many(e, "kept-w", 30), 0);
	lr_engine_destroy(e);
	assert_int_equal(rows_on_disk(), 230);
	unsigned before = atomic_load(&served_n);
	e = engine(LR_CACHE_READ);
	assert_int_equal(ask_many(e, "kept", 200), 200);
	assert_int_equal(ask_many(e, "kept-w", 30), 30);
	lr_engine_destroy(e);
	assert_int_equal(atomic_load(&served_n), before);
	assert_int_equal(logs, 0);
}

/* More stores than one batch holds (4,096): written while the engine
 * runs, in more than one transaction, each found by lookups throughout. */
static void test_full_batches_are_written_while_the_engine_runs(void **state)
{
	(void)state;
	enum { N = 5000 };
	lr_engine *e = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask_many(e, "full", N), 0);
	/* All of them hits at once, whether pending, being written or written. */
	assert_int_equal(ask_many(e, "full", N), N);
	int on_disk = 0;
	for (int tries = 0; tries < 500 && (on_disk = rows_on_disk()) != N; tries++)
		usleep(10000);
	assert_int_equal(on_disk, N); /* the engine still runs */
	lr_cache_stats st;
	lr_engine_cache_stats(e, &st);
	assert_int_equal(st.stores, N);
	assert_int_equal(st.hits, N);
	lr_engine_destroy(e);
	assert_int_equal(logs, 0);
}

/* A file with rows when opened: its set of keys is built only after a
 * sixteenth as many lookups as it has rows; rows are found before (by
 * SELECT) and after (through the set), and so are rows written meanwhile. */
static void test_rows_in_the_file_are_found_before_and_after_the_set_is_built(void **state)
{
	(void)state;
	lr_engine *e = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask_many(e, "old", 640), 0); /* the set is built after 40 lookups */
	lr_engine_destroy(e);
	e = engine(LR_CACHE_READWRITE);
	unsigned before = atomic_load(&served_n);
	for (int i = 0; i < 60; i++) /* 40 by SELECT, the rest through the set */
		assert_int_equal(ask(e, "old", i), 1);
	assert_int_equal(atomic_load(&served_n), before);
	lr_engine *b = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask(b, "new-from-b", 1), 0);
	lr_engine_destroy(b);
	assert_int_equal(ask(e, "new-from-b", 1), 1);
	assert_int_equal(ask_many(e, "old", 640), 640);
	assert_int_equal(ask(e, "never", 1), 0);
	lr_engine_destroy(e);
	assert_int_equal(logs, 0);
}

/* A request the server fails: never stored, so it changes nothing in
 * the file. true when its lookup was decided on this thread. */
static bool probe_decided_here(lr_engine *e, int i)
{
	char body[160];
	body_of(body, sizeof(body), "probe", i);
	lr_request *rq = lr_request_new(NULL);
	assert_int_equal(lr_request_set_body(rq, body, strlen(body)), 0);
	unsigned before = atomic_load(&queued);
	lr_future *f = lr_complete(e, rq, 10000);
	assert_non_null(lr_future_result(f));
	assert_int_not_equal(lr_future_result(f)->error, LR_OK);
	lr_future_release(f);
	return atomic_load(&queued) == before;
}

/* Once the set of keys is built for the file as it is, a new request's
 * miss is decided in lr_submit (it never waits for the cache's thread:
 * the server holds every answer until all are submitted, so no store
 * or commit can intervene), and its response is still stored: found at
 * once, on disk at the end, and by the next engine. */
static void test_a_miss_decided_on_the_submitting_thread_is_stored(void **state)
{
	(void)state;
	enum { N = 50 };
	lr_engine *e = engine(LR_CACHE_READWRITE);
	bool here = false;
	for (int i = 0; i < 500 && !here; i++) /* the set is built by the thread, soon after start */
		if (!(here = probe_decided_here(e, i)))
			usleep(10000);
	assert_true(here);
	atomic_store(&gate_closed, 1);
	unsigned before = atomic_load(&queued);
	lr_future *fs[N];
	for (int i = 0; i < N; i++) {
		char body[160];
		body_of(body, sizeof(body), "decided-here", i);
		lr_request *rq = lr_request_new(NULL);
		assert_int_equal(lr_request_set_body(rq, body, strlen(body)), 0);
		fs[i] = lr_submit(e, rq);
	}
	assert_int_equal(atomic_load(&queued), before); /* none went to the cache's thread */
	atomic_store(&gate_closed, 0);
	assert_int_equal(lr_wait_all(fs, N, 20000), N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(lr_future_result(fs[i])->error, LR_OK);
		assert_int_equal(lr_future_result(fs[i])->cached, 0);
		lr_future_release(fs[i]);
	}
	unsigned served = atomic_load(&served_n);
	assert_int_equal(ask_many(e, "decided-here", N), N); /* pending or written: hits */
	lr_cache_stats st;
	lr_engine_cache_stats(e, &st);
	lr_engine_destroy(e);
	assert_int_equal(st.hits, N);
	assert_int_equal(rows_on_disk(), N);
	e = engine(LR_CACHE_READ);
	assert_int_equal(ask_many(e, "decided-here", N), N);
	lr_engine_destroy(e);
	assert_int_equal(atomic_load(&served_n), served);
	assert_int_equal(logs, 0);
}

/* Runs SQL on the file through a connection of the test's own. */
static void exec_sql(const char *sql)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "%s: %s\n", sql, msg);
	sqlite3_free(msg);
	sqlite3_close(db);
	assert_int_equal(rc, SQLITE_OK);
}

/* One integer from the file, through a connection of the test's own. */
static long long query_int(const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	long long v = -1;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

/* A file as the llmring before format 2 wrote it (its table, its UNIQUE
 * key, user_version 0), made from rows this one stored. */
static void make_format_1_file(int n)
{
	lr_engine *e = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask_many(e, "old-format", n), 0);
	lr_engine_destroy(e);
	exec_sql("BEGIN;"
	         "CREATE TABLE llmring_responses(id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE,"
	         " provider TEXT NOT NULL, endpoint TEXT NOT NULL, model TEXT, status INTEGER NOT NULL,"
	         " request_id TEXT, body BLOB NOT NULL, created INTEGER NOT NULL);"
	         "INSERT INTO llmring_responses SELECT id, key, provider, endpoint, model, status,"
	         " request_id, body, created FROM llmring_entries;"
	         "DROP TABLE llmring_entries; PRAGMA user_version=0; COMMIT");
}

/* A format 1 file: read as it is by a read-only engine (and left so),
 * migrated by the first that may write (every row kept, in id order, and
 * found; new rows stored beside them), and a file of a later format
 * refused with a message, left alone, and no request failed. */
static void test_a_format_1_file_is_read_then_migrated_and_a_later_one_refused(void **state)
{
	(void)state;
	enum { N = 40 };
	make_format_1_file(N);
	unsigned served = atomic_load(&served_n);
	lr_engine *e = engine(LR_CACHE_READ);
	assert_int_equal(ask_many(e, "old-format", N), N);
	lr_engine_destroy(e);
	assert_int_equal(query_int("SELECT count(*) FROM llmring_responses"), N);
	assert_int_equal(query_int("SELECT count(*) FROM sqlite_master WHERE name='llmring_entries'"), 0);
	e = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask_many(e, "old-format", N), N);
	assert_int_equal(atomic_load(&served_n), served);
	assert_int_equal(ask_many(e, "after-migration", 10), 0);
	lr_engine_destroy(e);
	assert_int_equal(query_int("PRAGMA user_version"), 2);
	assert_int_equal(query_int("SELECT count(*) FROM sqlite_master WHERE name='llmring_responses'"), 0);
	assert_int_equal(rows_on_disk(), N + 10);
	/* k64 is the key's first 8 bytes, big-endian (0 kept as 1). */
	assert_int_equal(query_int("SELECT count(*) FROM llmring_entries WHERE k64 IS NULL"), 0);
	e = engine(LR_CACHE_READ);
	assert_int_equal(ask_many(e, "old-format", N), N);
	assert_int_equal(ask_many(e, "after-migration", 10), 10);
	lr_engine_destroy(e);
	assert_int_equal(logs, 0);

	exec_sql("PRAGMA user_version=3");
	e = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask(e, "old-format", 0), 0); /* to the network, not failed */
	assert_int_equal(ask(e, "old-format", 0), 0);
	lr_engine_destroy(e);
	assert_int_equal(logs, 1);
	assert_int_equal(query_int("PRAGMA user_version"), 3);
	assert_int_equal(rows_on_disk(), N + 10);
}

/* Starts this program again as the other process (child_asks); its pid. */
static pid_t spawn_asker(const char *tag, int n, int want_hits)
{
	pid_t pid = fork();
	if (pid == 0) {
		/* A fresh program, as two llmring processes are: nothing of this
		 * one's threads, SQLite connections or cmocka state comes along
		 * (SQLite's locks are per process: a forked child of a process
		 * with the file open shares its lock bookkeeping). */
		char ns[16], hs[16];
		snprintf(ns, sizeof(ns), "%d", n);
		snprintf(hs, sizeof(hs), "%d", want_hits);
		execl("/proc/self/exe", "test_cache_sharing", "--child-asks", url, path, tag, ns, hs,
		      (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* The other process's part (main runs it with --child-asks TAG N HITS),
 * without cmocka: asks n bodies of tag; 0 when `hits` of them were
 * answered from the cache and nothing was logged, else what went wrong,
 * said on stderr. */
static int child_asks(const char *tag, int n, int want_hits)
{
	lr_config cfg = config_of(LR_CACHE_READWRITE);
	lr_engine *e = NULL;
	int rc = lr_engine_new(&cfg, &e);
	if (rc) {
		fprintf(stderr, "child: lr_engine_new: %s\n", lr_strerror(rc));
		return 2;
	}
	int hits = 0, failed = 0;
	for (int i = 0; i < n; i++) {
		char body[160];
		body_of(body, sizeof(body), tag, i);
		lr_request *rq = lr_request_new(NULL);
		if (!rq || lr_request_set_body(rq, body, strlen(body))) {
			lr_request_free(rq);
			failed++;
			continue;
		}
		lr_future *f = lr_submit(e, rq);
		if (!f || !lr_future_wait(f, 60000) || lr_future_result(f)->error != LR_OK) {
			fprintf(stderr, "child: request %d: %s\n", i,
			        f && lr_future_done(f) ? lr_strerror(lr_future_result(f)->error) : "no answer");
			failed++;
		} else {
			hits += lr_future_result(f)->cached;
		}
		if (f)
			lr_future_release(f);
	}
	lr_engine_destroy(e);
	if (failed || hits != want_hits || logs)
		fprintf(stderr, "child: %d failed, %d hits of %d (%d wanted), %d logged\n", failed, hits,
		        n, want_hits, logs);
	return failed ? 3 : hits != want_hits ? 4 : logs ? 5 : 0;
}

/* Two writers for one format 1 file at once: one migrates, the other
 * waits for it and finds format 2; every row once. */
static void test_two_processes_opening_a_format_1_file_migrate_it_once(void **state)
{
	(void)state;
	SKIP_FORK_UNDER_TSAN();
	enum { N = 30 };
	make_format_1_file(N);
	pid_t pids[2];
	for (int w = 0; w < 2; w++) {
		pids[w] = spawn_asker("old-format", N, N);
		assert_true(pids[w] > 0);
	}
	for (int w = 0; w < 2; w++) {
		int status;
		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fprintf(stderr, "child %d: %s %d\n", (int)pids[w],
			        WIFEXITED(status) ? "exit" : "signal",
			        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(rows_on_disk(), N);
	assert_int_equal(query_int("PRAGMA user_version"), 2);
}

/* A key stored again replaces its row; when that row had the largest
 * id, the ids SQLite gives the batch's other rows must still be past
 * every id another engine's set has read: A (whose set read up to that
 * row) finds all of a write-only engine's batch of 20, one of them the
 * key stored again (so maybe replaced: write-only engines always delete
 * a key's old row first). */
static void test_a_replaced_row_never_hides_a_new_one_from_another_set(void **state)
{
	(void)state;
	lr_engine *b = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask(b, "replaced", 5), 0); /* the file's only row: id 1 */
	lr_engine_destroy(b);
	lr_engine *a = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask(a, "replaced", 5), 1); /* A's set has read up to id 1 */
	b = engine(LR_CACHE_WRITE);
	assert_int_equal(ask_many(b, "replaced", 20), 0); /* 0..19: 5 again, 19 new */
	lr_engine_destroy(b);
	assert_int_equal(query_int("SELECT count(*) FROM llmring_entries WHERE id=1"), 0);
	unsigned served = atomic_load(&served_n);
	assert_int_equal(ask_many(a, "replaced", 20), 20);
	assert_int_equal(atomic_load(&served_n), served);
	lr_engine_destroy(a);
	assert_int_equal(rows_on_disk(), 20);
	assert_int_equal(logs, 0);
}

int main(int argc, char **argv)
{
	if (argc == 7 && strcmp(argv[1], "--child-asks") == 0) {
		snprintf(url, sizeof(url), "%s", argv[2]);
		snprintf(path, sizeof(path), "%s", argv[3]);
		return child_asks(argv[4], atoi(argv[5]), atoi(argv[6]));
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_a_row_another_connection_writes_later_is_found, fresh),
		cmocka_unit_test_setup(test_a_row_another_process_writes_later_is_found, fresh),
		cmocka_unit_test_setup(test_stores_are_on_disk_when_the_engine_is_destroyed, fresh),
		cmocka_unit_test_setup(test_full_batches_are_written_while_the_engine_runs, fresh),
		cmocka_unit_test_setup(test_rows_in_the_file_are_found_before_and_after_the_set_is_built,
		                       fresh),
		cmocka_unit_test_setup(test_a_miss_decided_on_the_submitting_thread_is_stored, fresh),
		cmocka_unit_test_setup(test_a_format_1_file_is_read_then_migrated_and_a_later_one_refused,
		                       fresh),
		cmocka_unit_test_setup(test_two_processes_opening_a_format_1_file_migrate_it_once, fresh),
		cmocka_unit_test_setup(test_a_replaced_row_never_hides_a_new_one_from_another_set, fresh),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

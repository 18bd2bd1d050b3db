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
static _Thread_local char reply_buf[2048];

/* Every answer names the request's number: a second answer differs. */
static void handler(void *arg, const struct ts_request *rq, struct ts_reply *reply)
{
	(void)arg;
	(void)rq;
	unsigned n = atomic_fetch_add(&served_n, 1) + 1;
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

static lr_engine *engine(int mode)
{
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.api_key = "k";
	cfg.max_retries = 0;
	cfg.cache_path = path;
	cfg.cache_mode = mode;
	cfg.on_log = on_log;
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
static void test_a_row_another_process_writes_later_is_found(void **state)
{
	(void)state;
	SKIP_FORK_UNDER_TSAN();
	lr_engine *a = engine(LR_CACHE_READWRITE);
	assert_int_equal(ask_many(a, "before", 50), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		lr_engine *b = engine(LR_CACHE_READWRITE);
		int bad = ask_many(b, "child", 100) != 0;
		lr_engine_destroy(b);
		_exit(bad || logs ? 1 : 0);
	}
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_a_row_another_connection_writes_later_is_found, fresh),
		cmocka_unit_test_setup(test_a_row_another_process_writes_later_is_found, fresh),
		cmocka_unit_test_setup(test_stores_are_on_disk_when_the_engine_is_destroyed, fresh),
		cmocka_unit_test_setup(test_full_batches_are_written_while_the_engine_runs, fresh),
		cmocka_unit_test_setup(test_rows_in_the_file_are_found_before_and_after_the_set_is_built,
		                       fresh),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

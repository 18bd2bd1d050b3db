/*
 * libcrypto and SQLite are loaded on first use (engine/util/lazy_lib.h):
 * a process that only speaks plain HTTP without a cache maps neither; the
 * first https origin loads libcrypto and the records move to it; the
 * first cache opened loads SQLite; a process where they cannot be loaded
 * still speaks TLS (on mbedTLS's records) and still answers every request
 * without its cache, which says why once. Each case looks at
 * /proc/self/maps, since "not loaded" is the point.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmring.h"
#include "util/test_hooks.h"
#include "mock_server.h"

static char cert_dir[PATH_MAX];
static char ca_path[PATH_MAX + 16];
static char cache_path[PATH_MAX + 16];

static atomic_int sqlite_refusals; /* on_log lines saying SQLite could not be loaded */
static atomic_int log_lines;
static void on_log(void *user, const char *message)
{
	(void)user;
	log_lines++;
	if (strstr(message, "SQLite could not be loaded") && strstr(message, "no-such-library"))
		sqlite_refusals++;
}

static atomic_int offloads;
void tls_offload_hook(int cipher)
{
	(void)cipher;
	offloads++;
}

/* Set in the child of the "cannot be loaded" case only. */
static bool hide_libraries;
const char *lazy_lib_soname(const char *soname)
{
	return hide_libraries ? "libllmring-test-no-such-library.so.0" : soname;
}

static bool mapped(const char *name)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return false;
	char line[PATH_MAX + 128];
	bool found = false;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, name) != NULL;
	fclose(f);
	return found;
}

static const char *source_dir(void)
{
	const char *env = getenv("LLMRING_SOURCE_DIR");
	return env ? env : LLMRING_SOURCE_DIR;
}

static int make_certs(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/llmring-lazy-XXXXXX";
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(cert_dir, sizeof(cert_dir), "%s", tmpl);
	char cmd[PATH_MAX * 2 + 64];
	snprintf(cmd, sizeof(cmd), "bash %s/tests/certs/gen-certs.sh %s >/dev/null 2>&1", source_dir(),
	         cert_dir);
	if (system(cmd) != 0)
		return -1;
	snprintf(ca_path, sizeof(ca_path), "%s/ca.crt", cert_dir);
	snprintf(cache_path, sizeof(cache_path), "%s/cache.db", cert_dir);
	return 0;
}

static int remove_certs(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", cert_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Requests through a fresh engine to a fresh mock (TLS when tls; with
 * the cache file when cache): the number that succeeded with status 200
 * and output tokens, and in *hits those answered by the cache. No cmocka
 * asserts, so that a forked child can use it. */
static int requests(bool tls, bool cache, int n, int *hits)
{
	static char crt[PATH_MAX + 32], key[PATH_MAX + 32];
	struct mock_options o;
	mock_options_default(&o);
	if (tls) {
		snprintf(crt, sizeof(crt), "%s/server.crt", cert_dir);
		snprintf(key, sizeof(key), "%s/server.key", cert_dir);
		o.tls_cert_file = crt;
		o.tls_key_file = key;
	}
	struct mock_server *s = NULL;
	if (mock_server_start(&o, &s) != 0)
		return -1;
	char url[128];
	snprintf(url, sizeof(url), "%s://localhost:%u/v1", tls ? "https" : "http", mock_server_port(s));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.ca_file = ca_path;
	cfg.total_timeout_s = 10;
	cfg.max_retries = 0;
	cfg.on_log = on_log;
	if (cache)
		cfg.cache_path = cache_path;
	if (hits)
		*hits = 0;
	lr_engine *e = NULL;
	int ok = 0;
	if (lr_engine_new(&cfg, &e) == 0) {
		for (int i = 0; i < n; i++) {
			lr_request *rq = lr_request_new("gpt-4o-mini");
			lr_request_add_message(rq, LR_ROLE_USER, "hello"); /* the same each time */
			lr_future *f = lr_submit(e, rq);
			if (f && lr_future_wait(f, 15000) == 1) {
				const lr_result *r = lr_future_result(f);
				if (!r->error && r->http_status == 200 && r->usage.output_tokens > 0) {
					ok++;
					if (hits && r->cached)
						(*hits)++;
				}
				else
					fprintf(stderr, "request %d: %s: %s\n", i, lr_error_name(r->error),
					        r->error_message ? r->error_message : "");
			}
			lr_future_release(f);
			if (cache)
				lr_engine_cache_flush(e, 5000); /* the next one finds it */
		}
		lr_engine_destroy(e);
	}
	mock_server_stop(s);
	return ok;
}

static void test_plain_http_without_a_cache_maps_neither(void **state)
{
	(void)state;
	assert_false(mapped("libcrypto.so"));
	assert_false(mapped("libsqlite3.so"));
	assert_int_equal(requests(false, false, 20, NULL), 20);
	assert_false(mapped("libcrypto.so"));
	assert_false(mapped("libsqlite3.so"));
	assert_int_equal(offloads, 0);
}

/* Runs before anything in this process has loaded libcrypto (cmocka
 * keeps the order): the child's first load is the one that fails. */
static void test_without_the_libraries_tls_and_requests_still_work(void **state)
{
	(void)state;
	assert_false(mapped("libcrypto.so"));
	assert_false(mapped("libsqlite3.so"));
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		hide_libraries = true;
		int hits = -1;
		int ok = requests(true, true, 20, &hits);
		int ok2 = requests(true, true, 3, NULL); /* a second engine: said again, once */
		/* 0: every request on mbedTLS's records, none from the cache,
		 * the cache's problem said once an engine, nothing mapped. */
		int code = ok == 20 && ok2 == 3 && hits == 0 && offloads == 0 && sqlite_refusals == 2 &&
		                   !mapped("libcrypto.so") && !mapped("libsqlite3.so")
		               ? 0
		               : 1;
		if (code)
			fprintf(stderr,
			        "child: %d of 20 and %d of 3 succeeded, %d hits, %d offloads, %d refusals "
			        "(%d log lines), libcrypto %s, SQLite %s\n",
			        ok, ok2, hits, (int)offloads, (int)sqlite_refusals, (int)log_lines,
			        mapped("libcrypto.so") ? "mapped" : "not mapped",
			        mapped("libsqlite3.so") ? "mapped" : "not mapped");
		_exit(code);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_the_first_https_origin_loads_it_and_hands_records_over(void **state)
{
	(void)state;
	assert_int_equal(requests(true, false, 20, NULL), 20);
	assert_true(mapped("libcrypto.so"));
	assert_false(mapped("libsqlite3.so"));
	assert_int_equal(offloads, 1); /* one pooled connection, its records on libcrypto */
	/* A second engine finds it loaded. */
	assert_int_equal(requests(true, false, 5, NULL), 5);
	assert_int_equal(offloads, 2);
}

static void test_the_first_cache_loads_sqlite_and_answers(void **state)
{
	(void)state;
	int hits = -1;
	/* The mock answers on a new port each time and the origin is in the
	 * key: the hits come from within one engine's 10 identical requests. */
	assert_int_equal(requests(false, true, 10, &hits), 10);
	assert_true(mapped("libsqlite3.so"));
	assert_int_equal(hits, 9);
	assert_int_equal(sqlite_refusals, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_http_without_a_cache_maps_neither),
		cmocka_unit_test(test_without_the_libraries_tls_and_requests_still_work),
		cmocka_unit_test(test_the_first_https_origin_loads_it_and_hands_records_over),
		cmocka_unit_test(test_the_first_cache_loads_sqlite_and_answers),
	};
	return cmocka_run_group_tests(tests, make_certs, remove_certs);
}

/*
 * libcrypto is loaded on first use (engine/util/lazy_lib.h): a process
 * that only speaks plain HTTP never maps it; the first https origin loads
 * it and the records move to it; a process where it cannot be loaded
 * still speaks TLS, on mbedTLS's records. Each case looks at
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
	return 0;
}

static int remove_certs(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", cert_dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Requests through a fresh engine to a fresh mock (TLS when tls): the
 * number that succeeded with status 200 and output tokens. No cmocka
 * asserts, so that a forked child can use it. */
static int requests(bool tls, int n)
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
	lr_engine *e = NULL;
	int ok = 0;
	if (lr_engine_new(&cfg, &e) == 0) {
		for (int i = 0; i < n; i++) {
			lr_request *rq = lr_request_new("gpt-4o-mini");
			lr_request_add_message(rq, LR_ROLE_USER, "hello");
			lr_future *f = lr_submit(e, rq);
			if (f && lr_future_wait(f, 15000) == 1) {
				const lr_result *r = lr_future_result(f);
				if (!r->error && r->http_status == 200 && r->usage.output_tokens > 0)
					ok++;
				else
					fprintf(stderr, "request %d: %s: %s\n", i, lr_error_name(r->error),
					        r->error_message ? r->error_message : "");
			}
			lr_future_release(f);
		}
		lr_engine_destroy(e);
	}
	mock_server_stop(s);
	return ok;
}

static void test_plain_http_never_maps_libcrypto(void **state)
{
	(void)state;
	assert_false(mapped("libcrypto.so"));
	assert_int_equal(requests(false, 20), 20);
	assert_false(mapped("libcrypto.so"));
	assert_int_equal(offloads, 0);
}

/* Runs before anything in this process has loaded libcrypto (cmocka
 * keeps the order): the child's first load is the one that fails. */
static void test_tls_without_libcrypto_stays_on_mbedtls(void **state)
{
	(void)state;
	assert_false(mapped("libcrypto.so"));
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		hide_libraries = true;
		int ok = requests(true, 20);
		/* 0: every request on mbedTLS's records, nothing mapped. */
		int code = ok == 20 && offloads == 0 && !mapped("libcrypto.so") ? 0 : 1;
		if (code)
			fprintf(stderr, "child: %d of 20 succeeded, %d offloads, libcrypto %s\n", ok,
			        (int)offloads, mapped("libcrypto.so") ? "mapped" : "not mapped");
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
	assert_int_equal(requests(true, 20), 20);
	assert_true(mapped("libcrypto.so"));
	assert_int_equal(offloads, 1); /* one pooled connection, its records on libcrypto */
	/* A second engine finds it loaded. */
	assert_int_equal(requests(true, 5), 5);
	assert_int_equal(offloads, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_http_never_maps_libcrypto),
		cmocka_unit_test(test_tls_without_libcrypto_stays_on_mbedtls),
		cmocka_unit_test(test_the_first_https_origin_loads_it_and_hands_records_over),
	};
	return cmocka_run_group_tests(tests, make_certs, remove_certs);
}

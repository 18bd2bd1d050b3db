/*
 * Allocation-failure sweep (issue 9; tests/alloc_fail.h, as SQLite's
 * test_malloc): each scenario runs once per N = 1, 2, ... with the Nth
 * counted allocation failing, until a run makes no allocation fail. Every
 * N with N <= SWEEP_EVERY runs; past it only every SWEEP_STRIDE-th N (to
 * stay within about a minute under ASan; no scenario reaches that yet).
 *
 * Each run: lr_engine_new, the scenario's request, lr_engine_destroy. The
 * call that met the failure returns LR_ENOMEM (lr_engine_new, lr_submit's
 * NULL, the request builders), or the request ends with out_of_memory, or
 * it succeeds in full when the failure was recoverable (a success is
 * checked: text, usage, body, the deltas adding up to the text). Then, with
 * nothing failing, the same engine must serve the next request. Every wait
 * is bounded and a watchdog aborts a run that hangs; LeakSanitizer (the
 * ASan build) reports a leak of any run at exit.
 *
 * Scenarios: engine new/destroy (plain and with a CA file), a chat request
 * to the in-process mock, the same streamed (lr_future_next_delta), a
 * retry (500 then 200 from the scripted server) and a chat over TLS. The
 * servers are started exempt, so only the engine's allocations count.
 */
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "alloc_fail.h"
#include "llmring.h"
#include "mock_server.h"
#include "test_server.h"

#define SWEEP_EVERY 2000  /* every N up to here */
#define SWEEP_STRIDE 7    /* then every 7th */
#define SWEEP_MAX 100000  /* a scenario still failing here is broken */
#define RUN_TIMEOUT_S 30  /* watchdog per run */
#define WAIT_MS 10000

enum kind { K_ENGINE, K_CHAT, K_STREAM, K_RETRY, K_TLS };

struct scenario {
	const char *name;
	enum kind kind;
	bool ca_file;   /* the engine reads a CA bundle */
};

static struct mock_server *mock, *tls_mock;
static struct test_server *retry_srv;
static char mock_url[64], tls_url[64], retry_url[64];
static char cert_dir[PATH_MAX], ca_path[PATH_MAX + 16];
static bool have_tls;

/* Figures over the whole program. */
#define MAX_SITES 1024
static void *sites[MAX_SITES]; /* distinct failing call sites */
static int nsites;
static long total_runs, total_enomem, total_recovered;
static int scenarios_done;

/* The scripted server answers the first request after each reset with a
 * retryable 500, everything else with 200. */
static atomic_uint retry_seen;

#define RETRY_BODY "{\"error\":{\"message\":\"try again\",\"type\":\"x\"}}\n"
static const char retry_500[] =
	"HTTP/1.1 500 Internal Server Error\r\n"
	"Content-Type: application/json\r\n"
	"retry-after-ms: 0\r\n"
	"Content-Length: 45\r\n"
	"\r\n" RETRY_BODY;
_Static_assert(sizeof(RETRY_BODY) - 1 == 45, "fix the Content-Length");

static void retry_handler(void *ctx, const struct ts_request *rq, struct ts_reply *reply)
{
	(void)ctx;
	(void)rq;
	bool first = atomic_fetch_add(&retry_seen, 1) == 0;
	reply->data = first ? retry_500 : ts_ok_response;
	reply->len = first ? sizeof(retry_500) - 1 : strlen(ts_ok_response);
	reply->action = TS_SEND;
}

/* Which scenario and N are running, for the watchdog. */
static const char *volatile cur_name = "";
static volatile long cur_n;

static void watchdog(int sig)
{
	(void)sig;
	char msg[160];
	int len = snprintf(msg, sizeof(msg), "\nalloc_fail: %s N=%ld still running after %d s (hang)\n",
	                   cur_name, cur_n, RUN_TIMEOUT_S);
	if (write(2, msg, (size_t)len) < 0)
		_exit(3);
	abort();
}

static int make_engine(const struct scenario *sc, lr_engine **eng)
{
	lr_config cfg = lr_config_default();
	cfg.max_retries = sc->kind == K_RETRY ? 2 : 0;
	cfg.base_url = sc->kind == K_TLS ? tls_url : sc->kind == K_RETRY ? retry_url : mock_url;
	if (sc->ca_file || sc->kind == K_TLS)
		cfg.ca_file = ca_path;
	cfg.connect_timeout_s = 5;
	cfg.total_timeout_s = 20;
	return lr_engine_new(&cfg, eng);
}

/* The deltas of a streamed run (static: the test's own allocations would
 * count too). */
static char streamed[65536];
static size_t streamed_len;

/*
 * One request; its outcome: 0, LR_ENOMEM, or another code after printing
 * why (a failure). A success must be whole.
 */
static int one_request(lr_engine *eng, const struct scenario *sc)
{
	bool stream = sc->kind == K_STREAM;
	lr_request *rq = lr_request_new("gpt-4o-mini");
	if (!rq)
		return LR_ENOMEM;
	int rc = lr_request_add_message(rq, LR_ROLE_USER, "hello there");
	if (!rc && stream)
		rc = lr_request_set_stream(rq, 1);
	if (rc) {
		lr_request_free(rq);
		return rc;
	}
	lr_future *f = lr_submit(eng, rq);
	if (!f)
		return LR_ENOMEM;
	streamed_len = 0;
	if (stream) {
		lr_delta d;
		int n;
		while ((n = lr_future_next_delta(f, &d, WAIT_MS)) == 1) {
			if (streamed_len + d.text_len > sizeof(streamed)) {
				fprintf(stderr, "  more streamed text than expected\n");
				lr_future_release(f);
				return LR_EPROTO;
			}
			memcpy(streamed + streamed_len, d.text, d.text_len);
			streamed_len += d.text_len;
		}
		if (n != 0) {
			fprintf(stderr, "  lr_future_next_delta returned %s\n", lr_error_name(n));
			lr_future_release(f);
			return n;
		}
	}
	if (lr_future_wait(f, WAIT_MS) != 1) {
		fprintf(stderr, "  the future did not complete in %d ms\n", WAIT_MS);
		lr_future_release(f);
		return LR_ETIMEOUT;
	}
	const lr_result *r = lr_future_result(f);
	int err = r->error;
	if (err && err != LR_ENOMEM) {
		fprintf(stderr, "  error %s: %s\n", lr_error_name(err),
		        r->error_message ? r->error_message : "-");
	} else if (err == LR_ENOMEM && !r->error_message) {
		fprintf(stderr, "  out_of_memory without a message\n");
		err = LR_EPROTO;
	} else if (!err) {
		/* Nothing of a success may be missing. */
		const char *bad = NULL;
		if (!r->text || r->text_len == 0 || strlen(r->text) != r->text_len)
			bad = "no text";
		else if (r->usage.output_tokens <= 0)
			bad = "no usage";
		else if (!r->body || strlen(r->body) != r->body_len || !r->body_is_json)
			bad = "no JSON body";
		else if (stream && (streamed_len != r->text_len || memcmp(streamed, r->text, r->text_len)))
			bad = "the deltas do not add up to the text";
		else if (sc->kind == K_RETRY && r->attempts < 1)
			bad = "no attempt counted";
		if (bad) {
			fprintf(stderr, "  success with %s\n", bad);
			err = LR_EPROTO;
		}
	}
	lr_future_release(f);
	return err;
}

static void note_site(void *site)
{
	if (!site)
		return;
	for (int i = 0; i < nsites; i++)
		if (sites[i] == site)
			return;
	if (nsites < MAX_SITES)
		sites[nsites++] = site;
}

/*
 * Runs the scenario with the nth allocation failing (0: none). Returns how
 * many allocations were made to fail; fails the test on a wrong outcome.
 */
static long run_once(const struct scenario *sc, long n, long *calls)
{
	cur_name = sc->name;
	cur_n = n;
	alarm(RUN_TIMEOUT_S);
	lr_engine *eng = NULL;
	alloc_fail_arm(n, false);
	int rc = make_engine(sc, &eng);
	int out = rc;
	if (!rc && sc->kind == K_ENGINE) {
		lr_engine_destroy(eng); /* destroy is swept too */
		eng = NULL;
	} else if (!rc) {
		atomic_store(&retry_seen, 0);
		out = one_request(eng, sc);
	}
	long failed = alloc_fail_failed();
	*calls = alloc_fail_calls();
	void *site = alloc_fail_site();
	alloc_fail_arm(0, false);

	if (out != 0 && out != LR_ENOMEM)
		fail_msg("%s N=%ld: %s (expected success or out_of_memory)", sc->name, n,
		         lr_error_name(out));
	if (out == LR_ENOMEM && failed == 0)
		fail_msg("%s N=%ld: out_of_memory with no allocation failing", sc->name, n);
	if (failed) {
		total_runs++;
		note_site(site);
		if (out == LR_ENOMEM)
			total_enomem++;
		else
			total_recovered++;
	}
	if (eng) {
		/* The engine outlived the failure: it must still work. */
		atomic_store(&retry_seen, 0);
		int again = one_request(eng, sc);
		if (again != 0)
			fail_msg("%s N=%ld: the next request failed (%s)", sc->name, n, lr_error_name(again));
		lr_engine_destroy(eng);
	}
	alarm(0);
	return failed;
}

static void sweep(const struct scenario *sc)
{
	long calls, n;
	assert_int_equal(run_once(sc, 0, &calls), 0);
	long clean_calls = calls, runs = 0, enomem_before = total_enomem;
	int sites_before = nsites;
	for (n = 1; n <= SWEEP_MAX; n += n < SWEEP_EVERY ? 1 : SWEEP_STRIDE) {
		if (run_once(sc, n, &calls) == 0)
			break; /* the run ended before its nth allocation */
		runs++;
	}
	if (n > SWEEP_MAX)
		fail_msg("%s: still failing allocations at N=%d", sc->name, SWEEP_MAX);
	fprintf(stderr, "alloc_fail: %-12s %4ld allocations in a clean run, swept N=1..%ld: "
	        "%ld runs, %ld out_of_memory, %ld recovered, %d new sites\n",
	        sc->name, clean_calls, n - 1, runs, total_enomem - enomem_before,
	        runs - (total_enomem - enomem_before), nsites - sites_before);
	scenarios_done++;
}

static void test_engine_new(void **s)
{
	(void)s;
	sweep(&(struct scenario){"engine", K_ENGINE, false});
	if (have_tls)
		sweep(&(struct scenario){"engine+ca", K_ENGINE, true});
}

static void test_chat(void **s)
{
	(void)s;
	sweep(&(struct scenario){"chat", K_CHAT, false});
}

static void test_stream(void **s)
{
	(void)s;
	sweep(&(struct scenario){"stream", K_STREAM, false});
}

static void test_retry(void **s)
{
	(void)s;
	sweep(&(struct scenario){"retry", K_RETRY, false});
}

static void test_tls(void **s)
{
	(void)s;
	if (!have_tls)
		skip();
	sweep(&(struct scenario){"tls", K_TLS, true});
}

static const char *source_dir(void)
{
	const char *env = getenv("LLMRING_SOURCE_DIR");
	return env ? env : LLMRING_SOURCE_DIR;
}

/* Test certificates (tests/certs/gen-certs.sh); false: no TLS scenario. */
static bool make_certs(void)
{
	char tmpl[] = "/tmp/llmring-oom-XXXXXX";
	if (!mkdtemp(tmpl))
		return false;
	snprintf(cert_dir, sizeof(cert_dir), "%s", tmpl);
	char cmd[PATH_MAX * 2 + 64];
	snprintf(cmd, sizeof(cmd), "bash %s/tests/certs/gen-certs.sh %s >/dev/null 2>&1", source_dir(),
	         cert_dir);
	if (system(cmd) != 0)
		return false;
	snprintf(ca_path, sizeof(ca_path), "%s/ca.crt", cert_dir);
	return true;
}

static int setup(void **s)
{
	(void)s;
	signal(SIGALRM, watchdog);
	alloc_fail_exempt_begin();
	struct mock_options o;
	mock_options_default(&o);
	int rc = mock_server_start(&o, &mock);
	if (rc == 0)
		rc = test_server_start(retry_handler, NULL, &retry_srv);
	have_tls = rc == 0 && make_certs();
	if (have_tls) {
		static char crt[PATH_MAX + 32], key[PATH_MAX + 32];
		snprintf(crt, sizeof(crt), "%s/server.crt", cert_dir);
		snprintf(key, sizeof(key), "%s/server.key", cert_dir);
		mock_options_default(&o);
		o.tls_cert_file = crt;
		o.tls_key_file = key;
		have_tls = mock_server_start(&o, &tls_mock) == 0;
	}
	alloc_fail_exempt_end();
	if (rc != 0)
		return -1;
	snprintf(mock_url, sizeof(mock_url), "http://127.0.0.1:%u/v1", (unsigned)mock_server_port(mock));
	snprintf(retry_url, sizeof(retry_url), "http://127.0.0.1:%u/v1",
	         (unsigned)test_server_port(retry_srv));
	if (have_tls)
		snprintf(tls_url, sizeof(tls_url), "https://localhost:%u/v1",
		         (unsigned)mock_server_port(tls_mock));
	else
		fprintf(stderr, "alloc_fail: no test certificates (openssl?): TLS scenarios skipped\n");
	return 0;
}

static int teardown(void **s)
{
	(void)s;
	alloc_fail_exempt_begin();
	mock_server_stop(mock);
	if (tls_mock)
		mock_server_stop(tls_mock);
	test_server_stop(retry_srv);
	alloc_fail_exempt_end();
	if (cert_dir[0]) {
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", cert_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "alloc_fail: could not remove %s\n", cert_dir);
	}
	fprintf(stderr, "alloc_fail: %d scenarios, %ld runs with a failed allocation "
	        "(%ld out_of_memory, %ld recovered), %d distinct failing call sites\n",
	        scenarios_done, total_runs, total_enomem, total_recovered, nsites);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_engine_new),
		cmocka_unit_test(test_chat),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_retry),
		cmocka_unit_test(test_tls),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

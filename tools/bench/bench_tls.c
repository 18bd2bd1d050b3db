/*
 * TLS next to plain HTTP, in one run over loopback (issue 3's benchmark):
 *   1. requests/s and client CPU per request, pooled TLS versus plain HTTP;
 *   2. full versus resumed handshakes per second (every response carries
 *      Connection: close, so every request opens a connection);
 *   3. memory per idle TLS connection (RSS with K idle TLS connections in
 *      the pool, minus RSS with K idle plain ones, over K; and the same for
 *      the heap in use, mallinfo2, which sees memory freed after the
 *      handshakes that RSS keeps counting: glibc returns no pages from
 *      inside the heap).
 * The servers are `llmring mock` processes of their own (plain and TLS),
 * so the client CPU measured here (getrusage of this process) is the
 * client's alone; the mocks' CPU is read from /proc and reported too.
 *
 * usage: bench_tls LLMRING CERT_DIR [N]
 *   LLMRING   path of the llmring executable (for `llmring mock`)
 *   CERT_DIR  from tests/certs/gen-certs.sh (ca.crt, server.crt, server.key)
 *   N         requests per throughput run (default 20000)
 */
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "llmring.h"

struct mock_proc {
	pid_t pid;
	char url[128];
};

static void mock_start(struct mock_proc *m, const char *llmring, const char *cert_dir, bool tls,
                       bool close_every)
{
	char crt[512], key[512];
	snprintf(crt, sizeof(crt), "%s/server.crt", cert_dir);
	snprintf(key, sizeof(key), "%s/server.key", cert_dir);
	char *extra[8];
	int a = 0;
	if (tls) {
		extra[a++] = "--tls-cert";
		extra[a++] = crt;
		extra[a++] = "--tls-key";
		extra[a++] = key;
	}
	if (close_every) {
		extra[a++] = "--close-every";
		extra[a++] = "1";
	}
	extra[a] = NULL;
	m->pid = bench_spawn_mock(llmring, extra, m->url, sizeof(m->url));
	/* localhost, so the certificate's DNS name is what gets checked */
	char *ip = strstr(m->url, "127.0.0.1");
	if (ip) {
		char rest[128];
		snprintf(rest, sizeof(rest), "%s", ip + 9);
		snprintf(ip, sizeof(m->url) - (size_t)(ip - m->url), "localhost%s", rest);
	}
}

static void mock_stop(struct mock_proc *m)
{
	kill(m->pid, SIGINT);
	waitpid(m->pid, NULL, 0);
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, resident = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static const char body[] = "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":"
                           "\"Write one short sentence about the sea.\"}],\"max_tokens\":16}";

/* N requests, at most `concurrency` in flight, driven on this thread. */
static int run_requests(lr_engine *e, int n, int concurrency)
{
	int submitted = 0, done = 0, failed = 0;
	lr_future *out[256];
	while (done < n) {
		while (submitted < n && submitted - done < 4 * concurrency) {
			lr_request *rq = lr_request_new(NULL);
			lr_request_set_body(rq, body, sizeof(body) - 1);
			lr_future_release(lr_submit(e, rq));
			submitted++;
		}
		int want = submitted - done < concurrency ? submitted - done : concurrency;
		int k = lr_engine_reap_batch(e, out, 256, want, 30000);
		if (k <= 0)
			break;
		for (int i = 0; i < k; i++) {
			const lr_result *r = lr_future_result(out[i]);
			if (r->error) {
				if (failed++ < 3)
					fprintf(stderr, "  request failed: %s\n", r->error_message);
			}
			lr_future_release(out[i]);
		}
		done += k;
	}
	return failed;
}

static lr_engine *engine(const char *url, const char *ca, int concurrency, bool no_resume)
{
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.ca_file = ca;
	cfg.max_in_flight = (unsigned)concurrency;
	cfg.reap_completions = 1;
	cfg.drive_from_caller = 1;
	cfg.tls_no_resumption = no_resume;
	lr_engine *e = NULL;
	if (lr_engine_new(&cfg, &e) != 0) {
		fprintf(stderr, "engine setup failed for %s\n", url);
		exit(1);
	}
	return e;
}

static void throughput(const char *label, const struct mock_proc *m, const char *ca, int n)
{
	lr_engine *e = engine(m->url, ca, 64, false);
	run_requests(e, 256, 64); /* warm the pool (and TLS sessions) */
	double c0 = bench_self_cpu_s(), s0 = bench_proc_cpu_s(m->pid), t0 = bench_now_s();
	int failed = run_requests(e, n, 64);
	double t = bench_now_s() - t0, c = bench_self_cpu_s() - c0, s = bench_proc_cpu_s(m->pid) - s0;
	lr_engine_stats st;
	lr_engine_get_stats(e, &st);
	printf("%-22s %8d %9.0f %12.2f %12.2f %9llu %6d\n", label, n, n / t, c * 1e6 / n, s * 1e6 / n,
	       (unsigned long long)st.connections_opened, failed);
	lr_engine_destroy(e);
}

static void handshakes(const char *label, const struct mock_proc *m, const char *ca, int n, bool no_resume)
{
	/* One request at a time, each on a new connection (the mock closes
	 * every connection after its response). */
	lr_engine *e = engine(m->url, ca, 1, no_resume);
	run_requests(e, 4, 1);
	double c0 = bench_self_cpu_s(), s0 = bench_proc_cpu_s(m->pid), t0 = bench_now_s();
	int failed = run_requests(e, n, 1);
	double t = bench_now_s() - t0, c = bench_self_cpu_s() - c0, s = bench_proc_cpu_s(m->pid) - s0;
	lr_engine_stats st;
	lr_engine_get_stats(e, &st);
	printf("%-22s %8d %9.0f %12.2f %12.2f   full %llu, resumed %llu, failed %d\n", label, n, n / t,
	       c * 1e6 / n, s * 1e6 / n, (unsigned long long)st.tls_full_handshakes,
	       (unsigned long long)st.tls_resumed_handshakes, failed);
	lr_engine_destroy(e);
}

static long heap_kib(void)
{
	struct mallinfo2 mi = mallinfo2();
	return (long)((mi.uordblks + mi.hblkhd) / 1024);
}

static long idle_pool_rss(const struct mock_proc *m, const char *ca, int k, long *heap)
{
	lr_engine *e = engine(m->url, ca, k, false);
	run_requests(e, k, k); /* k at once: k connections, then idle in the pool */
	long rss = rss_kib();
	*heap = heap_kib();
	lr_engine_stats st;
	lr_engine_get_stats(e, &st);
	if ((int)st.connections_opened != k)
		fprintf(stderr, "  note: %llu connections opened for %d\n",
		        (unsigned long long)st.connections_opened, k);
	lr_engine_destroy(e);
	return rss;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bench_tls LLMRING CERT_DIR [N]\n");
		return 2;
	}
	const char *llmring = argv[1];
	char ca[512];
	snprintf(ca, sizeof(ca), "%s/ca.crt", argv[2]);
	int n = argc > 3 ? atoi(argv[3]) : 20000;

	struct mock_proc plain, tls, plain_close, tls_close;
	mock_start(&plain, llmring, argv[2], false, false);
	mock_start(&tls, llmring, argv[2], true, false);
	mock_start(&tls_close, llmring, argv[2], true, true);
	mock_start(&plain_close, llmring, argv[2], false, true);

	printf("%-22s %8s %9s %12s %12s %9s %6s\n", "run", "requests", "req/s", "client us/rq",
	       "server us/rq", "conns", "failed");
	for (int rep = 0; rep < 2; rep++) {
		throughput("plain http, pooled", &plain, ca, n);
		throughput("https, pooled", &tls, ca, n);
	}
	int h = n / 10 > 2000 ? 2000 : n / 10;
	handshakes("http, new connection", &plain_close, ca, h, false);
	handshakes("https, full handshake", &tls_close, ca, h, true);
	handshakes("https, resumed", &tls_close, ca, h, false);

	int k = 200;
	long base = rss_kib();
	long heap_plain, heap_tls;
	long rss_plain = idle_pool_rss(&plain, ca, k, &heap_plain);
	long rss_tls = idle_pool_rss(&tls, ca, k, &heap_tls);
	printf("\nmemory with %d idle pooled connections: plain %ld KiB, TLS %ld KiB (process RSS; "
	       "before: %ld KiB)\n", k, rss_plain, rss_tls, base);
	printf("per idle TLS connection, beyond a plain one: %.1f KiB\n",
	       (double)(rss_tls - rss_plain) / k);
	printf("heap in use (mallinfo2) with them: plain %ld KiB, TLS %ld KiB; per idle TLS "
	       "connection beyond a plain one: %.1f KiB\n", heap_plain, heap_tls,
	       (double)(heap_tls - heap_plain) / k);

	mock_stop(&plain);
	mock_stop(&tls);
	mock_stop(&plain_close);
	mock_stop(&tls_close);
	return 0;
}

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
 * env BENCH_TLS_ONLY=plain or https: only that pooled run, five times, and
 *   nothing else; with BENCH_TLS_PERF_CTL=FIFO too, "enable" and "disable"
 *   are written to FIFO around the timed requests, for
 *   `perf record --control=fifo:FIFO -D -1 --no-inherit` (the handshakes
 *   of the warm-up cost more than the 20,000 requests and are left out).
 * env BENCH_TLS_C=C: the pooled runs' concurrency (1..64, default 64).
 * env BENCH_TLS_TTFT_MS=MS: the mocks answer after MS milliseconds, so the
 *   rate is set by that latency (64 / MS per millisecond), not by the
 *   slower of client and server: both mocks then idle part of the time
 *   and the client waits on both alike (see BENCH_TLS_NGINX below).
 * env BENCH_TLS_NGINX=K: only pooled runs, K pairs (plain, https), against
 *   one nginx process (master_process off) serving the mock's 504-byte
 *   reply on a plain and a TLS 1.2 port. Its TLS is OpenSSL's, so the
 *   https server is not slower than the client the way the TLS mock is
 *   (mbedTLS's portable AES-GCM); a client that outruns its server sleeps
 *   and wakes more, which shows up in its own CPU per request.
 */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
	char *extra[12]; /* up to 4 + 2 + 2 options and the NULL */
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
	const char *ttft = getenv("BENCH_TLS_TTFT_MS");
	if (ttft && *ttft) {
		extra[a++] = "--ttft-ms";
		extra[a++] = (char *)ttft;
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

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		fprintf(stderr, "no free port\n");
		exit(1);
	}
	close(fd);
	return ntohs(a.sin_port);
}

static bool port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* One nginx (no master, one worker: its CPU is that pid's) with a plain
 * and a TLS server; plain->pid == tls->pid. */
static char nginx_dir[] = "/tmp/bench_tls_nginx.XXXXXX";

/* Stops it and removes its directory (the files nginx_start wrote and
 * nginx's own). */
static void nginx_stop(pid_t pid)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	static const char *const files[] = {"nginx.conf", "error.log", "nginx.pid"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", nginx_dir, files[i]);
		unlink(path);
	}
	rmdir(nginx_dir);
}

static void nginx_start(struct mock_proc *plain, struct mock_proc *tls, const char *cert_dir)
{
	char *dir = nginx_dir;
	if (!mkdtemp(dir)) {
		fprintf(stderr, "mkdtemp failed\n");
		exit(1);
	}
	int pp = free_port(), tp = free_port();
	char conf[512];
	snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
	FILE *f = fopen(conf, "w");
	if (!f)
		exit(1);
	/* The mock's reply to this benchmark's request, byte for byte the
	 * same length (504), so plain and TLS move the same bytes. */
	fprintf(f,
	        "daemon off; master_process off; worker_processes 1; pid %s/nginx.pid;\n"
	        "error_log %s/error.log warn;\n"
	        "events { worker_connections 1024; }\n"
	        "http { access_log off; keepalive_requests 1000000; keepalive_timeout 300s;\n"
	        " tcp_nodelay on; client_body_temp_path %s;\n"
	        " server { listen 127.0.0.1:%d; listen 127.0.0.1:%d ssl; server_name localhost;\n"
	        "  ssl_certificate %s/server.crt; ssl_certificate_key %s/server.key;\n"
	        "  ssl_protocols TLSv1.2;\n"
	        "  location / { default_type application/json; return 200 '{\"id\":\"chatcmpl-mock-2\","
	        "\"object\":\"chat.completion\",\"created\":1796357578,\"model\":\"gpt-4o-mini\","
	        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
	        "\"bright red kernel fast cloud five four clear theta answer batch silver ocean fox "
	        "delta socket\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
	        "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":16,\"total_tokens\":23,"
	        "\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":"
	        "{\"reasoning_tokens\":0}},\"system_fingerprint\":\"fp_mock\"}'; } } }\n",
	        dir, dir, dir, pp, tp, cert_dir, cert_dir);
	fclose(f);
	char *argv[] = {"nginx", "-c", conf, "-p", dir, NULL};
	pid_t pid;
	if (posix_spawn(&pid, "/usr/sbin/nginx", NULL, NULL, argv, environ) != 0) {
		fprintf(stderr, "cannot start /usr/sbin/nginx\n");
		exit(1);
	}
	for (int i = 0; i < 100 && !(port_open(pp) && port_open(tp)); i++) {
		struct timespec pause = {0, 50 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
	plain->pid = tls->pid = pid;
	snprintf(plain->url, sizeof(plain->url), "http://localhost:%d/v1", pp);
	snprintf(tls->url, sizeof(tls->url), "https://localhost:%d/v1", tp);
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

/* Tells perf record (--control=fifo:...) to start or stop sampling. */
static void perf_ctl(const char *cmd)
{
	const char *path = getenv("BENCH_TLS_PERF_CTL");
	if (!path || !*path)
		return;
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "%s\n", cmd);
		fclose(f);
	}
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static void throughput(const char *label, const struct mock_proc *m, const char *ca, int n)
{
	const char *cs = getenv("BENCH_TLS_C");
	int conc = cs && atoi(cs) > 0 && atoi(cs) <= 64 ? atoi(cs) : 64;
	lr_engine *e = engine(m->url, ca, conc, false);
	run_requests(e, 256, conc); /* warm the pool (and TLS sessions) */
	perf_ctl("enable");
	struct rusage r0, r1;
	getrusage(RUSAGE_SELF, &r0);
	double s0 = bench_proc_cpu_s(m->pid), t0 = bench_now_s();
	int failed = run_requests(e, n, conc);
	double t = bench_now_s() - t0, s = bench_proc_cpu_s(m->pid) - s0;
	getrusage(RUSAGE_SELF, &r1);
	perf_ctl("disable");
	double user = tv_s(r1.ru_utime) - tv_s(r0.ru_utime), sys = tv_s(r1.ru_stime) - tv_s(r0.ru_stime);
	/* Context switches tell waits apart from work: a client that sleeps
	 * once per completion pays a wake-up's kernel time per request. */
	long csw = (r1.ru_nvcsw - r0.ru_nvcsw) + (r1.ru_nivcsw - r0.ru_nivcsw);
	lr_engine_stats st;
	lr_engine_get_stats(e, &st);
	printf("%-22s %8d %9.0f %12.2f %12.2f %9llu %6d %8.2f %8.2f %7.3f\n", label, n, n / t,
	       (user + sys) * 1e6 / n, s * 1e6 / n, (unsigned long long)st.connections_opened, failed,
	       user * 1e6 / n, sys * 1e6 / n, (double)csw / n);
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
	const char *only = getenv("BENCH_TLS_ONLY");
	if (only && *only) {
		bool https = strcmp(only, "https") == 0;
		mock_start(&plain, llmring, argv[2], https, false);
		for (int rep = 0; rep < 5; rep++)
			throughput(https ? "https, pooled" : "plain http, pooled", &plain, ca, n);
		mock_stop(&plain);
		return 0;
	}
	const char *ng = getenv("BENCH_TLS_NGINX");
	if (ng && *ng) {
		nginx_start(&plain, &tls, argv[2]);
		printf("%-22s %8s %9s %12s %12s %9s %6s %8s %8s %7s\n", "run (nginx)", "requests",
		       "req/s", "client us/rq", "server us/rq", "conns", "failed", "user", "sys", "csw/rq");
		for (int rep = 0; rep < atoi(ng); rep++) {
			throughput("plain http, pooled", &plain, ca, n);
			throughput("https, pooled", &tls, ca, n);
		}
		nginx_stop(plain.pid);
		return 0;
	}
	mock_start(&plain, llmring, argv[2], false, false);
	mock_start(&tls, llmring, argv[2], true, false);
	mock_start(&tls_close, llmring, argv[2], true, true);
	mock_start(&plain_close, llmring, argv[2], false, true);

	printf("%-22s %8s %9s %12s %12s %9s %6s %8s %8s %7s\n", "run", "requests", "req/s",
	       "client us/rq", "server us/rq", "conns", "failed", "user", "sys", "csw/rq");
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

/*
 * https through the engine: against the mock serving TLS and against a
 * third-party TLS server (nginx, when installed), with certificates made
 * at test time by tests/certs/gen-certs.sh. Each verification failure has
 * its own error code; a pooled TLS connection is reused; a new connection
 * resumes the origin's session; name resolution failures are quick and
 * stall nobody else.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/tls.h"
#include "io/tls_rec.h"
#include "llmring.h"
#include "util/test_hooks.h"
#include "mock_server.h"

static char cert_dir[PATH_MAX];

/* Connections whose records moved to libcrypto, by cipher (enum
 * tls_rec_cipher: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305). */
static atomic_int offloads[3];
void tls_offload_hook(int cipher)
{
	if (cipher >= 0 && cipher < 3)
		offloads[cipher]++;
}

static int offload_total(void)
{
	return offloads[0] + offloads[1] + offloads[2];
}
static char ca_path[PATH_MAX + 16];

static const char *source_dir(void)
{
	const char *env = getenv("LLMRING_SOURCE_DIR");
	return env ? env : LLMRING_SOURCE_DIR;
}

static int make_certs(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/llmring-tls-XXXXXX";
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

static struct mock_server *start_tls_mock(const char *name)
{
	static char crt[PATH_MAX + 32], key[PATH_MAX + 32];
	snprintf(crt, sizeof(crt), "%s/%s.crt", cert_dir, name);
	snprintf(key, sizeof(key), "%s/%s.key", cert_dir, name);
	struct mock_options o;
	mock_options_default(&o);
	o.tls_cert_file = crt;
	o.tls_key_file = key;
	struct mock_server *s = NULL;
	assert_int_equal(mock_server_start(&o, &s), 0);
	return s;
}

static lr_engine *engine_for(const char *url, bool insecure)
{
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.ca_file = ca_path;
	cfg.insecure = insecure;
	cfg.connect_timeout_s = 2;
	cfg.total_timeout_s = 10;
	cfg.max_retries = 0; /* each failure is checked as it first comes */
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	return e;
}

/* One request; returns its error code (status in *status). */
static int one_request(lr_engine *e, int *status, char *msg, size_t msg_cap)
{
	lr_request *rq = lr_request_new("gpt-4o-mini");
	assert_int_equal(lr_request_add_message(rq, LR_ROLE_USER, "hello over tls"), 0);
	lr_future *f = lr_submit(e, rq);
	assert_non_null(f);
	assert_int_equal(lr_future_wait(f, 15000), 1);
	const lr_result *r = lr_future_result(f);
	int err = r->error;
	if (status)
		*status = r->http_status;
	if (msg)
		snprintf(msg, msg_cap, "%s", r->error_message ? r->error_message : "");
	if (!err)
		assert_true(r->usage.output_tokens > 0);
	lr_future_release(f);
	return err;
}

static int request_to(const char *cert, const char *host, bool insecure, char *msg, size_t cap)
{
	struct mock_server *s = start_tls_mock(cert);
	char url[128];
	snprintf(url, sizeof(url), "https://%s:%u/v1", host, mock_server_port(s));
	lr_engine *e = engine_for(url, insecure);
	int err = one_request(e, NULL, msg, cap);
	lr_engine_destroy(e);
	mock_server_stop(s);
	return err;
}

static void test_valid_certificate_succeeds_and_reuses_the_connection(void **state)
{
	(void)state;
	struct mock_server *s = start_tls_mock("server");
	char url[128];
	snprintf(url, sizeof(url), "https://localhost:%u/v1", mock_server_port(s));
	lr_engine *e = engine_for(url, false);
	int before = offload_total();
	for (int i = 0; i < 5; i++) {
		int status = 0;
		assert_int_equal(one_request(e, &status, NULL, 0), LR_OK);
		assert_int_equal(status, 200);
	}
	lr_engine_stats st;
	lr_engine_get_stats(e, &st);
	assert_int_equal(st.connections_opened, 1);
	assert_int_equal(st.connections_reused, 4);
	assert_int_equal(st.tls_full_handshakes, 1);
	/* mbedTLS's server picks an AEAD suite: libcrypto did the records. */
	assert_int_equal(offload_total(), before + 1);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* An HTTP call's body read from a file in pieces, each encrypted as it
 * goes: a chat body padded with 1.5 MB of JSON whitespace. */
static void file_body_request(lr_engine *e)
{
	char path[] = "/tmp/lr-tls-body-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	static const char head[] = "{\"model\":\"gpt-4o-mini\",";
	static const char tail[] = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	size_t pad = 1500000;
	char *spaces = malloc(pad);
	memset(spaces, ' ', pad);
	assert_int_equal(write(fd, head, strlen(head)), (ssize_t)strlen(head));
	assert_int_equal(write(fd, spaces, pad), (ssize_t)pad);
	assert_int_equal(write(fd, tail, strlen(tail)), (ssize_t)strlen(tail));
	free(spaces);
	lr_request *rq = lr_request_new_http("openai", LR_METHOD_POST, "chat/completions");
	assert_non_null(rq);
	assert_int_equal(lr_request_add_body_file(rq, fd, 0, -1), 0);
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 15000), 1);
	const lr_result *r = lr_future_result(f);
	if (r->error)
		fail_msg("%s: %s", lr_error_name(r->error), r->error_message);
	assert_int_equal(r->http_status, 200);
	assert_non_null(strstr(r->body, "chat.completion"));
	lr_future_release(f);
	close(fd);
}

static void test_an_http_call_sends_a_file_body_over_tls(void **state)
{
	(void)state;
	struct mock_server *s = start_tls_mock("server");
	char url[128];
	snprintf(url, sizeof(url), "https://localhost:%u/v1", mock_server_port(s));
	lr_engine *e = engine_for(url, false);
	int before = offload_total();
	file_body_request(e);
	assert_int_equal(offload_total(), before + 1);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_new_connection_resumes_the_session(void **state)
{
	(void)state;
	struct mock_server *s = start_tls_mock("server");
	char url[128];
	snprintf(url, sizeof(url), "https://localhost:%u/v1", mock_server_port(s));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.ca_file = ca_path;
	cfg.pool_idle_s = 0.05; /* the idle connection is gone before the next request */
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	int before = offload_total();
	assert_int_equal(one_request(e, NULL, NULL, 0), LR_OK);
	struct timespec pause = {0, 200 * 1000 * 1000};
	nanosleep(&pause, NULL);
	assert_int_equal(one_request(e, NULL, NULL, 0), LR_OK);
	lr_engine_stats st;
	lr_engine_get_stats(e, &st);
	assert_int_equal(st.connections_opened, 2);
	assert_int_equal(st.tls_full_handshakes, 1);
	assert_int_equal(st.tls_resumed_handshakes, 1);
	/* The abbreviated handshake exports its keys too. */
	assert_int_equal(offload_total(), before + 2);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_wrong_name_fails_with_name_mismatch(void **state)
{
	(void)state;
	char msg[400];
	assert_int_equal(request_to("other", "localhost", false, msg, sizeof(msg)), LR_ETLS_NAME);
	assert_non_null(strstr(msg, "localhost"));
}

static void test_insecure_lets_the_wrong_name_through(void **state)
{
	(void)state;
	assert_int_equal(request_to("other", "localhost", true, NULL, 0), LR_OK);
}

static void test_untrusted_issuer_fails_with_untrusted(void **state)
{
	(void)state;
	char msg[400];
	assert_int_equal(request_to("untrusted", "localhost", false, msg, sizeof(msg)), LR_ETLS_UNTRUSTED);
	assert_non_null(strstr(msg, "not trusted"));
}

static void test_expired_certificate_fails_with_expired(void **state)
{
	(void)state;
	char msg[400];
	assert_int_equal(request_to("expired", "localhost", false, msg, sizeof(msg)), LR_ETLS_EXPIRED);
	assert_non_null(strstr(msg, "expired"));
}

static void test_ip_literal_with_ip_san_succeeds(void **state)
{
	(void)state;
	assert_int_equal(request_to("server", "127.0.0.1", false, NULL, 0), LR_OK);
}

static void test_ip_literal_without_ip_san_fails(void **state)
{
	(void)state;
	assert_int_equal(request_to("noip", "127.0.0.1", false, NULL, 0), LR_ETLS_NAME);
}

/* A listener that accepts and then either says nothing or answers in
 * plain HTTP, whatever arrives. */
struct raw_server {
	int fd;
	uint16_t port;
	bool answer_plain_http;
	pthread_t thread;
	int client;
};

static void *raw_server_run(void *arg)
{
	struct raw_server *rs = arg;
	rs->client = accept(rs->fd, NULL, NULL);
	if (rs->client >= 0 && rs->answer_plain_http) {
		char buf[512];
		if (read(rs->client, buf, sizeof(buf)) > 0) {
			static const char reply[] =
				"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
			ssize_t n = write(rs->client, reply, sizeof(reply) - 1);
			(void)n;
		}
	}
	return NULL;
}

static void raw_server_start(struct raw_server *rs, bool plain_http)
{
	memset(rs, 0, sizeof(*rs));
	rs->client = -1;
	rs->answer_plain_http = plain_http;
	rs->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(rs->fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(rs->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(rs->fd, 4), 0);
	socklen_t len = sizeof(a);
	getsockname(rs->fd, (struct sockaddr *)&a, &len);
	rs->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&rs->thread, NULL, raw_server_run, rs), 0);
}

static void raw_server_stop(struct raw_server *rs)
{
	shutdown(rs->fd, SHUT_RDWR);
	pthread_join(rs->thread, NULL);
	if (rs->client >= 0)
		close(rs->client);
	close(rs->fd);
}

static void test_silent_server_fails_with_handshake_timeout(void **state)
{
	(void)state;
	struct raw_server rs;
	raw_server_start(&rs, false);
	char url[128];
	snprintf(url, sizeof(url), "https://localhost:%u/v1", rs.port);
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.ca_file = ca_path;
	cfg.connect_timeout_s = 0.5;
	cfg.max_retries = 0;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	char msg[400];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(one_request(e, NULL, msg, sizeof(msg)), LR_ETLS_HANDSHAKE);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(secs < 5);
	assert_non_null(strstr(msg, "timed out"));
	lr_engine_destroy(e);
	raw_server_stop(&rs);
}

static void test_plain_http_on_the_tls_port_fails_with_handshake_error(void **state)
{
	(void)state;
	struct raw_server rs;
	raw_server_start(&rs, true);
	char url[128];
	snprintf(url, sizeof(url), "https://localhost:%u/v1", rs.port);
	lr_engine *e = engine_for(url, false);
	char msg[400];
	assert_int_equal(one_request(e, NULL, msg, sizeof(msg)), LR_ETLS_HANDSHAKE);
	assert_non_null(strstr(msg, "does not speak TLS"));
	lr_engine_destroy(e);
	raw_server_stop(&rs);
}

static void test_unresolvable_name_fails_fast_without_stalling_others(void **state)
{
	(void)state;
	struct mock_server *s = start_tls_mock("server");
	char good[128];
	snprintf(good, sizeof(good), "https://localhost:%u/v1", mock_server_port(s));
	lr_engine *e = engine_for(good, false);
	lr_request *bad = lr_request_new("m");
	lr_request_add_message(bad, LR_ROLE_USER, "x");
	lr_request_set_base_url(bad, "https://nonexistent.invalid/v1");
	lr_future *fb = lr_submit(e, bad);
	assert_int_equal(one_request(e, NULL, NULL, 0), LR_OK);
	assert_int_equal(lr_future_wait(fb, 15000), 1);
	const lr_result *r = lr_future_result(fb);
	assert_int_equal(r->error, LR_ECONNECT);
	assert_non_null(strstr(r->error_message, "nonexistent.invalid"));
	lr_future_release(fb);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

static void test_many_concurrent_tls_requests_complete(void **state)
{
	(void)state;
	struct mock_server *s = start_tls_mock("server");
	char url[128];
	snprintf(url, sizeof(url), "https://localhost:%u/v1", mock_server_port(s));
	lr_config cfg = lr_config_default();
	cfg.base_url = url;
	cfg.ca_file = ca_path;
	cfg.max_in_flight = 16;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	enum { N = 200 };
	lr_future *f[N];
	for (int i = 0; i < N; i++) {
		lr_request *rq = lr_request_new("m");
		lr_request_add_message(rq, LR_ROLE_USER, "x y z");
		f[i] = lr_submit(e, rq);
	}
	for (int i = 0; i < N; i++) {
		assert_int_equal(lr_future_wait(f[i], 20000), 1);
		assert_int_equal(lr_future_result(f[i])->error, LR_OK);
		lr_future_release(f[i]);
	}
	lr_engine_stats st;
	lr_engine_get_stats(e, &st);
	assert_true(st.connections_opened <= 16);
	/* The first connections race each other to a full handshake; the
	 * rest of the pool resumes once a session is saved. */
	assert_int_equal(st.tls_full_handshakes + st.tls_resumed_handshakes, st.connections_opened);
	lr_engine_destroy(e);
	mock_server_stop(s);
}

/* A caller-driven engine (no thread) must return to its caller when a
 * future completes without any I/O on the ring. */
static void test_caller_driven_engine_sees_failures_without_io(void **state)
{
	(void)state;
	lr_config cfg = lr_config_default();
	cfg.base_url = "http://nonexistent.invalid:9/v1";
	cfg.drive_from_caller = 1;
	cfg.reap_completions = 1;
	lr_engine *e = NULL;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	lr_request *rq = lr_request_new("m");
	lr_request_add_message(rq, LR_ROLE_USER, "x");
	lr_future_release(lr_submit(e, rq));
	lr_future *out[4];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int n = lr_engine_reap_batch(e, out, 4, 1, 20000);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(n, 1);
	assert_int_equal(lr_future_result(out[0])->error, LR_ECONNECT);
	lr_future_release(out[0]);
	assert_true(t1.tv_sec - t0.tv_sec < 10);
	/* And a bad CA bundle, which fails at connection set-up. */
	lr_engine_destroy(e);
	cfg.base_url = "https://localhost:9/v1";
	char bogus[PATH_MAX + 16];
	snprintf(bogus, sizeof(bogus), "%s/server.key", cert_dir); /* not a CA bundle */
	cfg.ca_file = bogus;
	assert_int_equal(lr_engine_new(&cfg, &e), 0);
	rq = lr_request_new("m");
	lr_request_add_message(rq, LR_ROLE_USER, "x");
	lr_future *f = lr_submit(e, rq);
	assert_int_equal(lr_future_wait(f, 20000), 1);
	assert_int_not_equal(lr_future_result(f)->error, LR_OK);
	assert_non_null(strstr(lr_future_result(f)->error_message, "CA certificates"));
	lr_future_release(f);
	lr_engine_destroy(e);
}

/* The lookup the engine's resolver uses while set (NULL: getaddrinfo). */
static int (*resolve_getaddrinfo_hook)(const char *host, const char *service,
                                       const struct addrinfo *hints, struct addrinfo **res);

/* Replaces the library's weak resolve_getaddrinfo (util/test_hooks.h). */
int resolve_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                        struct addrinfo **res)
{
	return resolve_getaddrinfo_hook ? resolve_getaddrinfo_hook(host, service, hints, res)
	                                : getaddrinfo(host, service, hints, res);
}

/* "two.test" resolves to 127.0.0.2 (nothing listens there) and then
 * 127.0.0.1. */

static int two_addresses(const char *host, const char *service, const struct addrinfo *hints,
                         struct addrinfo **res)
{
	if (strcmp(host, "two.test") != 0)
		return getaddrinfo(host, service, hints, res);
	struct addrinfo numeric = *hints, *first = NULL, *second = NULL;
	numeric.ai_flags |= AI_NUMERICHOST;
	int rc = getaddrinfo("127.0.0.2", service, &numeric, &first);
	if (rc)
		return rc;
	rc = getaddrinfo("127.0.0.1", service, &numeric, &second);
	if (rc) {
		freeaddrinfo(first);
		return rc;
	}
	struct addrinfo *tail = first;
	while (tail->ai_next)
		tail = tail->ai_next;
	tail->ai_next = second; /* one list: freeaddrinfo walks it all */
	*res = first;
	return 0;
}

/* "moved.test" is 127.0.0.2 (nothing listens) at the first lookup and
 * 127.0.0.1 from then on, found slowly. */
static _Atomic int moved_lookups;

static int moved_server(const char *host, const char *service, const struct addrinfo *hints,
                        struct addrinfo **res)
{
	if (strcmp(host, "moved.test") != 0)
		return getaddrinfo(host, service, hints, res);
	struct addrinfo numeric = *hints;
	numeric.ai_flags |= AI_NUMERICHOST;
	bool first = atomic_fetch_add(&moved_lookups, 1) == 0;
	if (!first)
		usleep(300 * 1000); /* the failed socket's close completes while this looks up */
	return getaddrinfo(first ? "127.0.0.2" : "127.0.0.1", service, &numeric, res);
}

static void test_a_name_whose_every_address_failed_is_looked_up_again(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	struct mock_server *s = NULL;
	assert_int_equal(mock_server_start(&o, &s), 0); /* plain, on 127.0.0.1 only */
	atomic_store(&moved_lookups, 0);
	resolve_getaddrinfo_hook = moved_server;
	char url[128];
	snprintf(url, sizeof(url), "http://moved.test:%u/v1", mock_server_port(s));
	lr_engine *e = engine_for(url, false);
	/* A fresh answer that fails is kept: a server that is down is not
	 * looked up again per request. */
	assert_int_equal(one_request(e, NULL, NULL, 0), LR_ECONNECT);
	assert_int_equal(one_request(e, NULL, NULL, 0), LR_ECONNECT);
	assert_int_equal(atomic_load(&moved_lookups), 1);
	/* Once it is a second old, a total failure forgets it (the DNS TTL
	 * is a minute) and the next request finds the server's new address. */
	usleep(1100 * 1000);
	assert_int_equal(one_request(e, NULL, NULL, 0), LR_ECONNECT);
	assert_int_equal(one_request(e, NULL, NULL, 0), LR_OK);
	assert_int_equal(atomic_load(&moved_lookups), 2);
	lr_engine_destroy(e);
	resolve_getaddrinfo_hook = NULL;
	mock_server_stop(s);
}

static void test_connect_failure_moves_on_to_the_next_address(void **state)
{
	(void)state;
	struct mock_options o;
	mock_options_default(&o);
	struct mock_server *s = NULL;
	assert_int_equal(mock_server_start(&o, &s), 0); /* plain, on 127.0.0.1 only */
	resolve_getaddrinfo_hook = two_addresses;
	char url[128];
	snprintf(url, sizeof(url), "http://two.test:%u/v1", mock_server_port(s));
	lr_engine *e = engine_for(url, false);
	assert_int_equal(one_request(e, NULL, NULL, 0), LR_OK);
	lr_engine_stats st;
	lr_engine_get_stats(e, &st);
	assert_int_equal(st.connections_opened, 2); /* 127.0.0.2 refused, then 127.0.0.1 */
	lr_engine_destroy(e);
	resolve_getaddrinfo_hook = NULL;
	mock_server_stop(s);
}

/* nginx from Debian as a third-party TLS server, when installed: the
 * same outcomes as against the mock, from a TLS stack that is not ours. */
struct nginx {
	pid_t pid;
	uint16_t port;
};

/* ciphers: an OpenSSL cipher list for TLS 1.2 (NULL: nginx's default). */
static void nginx_start_with(struct nginx *n, const char *cert, const char *ciphers)
{
	char conf[PATH_MAX + 48];
	snprintf(conf, sizeof(conf), "%s/nginx-%s.conf", cert_dir, cert);
	struct raw_server probe;
	raw_server_start(&probe, false); /* borrow a free port */
	n->port = probe.port;
	raw_server_stop(&probe);
	FILE *fp = fopen(conf, "w");
	assert_non_null(fp);
	fprintf(fp,
	        "daemon off; pid %s/nginx-%s.pid; error_log %s/error.log; worker_processes 1;\n"
	        "events { worker_connections 64; }\n"
	        "http { access_log off; client_body_temp_path %s; client_max_body_size 4m;\n"
	        " server { listen 127.0.0.1:%u ssl; server_name localhost;\n"
	        "  ssl_certificate %s/%s.crt; ssl_certificate_key %s/%s.key;\n"
	        "  ssl_protocols TLSv1.2; ssl_ciphers %s;\n"
	        "  location / { default_type application/json; return 200 "
	        "'{\"id\":\"x\",\"object\":\"chat.completion\",\"model\":\"nginx\",\"choices\":[],"
	        "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}'; } } }\n",
	        cert_dir, cert, cert_dir, cert_dir, n->port, cert_dir, cert, cert_dir, cert,
	        ciphers ? ciphers : "HIGH:!aNULL");
	fclose(fp);
	n->pid = fork();
	assert_true(n->pid >= 0);
	if (n->pid == 0) {
		execl("/usr/sbin/nginx", "nginx", "-c", conf, "-p", cert_dir, (char *)NULL);
		_exit(127);
	}
	/* Wait until it listens (a plain connect succeeds). */
	for (int tries = 0; tries < 100; tries++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(n->port),
		                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
		close(fd);
		if (ok)
			return;
		struct timespec pause = {0, 50 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
	fail_msg("nginx did not start");
}

static void nginx_start(struct nginx *n, const char *cert)
{
	nginx_start_with(n, cert, NULL);
}

static void nginx_stop(struct nginx *n)
{
	kill(n->pid, SIGTERM);
	waitpid(n->pid, NULL, 0);
}

static int nginx_request(const char *cert, bool insecure)
{
	struct nginx n;
	nginx_start(&n, cert);
	char url[128];
	snprintf(url, sizeof(url), "https://localhost:%u/v1", n.port);
	lr_engine *e = engine_for(url, insecure);
	int err = one_request(e, NULL, NULL, 0);
	lr_engine_destroy(e);
	nginx_stop(&n);
	return err;
}

static void test_nginx_valid_certificate_succeeds_and_reuses(void **state)
{
	(void)state;
	if (access("/usr/sbin/nginx", X_OK) != 0)
		skip();
	struct nginx n;
	nginx_start(&n, "server");
	char url[128];
	snprintf(url, sizeof(url), "https://localhost:%u/v1", n.port);
	lr_engine *e = engine_for(url, false);
	int before = offloads[TLS_REC_AES_128_GCM];
	for (int i = 0; i < 3; i++)
		assert_int_equal(one_request(e, NULL, NULL, 0), LR_OK);
	lr_engine_stats st;
	lr_engine_get_stats(e, &st);
	assert_int_equal(st.connections_opened, 1);
	assert_int_equal(st.connections_reused, 2);
	lr_engine_destroy(e);
	nginx_stop(&n);
	/* nginx follows the client's order: AES-128-GCM, where the CPU has
	 * AES instructions (tls_suites_new), is what it picks. */
	int *aes_first = tls_suites_new();
	assert_int_equal(offloads[TLS_REC_AES_128_GCM] - before, aes_first ? 1 : 0);
	free(aes_first);
}

static void test_nginx_verification_failures_have_their_codes(void **state)
{
	(void)state;
	if (access("/usr/sbin/nginx", X_OK) != 0)
		skip();
	assert_int_equal(nginx_request("other", false), LR_ETLS_NAME);
	assert_int_equal(nginx_request("untrusted", false), LR_ETLS_UNTRUSTED);
	assert_int_equal(nginx_request("expired", false), LR_ETLS_EXPIRED);
	assert_int_equal(nginx_request("other", true), LR_OK);
}

/* OpenSSL on the other side of each AEAD suite we take over (and of a
 * CBC suite, which mbedTLS keeps): small answers on a pooled connection
 * and a 1.5 MB request body, in records libcrypto sealed. */
static void test_nginx_every_aead_suite_and_cbc(void **state)
{
	(void)state;
	if (access("/usr/sbin/nginx", X_OK) != 0)
		skip();
	static const struct {
		const char *ciphers;
		int cipher; /* -1: mbedTLS keeps the records */
	} suites[] = {
		{"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", 0},
		{"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384", 1},
		{"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305", 2},
		{"ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256", -1},
	};
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		struct nginx n;
		nginx_start_with(&n, "server", suites[i].ciphers);
		char url[128];
		snprintf(url, sizeof(url), "https://localhost:%u/v1", n.port);
		lr_engine *e = engine_for(url, false);
		int before[3] = {offloads[0], offloads[1], offloads[2]};
		for (int k = 0; k < 3; k++)
			assert_int_equal(one_request(e, NULL, NULL, 0), LR_OK);
		file_body_request(e);
		lr_engine_stats st;
		lr_engine_get_stats(e, &st);
		assert_int_equal(st.connections_opened, 1);
		lr_engine_destroy(e);
		nginx_stop(&n);
		for (int c = 0; c < 3; c++)
			if (offloads[c] - before[c] != (c == suites[i].cipher ? 1 : 0))
				fail_msg("%s: %d offloads with cipher %d", suites[i].ciphers,
				         offloads[c] - before[c], c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_certificate_succeeds_and_reuses_the_connection),
		cmocka_unit_test(test_an_http_call_sends_a_file_body_over_tls),
		cmocka_unit_test(test_new_connection_resumes_the_session),
		cmocka_unit_test(test_wrong_name_fails_with_name_mismatch),
		cmocka_unit_test(test_insecure_lets_the_wrong_name_through),
		cmocka_unit_test(test_untrusted_issuer_fails_with_untrusted),
		cmocka_unit_test(test_expired_certificate_fails_with_expired),
		cmocka_unit_test(test_ip_literal_with_ip_san_succeeds),
		cmocka_unit_test(test_ip_literal_without_ip_san_fails),
		cmocka_unit_test(test_silent_server_fails_with_handshake_timeout),
		cmocka_unit_test(test_plain_http_on_the_tls_port_fails_with_handshake_error),
		cmocka_unit_test(test_unresolvable_name_fails_fast_without_stalling_others),
		cmocka_unit_test(test_connect_failure_moves_on_to_the_next_address),
		cmocka_unit_test(test_a_name_whose_every_address_failed_is_looked_up_again),
		cmocka_unit_test(test_caller_driven_engine_sees_failures_without_io),
		cmocka_unit_test(test_many_concurrent_tls_requests_complete),
		cmocka_unit_test(test_nginx_valid_certificate_succeeds_and_reuses),
		cmocka_unit_test(test_nginx_verification_failures_have_their_codes),
		cmocka_unit_test(test_nginx_every_aead_suite_and_cbc),
	};
	return cmocka_run_group_tests(tests, make_certs, remove_certs);
}

/*
 * The mock server, spoken to with plain blocking sockets: response shapes,
 * usage numbers, keep-alive and pipelining, streaming, embeddings, every
 * fault kind (by header, by body marker, by rate), close_every, delays,
 * many connections, and stopping with connections open.
 *
 * Then HTTPS: the same client through mbedTLS over the blocking socket,
 * verifying against a test CA made by tests/certs/gen-certs.sh at test time
 * (found through LLMRING_SOURCE_DIR, else next to this file; skipped when
 * the openssl tool is missing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "mock_server.h"

extern char **environ;

/* ------------------------------------------------------------------ */
/* A tiny blocking HTTP client                                         */

struct tls_client;

struct client {
	int fd;
	char *buf;   /* received, not yet consumed; owned by the client */
	size_t len;
	size_t cap;
	struct tls_client *tls; /* NULL for plain HTTP; owned by the client */
};

static void tls_client_free(struct tls_client *t);
static int tls_send(struct client *c, const char *p, size_t n);
static int tls_fill(struct client *c);
static struct mock_server *start_tls_default(void);
static void tls_connect(struct client *c, uint16_t port);

struct resp {
	int status;
	char *head;  /* owned by the resp */
	char *body;  /* decoded body, NUL-terminated; owned by the resp */
	size_t body_len;
	bool chunked;
	bool complete; /* the framing said the body ended */
	int err;       /* errno when reading failed, 0 on EOF or success */
	bool eof;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void client_open(struct client *c, uint16_t port)
{
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct timeval tv = {.tv_sec = 20};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->cap = 1 << 16;
	c->buf = malloc(c->cap);
	assert_non_null(c->buf);
}

static void client_close(struct client *c)
{
	tls_client_free(c->tls);
	c->tls = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

static void send_str(struct client *c, const char *s)
{
	size_t n = strlen(s), off = 0;
	while (off < n) {
		ssize_t w = c->tls ? tls_send(c, s + off, n - off)
				   : send(c->fd, s + off, n - off, MSG_NOSIGNAL);
		assert_true(w > 0);
		off += (size_t)w;
	}
}

/* Reads more bytes; 1 got some, 0 EOF, -errno error. */
static int fill(struct client *c)
{
	if (c->cap - c->len < 4096) {
		c->cap *= 2;
		c->buf = realloc(c->buf, c->cap);
		assert_non_null(c->buf);
	}
	if (c->tls)
		return tls_fill(c);
	ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
	if (r > 0) {
		c->len += (size_t)r;
		return 1;
	}
	return r == 0 ? 0 : -errno;
}

static void consume(struct client *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

static char *find_mem(struct client *c, const char *needle)
{
	return memmem(c->buf, c->len, needle, strlen(needle));
}

static void resp_free(struct resp *r)
{
	free(r->head);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static const char *resp_header(const struct resp *r, const char *name, char *out, size_t outsz)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		const char *h = p + 2;
		if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
			const char *v = h + nl + 1;
			while (*v == ' ')
				v++;
			const char *e = strstr(v, "\r\n");
			size_t vl = (size_t)(e - v);
			if (vl >= outsz)
				vl = outsz - 1;
			memcpy(out, v, vl);
			out[vl] = '\0';
			return out;
		}
	}
	return NULL;
}

static void body_add(struct resp *r, const char *p, size_t n)
{
	r->body = realloc(r->body, r->body_len + n + 1);
	assert_non_null(r->body);
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
}

/* Reads one response; on a transport failure returns what it has. */
static void read_response(struct client *c, struct resp *r)
{
	memset(r, 0, sizeof(*r));
	r->body = calloc(1, 1);
	char *e;
	int f;
	while (!(e = find_mem(c, "\r\n\r\n"))) {
		if ((f = fill(c)) <= 0) {
			r->err = -f;
			r->eof = f == 0;
			return;
		}
	}
	size_t hl = (size_t)(e - c->buf) + 4;
	r->head = strndup(c->buf, hl);
	consume(c, hl);
	sscanf(r->head, "HTTP/1.1 %d", &r->status);
	char v[64];
	if (resp_header(r, "transfer-encoding", v, sizeof(v))) {
		r->chunked = true;
		for (;;) {
			while (!(e = find_mem(c, "\r\n"))) {
				if ((f = fill(c)) <= 0)
					goto fail;
			}
			size_t sz = strtoul(c->buf, NULL, 16);
			size_t need = (size_t)(e - c->buf) + 2 + sz + 2;
			while (c->len < need) {
				if ((f = fill(c)) <= 0)
					goto fail;
			}
			if (sz == 0) {
				consume(c, need);
				r->complete = true;
				return;
			}
			body_add(r, e + 2, sz);
			consume(c, need);
		}
	}
	size_t cl = resp_header(r, "content-length", v, sizeof(v)) ? strtoul(v, NULL, 10) : 0;
	while (c->len < cl) {
		if ((f = fill(c)) <= 0)
			goto fail;
	}
	body_add(r, c->buf, cl);
	consume(c, cl);
	r->complete = true;
	return;
fail:
	r->err = -f;
	r->eof = f == 0;
}

static char *request(const char *path, const char *extra, const char *body)
{
	char *s = NULL;
	int n = asprintf(&s,
			 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
			 "%sContent-Length: %zu\r\n\r\n%s",
			 path, extra ? extra : "", strlen(body), body);
	assert_true(n > 0);
	return s;
}

/* One request on a fresh connection; the connection is closed after. */
static void roundtrip(uint16_t port, const char *path, const char *extra, const char *body,
		      struct resp *r)
{
	struct client c;
	client_open(&c, port);
	char *rq = request(path, extra, body);
	send_str(&c, rq);
	free(rq);
	read_response(&c, r);
	client_close(&c);
}

/* After the response: does the server close the connection (FIN)? */
static bool server_closed(struct client *c)
{
	return c->len == 0 && fill(c) == 0;
}

static unsigned count_words(const char *s)
{
	unsigned n = 0;
	bool in = false;
	for (; *s; s++) {
		bool ws = *s == ' ';
		if (!ws && !in)
			n++;
		in = !ws;
	}
	return n;
}

/* The string value of "key":"..." (first occurrence), no unescaping. */
static char *json_str(const char *body, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	const char *p = strstr(body, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	const char *e = strchr(p, '"');
	return strndup(p, (size_t)(e - p));
}

static long json_num(const char *body, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(body, pat);
	return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static struct mock_server *start(struct mock_options *o)
{
	struct mock_server *s = NULL;
	assert_int_equal(mock_server_start(o, &s), 0);
	assert_non_null(s);
	assert_true(mock_server_port(s) != 0);
	return s;
}

static struct mock_server *start_default(void)
{
	struct mock_options o;
	mock_options_default(&o);
	o.slow_header_ms = 2;
	return start(&o);
}

static const char chat_body[] =
	"{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":\"You are "
	"helpful.\"},{\"role\":\"user\",\"content\":\"hello there\\nbig   world\"}]}";
#define CHAT_PROMPT_WORDS 7

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void chat_reply_has_openai_shape_and_word_counts(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL, chat_body, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	char v[64];
	assert_non_null(resp_header(&r, "content-type", v, sizeof(v)));
	assert_string_equal(v, "application/json");
	assert_non_null(resp_header(&r, "x-request-id", v, sizeof(v)));
	assert_string_equal(v, "req_mock_1");
	assert_non_null(strstr(r.body, "{\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion\","
					"\"created\":"));
	assert_non_null(strstr(r.body, "\"model\":\"gpt-4o-mini\""));
	assert_non_null(strstr(r.body, "\"choices\":[{\"index\":0,\"message\":{\"role\":"
					"\"assistant\",\"content\":\""));
	assert_non_null(strstr(r.body, "\"refusal\":null},\"logprobs\":null,"
					"\"finish_reason\":\"stop\"}]"));
	assert_non_null(strstr(r.body, "\"system_fingerprint\":\"fp_mock\"}"));
	assert_non_null(strstr(r.body, "\"prompt_tokens_details\":{\"cached_tokens\":0}"));
	assert_non_null(strstr(r.body, "\"completion_tokens_details\":{\"reasoning_tokens\":0}"));
	char *content = json_str(r.body, "content");
	assert_non_null(content);
	assert_int_equal(count_words(content), 16);
	free(content);
	assert_int_equal(json_num(r.body, "prompt_tokens"), CHAT_PROMPT_WORDS);
	assert_int_equal(json_num(r.body, "completion_tokens"), 16);
	assert_int_equal(json_num(r.body, "total_tokens"), CHAT_PROMPT_WORDS + 16);
	resp_free(&r);
	assert_int_equal(mock_server_requests(s), 1);
	assert_int_equal(mock_server_connections(s), 1);
	mock_server_stop(s);
}

static void chat_without_model_says_mock_and_max_tokens_cuts(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = 10;
	struct mock_server *s = start(&o);
	struct resp r;
	roundtrip(mock_server_port(s), "/chat/completions", NULL,
		  "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":3}", &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"model\":\"mock\""));
	assert_non_null(strstr(r.body, "\"finish_reason\":\"length\""));
	assert_int_equal(json_num(r.body, "completion_tokens"), 3);
	assert_int_equal(json_num(r.body, "prompt_tokens"), 1);
	resp_free(&r);
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL,
		  "{\"model\":\"a\\\"b\",\"messages\":[],\"max_completion_tokens\":50}", &r);
	assert_non_null(strstr(r.body, "\"model\":\"a\\\"b\""));
	assert_non_null(strstr(r.body, "\"finish_reason\":\"stop\""));
	assert_int_equal(json_num(r.body, "completion_tokens"), 10);
	resp_free(&r);
	mock_server_stop(s);
}

static void same_seed_and_request_number_give_same_text(void **state)
{
	char *text[2];
	for (int i = 0; i < 2; i++) {
		struct mock_options o;
		mock_options_default(&o);
		o.seed = 42;
		struct mock_server *s = start(&o);
		struct resp r;
		roundtrip(mock_server_port(s), "/v1/chat/completions", NULL, chat_body, &r);
		text[i] = json_str(r.body, "content");
		resp_free(&r);
		mock_server_stop(s);
	}
	assert_string_equal(text[0], text[1]);
	free(text[0]);
	free(text[1]);
}

static void keep_alive_serves_two_requests_on_one_connection(void **state)
{
	struct mock_server *s = start_default();
	struct client c;
	client_open(&c, mock_server_port(s));
	char *rq = request("/v1/chat/completions", NULL, chat_body);
	for (int i = 0; i < 2; i++) {
		send_str(&c, rq);
		struct resp r;
		read_response(&c, &r);
		assert_int_equal(r.status, 200);
		assert_true(r.complete);
		resp_free(&r);
	}
	free(rq);
	client_close(&c);
	assert_int_equal(mock_server_connections(s), 1);
	assert_int_equal(mock_server_requests(s), 2);
	mock_server_stop(s);
}

static void pipelined_requests_are_answered_in_order(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.ttft_ms = 5; /* the first reply is delayed; the others must wait their turn */
	struct mock_server *s = start(&o);
	struct client c;
	client_open(&c, mock_server_port(s));
	char all[16384] = "";
	for (int i = 0; i < 5; i++) {
		char body[256];
		snprintf(body, sizeof(body), "{\"model\":\"m%d\",\"messages\":[]}", i);
		char *rq = request(i == 2 ? "/v1/nothing" : "/v1/chat/completions", NULL, body);
		strcat(all, rq);
		free(rq);
	}
	send_str(&c, all);
	for (int i = 0; i < 5; i++) {
		struct resp r;
		read_response(&c, &r);
		char want[32];
		snprintf(want, sizeof(want), "\"model\":\"m%d\"", i);
		if (i == 2) {
			assert_int_equal(r.status, 404);
		} else {
			assert_int_equal(r.status, 200);
			assert_non_null(strstr(r.body, want));
		}
		resp_free(&r);
	}
	client_close(&c);
	mock_server_stop(s);
}

static void stream_sends_chunked_sse_with_usage_and_done(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = 5;
	struct mock_server *s = start(&o);
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL,
		  "{\"model\":\"gpt-x\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
		  "\"messages\":[{\"role\":\"user\",\"content\":\"one two three\"}]}",
		  &r);
	assert_int_equal(r.status, 200);
	assert_true(r.chunked);
	assert_true(r.complete);
	char v[64];
	assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)), "text/event-stream");
	/* Events: role, 5 tokens, finish, usage, [DONE]. */
	unsigned events = 0;
	for (const char *p = r.body; (p = strstr(p, "data: ")); p += 6)
		events++;
	assert_int_equal(events, 9);
	assert_non_null(strstr(r.body,
		"data: {\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\",\"created\":"));
	assert_non_null(strstr(r.body, "\"delta\":{\"role\":\"assistant\",\"content\":\"\""));
	assert_non_null(strstr(r.body, "\"system_fingerprint\":\"fp_mock\""));
	assert_non_null(strstr(r.body, "\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}"));
	const char *u = strstr(r.body, "\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
				       "\"completion_tokens\":5,\"total_tokens\":8");
	assert_non_null(u);
	const char *done = strstr(r.body, "data: [DONE]\n\n");
	assert_non_null(done);
	assert_true(done > u);
	assert_int_equal(strlen(done), strlen("data: [DONE]\n\n")); /* last */
	resp_free(&r);

	/* Without include_usage: no usage chunk. */
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL,
		  "{\"stream\": true, \"messages\":[]}", &r);
	assert_true(r.complete);
	assert_null(strstr(r.body, "\"usage\""));
	assert_non_null(strstr(r.body, "data: [DONE]\n\n"));
	resp_free(&r);
	mock_server_stop(s);
}

static void stream_honours_ttft_and_itl(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = 4;
	o.ttft_ms = 60;
	o.itl_ms = 20;
	struct mock_server *s = start(&o);
	struct client c;
	client_open(&c, mock_server_port(s));
	double t0 = now_ms();
	char *rq = request("/v1/chat/completions", NULL, "{\"stream\":true,\"messages\":[]}");
	send_str(&c, rq);
	free(rq);
	/* The head comes at once, the first event after ttft. */
	while (!find_mem(&c, "\r\n\r\n"))
		assert_int_equal(fill(&c), 1);
	while (!find_mem(&c, "data: "))
		assert_int_equal(fill(&c), 1);
	double first = now_ms() - t0;
	assert_true(first >= 60 - 1);
	while (!find_mem(&c, "[DONE]"))
		assert_int_equal(fill(&c), 1);
	double all = now_ms() - t0;
	assert_true(all >= 60 + 3 * 20 - 1);
	client_close(&c);
	mock_server_stop(s);
}

static void ttft_delays_a_whole_reply(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.ttft_ms = 80;
	struct mock_server *s = start(&o);
	double t0 = now_ms();
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL, chat_body, &r);
	assert_true(now_ms() - t0 >= 80 - 1);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	mock_server_stop(s);
}

static void embeddings_one_vector_per_input(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/embeddings", NULL,
		  "{\"model\":\"text-embedding-3-small\",\"input\":[\"a b c\",\"d\",\"e f\"]}", &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\","
					"\"index\":0,\"embedding\":["));
	assert_non_null(strstr(r.body, "\"index\":2,"));
	assert_null(strstr(r.body, "\"index\":3,"));
	assert_non_null(strstr(r.body, "\"model\":\"text-embedding-3-small\",\"usage\":"
					"{\"prompt_tokens\":6,\"total_tokens\":6}}"));
	/* 8 floats: 7 commas inside the first vector. */
	const char *v = strstr(r.body, "\"embedding\":[") + 13;
	const char *ve = strchr(v, ']');
	unsigned commas = 0;
	for (const char *p = v; p < ve; p++)
		commas += *p == ',';
	assert_int_equal(commas, 7);
	resp_free(&r);

	roundtrip(mock_server_port(s), "/embeddings", NULL,
		  "{\"model\":\"e\",\"input\":\"just one string\"}", &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"index\":0,"));
	assert_null(strstr(r.body, "\"index\":1,"));
	assert_int_equal(json_num(r.body, "prompt_tokens"), 3);
	resp_free(&r);
	mock_server_stop(s);
}

static void unknown_path_is_404_with_openai_error(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/completions-nope", NULL, "{}", &r);
	assert_int_equal(r.status, 404);
	assert_non_null(strstr(r.body, "{\"error\":{\"message\":\"Invalid URL (POST "
					"/v1/completions-nope)\",\"type\":\"invalid_request_error\","
					"\"param\":null,\"code\":\"not_found\"}}"));
	resp_free(&r);
	/* A GET on a known path is not found either, and the connection lives on. */
	struct client c;
	client_open(&c, mock_server_port(s));
	send_str(&c, "GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(&c, &r);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	char *rq = request("/v1/chat/completions", NULL, chat_body);
	send_str(&c, rq);
	free(rq);
	read_response(&c, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	client_close(&c);
	mock_server_stop(s);
}

static void bad_requests_get_400_411_431(void **state)
{
	struct mock_server *s = start_default();
	struct client c;
	struct resp r;

	client_open(&c, mock_server_port(s));
	send_str(&c, "NONSENSE\r\n\r\n");
	read_response(&c, &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "\"type\":\"invalid_request_error\""));
	assert_true(server_closed(&c));
	resp_free(&r);
	client_close(&c);

	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL, "not json", &r);
	assert_int_equal(r.status, 400);
	resp_free(&r);

	client_open(&c, mock_server_port(s));
	send_str(&c, "POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		     "2\r\n{}\r\n0\r\n\r\n");
	read_response(&c, &r);
	assert_int_equal(r.status, 411);
	resp_free(&r);
	client_close(&c);

	client_open(&c, mock_server_port(s));
	send_str(&c, "POST /v1/chat/completions HTTP/1.1\r\nX-Big: ");
	char *big = malloc(70 * 1024);
	memset(big, 'a', 70 * 1024 - 1);
	big[70 * 1024 - 1] = '\0';
	send_str(&c, big);
	free(big);
	read_response(&c, &r);
	assert_int_equal(r.status, 431);
	resp_free(&r);
	client_close(&c);

	roundtrip(mock_server_port(s), "/v1/chat/completions", "x-mock-fault: bogus\r\n", "{}", &r);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	mock_server_stop(s);
}

/* Runs one fault both ways (header, body marker) and checks it with fn. */
typedef void (*fault_check)(struct client *c, struct resp *r, double ms);

static void run_fault_on(bool tls, const char *kind, fault_check check, bool stream)
{
	struct mock_server *s = tls ? start_tls_default() : start_default();
	for (int way = 0; way < 2; way++) {
		char hdr[64], body[256];
		snprintf(hdr, sizeof(hdr), "x-mock-fault: %s\r\n", kind);
		snprintf(body, sizeof(body),
			 "{\"model\":\"m\",%s\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}",
			 stream ? "\"stream\":true," : "",
			 way ? "" : "please mock-fault:XX now");
		if (way == 0) {
			char *x = strstr(body, "XX");
			char tmp[256];
			snprintf(tmp, sizeof(tmp), "%.*s%s%s", (int)(x - body), body, kind, x + 2);
			strcpy(body, tmp);
		}
		struct client c;
		if (tls)
			tls_connect(&c, mock_server_port(s));
		else
			client_open(&c, mock_server_port(s));
		char *rq = request("/v1/chat/completions", way ? hdr : NULL, body);
		double t0 = now_ms();
		send_str(&c, rq);
		free(rq);
		struct resp r;
		read_response(&c, &r);
		check(&c, &r, now_ms() - t0);
		resp_free(&r);
		client_close(&c);
	}
	mock_server_stop(s);
}

static void run_fault(const char *kind, fault_check check, bool stream)
{
	run_fault_on(false, kind, check, stream);
}

static void check_429(struct client *c, struct resp *r, double ms)
{
	char v[64];
	assert_int_equal(r->status, 429);
	assert_string_equal(resp_header(r, "retry-after", v, sizeof(v)), "1");
	assert_string_equal(resp_header(r, "retry-after-ms", v, sizeof(v)), "1000");
	assert_non_null(strstr(r->body, "\"type\":\"requests\",\"param\":null,"
					 "\"code\":\"rate_limit_exceeded\""));
	assert_non_null(strstr(r->body, "Rate limit reached"));
}

static void check_500(struct client *c, struct resp *r, double ms)
{
	assert_int_equal(r->status, 500);
	assert_non_null(strstr(r->body, "\"type\":\"server_error\""));
}

static void check_503(struct client *c, struct resp *r, double ms)
{
	assert_int_equal(r->status, 503);
	assert_non_null(strstr(r->body, "The server is overloaded"));
	assert_non_null(strstr(r->body, "\"type\":\"server_error\""));
}

static void check_reset(struct client *c, struct resp *r, double ms)
{
	/* Head and part of the body, then a reset: never a complete reply. */
	assert_false(r->complete);
	if (r->err == 0) {
		/* Data first; the reset shows on the next read. */
		int f;
		while ((f = fill(c)) > 0)
			;
		assert_int_equal(f, -ECONNRESET);
	} else {
		assert_int_equal(r->err, ECONNRESET);
	}
}

static void check_truncate(struct client *c, struct resp *r, double ms)
{
	assert_int_equal(r->status, 200);
	assert_true(r->chunked);
	assert_false(r->complete);
	assert_true(r->eof); /* FIN, not a reset */
	assert_true(r->body_len > 0);
}

static void check_malformed(struct client *c, struct resp *r, double ms)
{
	assert_int_equal(r->status, 200);
	assert_true(r->complete); /* Content-Length is right */
	assert_true(r->body_len > 0);
	assert_true(r->body[r->body_len - 1] != '}');
}

static void check_malformed_stream(struct client *c, struct resp *r, double ms)
{
	assert_int_equal(r->status, 200);
	assert_true(r->complete);
	assert_non_null(strstr(r->body, "data: {\"id\":\"chatcmpl-mock\",\"choices\":[{\n\n"));
}

static void check_slow_headers(struct client *c, struct resp *r, double ms)
{
	assert_int_equal(r->status, 200);
	assert_true(r->complete);
	/* About 90 head bytes, 2 ms apart in this test. */
	assert_true(ms >= 2.0 * (double)(strlen(r->head) - 1) - 1);
}

static void check_close(struct client *c, struct resp *r, double ms)
{
	char v[64];
	assert_int_equal(r->status, 200);
	assert_true(r->complete);
	assert_string_equal(resp_header(r, "connection", v, sizeof(v)), "close");
	assert_true(server_closed(c));
}

static void fault_429(void **state) { run_fault("429", check_429, false); }
static void fault_500(void **state) { run_fault("500", check_500, false); }
static void fault_503(void **state) { run_fault("503", check_503, true); }
static void fault_reset(void **state) { run_fault("reset", check_reset, false); }
static void fault_reset_stream(void **state) { run_fault("reset", check_reset, true); }
static void fault_truncate(void **state) { run_fault("truncate", check_truncate, false); }
static void fault_truncate_stream(void **state) { run_fault("truncate", check_truncate, true); }
static void fault_malformed(void **state) { run_fault("malformed", check_malformed, false); }
static void fault_malformed_stream(void **state)
{
	run_fault("malformed", check_malformed_stream, true);
}
static void fault_slow_headers(void **state) { run_fault("slow-headers", check_slow_headers, false); }
static void fault_close(void **state) { run_fault("close", check_close, false); }

static void fault_rates_pick_faults_deterministically(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.fault_rate[MOCK_FAULT_503] = 1.0;
	struct mock_server *s = start(&o);
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL, chat_body, &r);
	assert_int_equal(r.status, 503);
	resp_free(&r);
	mock_server_stop(s);

	/* Half 429s: the same seed gives the same sequence. */
	int seq[2][40];
	int n429 = 0;
	for (int run = 0; run < 2; run++) {
		mock_options_default(&o);
		o.seed = 7;
		o.fault_rate[MOCK_FAULT_429] = 0.5;
		s = start(&o);
		struct client c;
		client_open(&c, mock_server_port(s));
		char *rq = request("/v1/chat/completions", NULL, chat_body);
		for (int i = 0; i < 40; i++) {
			send_str(&c, rq);
			read_response(&c, &r);
			seq[run][i] = r.status;
			n429 += run == 0 && r.status == 429;
			resp_free(&r);
		}
		free(rq);
		client_close(&c);
		mock_server_stop(s);
	}
	assert_memory_equal(seq[0], seq[1], sizeof(seq[0]));
	assert_true(n429 > 5 && n429 < 35);
}

static void close_every_closes_every_nth_response(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.close_every = 3;
	struct mock_server *s = start(&o);
	struct client c;
	client_open(&c, mock_server_port(s));
	char *rq = request("/v1/chat/completions", NULL, chat_body);
	for (int i = 1; i <= 3; i++) {
		send_str(&c, rq);
		struct resp r;
		read_response(&c, &r);
		assert_int_equal(r.status, 200);
		char v[64];
		if (i < 3) {
			assert_null(resp_header(&r, "connection", v, sizeof(v)));
		} else {
			assert_string_equal(resp_header(&r, "connection", v, sizeof(v)), "close");
			assert_true(server_closed(&c));
		}
		resp_free(&r);
	}
	free(rq);
	client_close(&c);
	mock_server_stop(s);
}

static void request_connection_close_is_honoured(void **state)
{
	struct mock_server *s = start_default();
	struct client c;
	client_open(&c, mock_server_port(s));
	char *rq = request("/v1/chat/completions", "Connection: close\r\n", chat_body);
	send_str(&c, rq);
	free(rq);
	struct resp r;
	read_response(&c, &r);
	assert_int_equal(r.status, 200);
	char v[64];
	assert_string_equal(resp_header(&r, "connection", v, sizeof(v)), "close");
	assert_true(server_closed(&c));
	resp_free(&r);
	client_close(&c);
	mock_server_stop(s);
}

#define NCONC 200

static void many_concurrent_connections_each_get_a_reply(void **state)
{
	struct mock_server *s = start_default();
	struct client *cs = calloc(NCONC, sizeof(*cs));
	char *rq = request("/v1/chat/completions", NULL, chat_body);
	for (int i = 0; i < NCONC; i++)
		client_open(&cs[i], mock_server_port(s));
	for (int i = 0; i < NCONC; i++)
		send_str(&cs[i], rq);
	for (int i = 0; i < NCONC; i++) {
		struct resp r;
		read_response(&cs[i], &r);
		assert_int_equal(r.status, 200);
		assert_true(r.complete);
		resp_free(&r);
		client_close(&cs[i]);
	}
	free(rq);
	free(cs);
	assert_int_equal(mock_server_connections(s), NCONC);
	assert_int_equal(mock_server_requests(s), NCONC);
	mock_server_stop(s);
}

static void stop_with_connections_open_frees_everything(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.itl_ms = 1000;
	o.ttft_ms = 0;
	struct mock_server *s = start(&o);
	struct client c[4];
	for (int i = 0; i < 4; i++)
		client_open(&c[i], mock_server_port(s));
	/* idle; half a request; a stream waiting between tokens; a pipelined pair */
	send_str(&c[1], "POST /v1/chat/completions HTTP/1.1\r\nContent-Le");
	char *rq = request("/v1/chat/completions", NULL, "{\"stream\":true,\"messages\":[]}");
	send_str(&c[2], rq);
	send_str(&c[3], rq);
	send_str(&c[3], rq);
	free(rq);
	while (!find_mem(&c[2], "data: "))
		assert_int_equal(fill(&c[2]), 1);
	double t0 = now_ms();
	mock_server_stop(s); /* ASan reports any leak at exit */
	assert_true(now_ms() - t0 < 900);
	for (int i = 0; i < 4; i++) {
		int f;
		while ((f = fill(&c[i])) > 0)
			;
		assert_true(f == 0 || f == -ECONNRESET);
		client_close(&c[i]);
	}
}

static void plain_ring_fallback_serves_too(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.plain_ring = 1;
	struct mock_server *s = start(&o);
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL, chat_body, &r);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	mock_server_stop(s);
}

static void fault_names_parse(void **state)
{
	assert_int_equal(mock_fault_from_name("429"), MOCK_FAULT_429);
	assert_int_equal(mock_fault_from_name("slow-headers"), MOCK_FAULT_SLOW_HEADERS);
	assert_int_equal(mock_fault_from_name("close"), MOCK_FAULT_CLOSE);
	assert_int_equal(mock_fault_from_name("nope"), -1);
	assert_int_equal(mock_fault_from_name(NULL), -1);
	assert_string_equal(mock_fault_name(MOCK_FAULT_TRUNCATE), "truncate");
}

/* ------------------------------------------------------------------ */
/* HTTPS                                                               */

static char g_certdir[64];       /* mkdtemp directory; removed by the group teardown */
static bool g_have_certs;        /* false when openssl is missing: TLS tests skip */
static mbedtls_entropy_context g_entropy;
static mbedtls_ctr_drbg_context g_drbg;
static mbedtls_x509_crt g_ca;    /* ca.crt, trusted by every test client */
static const char *client_alpn[] = {"http/1.1", NULL};

struct tls_client {
	mbedtls_ssl_context ssl;
	mbedtls_ssl_config conf;
	int fd;                  /* the client's socket; borrowed */
	bool capturing;          /* keep what the server sends during the handshake */
	unsigned char *seen;     /* those bytes; owned by the tls_client */
	size_t seen_len;
	bool peer_notified;      /* the server's close_notify arrived */
};

static void cert_path(char *out, size_t sz, const char *name)
{
	snprintf(out, sz, "%s/%s", g_certdir, name);
}

static int bio_send(void *arg, const unsigned char *p, size_t n)
{
	struct tls_client *t = arg;
	ssize_t w = send(t->fd, p, n, MSG_NOSIGNAL);
	if (w >= 0)
		return (int)w;
	return errno == ECONNRESET || errno == EPIPE ? MBEDTLS_ERR_NET_CONN_RESET
						     : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *arg, unsigned char *p, size_t n)
{
	struct tls_client *t = arg;
	ssize_t r = recv(t->fd, p, n, 0);
	if (r < 0)
		return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
	if (r > 0 && t->capturing) {
		t->seen = realloc(t->seen, t->seen_len + (size_t)r);
		assert_non_null(t->seen);
		memcpy(t->seen + t->seen_len, p, (size_t)r);
		t->seen_len += (size_t)r;
	}
	return (int)r;
}

static void tls_client_free(struct tls_client *t)
{
	if (!t)
		return;
	mbedtls_ssl_free(&t->ssl);
	mbedtls_ssl_config_free(&t->conf);
	free(t->seen);
	free(t);
}

/* Connects and handshakes as a client verifying "localhost" against ca.crt;
 * resume: a session to offer; suites: NULL for the defaults. Returns the
 * handshake's result (0 or an mbedTLS error). */
static int tls_start(struct client *c, uint16_t port, const mbedtls_ssl_session *resume,
		     bool tickets, const int *suites)
{
	client_open(c, port);
	struct tls_client *t = calloc(1, sizeof(*t)); /* owned by c */
	assert_non_null(t);
	c->tls = t;
	t->fd = c->fd;
	mbedtls_ssl_init(&t->ssl);
	mbedtls_ssl_config_init(&t->conf);
	assert_int_equal(mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
						     MBEDTLS_SSL_TRANSPORT_STREAM,
						     MBEDTLS_SSL_PRESET_DEFAULT), 0);
	mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&t->conf, &g_ca, NULL);
	mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &g_drbg);
	mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_session_tickets(&t->conf, tickets ? MBEDTLS_SSL_SESSION_TICKETS_ENABLED
							   : MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
	assert_int_equal(mbedtls_ssl_conf_alpn_protocols(&t->conf, client_alpn), 0);
	if (suites)
		mbedtls_ssl_conf_ciphersuites(&t->conf, suites);
	assert_int_equal(mbedtls_ssl_setup(&t->ssl, &t->conf), 0);
	assert_int_equal(mbedtls_ssl_set_hostname(&t->ssl, "localhost"), 0);
	if (resume)
		assert_int_equal(mbedtls_ssl_set_session(&t->ssl, resume), 0);
	mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
	t->capturing = true;
	int r;
	do
		r = mbedtls_ssl_handshake(&t->ssl);
	while (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE);
	t->capturing = false;
	return r;
}

static void tls_connect(struct client *c, uint16_t port)
{
	assert_int_equal(tls_start(c, port, NULL, true, NULL), 0);
	assert_int_equal(mbedtls_ssl_get_verify_result(&c->tls->ssl), 0);
}

static int tls_send(struct client *c, const char *p, size_t n)
{
	int r;
	do
		r = mbedtls_ssl_write(&c->tls->ssl, (const unsigned char *)p, n);
	while (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE);
	return r;
}

/* fill() over TLS: 1 got bytes, 0 EOF (with or without close_notify),
 * -ECONNRESET, -EPROTO for any other TLS error. */
static int tls_fill(struct client *c)
{
	struct tls_client *t = c->tls;
	int r;
	do
		r = mbedtls_ssl_read(&t->ssl, (unsigned char *)c->buf + c->len, c->cap - c->len);
	while (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE);
	if (r > 0) {
		c->len += (size_t)r;
		return 1;
	}
	if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
		t->peer_notified = true;
		return 0;
	}
	if (r == 0 || r == MBEDTLS_ERR_SSL_CONN_EOF)
		return 0;
	return r == MBEDTLS_ERR_NET_CONN_RESET ? -ECONNRESET : -EPROTO;
}

/* The handshake messages the server sent in the clear, as a bit set of
 * their types (1u << 2 ServerHello, 4 NewSessionTicket, 11 Certificate, 12
 * ServerKeyExchange, 14 ServerHelloDone). Everything after its
 * ChangeCipherSpec is encrypted, so the walk stops there. A resumed (abbreviated)
 * handshake is exactly one in which the server sends no Certificate. */
static uint32_t server_flight(const struct tls_client *t)
{
	unsigned char *hs = malloc(t->seen_len + 1); /* handshake bytes joined; owned here */
	assert_non_null(hs);
	size_t hl = 0, off = 0;
	while (off + 5 <= t->seen_len) {
		const unsigned char *rec = t->seen + off;
		size_t len = (size_t)rec[3] << 8 | rec[4];
		if (off + 5 + len > t->seen_len || rec[0] == 20)
			break;
		if (rec[0] == 22) {
			memcpy(hs + hl, rec + 5, len);
			hl += len;
		}
		off += 5 + len;
	}
	uint32_t types = 0;
	for (size_t i = 0; i + 4 <= hl;) {
		size_t mlen = (size_t)hs[i + 1] << 16 | (size_t)hs[i + 2] << 8 | hs[i + 3];
		if (hs[i] < 32)
			types |= 1u << hs[i];
		i += 4 + mlen;
	}
	free(hs);
	return types;
}

#define HS_SERVER_HELLO (1u << 2)
#define HS_NEW_TICKET (1u << 4)
#define HS_CERTIFICATE (1u << 11)

static struct mock_server *start_tls_with(struct mock_options *o)
{
	if (!g_have_certs)
		skip(); /* no openssl tool */
	char cert[128], key[128];
	cert_path(cert, sizeof(cert), "server.crt");
	cert_path(key, sizeof(key), "server.key");
	o->tls_cert_file = cert;
	o->tls_key_file = key;
	struct mock_server *s = start(o);
	o->tls_cert_file = o->tls_key_file = NULL; /* loaded by now */
	return s;
}

static struct mock_server *start_tls_default(void)
{
	struct mock_options o;
	mock_options_default(&o);
	o.slow_header_ms = 2;
	return start_tls_with(&o);
}

static void https_chat_reply_is_the_plain_reply(void **state)
{
	struct mock_server *s = start_tls_default();
	struct client c;
	tls_connect(&c, mock_server_port(s));
	assert_string_equal(mbedtls_ssl_get_alpn_protocol(&c.tls->ssl), "http/1.1");
	assert_string_equal(mbedtls_ssl_get_version(&c.tls->ssl), "TLSv1.2");
	char *rq = request("/v1/chat/completions", NULL, chat_body);
	send_str(&c, rq);
	free(rq);
	struct resp r;
	read_response(&c, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	char v[64];
	assert_string_equal(resp_header(&r, "x-request-id", v, sizeof(v)), "req_mock_1");
	assert_non_null(strstr(r.body, "{\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion\""));
	assert_non_null(strstr(r.body, "\"model\":\"gpt-4o-mini\""));
	assert_non_null(strstr(r.body, "\"system_fingerprint\":\"fp_mock\"}"));
	assert_int_equal(json_num(r.body, "prompt_tokens"), CHAT_PROMPT_WORDS);
	assert_int_equal(json_num(r.body, "completion_tokens"), 16);
	resp_free(&r);
	client_close(&c);
	assert_int_equal(mock_server_requests(s), 1);
	assert_int_equal(mock_server_tls_resumptions(s), 0);
	mock_server_stop(s);
}

static void https_keep_alive_then_close_notify_both_ways(void **state)
{
	struct mock_server *s = start_tls_default();
	struct client c;
	tls_connect(&c, mock_server_port(s));
	char *rq = request("/v1/chat/completions", NULL, chat_body);
	for (int i = 0; i < 2; i++) {
		send_str(&c, rq);
		struct resp r;
		read_response(&c, &r);
		assert_int_equal(r.status, 200);
		assert_true(r.complete);
		resp_free(&r);
	}
	free(rq);
	/* The client says goodbye; the server answers in kind and closes. */
	assert_int_equal(mbedtls_ssl_close_notify(&c.tls->ssl), 0);
	assert_int_equal(fill(&c), 0);
	assert_true(c.tls->peer_notified);
	client_close(&c);
	assert_int_equal(mock_server_connections(s), 1);
	assert_int_equal(mock_server_requests(s), 2);
	mock_server_stop(s);
}

static void https_stream_sends_sse_with_usage(void **state)
{
	struct mock_server *s = start_tls_default();
	struct client c;
	tls_connect(&c, mock_server_port(s));
	char *rq = request("/v1/chat/completions", NULL,
			   "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
			   "\"messages\":[{\"role\":\"user\",\"content\":\"a b c\"}]}");
	send_str(&c, rq);
	free(rq);
	struct resp r;
	read_response(&c, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.chunked);
	assert_true(r.complete);
	assert_non_null(strstr(r.body, "\"usage\":{\"prompt_tokens\":3,"));
	assert_non_null(strstr(r.body, "data: [DONE]\n\n"));
	resp_free(&r);
	client_close(&c);
	mock_server_stop(s);
}

static void https_large_body_and_pipelining(void **state)
{
	struct mock_server *s = start_tls_default();
	struct client c;
	tls_connect(&c, mock_server_port(s));
	/* 100000 words: the body spans many TLS records and recvs. */
	size_t words = 100000;
	char *body = malloc(words * 2 + 64); /* owned here */
	assert_non_null(body);
	size_t n = (size_t)sprintf(body, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
	for (size_t i = 0; i < words; i++) {
		body[n++] = 'w';
		body[n++] = ' ';
	}
	strcpy(body + n, "\"}]}");
	char *big = request("/v1/chat/completions", NULL, body);
	free(body);
	char *small = request("/v1/chat/completions", NULL, chat_body);
	char *both = NULL; /* owned here */
	assert_true(asprintf(&both, "%s%s%s", big, small, small) > 0);
	free(big);
	free(small);
	send_str(&c, both);
	free(both);
	for (int i = 0; i < 3; i++) {
		struct resp r;
		read_response(&c, &r);
		assert_int_equal(r.status, 200);
		assert_true(r.complete);
		assert_int_equal(json_num(r.body, "prompt_tokens"), i == 0 ? 100000 : CHAT_PROMPT_WORDS);
		resp_free(&r);
	}
	client_close(&c);
	mock_server_stop(s);
}

/* One request on c, which must succeed. */
static void tls_chat_ok(struct client *c)
{
	char *rq = request("/v1/chat/completions", NULL, chat_body);
	send_str(c, rq);
	free(rq);
	struct resp r;
	read_response(c, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	resp_free(&r);
}

/* A full handshake, then a second connection offering its session: the
 * server's second flight must carry no Certificate (the abbreviated
 * handshake of RFC 5246 7.3) and the server must count one resumption. */
static void resume_check(bool tickets)
{
	struct mock_server *s = start_tls_default();
	uint16_t port = mock_server_port(s);
	struct client a, b, c;
	assert_int_equal(tls_start(&a, port, NULL, tickets, NULL), 0);
	uint32_t first = server_flight(a.tls);
	assert_true(first & HS_SERVER_HELLO);
	assert_true(first & HS_CERTIFICATE);
	if (tickets)
		assert_true(first & HS_NEW_TICKET);
	else
		assert_false(first & HS_NEW_TICKET);
	tls_chat_ok(&a);
	mbedtls_ssl_session sess;
	mbedtls_ssl_session_init(&sess);
	assert_int_equal(mbedtls_ssl_get_session(&a.tls->ssl, &sess), 0);
	if (tickets) {
		assert_true(sess.ticket_len > 0);
	} else {
		assert_int_equal(sess.ticket_len, 0);
		assert_int_equal(sess.id_len, 32);
	}
	assert_int_equal(mbedtls_ssl_close_notify(&a.tls->ssl), 0);
	client_close(&a);

	assert_int_equal(tls_start(&b, port, &sess, tickets, NULL), 0);
	uint32_t second = server_flight(b.tls);
	assert_true(second & HS_SERVER_HELLO);
	assert_false(second & HS_CERTIFICATE);
	tls_chat_ok(&b);
	client_close(&b);
	mbedtls_ssl_session_free(&sess);
	assert_int_equal(mock_server_tls_resumptions(s), 1);

	/* Without a session to offer: a full handshake again. */
	tls_connect(&c, port);
	assert_true(server_flight(c.tls) & HS_CERTIFICATE);
	tls_chat_ok(&c);
	client_close(&c);
	assert_int_equal(mock_server_tls_resumptions(s), 1);
	assert_int_equal(mock_server_connections(s), 3);
	mock_server_stop(s);
}

static void https_session_ticket_resumes(void **state) { resume_check(true); }
static void https_session_id_resumes(void **state) { resume_check(false); }

static void plain_http_to_https_port_is_closed(void **state)
{
	struct mock_server *s = start_tls_default();
	struct client a, b;
	tls_connect(&a, mock_server_port(s));
	client_open(&b, mock_server_port(s));
	char *rq = request("/v1/chat/completions", NULL, chat_body);
	send_str(&b, rq);
	free(rq);
	int f;
	while ((f = fill(&b)) > 0)
		;
	assert_true(f == 0 || f == -ECONNRESET);
	assert_null(memmem(b.buf, b.len, "HTTP/1.1", 8)); /* at most an alert came back */
	client_close(&b);
	tls_chat_ok(&a); /* the other connection is untouched */
	client_close(&a);
	assert_int_equal(mock_server_requests(s), 1);
	mock_server_stop(s);
}

static void failed_handshake_closes_only_that_connection(void **state)
{
	struct mock_server *s = start_tls_default();
	struct client a, b;
	tls_connect(&a, mock_server_port(s));
	/* The server's key is EC: an RSA-only client has no suite in common. */
	static const int rsa_only[] = {MBEDTLS_TLS_RSA_WITH_AES_128_GCM_SHA256, 0};
	assert_int_not_equal(tls_start(&b, mock_server_port(s), NULL, true, rsa_only), 0);
	client_close(&b);
	tls_chat_ok(&a);
	tls_chat_ok(&a);
	client_close(&a);
	assert_int_equal(mock_server_connections(s), 2);
	mock_server_stop(s);
}

/* Over TLS a truncation must not end with close_notify... */
static void check_truncate_tls(struct client *c, struct resp *r, double ms)
{
	check_truncate(c, r, ms);
	assert_false(c->tls->peer_notified);
}

/* ...while an orderly close must. */
static void check_close_tls(struct client *c, struct resp *r, double ms)
{
	check_close(c, r, ms);
	assert_true(c->tls->peer_notified);
}

static void https_fault_429(void **state) { run_fault_on(true, "429", check_429, false); }
static void https_fault_reset(void **state) { run_fault_on(true, "reset", check_reset, false); }
static void https_fault_reset_stream(void **state)
{
	run_fault_on(true, "reset", check_reset, true);
}
static void https_fault_truncate(void **state)
{
	run_fault_on(true, "truncate", check_truncate_tls, false);
}
static void https_fault_truncate_stream(void **state)
{
	run_fault_on(true, "truncate", check_truncate_tls, true);
}
static void https_fault_malformed(void **state)
{
	run_fault_on(true, "malformed", check_malformed, false);
}
static void https_fault_slow_headers(void **state)
{
	run_fault_on(true, "slow-headers", check_slow_headers, false);
}
static void https_fault_close(void **state) { run_fault_on(true, "close", check_close_tls, false); }

static int start_with_files(const char *cert, const char *key, char *err, size_t errsz)
{
	char cp[128], kp[128];
	struct mock_options o;
	mock_options_default(&o);
	if (cert) {
		cert_path(cp, sizeof(cp), cert);
		o.tls_cert_file = cp;
	}
	if (key) {
		cert_path(kp, sizeof(kp), key);
		o.tls_key_file = kp;
	}
	o.error = err;
	o.error_size = errsz;
	struct mock_server *s = (struct mock_server *)&o; /* must be reset to NULL */
	int r = mock_server_start(&o, &s);
	assert_null(s);
	return r;
}

static void unusable_tls_files_make_start_fail(void **state)
{
	if (!g_have_certs)
		skip();
	char err[256];
	assert_int_equal(start_with_files("nope.crt", "server.key", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nope.crt"));
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(start_with_files("server.crt", "nope.key", err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "nope.key"));
	assert_int_equal(start_with_files("server.crt", "other.key", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "does not match"));
	assert_int_equal(start_with_files("server.key", "server.key", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "certificate"));
	assert_int_equal(start_with_files("server.crt", "server.crt", err, sizeof(err)), -EINVAL);
	assert_int_equal(start_with_files("server.crt", NULL, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "both"));
	assert_int_equal(start_with_files("nope.crt", "nope.key", NULL, 0), -ENOENT);
}

/* Verifies NAME.crt against trust for host; returns mbedTLS's flags. */
static uint32_t verify_flags(const char *name, const char *trust, const char *host)
{
	char p[128];
	mbedtls_x509_crt crt, ca;
	mbedtls_x509_crt_init(&crt);
	mbedtls_x509_crt_init(&ca);
	cert_path(p, sizeof(p), name);
	assert_int_equal(mbedtls_x509_crt_parse_file(&crt, p), 0);
	cert_path(p, sizeof(p), trust);
	assert_int_equal(mbedtls_x509_crt_parse_file(&ca, p), 0);
	uint32_t flags = 0;
	mbedtls_x509_crt_verify(&crt, &ca, NULL, host, &flags, NULL, NULL);
	mbedtls_x509_crt_free(&crt);
	mbedtls_x509_crt_free(&ca);
	return flags;
}

/* Whether NAME.crt has the iPAddress subjectAltName 127.0.0.1. */
static bool has_loopback_ip_san(const char *name)
{
	char p[128];
	mbedtls_x509_crt crt;
	mbedtls_x509_crt_init(&crt);
	cert_path(p, sizeof(p), name);
	assert_int_equal(mbedtls_x509_crt_parse_file(&crt, p), 0);
	bool found = false;
	for (const mbedtls_x509_sequence *q = &crt.subject_alt_names; q; q = q->next) {
		const mbedtls_x509_buf *b = &q->buf;
		if ((b->tag & 0x1f) == 7 && b->len == 4 && memcmp(b->p, "\x7f\0\0\x01", 4) == 0)
			found = true;
	}
	mbedtls_x509_crt_free(&crt);
	return found;
}

static void gen_certs_makes_the_documented_set(void **state)
{
	if (!g_have_certs)
		skip();
	assert_int_equal(verify_flags("server.crt", "ca.crt", "localhost"), 0);
	assert_true(has_loopback_ip_san("server.crt"));
	assert_int_equal(verify_flags("other.crt", "ca.crt", "other.example"), 0);
	assert_true(verify_flags("other.crt", "ca.crt", "localhost") &
		    MBEDTLS_X509_BADCERT_CN_MISMATCH);
	assert_true(verify_flags("expired.crt", "ca.crt", "localhost") &
		    MBEDTLS_X509_BADCERT_EXPIRED);
	assert_true(has_loopback_ip_san("expired.crt"));
	assert_true(verify_flags("untrusted.crt", "ca.crt", "localhost") &
		    MBEDTLS_X509_BADCERT_NOT_TRUSTED);
	assert_int_equal(verify_flags("untrusted.crt", "untrusted-ca.crt", "localhost"), 0);
	assert_int_equal(verify_flags("noip.crt", "ca.crt", "localhost"), 0);
	assert_false(has_loopback_ip_san("noip.crt"));
	/* Every key is there and matches its certificate (mock_server_start checks). */
	static const char *const pairs[][2] = {
		{"server.crt", "server.key"}, {"other.crt", "other.key"},
		{"expired.crt", "expired.key"}, {"untrusted.crt", "untrusted.key"},
		{"noip.crt", "noip.key"},
	};
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		char err[256];
		char cp[128], kp[128];
		cert_path(cp, sizeof(cp), pairs[i][0]);
		cert_path(kp, sizeof(kp), pairs[i][1]);
		struct mock_options o;
		mock_options_default(&o);
		o.tls_cert_file = cp;
		o.tls_key_file = kp;
		o.error = err;
		o.error_size = sizeof(err);
		struct mock_server *s = NULL;
		assert_int_equal(mock_server_start(&o, &s), 0);
		mock_server_stop(s);
	}
}

/* gen-certs.sh: $LLMRING_SOURCE_DIR/tests/certs, else next to this file. */
static bool find_gen_certs(char *out, size_t sz)
{
	const char *src = getenv("LLMRING_SOURCE_DIR");
	if (src && *src) {
		snprintf(out, sz, "%s/tests/certs/gen-certs.sh", src);
	} else {
		const char *f = __FILE__;
		const char *slash = strrchr(f, '/');
		if (slash)
			snprintf(out, sz, "%.*s/certs/gen-certs.sh", (int)(slash - f), f);
		else
			snprintf(out, sz, "certs/gen-certs.sh");
	}
	return access(out, R_OK) == 0;
}

static void remove_certdir(void)
{
	if (!g_certdir[0])
		return;
	DIR *d = opendir(g_certdir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			char p[512];
			snprintf(p, sizeof(p), "%s/%s", g_certdir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(g_certdir);
	g_certdir[0] = '\0';
}

static int tls_group_setup(void **state)
{
	mbedtls_entropy_init(&g_entropy);
	mbedtls_ctr_drbg_init(&g_drbg);
	mbedtls_x509_crt_init(&g_ca);
	if (mbedtls_ctr_drbg_seed(&g_drbg, mbedtls_entropy_func, &g_entropy, NULL, 0) != 0)
		return -1;
	if (system("command -v openssl >/dev/null 2>&1") != 0) {
		fprintf(stderr, "openssl not found: the HTTPS tests are skipped\n");
		return 0;
	}
	char script[512];
	if (!find_gen_certs(script, sizeof(script))) {
		fprintf(stderr, "cannot find %s (set LLMRING_SOURCE_DIR)\n", script);
		return -1;
	}
	snprintf(g_certdir, sizeof(g_certdir), "/tmp/llmring-test-certs-XXXXXX");
	if (!mkdtemp(g_certdir)) {
		g_certdir[0] = '\0';
		return -1;
	}
	char *argv[] = {"bash", script, g_certdir, NULL};
	pid_t pid;
	int st = 0;
	if (posix_spawnp(&pid, "bash", NULL, NULL, argv, environ) != 0 ||
	    waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "%s %s failed\n", script, g_certdir);
		return -1;
	}
	char ca[128];
	cert_path(ca, sizeof(ca), "ca.crt");
	if (mbedtls_x509_crt_parse_file(&g_ca, ca) != 0)
		return -1;
	g_have_certs = true;
	return 0;
}

static int tls_group_teardown(void **state)
{
	remove_certdir();
	mbedtls_x509_crt_free(&g_ca);
	mbedtls_ctr_drbg_free(&g_drbg);
	mbedtls_entropy_free(&g_entropy);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(chat_reply_has_openai_shape_and_word_counts),
		cmocka_unit_test(chat_without_model_says_mock_and_max_tokens_cuts),
		cmocka_unit_test(same_seed_and_request_number_give_same_text),
		cmocka_unit_test(keep_alive_serves_two_requests_on_one_connection),
		cmocka_unit_test(pipelined_requests_are_answered_in_order),
		cmocka_unit_test(stream_sends_chunked_sse_with_usage_and_done),
		cmocka_unit_test(stream_honours_ttft_and_itl),
		cmocka_unit_test(ttft_delays_a_whole_reply),
		cmocka_unit_test(embeddings_one_vector_per_input),
		cmocka_unit_test(unknown_path_is_404_with_openai_error),
		cmocka_unit_test(bad_requests_get_400_411_431),
		cmocka_unit_test(fault_429),
		cmocka_unit_test(fault_500),
		cmocka_unit_test(fault_503),
		cmocka_unit_test(fault_reset),
		cmocka_unit_test(fault_reset_stream),
		cmocka_unit_test(fault_truncate),
		cmocka_unit_test(fault_truncate_stream),
		cmocka_unit_test(fault_malformed),
		cmocka_unit_test(fault_malformed_stream),
		cmocka_unit_test(fault_slow_headers),
		cmocka_unit_test(fault_close),
		cmocka_unit_test(fault_rates_pick_faults_deterministically),
		cmocka_unit_test(close_every_closes_every_nth_response),
		cmocka_unit_test(request_connection_close_is_honoured),
		cmocka_unit_test(many_concurrent_connections_each_get_a_reply),
		cmocka_unit_test(stop_with_connections_open_frees_everything),
		cmocka_unit_test(plain_ring_fallback_serves_too),
		cmocka_unit_test(fault_names_parse),
	};
	const struct CMUnitTest tls_tests[] = {
		cmocka_unit_test(gen_certs_makes_the_documented_set),
		cmocka_unit_test(https_chat_reply_is_the_plain_reply),
		cmocka_unit_test(https_keep_alive_then_close_notify_both_ways),
		cmocka_unit_test(https_stream_sends_sse_with_usage),
		cmocka_unit_test(https_large_body_and_pipelining),
		cmocka_unit_test(https_session_ticket_resumes),
		cmocka_unit_test(https_session_id_resumes),
		cmocka_unit_test(plain_http_to_https_port_is_closed),
		cmocka_unit_test(failed_handshake_closes_only_that_connection),
		cmocka_unit_test(https_fault_429),
		cmocka_unit_test(https_fault_reset),
		cmocka_unit_test(https_fault_reset_stream),
		cmocka_unit_test(https_fault_truncate),
		cmocka_unit_test(https_fault_truncate_stream),
		cmocka_unit_test(https_fault_malformed),
		cmocka_unit_test(https_fault_slow_headers),
		cmocka_unit_test(https_fault_close),
		cmocka_unit_test(unusable_tls_files_make_start_fail),
	};
	int failed = cmocka_run_group_tests_name("plain", tests, NULL, NULL);
	failed += cmocka_run_group_tests_name("tls", tls_tests, tls_group_setup,
					      tls_group_teardown);
	return failed ? 1 : 0;
}

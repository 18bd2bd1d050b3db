/*
 * The mock server, spoken to with plain blocking sockets: response shapes,
 * usage numbers, keep-alive and pipelining, streaming, embeddings, every
 * fault kind (by header, by body marker, by rate), close_every, delays,
 * many connections, and stopping with connections open. Then the other
 * dialects (Anthropic Messages, Ollama, Gemini): their shapes, streams whose
 * pieces concatenate to the non-streamed text, tool calls in all four, and
 * the faults in each dialect's shape.
 *
 * Then HTTPS: the same client through mbedTLS over the blocking socket,
 * verifying against a test CA made by tests/certs/gen-certs.sh at test time
 * (found through LLMRING_SOURCE_DIR, else next to this file; skipped when
 * the openssl tool is missing).
 *
 * Long (over 800 lines) on purpose: one subject's specification, a list of
 * short independent cases sharing one fixture and its helpers; the file is
 * read as a table, and a split would copy the fixture into each part.
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

#include "format/json.h"
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

/* Whatever is echoed (the request line in a 404, the model, a Gemini path
 * model) stays JSON: bytes that are not UTF-8 are replaced and a long
 * value is cut before an escape or a character, never inside one (found
 * by tests/fuzz/fuzz_mock_request). */
static void assert_json_body(const struct resp *r)
{
	struct json_doc d = {0};
	int rc = json_parse(&d, r->body, strlen(r->body));
	json_doc_free(&d);
	if (rc != 0)
		fail_msg("not valid JSON: %s", r->body);
}

static void echoed_text_stays_json(void **state)
{
	struct mock_server *s = start_default();
	uint16_t port = mock_server_port(s);
	struct resp r;
	/* A path byte that is not UTF-8, and a character cut by the 200-byte
	 * request-line cap. */
	roundtrip(port, "/v1/chat/\xff\xfe", NULL, "{}", &r);
	assert_int_equal(r.status, 404);
	assert_json_body(&r);
	assert_non_null(strstr(r.body, "/v1/chat/\\ufffd\\ufffd)"));
	resp_free(&r);
	char path[256] = "/";
	memset(path + 1, 'p', 192);
	strcpy(path + 193, "\xc3\xa9\xc3\xa9");
	roundtrip(port, path, NULL, "{}", &r);
	assert_int_equal(r.status, 404);
	assert_json_body(&r);
	resp_free(&r);

	/* Models longer than the 248 bytes kept, with an escape or a
	 * two-byte character across the cut. */
	static const char *const tails[] = {"\\\\bbbbbbbbbbbbbbbbbbbbbbbbbb", "\\u00e9bbbbbbbbbbbbbbbbbbbb",
	                                    "\303\251bbbbbbbbbbbbbbbbbbbbbbbbbbb", "\\\"bbbbbbbbbbbbbbbbbbbbbbbbbb"};
	char as[256];
	memset(as, 'a', sizeof as - 1);
	as[sizeof as - 1] = '\0';
	for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
		for (int lead = 238; lead <= 249; lead++) {
			char body[512];
			int n = snprintf(body, sizeof body, "{\"model\":\"%.*s%s\",\"messages\":[]}", lead,
			                 as, tails[t]);
			assert_true(n > 0 && (size_t)n < sizeof body);
			roundtrip(port, "/v1/chat/completions", NULL, body, &r);
			assert_int_equal(r.status, 200);
			assert_json_body(&r);
			resp_free(&r);
		}
	}

	/* A Gemini model in the path with a byte that is not UTF-8. */
	roundtrip(port, "/v1beta/models/ge\xffmini:generateContent", NULL,
		  "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}", &r);
	assert_int_equal(r.status, 200);
	assert_json_body(&r);
	assert_non_null(strstr(r.body, "\"modelVersion\":\"ge_mini\""));
	resp_free(&r);
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
	o.itl_ms = 20000; /* far beyond the bound below, which only guards a wait for it */
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
	assert_true(now_ms() - t0 < 10000);
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
	assert_int_equal(mock_fault_from_name("529"), MOCK_FAULT_529);
	assert_int_equal(mock_fault_from_name("stream-error"), MOCK_FAULT_STREAM_ERROR);
	assert_string_equal(mock_fault_name(MOCK_FAULT_STREAM_ERROR), "stream-error");
	assert_null(mock_fault_name(MOCK_FAULT_COUNT));
}

/* ------------------------------------------------------------------ */
/* Other dialects: Anthropic, Ollama, Gemini; tool calls; their faults */

/* Concatenates the string after every occurrence of pat (pat ends just
 * after the opening quote), escapes kept as sent; *count gets how many. */
static char *concat_after(const char *s, const char *pat, unsigned *count)
{
	char *out = malloc(strlen(s) + 1);
	assert_non_null(out);
	size_t len = 0, pl = strlen(pat);
	unsigned n = 0;
	for (const char *p = s; (p = strstr(p, pat)); n++) {
		p += pl;
		const char *e = p;
		while (*e && *e != '"')
			e += *e == '\\' && e[1] ? 2 : 1;
		memcpy(out + len, p, (size_t)(e - p));
		len += (size_t)(e - p);
		p = e;
	}
	out[len] = '\0';
	if (count)
		*count = n;
	return out;
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static unsigned count_str(const char *s, const char *needle)
{
	unsigned n = 0;
	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* The reply to request number 1 of a fresh server (seed 0, `tokens` words):
 * the text a stream of request 1 must concatenate to. */
static char *first_reply_text(const char *path, const char *body, const char *key,
			      unsigned tokens)
{
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = tokens;
	struct mock_server *s = start(&o);
	struct resp r;
	roundtrip(mock_server_port(s), path, NULL, body, &r);
	assert_int_equal(r.status, 200);
	char *text = json_str(r.body, key);
	assert_non_null(text);
	resp_free(&r);
	mock_server_stop(s);
	return text;
}

static struct mock_server *start_tokens(unsigned tokens)
{
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = tokens;
	return start(&o);
}

static const char anthropic_body[] =
	"{\"model\":\"claude-x\",\"max_tokens\":1024,\"system\":\"Be brief.\",\"messages\":["
	"{\"role\":\"user\",\"content\":\"hello there world\"},"
	"{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"hi you\"}]},"
	"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one more\\nquestion\"}]}]}";
#define ANTHROPIC_PROMPT_WORDS 10 /* 2 system + 3 content + 2 + 3 text */

static void anthropic_messages_reply_shape_and_counts(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/messages", NULL, anthropic_body, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	char v[64];
	assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)), "application/json");
	assert_string_equal(resp_header(&r, "request-id", v, sizeof(v)), "req_mock_1");
	assert_null(resp_header(&r, "x-request-id", v, sizeof(v)));
	assert_non_null(strstr(r.body, "{\"id\":\"msg_mock_1\",\"type\":\"message\",\"role\":"
					"\"assistant\",\"model\":\"claude-x\",\"content\":[{\"type\":"
					"\"text\",\"text\":\""));
	assert_non_null(strstr(r.body, "\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
					"\"usage\":{\"input_tokens\":10,\"output_tokens\":16,"
					"\"cache_creation_input_tokens\":0,"
					"\"cache_read_input_tokens\":0}}"));
	char *text = json_str(r.body, "text");
	assert_int_equal(count_words(text), 16);
	free(text);
	assert_int_equal(json_num(r.body, "input_tokens"), ANTHROPIC_PROMPT_WORDS);
	resp_free(&r);

	/* /messages works too; max_tokens below `tokens` cuts with "max_tokens". */
	roundtrip(mock_server_port(s), "/messages", NULL,
		  "{\"model\":\"c\",\"max_tokens\":3,\"messages\":[{\"role\":\"user\","
		  "\"content\":\"hi\"}]}", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(resp_header(&r, "request-id", v, sizeof(v)), "req_mock_2");
	assert_non_null(strstr(r.body, "\"stop_reason\":\"max_tokens\""));
	assert_int_equal(json_num(r.body, "output_tokens"), 3);
	assert_int_equal(json_num(r.body, "input_tokens"), 1);
	text = json_str(r.body, "text");
	assert_int_equal(count_words(text), 3);
	free(text);
	resp_free(&r);
	mock_server_stop(s);
}

static void anthropic_without_max_tokens_is_400(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/messages", NULL,
		  "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r);
	assert_int_equal(r.status, 400);
	char v[64];
	assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)), "application/json");
	assert_string_equal(resp_header(&r, "request-id", v, sizeof(v)), "req_mock_1");
	assert_string_equal(r.body, "{\"type\":\"error\",\"error\":{\"type\":"
				    "\"invalid_request_error\",\"message\":"
				    "\"max_tokens: Field required\"}}");
	resp_free(&r);
	mock_server_stop(s);
}

/* "event: a\ndata: {...}\n\n"...: the event names joined by ',', each
 * checked against its data's "type". */
static char *sse_event_names(const char *body)
{
	char *out = calloc(1, strlen(body) + 1);
	assert_non_null(out);
	for (const char *p = body; (p = strstr(p, "event: ")); ) {
		p += 7;
		const char *e = strchr(p, '\n');
		assert_non_null(e);
		char want[96];
		snprintf(want, sizeof(want), "\ndata: {\"type\":\"%.*s\"", (int)(e - p), p);
		assert_memory_equal(e, want, strlen(want));
		if (*out)
			strcat(out, ",");
		strncat(out, p, (size_t)(e - p));
		p = e;
	}
	return out;
}

static void anthropic_stream_sends_the_documented_events(void **state)
{
	char *whole = first_reply_text("/v1/messages", anthropic_body, "text", 5);
	struct mock_server *s = start_tokens(5);
	struct resp r;
	const char *body =
		"{\"model\":\"claude-x\",\"max_tokens\":100,\"stream\":true,\"system\":\"Be brief.\","
		"\"messages\":[{\"role\":\"user\",\"content\":\"hello there world\"},"
		"{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"hi you\"}]},"
		"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one more\\nquestion\"}]}]}";
	roundtrip(mock_server_port(s), "/v1/messages", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.chunked);
	assert_true(r.complete);
	char v[64];
	assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)), "text/event-stream");
	assert_string_equal(resp_header(&r, "request-id", v, sizeof(v)), "req_mock_1");
	char *names = sse_event_names(r.body);
	assert_string_equal(names, "message_start,content_block_start,ping,"
				   "content_block_delta,content_block_delta,content_block_delta,"
				   "content_block_delta,content_block_delta,content_block_stop,"
				   "message_delta,message_stop");
	free(names);
	assert_true(starts_with(r.body,
				"event: message_start\ndata: {\"type\":\"message_start\",\"message\":"
			    "{\"id\":\"msg_mock_1\",\"type\":\"message\",\"role\":\"assistant\","
			    "\"model\":\"claude-x\",\"content\":[],\"stop_reason\":null,"
			    "\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,"
			    "\"output_tokens\":1}}}\n\n"));
	assert_non_null(strstr(r.body, "event: content_block_start\ndata: {\"type\":"
					"\"content_block_start\",\"index\":0,\"content_block\":"
					"{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\n"
					"data: {\"type\":\"ping\"}\n\n"));
	assert_non_null(strstr(r.body, "event: content_block_stop\ndata: {\"type\":"
					"\"content_block_stop\",\"index\":0}\n\n"
					"event: message_delta\ndata: {\"type\":\"message_delta\","
					"\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"
					"\"usage\":{\"output_tokens\":5}}\n\n"
					"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
	assert_int_equal(strlen(strstr(r.body, "event: message_stop")),
			 strlen("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
	unsigned n;
	char *text = concat_after(r.body, "\"delta\":{\"type\":\"text_delta\",\"text\":\"", &n);
	assert_int_equal(n, 5);
	assert_string_equal(text, whole);
	free(text);
	free(whole);
	resp_free(&r);
	mock_server_stop(s);
}

static const char ollama_body[] =
	"{\"model\":\"llama3.2\",\"messages\":[{\"role\":\"system\",\"content\":\"be nice\"},"
	"{\"role\":\"user\",\"content\":\"why is the sky blue\"}]%s}";

static void ollama_chat_streams_ndjson_by_default(void **state)
{
	char nostream[512], plain[512];
	snprintf(nostream, sizeof(nostream), ollama_body, ",\"stream\":false");
	snprintf(plain, sizeof(plain), ollama_body, "");
	/* Ollama's non-streamed text sits in message.content. */
	char *whole = first_reply_text("/api/chat", nostream, "content", 6);
	struct mock_server *s = start_tokens(6);
	struct resp r;
	roundtrip(mock_server_port(s), "/api/chat", NULL, plain, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.chunked);
	assert_true(r.complete);
	char v[64];
	assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)), "application/x-ndjson");
	/* 6 token lines and the final one, each a whole line. */
	assert_int_equal(count_str(r.body, "\n"), 7);
	assert_int_equal(count_str(r.body, "\"done\":false}\n"), 6);
	assert_true(starts_with(r.body, "{\"model\":\"llama3.2\",\"created_at\":"
				    "\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\","
				    "\"content\":\""));
	const char *last = strstr(r.body, "\"done\":true");
	assert_non_null(last);
	while (last > r.body && last[-1] != '\n')
		last--;
	assert_string_equal(last, "{\"model\":\"llama3.2\",\"created_at\":\"2026-01-01T00:00:00Z\","
				  "\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
				  "\"done\":true,\"done_reason\":\"stop\",\"total_duration\":1000,"
				  "\"load_duration\":0,\"prompt_eval_count\":7,"
				  "\"prompt_eval_duration\":0,\"eval_count\":6,"
				  "\"eval_duration\":0}\n");
	unsigned n;
	char *text = concat_after(r.body, "\"content\":\"", &n);
	assert_int_equal(n, 7);
	assert_string_equal(text, whole);
	free(text);
	free(whole);
	resp_free(&r);
	mock_server_stop(s);
}

static void ollama_chat_non_stream_and_num_predict(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	roundtrip(mock_server_port(s), "/api/chat", NULL,
		  "{\"model\":\"llama3.2\",\"stream\":false,\"options\":{\"temperature\":0,"
		  "\"num_predict\":3},\"messages\":[{\"role\":\"user\",\"content\":\"a b c d\"}]}",
		  &r);
	assert_int_equal(r.status, 200);
	assert_false(r.chunked);
	char v[64];
	assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)), "application/json");
	assert_true(starts_with(r.body, "{\"model\":\"llama3.2\",\"created_at\":"
				    "\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\","
				    "\"content\":\""));
	char *text = json_str(r.body, "content");
	assert_int_equal(count_words(text), 3);
	free(text);
	assert_non_null(strstr(r.body, "\"},\"done\":true,\"done_reason\":\"length\","
					"\"total_duration\":1000,\"load_duration\":0,"
					"\"prompt_eval_count\":4,\"prompt_eval_duration\":0,"
					"\"eval_count\":3,\"eval_duration\":0}"));
	assert_int_equal(r.body[r.body_len - 1], '}');
	resp_free(&r);

	/* A negative num_predict (no limit) gives the full reply. */
	roundtrip(mock_server_port(s), "/api/chat", NULL,
		  "{\"stream\":false,\"options\":{\"num_predict\":-1},\"messages\":[]}", &r);
	assert_non_null(strstr(r.body, "\"model\":\"mock\""));
	assert_non_null(strstr(r.body, "\"done_reason\":\"stop\""));
	assert_int_equal(json_num(r.body, "eval_count"), 16);
	resp_free(&r);
	mock_server_stop(s);
}

static void ollama_embed_one_vector_per_input(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	roundtrip(mock_server_port(s), "/api/embed", NULL,
		  "{\"model\":\"nomic-embed-text\",\"input\":[\"a b c\",\"d\",\"e f\"]}", &r);
	assert_int_equal(r.status, 200);
	char v[64];
	assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)), "application/json");
	assert_true(starts_with(r.body, "{\"model\":\"nomic-embed-text\",\"embeddings\":[["));
	assert_int_equal(count_str(r.body, "["), 4);   /* the list and 3 vectors */
	/* 7 in each vector, 2 between them, 4 between the object's fields */
	assert_int_equal(count_str(r.body, ","), 3 * 7 + 2 + 4);
	assert_non_null(strstr(r.body, "]],\"total_duration\":1000,\"load_duration\":0,"
					"\"prompt_eval_count\":6}"));
	resp_free(&r);
	roundtrip(mock_server_port(s), "/api/embed", NULL, "{\"model\":\"e\",\"input\":\"one two\"}",
		  &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(count_str(r.body, "["), 2);
	assert_int_equal(json_num(r.body, "prompt_eval_count"), 2);
	resp_free(&r);
	mock_server_stop(s);
}

static const char gemini_body[] =
	"{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hello big world\"}]},"
	"{\"role\":\"model\",\"parts\":[{\"text\":\"hi\"}]},"
	"{\"role\":\"user\",\"parts\":[{\"text\":\"tell me more\"}]}],"
	"\"systemInstruction\":{\"parts\":[{\"text\":\"be brief\"}]}%s}";
#define GEMINI_PROMPT_WORDS 9

static void gemini_generate_content_shape(void **state)
{
	struct mock_server *s = start_default();
	char body[512];
	snprintf(body, sizeof(body), gemini_body, "");
	struct resp r;
	roundtrip(mock_server_port(s), "/v1beta/models/gemini-2.0-flash:generateContent?key=k",
		  NULL, body, &r);
	assert_int_equal(r.status, 200);
	char v[64];
	assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)), "application/json");
	assert_true(starts_with(r.body, "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\""));
	assert_non_null(strstr(r.body, "\"}],\"role\":\"model\"},\"finishReason\":\"STOP\","
					"\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":9,"
					"\"candidatesTokenCount\":16,\"totalTokenCount\":25},"
					"\"modelVersion\":\"gemini-2.0-flash\",\"responseId\":\"mock-1\"}"));
	char *text = json_str(r.body, "text");
	assert_int_equal(count_words(text), 16);
	free(text);
	resp_free(&r);

	/* Without a prefix, or with /v1; maxOutputTokens cuts with MAX_TOKENS. */
	snprintf(body, sizeof(body), gemini_body, ",\"generationConfig\":{\"maxOutputTokens\":2}");
	const char *paths[] = {"/models/gem-x:generateContent", "/v1/models/gem-x:generateContent"};
	for (int i = 0; i < 2; i++) {
		roundtrip(mock_server_port(s), paths[i], NULL, body, &r);
		assert_int_equal(r.status, 200);
		assert_non_null(strstr(r.body, "\"finishReason\":\"MAX_TOKENS\""));
		assert_non_null(strstr(r.body, "\"modelVersion\":\"gem-x\""));
		assert_int_equal(json_num(r.body, "candidatesTokenCount"), 2);
		assert_int_equal(json_num(r.body, "promptTokenCount"), GEMINI_PROMPT_WORDS);
		resp_free(&r);
	}
	mock_server_stop(s);
}

static void gemini_stream_is_sse_with_crlf_and_no_done(void **state)
{
	char body[512];
	snprintf(body, sizeof(body), gemini_body, "");
	char *whole = first_reply_text("/v1beta/models/g:generateContent", body, "text", 4);
	struct mock_server *s = start_tokens(4);
	struct resp r;
	roundtrip(mock_server_port(s), "/v1beta/models/g:streamGenerateContent?alt=sse", NULL, body,
		  &r);
	assert_int_equal(r.status, 200);
	assert_true(r.chunked);
	assert_true(r.complete);
	char v[64];
	assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)), "text/event-stream");
	assert_int_equal(count_str(r.body, "data: "), 4);
	assert_int_equal(count_str(r.body, "}\r\n\r\n"), 4);
	assert_int_equal(count_str(r.body, "\n"), 8); /* no bare LF separators */
	assert_null(strstr(r.body, "[DONE]"));
	assert_int_equal(count_str(r.body, "\"finishReason\":\"STOP\""), 1);
	for (unsigned k = 1; k <= 4; k++) {
		char want[160];
		snprintf(want, sizeof(want), "\"usageMetadata\":{\"promptTokenCount\":9,"
			 "\"candidatesTokenCount\":%u,\"totalTokenCount\":%u},"
			 "\"modelVersion\":\"g\",\"responseId\":\"mock-1\"}\r\n\r\n", k, 9 + k);
		assert_non_null(strstr(r.body, want));
	}
	const char *last = strstr(r.body, "\"candidatesTokenCount\":4");
	while (last > r.body && strncmp(last, "data: ", 6) != 0)
		last--;
	assert_non_null(strstr(last, "],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}]"));
	assert_true(starts_with(r.body, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\""));
	unsigned n;
	char *text = concat_after(r.body, "{\"text\":\"", &n);
	assert_int_equal(n, 4);
	assert_string_equal(text, whole);
	free(text);
	free(whole);
	resp_free(&r);

	/* streamGenerateContent without alt=sse is refused; so are unknown methods. */
	roundtrip(mock_server_port(s), "/v1beta/models/g:streamGenerateContent", NULL, body, &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "{\"error\":{\"code\":400,\"message\":\""));
	assert_non_null(strstr(r.body, "\"status\":\"INVALID_ARGUMENT\"}}"));
	resp_free(&r);
	roundtrip(mock_server_port(s), "/v1beta/models/g:countTokens", NULL, body, &r);
	assert_int_equal(r.status, 404);
	assert_non_null(strstr(r.body, "{\"error\":{\"code\":404,\"message\":\"Invalid URL (POST "
					"/v1beta/models/g:countTokens)\",\"status\":\"NOT_FOUND\"}}"));
	resp_free(&r);
	mock_server_stop(s);
}

static void unknown_paths_get_the_dialects_404(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	roundtrip(mock_server_port(s), "/api/generate-nope", NULL, "{}", &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "{\"error\":\"Invalid URL (POST /api/generate-nope)\"}");
	resp_free(&r);
	roundtrip(mock_server_port(s), "/v1/messages/nope", NULL, "{}", &r);
	assert_int_equal(r.status, 404);
	assert_non_null(strstr(r.body, "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\","));
	char v[64];
	assert_non_null(resp_header(&r, "request-id", v, sizeof(v)));
	resp_free(&r);
	/* The batch APIs answer in their provider's shape (tests/test_mock_batches.py). */
	roundtrip(mock_server_port(s), "/v1/messages/batches", NULL, "{}", &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "\"invalid_request_error\",\"message\":\"requests: Field required\""));
	resp_free(&r);
	/* A GET on a known path keeps its dialect. */
	struct client c;
	client_open(&c, mock_server_port(s));
	send_str(&c, "GET /api/chat HTTP/1.1\r\nHost: x\r\n\r\n");
	read_response(&c, &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "{\"error\":\"Invalid URL (GET /api/chat)\"}");
	resp_free(&r);
	client_close(&c);
	mock_server_stop(s);
}

static void one_connection_serves_every_dialect(void **state)
{
	struct mock_server *s = start_tokens(3);
	struct client c;
	client_open(&c, mock_server_port(s));
	char gem[512], oll[512];
	snprintf(gem, sizeof(gem), gemini_body, "");
	snprintf(oll, sizeof(oll), ollama_body, "");
	const char *paths[] = {"/v1/chat/completions", "/v1/messages", "/api/chat",
			       "/v1beta/models/g:streamGenerateContent?alt=sse", "/v1/embeddings",
			       "/api/embed"};
	const char *bodies[] = {chat_body, anthropic_body, oll, gem, "{\"input\":\"x\"}",
				"{\"input\":\"x\"}"};
	/* Pipelined: all six requests first, then the answers in order. */
	for (int i = 0; i < 6; i++) {
		char *rq = request(paths[i], NULL, bodies[i]);
		send_str(&c, rq);
		free(rq);
	}
	const char *marks[] = {"chatcmpl-mock-1", "msg_mock_2", "\"done\":true", "mock-4",
			       "\"object\":\"embedding\"", "\"embeddings\":[["};
	for (int i = 0; i < 6; i++) {
		struct resp r;
		read_response(&c, &r);
		assert_int_equal(r.status, 200);
		assert_true(r.complete);
		assert_non_null(strstr(r.body, marks[i]));
		resp_free(&r);
	}
	client_close(&c);
	assert_int_equal(mock_server_requests(s), 6);
	mock_server_stop(s);
}

static void other_dialect_streams_honour_ttft_and_itl(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = 4;
	o.ttft_ms = 60;
	o.itl_ms = 20;
	struct mock_server *s = start(&o);
	const char *paths[] = {"/v1/messages", "/api/chat",
			       "/v1beta/models/g:streamGenerateContent?alt=sse"};
	const char *bodies[] = {"{\"max_tokens\":9,\"stream\":true,\"messages\":[]}",
				"{\"messages\":[]}", "{\"contents\":[]}"};
	const char *first[] = {"text_delta", "\"done\":false", "data: "};
	const char *last[] = {"message_stop", "\"done\":true", "candidatesTokenCount\":4"};
	for (int i = 0; i < 3; i++) {
		struct client c;
		client_open(&c, mock_server_port(s));
		double t0 = now_ms();
		char *rq = request(paths[i], NULL, bodies[i]);
		send_str(&c, rq);
		free(rq);
		while (!find_mem(&c, "\r\n\r\n"))
			assert_int_equal(fill(&c), 1);
		while (!find_mem(&c, first[i]))
			assert_int_equal(fill(&c), 1);
		assert_true(now_ms() - t0 >= 60 - 1);
		while (!find_mem(&c, last[i]))
			assert_int_equal(fill(&c), 1);
		assert_true(now_ms() - t0 >= 60 + 3 * 20 - 1);
		client_close(&c);
	}
	mock_server_stop(s);
}

/* Tool calls ------------------------------------------------------------ */

#define ARGS_ESC "{\\\"city\\\":\\\"Paris\\\",\\\"days\\\":3}"
#define ARGS_OBJ "{\"city\":\"Paris\",\"days\":3}"

static const char openai_tools[] =
	",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
	"\"description\":\"d\",\"parameters\":{\"type\":\"object\",\"properties\":"
	"{\"city\":{\"type\":\"string\"}}}}}]";

static void openai_tools_get_a_tool_call(void **state)
{
	struct mock_server *s = start_default();
	char body[1024];
	snprintf(body, sizeof(body),
		 "{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}]%s}",
		 openai_tools);
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"message\":{\"role\":\"assistant\",\"content\":null,"
					"\"tool_calls\":[{\"id\":\"call_mock_1\",\"type\":\"function\","
					"\"function\":{\"name\":\"get_weather\",\"arguments\":\""
					ARGS_ESC "\"}}]"));
	assert_non_null(strstr(r.body, "\"finish_reason\":\"tool_calls\""));
	assert_int_equal(json_num(r.body, "completion_tokens"), 4);
	resp_free(&r);

	/* Streamed: the call's head, argument pieces, finish, usage, [DONE]. */
	snprintf(body, sizeof(body),
		 "{\"model\":\"g\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
		 "\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}]%s}", openai_tools);
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	const char *head = strstr(r.body, "\"delta\":{\"role\":\"assistant\",\"content\":null,"
					  "\"tool_calls\":[{\"index\":0,\"id\":\"call_mock_2\","
					  "\"type\":\"function\",\"function\":{\"name\":"
					  "\"get_weather\",\"arguments\":\"\"}}]");
	assert_non_null(head);
	unsigned n;
	char *args = concat_after(r.body, "{\"tool_calls\":[{\"index\":0,\"function\":"
					  "{\"arguments\":\"", &n);
	assert_true(n >= 3);
	assert_string_equal(args, ARGS_ESC);
	free(args);
	const char *fin = strstr(r.body, "\"delta\":{},\"logprobs\":null,\"finish_reason\":"
					 "\"tool_calls\"}");
	assert_non_null(fin);
	assert_true(fin > head);
	const char *u = strstr(r.body, "\"choices\":[],\"usage\":{\"prompt_tokens\":1,"
				       "\"completion_tokens\":4,");
	assert_non_null(u);
	assert_true(u > fin);
	assert_non_null(strstr(u, "data: [DONE]\n\n"));
	resp_free(&r);

	/* After a tool result: text again. */
	snprintf(body, sizeof(body),
		 "{\"model\":\"g\",\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},"
		 "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_mock_1\","
		 "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{}\"}}]},"
		 "{\"role\": \"tool\",\"tool_call_id\":\"call_mock_1\",\"content\":\"sunny\"}]%s}",
		 openai_tools);
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, "\"tool_calls\""));
	assert_non_null(strstr(r.body, "\"finish_reason\":\"stop\""));
	resp_free(&r);

	/* An empty tools list names no function: text. */
	roundtrip(mock_server_port(s), "/v1/chat/completions", NULL,
		  "{\"tools\":[],\"messages\":[]}", &r);
	assert_null(strstr(r.body, "\"tool_calls\""));
	resp_free(&r);
	mock_server_stop(s);
}

static const char anthropic_tools[] =
	",\"tools\":[{\"name\":\"get_weather\",\"description\":\"d\",\"input_schema\":"
	"{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}},"
	"{\"name\":\"other\",\"input_schema\":{}}]";

static void anthropic_tools_get_a_tool_use(void **state)
{
	struct mock_server *s = start_default();
	char body[1024];
	snprintf(body, sizeof(body),
		 "{\"model\":\"c\",\"max_tokens\":50,\"messages\":[{\"role\":\"user\","
		 "\"content\":\"weather?\"}]%s}", anthropic_tools);
	struct resp r;
	roundtrip(mock_server_port(s), "/v1/messages", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_mock_1\","
					"\"name\":\"get_weather\",\"input\":" ARGS_OBJ "}],"
					"\"stop_reason\":\"tool_use\""));
	assert_int_equal(json_num(r.body, "output_tokens"), 4);
	resp_free(&r);

	snprintf(body, sizeof(body),
		 "{\"model\":\"c\",\"max_tokens\":50,\"stream\":true,\"messages\":[{\"role\":"
		 "\"user\",\"content\":\"weather?\"}]%s}", anthropic_tools);
	roundtrip(mock_server_port(s), "/v1/messages", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	char *names = sse_event_names(r.body);
	assert_string_equal(names, "message_start,content_block_start,ping,"
				   "content_block_delta,content_block_delta,content_block_delta,"
				   "content_block_delta,content_block_stop,message_delta,message_stop");
	free(names);
	assert_non_null(strstr(r.body, "\"content_block\":{\"type\":\"tool_use\",\"id\":"
					"\"toolu_mock_2\",\"name\":\"get_weather\",\"input\":{}}}"));
	unsigned n;
	char *args = concat_after(r.body, "\"delta\":{\"type\":\"input_json_delta\","
					  "\"partial_json\":\"", &n);
	assert_true(n >= 3);
	assert_string_equal(args, ARGS_ESC);
	free(args);
	assert_non_null(strstr(r.body, "\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":"
					"null},\"usage\":{\"output_tokens\":4}}"));
	resp_free(&r);

	/* With a tool_result in the conversation: text. */
	snprintf(body, sizeof(body),
		 "{\"model\":\"c\",\"max_tokens\":50,\"messages\":[{\"role\":\"user\","
		 "\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_mock_1\","
		 "\"content\":\"sunny\"}]}]%s}", anthropic_tools);
	roundtrip(mock_server_port(s), "/v1/messages", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"content\":[{\"type\":\"text\",\"text\":\""));
	assert_non_null(strstr(r.body, "\"stop_reason\":\"end_turn\""));
	resp_free(&r);
	mock_server_stop(s);
}

static void ollama_tools_get_tool_calls(void **state)
{
	struct mock_server *s = start_default();
	char body[1024];
	snprintf(body, sizeof(body),
		 "{\"model\":\"m\",\"stream\":false,\"messages\":[{\"role\":\"user\","
		 "\"content\":\"weather?\"}]%s}", openai_tools);
	struct resp r;
	roundtrip(mock_server_port(s), "/api/chat", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"message\":{\"role\":\"assistant\",\"content\":\"\","
					"\"tool_calls\":[{\"function\":{\"name\":\"get_weather\","
					"\"arguments\":" ARGS_OBJ "}}]},\"done\":true,"
					"\"done_reason\":\"stop\""));
	assert_int_equal(json_num(r.body, "eval_count"), 4);
	resp_free(&r);

	snprintf(body, sizeof(body),
		 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}]%s}",
		 openai_tools);
	roundtrip(mock_server_port(s), "/api/chat", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	assert_int_equal(count_str(r.body, "\n"), 2);
	assert_true(starts_with(r.body, "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00Z\","
				    "\"message\":{\"role\":\"assistant\",\"content\":\"\","
				    "\"tool_calls\":[{\"function\":{\"name\":\"get_weather\","
				    "\"arguments\":" ARGS_OBJ "}}]},\"done\":false}\n"));
	assert_non_null(strstr(r.body, "\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\""));
	resp_free(&r);

	snprintf(body, sizeof(body),
		 "{\"model\":\"m\",\"stream\":false,\"messages\":[{\"role\":\"user\","
		 "\"content\":\"weather?\"},{\"role\":\"tool\",\"content\":\"sunny\"}]%s}",
		 openai_tools);
	roundtrip(mock_server_port(s), "/api/chat", NULL, body, &r);
	assert_null(strstr(r.body, "\"tool_calls\""));
	resp_free(&r);
	mock_server_stop(s);
}

static const char gemini_tools[] =
	",\"tools\":[{\"functionDeclarations\":[{\"name\":\"get_weather\",\"description\":\"d\","
	"\"parameters\":{\"type\":\"OBJECT\"}}]}]";

static void gemini_tools_get_a_function_call(void **state)
{
	struct mock_server *s = start_default();
	char body[1024];
	snprintf(body, sizeof(body),
		 "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"weather?\"}]}]%s}",
		 gemini_tools);
	struct resp r;
	roundtrip(mock_server_port(s), "/v1beta/models/g:generateContent", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":"
					"{\"name\":\"get_weather\",\"args\":" ARGS_OBJ "}}],"
					"\"role\":\"model\"},\"finishReason\":\"STOP\""));
	assert_int_equal(json_num(r.body, "candidatesTokenCount"), 4);
	resp_free(&r);

	roundtrip(mock_server_port(s), "/v1beta/models/g:streamGenerateContent?alt=sse", NULL,
		  body, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	assert_int_equal(count_str(r.body, "data: "), 1);
	assert_non_null(strstr(r.body, "data: {\"candidates\":[{\"content\":{\"parts\":["
					"{\"functionCall\":{\"name\":\"get_weather\",\"args\":"
					ARGS_OBJ "}}],\"role\":\"model\"},\"finishReason\":\"STOP\""));
	resp_free(&r);

	snprintf(body, sizeof(body),
		 "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"weather?\"}]},"
		 "{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\","
		 "\"args\":{}}}]},{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":"
		 "\"get_weather\",\"response\":{\"t\":1}}}]}]%s}", gemini_tools);
	roundtrip(mock_server_port(s), "/v1beta/models/g:generateContent", NULL, body, &r);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, "\"functionCall\""));
	assert_non_null(strstr(r.body, "[{\"text\":\""));
	resp_free(&r);
	mock_server_stop(s);
}

/* Faults in the other dialects --------------------------------------- */

struct dialect_req {
	const char *path;
	const char *body;      /* non-streaming */
	const char *stream;    /* streaming */
};

static const struct dialect_req dialects[4] = {
	{"/v1/chat/completions", "{\"messages\":[]}", "{\"stream\":true,\"messages\":[]}"},
	{"/v1/messages", "{\"max_tokens\":50,\"messages\":[]}",
	 "{\"max_tokens\":50,\"stream\":true,\"messages\":[]}"},
	{"/api/chat", "{\"stream\":false,\"messages\":[]}", "{\"messages\":[]}"},
	{"/v1beta/models/g:generateContent", "{\"contents\":[]}", NULL},
};
#define GEMINI_STREAM_PATH "/v1beta/models/g:streamGenerateContent?alt=sse"

static void fault_in_dialect(struct mock_server *s, int d, bool stream, const char *kind,
			     struct resp *r)
{
	char hdr[64];
	snprintf(hdr, sizeof(hdr), "x-mock-fault: %s\r\n", kind);
	const char *path = d == 3 && stream ? GEMINI_STREAM_PATH : dialects[d].path;
	const char *body = !stream ? dialects[d].body : d == 3 ? dialects[3].body
							       : dialects[d].stream;
	roundtrip(mock_server_port(s), path, hdr, body, r);
}

static void error_faults_take_each_dialects_shape(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	char v[64];
	static const char *const want[4][4] = {
		/* 429, 500, 503, 529 */
		{"\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}",
		 "\"type\":\"server_error\",\"param\":null,\"code\":null}}",
		 "\"type\":\"server_error\",\"param\":null,\"code\":null}}",
		 "\"type\":\"server_error\",\"param\":null,\"code\":null}}"},
		{"{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"",
		 "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"",
		 "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"",
		 "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
		 "\"Overloaded\"}}"},
		{"{\"error\":\"", "{\"error\":\"", "{\"error\":\"", "{\"error\":\""},
		{"{\"error\":{\"code\":429,\"message\":\"", "{\"error\":{\"code\":500,\"message\":\"",
		 "{\"error\":{\"code\":503,\"message\":\"", "{\"error\":{\"code\":529,\"message\":\""},
	};
	static const char *const gemini_status[4] = {
		"\"status\":\"RESOURCE_EXHAUSTED\"", "\"status\":\"INTERNAL\"",
		"\"status\":\"UNAVAILABLE\"", "\"status\":\"UNAVAILABLE\""};
	static const char *const kinds[4] = {"429", "500", "503", "529"};
	static const int status[4] = {429, 500, 503, 529};
	for (int d = 0; d < 4; d++) {
		for (int k = 0; k < 4; k++) {
			for (int stream = 0; stream < 2; stream++) {
				fault_in_dialect(s, d, stream, kinds[k], &r);
				assert_int_equal(r.status, status[k]);
				assert_true(r.complete);
				assert_false(r.chunked);
				assert_string_equal(resp_header(&r, "content-type", v, sizeof(v)),
						    "application/json");
				assert_non_null(strstr(r.body, want[d][k]));
				if (d == 1)
					assert_non_null(resp_header(&r, "request-id", v, sizeof(v)));
				if (d == 2)
					assert_null(strchr(r.body + 10, '{')); /* flat */
				if (d == 3)
					assert_non_null(strstr(r.body, gemini_status[k]));
				if (k == 0)
					assert_string_equal(resp_header(&r, "retry-after", v,
									sizeof(v)), "1");
				resp_free(&r);
			}
		}
	}
	/* The Anthropic body without max_tokens still shows an asked-for fault. */
	roundtrip(mock_server_port(s), "/v1/messages", "x-mock-fault: 529\r\n", "{}", &r);
	assert_int_equal(r.status, 529);
	resp_free(&r);
	mock_server_stop(s);
}

static void stream_error_fault_in_each_dialect(void **state)
{
	struct mock_server *s = start_tokens(6);
	struct resp r;
	static const char *const err[4] = {
		"data: {\"error\":{\"message\":\"mock stream error\",\"type\":\"server_error\","
		"\"param\":null,\"code\":null}}\n\n",
		"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
		"\"message\":\"Overloaded\"}}\n\n",
		"{\"error\":\"mock stream error\"}\n",
		"data: {\"error\":{\"code\":500,\"message\":\"mock stream error\",\"status\":"
		"\"INTERNAL\"}}\r\n\r\n",
	};
	static const char *const token[4] = {"\"delta\":{\"content\":\"", "\"text_delta\"",
					     "\"done\":false", "{\"text\":\""};
	for (int d = 0; d < 4; d++) {
		fault_in_dialect(s, d, true, "stream-error", &r);
		assert_int_equal(r.status, 200);
		assert_true(r.chunked);
		assert_true(r.complete); /* the chunked body ends normally */
		assert_int_equal(count_str(r.body, token[d]), 2);
		const char *e = strstr(r.body, err[d]);
		assert_non_null(e);
		assert_int_equal(strlen(e), strlen(err[d])); /* the last event */
		assert_null(strstr(r.body, "[DONE]"));
		assert_null(strstr(r.body, "message_stop"));
		assert_null(strstr(r.body, "\"done\":true"));
		assert_null(strstr(r.body, "finishReason"));
		assert_null(strstr(r.body, "finish_reason\":\"stop"));
		resp_free(&r);

		/* The connection is still good: stream-error keeps keep-alive. */
		fault_in_dialect(s, d, false, "stream-error", &r);
		assert_int_equal(r.status, 500);
		resp_free(&r);
	}
	/* By body marker too. */
	roundtrip(mock_server_port(s), "/api/chat", NULL,
		  "{\"messages\":[{\"role\":\"user\",\"content\":\"mock-fault:stream-error\"}]}", &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "{\"error\":\"mock stream error\"}\n"));
	resp_free(&r);
	mock_server_stop(s);
}

static void byte_faults_work_in_every_dialect(void **state)
{
	struct mock_server *s = start_default();
	struct resp r;
	for (int d = 1; d < 4; d++) {
		for (int stream = 0; stream < 2; stream++) {
			struct client c;
			client_open(&c, mock_server_port(s));
			const char *path = d == 3 && stream ? GEMINI_STREAM_PATH : dialects[d].path;
			const char *body = !stream ? dialects[d].body
						   : d == 3 ? dialects[3].body : dialects[d].stream;
			char *rq = request(path, "x-mock-fault: truncate\r\n", body);
			send_str(&c, rq);
			free(rq);
			read_response(&c, &r);
			check_truncate(&c, &r, 0);
			resp_free(&r);
			client_close(&c);

			client_open(&c, mock_server_port(s));
			rq = request(path, "x-mock-fault: reset\r\n", body);
			send_str(&c, rq);
			free(rq);
			read_response(&c, &r);
			check_reset(&c, &r, 0);
			resp_free(&r);
			client_close(&c);

			fault_in_dialect(s, d, stream, "malformed", &r);
			assert_int_equal(r.status, 200);
			assert_true(r.complete);
			assert_true(r.body_len > 0);
			if (!stream)
				assert_true(r.body[r.body_len - 1] != '}');
			else
				assert_true(strstr(r.body, "{\n") || strstr(r.body, "{\r\n"));
			resp_free(&r);

			fault_in_dialect(s, d, stream, "close", &r);
			assert_int_equal(r.status, 200);
			char v[64];
			assert_string_equal(resp_header(&r, "connection", v, sizeof(v)), "close");
			resp_free(&r);
		}
	}
	mock_server_stop(s);
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

static void https_other_dialects_stream_too(void **state)
{
	struct mock_options o;
	mock_options_default(&o);
	o.tokens = 3;
	struct mock_server *s = start_tls_with(&o);
	struct client c;
	tls_connect(&c, mock_server_port(s));
	char *rq = request("/v1/messages", NULL,
			   "{\"max_tokens\":10,\"stream\":true,\"messages\":[]}");
	send_str(&c, rq);
	free(rq);
	struct resp r;
	read_response(&c, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	assert_int_equal(count_str(r.body, "event: content_block_delta\n"), 3);
	assert_non_null(strstr(r.body, "event: message_stop\n"));
	resp_free(&r);
	rq = request("/v1beta/models/g:streamGenerateContent?alt=sse", NULL, "{\"contents\":[]}");
	send_str(&c, rq);
	free(rq);
	read_response(&c, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	assert_int_equal(count_str(r.body, "}\r\n\r\n"), 3);
	assert_int_equal(count_str(r.body, "\"finishReason\":\"STOP\""), 1);
	resp_free(&r);
	rq = request("/api/chat", "x-mock-fault: stream-error\r\n", "{\"messages\":[]}");
	send_str(&c, rq);
	free(rq);
	read_response(&c, &r);
	assert_int_equal(r.status, 200);
	assert_true(r.complete);
	assert_non_null(strstr(r.body, "{\"error\":\"mock stream error\"}\n"));
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
		cmocka_unit_test(echoed_text_stays_json),
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
		cmocka_unit_test(anthropic_messages_reply_shape_and_counts),
		cmocka_unit_test(anthropic_without_max_tokens_is_400),
		cmocka_unit_test(anthropic_stream_sends_the_documented_events),
		cmocka_unit_test(ollama_chat_streams_ndjson_by_default),
		cmocka_unit_test(ollama_chat_non_stream_and_num_predict),
		cmocka_unit_test(ollama_embed_one_vector_per_input),
		cmocka_unit_test(gemini_generate_content_shape),
		cmocka_unit_test(gemini_stream_is_sse_with_crlf_and_no_done),
		cmocka_unit_test(unknown_paths_get_the_dialects_404),
		cmocka_unit_test(one_connection_serves_every_dialect),
		cmocka_unit_test(other_dialect_streams_honour_ttft_and_itl),
		cmocka_unit_test(openai_tools_get_a_tool_call),
		cmocka_unit_test(anthropic_tools_get_a_tool_use),
		cmocka_unit_test(ollama_tools_get_tool_calls),
		cmocka_unit_test(gemini_tools_get_a_function_call),
		cmocka_unit_test(error_faults_take_each_dialects_shape),
		cmocka_unit_test(stream_error_fault_in_each_dialect),
		cmocka_unit_test(byte_faults_work_in_every_dialect),
	};
	const struct CMUnitTest tls_tests[] = {
		cmocka_unit_test(gen_certs_makes_the_documented_set),
		cmocka_unit_test(https_chat_reply_is_the_plain_reply),
		cmocka_unit_test(https_keep_alive_then_close_notify_both_ways),
		cmocka_unit_test(https_stream_sends_sse_with_usage),
		cmocka_unit_test(https_other_dialects_stream_too),
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

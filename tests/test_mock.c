/*
 * The mock server, spoken to with plain blocking sockets: response shapes,
 * usage numbers, keep-alive and pipelining, streaming, embeddings, every
 * fault kind (by header, by body marker, by rate), close_every, delays,
 * many connections, and stopping with connections open.
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
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "mock_server.h"

/* ------------------------------------------------------------------ */
/* A tiny blocking HTTP client                                         */

struct client {
	int fd;
	char *buf;   /* received, not yet consumed; owned by the client */
	size_t len;
	size_t cap;
};

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
		ssize_t w = send(c->fd, s + off, n - off, MSG_NOSIGNAL);
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

static void run_fault(const char *kind, fault_check check, bool stream)
{
	struct mock_server *s = start_default();
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
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * The mock tests' blocking, timestamping HTTP client (mock_client.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "format/json.h"
#include "mock_client.h"

double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void client_open(struct client *c, uint16_t port)
{
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(c->fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct timeval tv = {.tv_sec = 30};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c->cap = 1 << 16;
	c->base = c->in = malloc(c->cap);
	assert_non_null(c->base);
}

void client_close(struct client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->base);
	c->base = c->in = NULL;
}

void send_request(struct client *c, const char *path, const char *body)
{
	char *s = NULL; /* owner: here */
	int n = asprintf(&s, "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
			 "application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 path, strlen(body), body);
	assert_true(n > 0);
	for (size_t off = 0; off < (size_t)n;) {
		ssize_t w = send(c->fd, s + off, (size_t)n - off, MSG_NOSIGNAL);
		assert_true(w > 0);
		off += (size_t)w;
	}
	free(s);
}

/* Reads more; false on EOF or error. */
static bool fill(struct client *c)
{
	if ((size_t)(c->base + c->cap - (c->in + c->len)) < 4096) {
		/* Consumed bytes are dropped here, not per consume, and only
		 * once they are half the buffer (else it grows): a long stream
		 * must not cost a memmove of its backlog per chunk. */
		if ((size_t)(c->in - c->base) >= c->cap / 2) {
			memmove(c->base, c->in, c->len);
			c->in = c->base;
		}
		if ((size_t)(c->base + c->cap - (c->in + c->len)) < 4096) {
			size_t off = (size_t)(c->in - c->base);
			c->cap *= 2;
			c->base = realloc(c->base, c->cap);
			assert_non_null(c->base);
			c->in = c->base + off;
		}
	}
	char *room = c->in + c->len;
	ssize_t r = recv(c->fd, room, (size_t)(c->base + c->cap - room), 0);
	if (r <= 0)
		return false;
	c->len += (size_t)r;
	return true;
}

static void consume(struct client *c, size_t n)
{
	c->in += n;
	c->len -= n;
}

static void reply_add(struct reply *r, const char *p, size_t n)
{
	double at = now_ms();
	/* Doubling: a stream of 20,000 chunks must not copy its body each time. */
	if (r->body_len + n + 1 > r->body_cap) {
		r->body_cap = 2 * (r->body_len + n + 1);
		r->body = realloc(r->body, r->body_cap);
		assert_non_null(r->body);
	}
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	if (r->nchunks == r->chunks_cap) {
		r->chunks_cap = r->chunks_cap ? 2 * r->chunks_cap : 64;
		r->chunk_at = realloc(r->chunk_at, r->chunks_cap * sizeof(double));
		assert_non_null(r->chunk_at);
	}
	r->chunk_at[r->nchunks++] = at;
}

void reply_free(struct reply *r)
{
	free(r->body);
	free(r->chunk_at);
	memset(r, 0, sizeof(*r));
}

/* Reads the head; 0 on EOF. Leaves the body in c->in. */
static size_t read_head(struct client *c, struct reply *r, bool *chunked)
{
	char *e;
	while (!(e = memmem(c->in, c->len, "\r\n\r\n", 4)))
		if (!fill(c))
			return 0;
	size_t hl = (size_t)(e - c->in) + 4;
	sscanf(c->in, "HTTP/1.1 %d", &r->status);
	*chunked = memmem(c->in, hl, "Transfer-Encoding: chunked", 26) != NULL;
	const char *cl = memmem(c->in, hl, "Content-Length: ", 16);
	size_t len = cl ? strtoul(cl + 16, NULL, 10) : 0;
	consume(c, hl);
	return *chunked ? 1 : len + 1;
}

/* At most max_chunks chunks of the body (0: all of it). */
void read_reply_upto(struct client *c, struct reply *r, size_t max_chunks)
{
	memset(r, 0, sizeof(*r));
	r->body = calloc(1, 1);
	bool chunked;
	size_t len1 = read_head(c, r, &chunked);
	if (len1 == 0)
		return;
	if (!chunked) {
		while (c->len < len1 - 1)
			if (!fill(c))
				return;
		reply_add(r, c->in, len1 - 1);
		consume(c, len1 - 1);
		r->complete = true;
		return;
	}
	while (max_chunks == 0 || r->nchunks < max_chunks) {
		char *e;
		while (!(e = memmem(c->in, c->len, "\r\n", 2)))
			if (!fill(c))
				return;
		size_t sz = strtoul(c->in, NULL, 16);
		size_t data = (size_t)(e - c->in) + 2; /* an offset: fill moves c->in */
		size_t need = data + sz + 2;
		while (c->len < need)
			if (!fill(c))
				return;
		if (sz == 0) {
			consume(c, need);
			r->complete = true;
			return;
		}
		reply_add(r, c->in + data, sz);
		consume(c, need);
	}
}

void read_reply(struct client *c, struct reply *r)
{
	read_reply_upto(c, r, 0);
}

void roundtrip(uint16_t port, const char *path, const char *body, struct reply *r)
{
	struct client c;
	client_open(&c, port);
	send_request(&c, path, body);
	read_reply(&c, r);
	client_close(&c);
}

unsigned count_str(const char *s, const char *needle)
{
	/* A plain scan: repeated strstr (or memmem) on a long body is
	 * quadratic under ASan, whose interceptors check the whole rest. */
	size_t nl = strlen(needle);
	unsigned n = 0;
	for (const char *p = s; *p; p++)
		if (*p == needle[0] && strncmp(p, needle, nl) == 0) {
			n++;
			p += nl - 1;
		}
	return n;
}

unsigned count_words(const char *s)
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

struct mock_server *start_mock(const struct mock_options *o)
{
	struct mock_server *s = NULL;
	assert_int_equal(mock_server_start(o, &s), 0);
	return s;
}

/* The integer at a dotted path of the JSON text; -1 when absent. */
int64_t json_int_at(const char *text, size_t len, const char *path)
{
	struct json_doc d = {0};
	int64_t v = -1;
	assert_int_equal(json_parse(&d, text, len), 0);
	int i = json_path(&d, 0, path);
	if (i >= 0)
		assert_true(json_get_int(&d, i, &v));
	json_doc_free(&d);
	return v;
}

/* The string at choices[0].KEY (or a dotted path under it); malloc'd. */
char *choice0_string(const char *text, size_t len, const char *key)
{
	struct json_doc d = {0};
	assert_int_equal(json_parse(&d, text, len), 0);
	int ch = json_object_get(&d, 0, "choices");
	assert_true(ch >= 0 && d.tok[ch].type == JSON_ARRAY && d.tok[ch].size == 1);
	int v = json_path(&d, ch + 1, key);
	char *out = v >= 0 && d.tok[v].type == JSON_STRING ? json_dup_string(&d, v) : NULL;
	json_doc_free(&d);
	return out;
}

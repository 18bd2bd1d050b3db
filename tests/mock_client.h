/*
 * A blocking HTTP/1.1 client for the mock's tests that timestamps every
 * chunk of a response as it arrives (so tests can see TTFT and the gaps
 * between tokens), and the few JSON and counting helpers they share
 * (tests/test_mock_capacity.c, tests/test_mock_lengths.c). Failures are
 * cmocka assertions.
 */
#ifndef LR_TEST_MOCK_CLIENT_H
#define LR_TEST_MOCK_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mock_server.h"

struct client {
	int fd;
	char *base;  /* the receive buffer; owned by the client */
	char *in;    /* received, not yet consumed: len bytes inside base */
	size_t len, cap;
};

/* One response: the decoded body and when each HTTP chunk of it came. */
struct reply {
	int status;
	char *body;        /* NUL-terminated; owned by the reply */
	size_t body_len, body_cap;
	double *chunk_at;  /* arrival of each chunk (ms, CLOCK_MONOTONIC); owned by the reply */
	size_t nchunks, chunks_cap;
	bool complete;     /* the framing said the body ended */
};

/* CLOCK_MONOTONIC in milliseconds. */
double now_ms(void);
void client_open(struct client *c, uint16_t port);
void client_close(struct client *c);
/* POST path with a JSON body (Content-Length framing). */
void send_request(struct client *c, const char *path, const char *body);
void reply_free(struct reply *r);
/* One response, at most max_chunks chunks of its body (0: all of it). */
void read_reply_upto(struct client *c, struct reply *r, size_t max_chunks);
void read_reply(struct client *c, struct reply *r);
/* One request on a fresh connection, closed after. */
void roundtrip(uint16_t port, const char *path, const char *body, struct reply *r);
unsigned count_str(const char *s, const char *needle);
/* Words separated by single spaces. */
unsigned count_words(const char *s);
/* mock_server_start, asserted to succeed. */
struct mock_server *start_mock(const struct mock_options *o);
/* The integer at a dotted path of the JSON text; -1 when absent. */
int64_t json_int_at(const char *text, size_t len, const char *path);
/* The string at choices[0].KEY (or a dotted path under it); malloc'd
 * (owner: the caller), NULL when absent. */
char *choice0_string(const char *text, size_t len, const char *key);

#endif

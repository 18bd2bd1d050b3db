/*
 * A scripted HTTP/1.1 server for the engine tests: plain blocking sockets,
 * one thread per connection, so the behaviour under test (pool reuse, stale
 * connections, deadlines, malformed responses) is exactly what the handler
 * asks for and independent of the engine's own code.
 */
#ifndef LR_TEST_SERVER_H
#define LR_TEST_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct ts_request {
	unsigned conn_id;        /* 0-based, in accept order */
	unsigned index_on_conn;  /* 0-based request number on this connection */
	unsigned global_index;   /* 0-based across the server */
	const char *head;        /* request line + headers, NUL-terminated */
	size_t head_len;
	const char *body;        /* NUL-terminated */
	size_t body_len;
};

enum ts_action {
	TS_SEND = 0,      /* send data, keep the connection for the next request */
	TS_SEND_CLOSE,    /* send data, then close */
	TS_CLOSE,         /* close without sending anything */
	TS_RESET,         /* send data (may be empty), then reset (SO_LINGER 0) */
	TS_HANG,          /* send data (may be empty), then never answer again */
};

struct ts_reply {
	const char *data;     /* bytes to send (borrowed until the handler's next call) */
	size_t len;
	enum ts_action action;
	unsigned delay_ms;    /* sleep before sending */
	unsigned byte_delay_ms; /* sleep between single bytes (trickle), 0 = one write */
};

/* Called on the connection's thread for every request; fills reply
 * (zeroed beforehand). Must be thread-safe. */
typedef void (*ts_handler)(void *ctx, const struct ts_request *rq, struct ts_reply *reply);

struct test_server;

/* Listens on 127.0.0.1, ephemeral port. 0 or -errno. */
int test_server_start(ts_handler handler, void *ctx, struct test_server **out);
uint16_t test_server_port(const struct test_server *s);
unsigned test_server_connections(const struct test_server *s);
unsigned test_server_requests(const struct test_server *s);
/* Closes the listener and every connection, joins the threads, frees. */
void test_server_stop(struct test_server *s);

/* A ready-made 200 response with a chat.completion JSON body. */
extern const char ts_ok_response[];

#endif

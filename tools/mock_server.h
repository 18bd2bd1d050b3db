/*
 * The mock LLM server: an OpenAI-compatible HTTP/1.1 server on its own
 * io_uring thread, used by `llmring mock`, by `llmring batch --mock`
 * (in-process, ephemeral loopback port), by the tests and the benchmarks.
 *
 * Endpoints: POST /v1/chat/completions (non-streaming and `"stream":true`
 * SSE with stream_options.include_usage), POST /v1/embeddings, and the same
 * paths without the /v1 prefix. Tokens are counted as whitespace-separated
 * words of the message contents (prompt) and of the generated text:
 * prompt tokens = words in every "content" string value of the request
 * (embeddings: in the "input" strings; a token array counts its numbers),
 * counted in the escaped JSON text where \n \t \r are whitespace;
 * completion tokens = `tokens` (or max_tokens / max_completion_tokens when
 * smaller, finish_reason "length"), words drawn from a fixed 64-word list
 * by a hash of (seed, request number, index). Request numbers count from 1
 * in arrival order across the server; x-request-id is req_mock_<n> and the
 * completion id chatcmpl-mock-<n>. With ttft_ms a non-streaming reply is
 * delayed as a whole; a stream sends its head at once, waits ttft_ms, then
 * sends one SSE event per token, itl_ms apart.
 *
 * Faults, by rate (--fault KIND:RATE), per request by the header
 * `x-mock-fault: KIND`, or by the marker `mock-fault:KIND` anywhere in the
 * request body (so batch lines can ask for them):
 *   429            429 with Retry-After: 1 and an OpenAI rate-limit error body
 *   500, 503       error status with an OpenAI-shaped error body
 *   reset          a valid head, part of the body, then the connection is reset
 *   truncate       chunked body cut off before the last chunk, then close
 *   malformed      200 with a body that is not valid JSON
 *   slow-headers   headers trickle out one byte every 100 ms
 *   close          a normal response with Connection: close, then close
 *
 * HTTPS (tls_cert_file + tls_key_file): TLS 1.2 through mbedTLS, which only
 * transforms bytes; every socket operation stays on the ring. Sessions can
 * be resumed by ticket or by session id. Faults behave as in plain HTTP; a
 * normal close sends close_notify first, while truncate and reset cut the
 * connection without it (as a real truncation would). A failed handshake
 * closes that connection only.
 */
#ifndef LR_MOCK_SERVER_H
#define LR_MOCK_SERVER_H

#include <stddef.h>
#include <stdint.h>

enum mock_fault {
	MOCK_FAULT_NONE = 0,
	MOCK_FAULT_429,
	MOCK_FAULT_500,
	MOCK_FAULT_503,
	MOCK_FAULT_RESET,
	MOCK_FAULT_TRUNCATE,
	MOCK_FAULT_MALFORMED,
	MOCK_FAULT_SLOW_HEADERS,
	MOCK_FAULT_CLOSE,
	MOCK_FAULT_COUNT
};

struct mock_options {
	const char *host;          /* "127.0.0.1" */
	uint16_t port;             /* 0: ephemeral */
	unsigned ttft_ms;          /* delay before the first token (or whole reply) */
	unsigned itl_ms;           /* delay between streamed tokens */
	unsigned tokens;           /* completion tokens per reply (16) */
	uint64_t seed;             /* deterministic fault choice and text */
	double fault_rate[MOCK_FAULT_COUNT]; /* 0..1 per kind */
	unsigned close_every;      /* send Connection: close every N responses (0 = never) */
	unsigned slow_header_ms;   /* slow-headers: delay between head bytes (100; 0 = 100) */
	int plain_ring;            /* nonzero: no SINGLE_ISSUER|DEFER_TASKRUN (also env
	                            * LLMRING_RING_PLAIN=1) */
	const char *tls_cert_file; /* both set: serve HTTPS (PEM or DER; chain allowed) */
	const char *tls_key_file;
	char *error;               /* optional, error_size bytes: when mock_server_start
	                            * fails because of the TLS files, why (one line);
	                            * left empty for every other failure */
	size_t error_size;
};

struct mock_server;

void mock_options_default(struct mock_options *o);
/* Parses "KIND" into a fault; -1 when unknown. */
int mock_fault_from_name(const char *name);
/* The name of a fault ("429", "reset", ...); NULL when out of range. */
const char *mock_fault_name(int fault);
/* Loads the TLS files when given, binds, starts the server thread. Returns 0
 * or -errno: for the TLS files -ENOENT, -EACCES... from opening one, -EINVAL
 * when one is unusable or the key does not match the certificate. */
int mock_server_start(const struct mock_options *o, struct mock_server **out);
uint16_t mock_server_port(const struct mock_server *s);
/* Requests answered so far (all kinds). */
uint64_t mock_server_requests(const struct mock_server *s);
/* Connections accepted so far. */
uint64_t mock_server_connections(const struct mock_server *s);
/* TLS handshakes that resumed a session (ticket or session id); 0 in plain mode. */
uint64_t mock_server_tls_resumptions(const struct mock_server *s);
/* Stops the thread, closes every socket, frees. */
void mock_server_stop(struct mock_server *s);

/* `llmring mock ...` (argv[0] is "mock"). Runs until SIGINT/SIGTERM. */
int mock_main(int argc, char **argv);

#endif

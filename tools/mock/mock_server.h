/*
 * The mock LLM server: an HTTP/1.1 server on its own io_uring thread that
 * speaks the wire dialects of four providers, used by `llmring mock`, by
 * `llmring batch --mock` (in-process, ephemeral loopback port), by the tests
 * and the benchmarks. It parses requests with its own code on purpose
 * (mock_request.c), never the client's (engine/http): a mock sharing the
 * client's parser would hide the bugs the two would share. Its files are
 * listed in mock_internal.h.
 *
 * Endpoints (all POST; anything else is 404 in the dialect its path suggests):
 *   OpenAI     /v1/chat/completions (non-streaming and `"stream":true` SSE with
 *              stream_options.include_usage), /v1/embeddings, and both
 *              without the /v1 prefix.
 *              /v1/completions (legacy, vLLM bench's default): "prompt" (a
 *              string, a list of strings or token arrays; required, else
 *              400), "max_tokens", "stream", stream_options.include_usage.
 *              Whole: {"id":"cmpl-mock-<n>","object":"text_completion",
 *              "created","model","choices":[{"index":0,"text","logprobs":null,
 *              "finish_reason"}],"usage":{prompt,completion,total_tokens}}.
 *              Streamed: one `data:` chunk per token with the same keys
 *              ("text":" word","finish_reason":null; "usage":null with
 *              include_usage), then a chunk with "text":"" and the
 *              finish_reason, then with include_usage a chunk with
 *              "choices":[] and the usage, then data: [DONE]. No tools.
 *   Anthropic  /v1/messages (also /messages): "max_tokens" is required (400
 *              invalid_request_error "max_tokens: Field required");
 *              `"stream":true` gives the documented SSE events: message_start,
 *              content_block_start, ping, one content_block_delta per token,
 *              content_block_stop, message_delta, message_stop. Every response
 *              carries `request-id: req_mock_<n>` (not x-request-id); message
 *              ids are msg_mock_<n>.
 *   Ollama     /api/chat: streams by default (application/x-ndjson, one line
 *              per token, then a line with "done":true and the counts);
 *              `"stream":false` gives one JSON object. options.num_predict is
 *              the max-token field. /api/embed: {"model","embeddings":[[...]],
 *              "total_duration","load_duration","prompt_eval_count"}.
 *   Gemini     /v1beta/models/MODEL:generateContent and
 *              /v1beta/models/MODEL:streamGenerateContent?alt=sse (also with
 *              /v1 or no prefix); the model comes from the path. The stream is
 *              SSE with CRLF CRLF separators, one event per token, each with
 *              usageMetadata so far; the last one has finishReason; no [DONE].
 *              streamGenerateContent without alt=sse is 400.
 *              generationConfig.maxOutputTokens is the max-token field;
 *              responseId is mock-<n>.
 *
 * Tokens are whitespace-separated words, counted in the escaped JSON text
 * where \n \t \r are whitespace. Prompt tokens: words in every "content"
 * string value of the request (OpenAI, Ollama chat); in "text" values,
 * string "content" values and a string "system" (Anthropic); in "text"
 * values (Gemini); in the "input" strings (embeddings; a token array counts
 * its numbers); in the "prompt" strings (completions, the same way).
 * Completion tokens: `tokens` is where the mock's model stops on its own
 * (its end of sequence, finish "stop" / "end_turn" / "STOP"); the
 * dialect's max-token field (max_completion_tokens, else max_tokens for
 * OpenAI chat and completions; max_tokens for Anthropic;
 * options.num_predict >= 0 for Ollama; generationConfig.maxOutputTokens
 * for Gemini) cuts it shorter, with finish "length" / "max_tokens" /
 * "MAX_TOKENS". With ignore_eos (the option, or vLLM's `"ignore_eos":true`
 * in the request body) the max-token field is the exact length, also when
 * above `tokens` (capped at 1,000,000), with the length finish even when
 * it equals `tokens`; without a max-token field it stays `tokens`. Not by
 * default: Anthropic requires max_tokens and clients send a large default
 * (the engine's is 4096), which would then be every reply's length. A long
 * stream without itl_ms pauses while 1 MiB of it is unsent (it is never
 * built in memory at once). Words
 * drawn from a fixed 64-word list by a hash of (seed, request number,
 * index), joined by single spaces; streamed as "w1", " w2", " w3"... so the
 * pieces concatenate to the non-streamed text. Request numbers count from 1
 * in arrival order across the server; x-request-id is req_mock_<n> and the
 * OpenAI completion id chatcmpl-mock-<n>. With ttft_ms a non-streaming reply
 * is delayed as a whole; a stream sends its head at once, waits ttft_ms,
 * then sends one event per token, itl_ms apart.
 *
 * Latency distributions: with ttft_spread_ms (itl_spread_ms) above 0 each
 * request's TTFT (each gap between two tokens) is drawn from a log-normal
 * distribution whose mean is ttft_ms (itl_ms) and whose standard deviation
 * is the spread, with microsecond resolution (mock_draw_delay_us). A draw
 * is a function of (seed, request number, index) only, so a seed gives the
 * same delays to the same request numbers. A spread of 0 (the default) is
 * the exact mean; a mean of 0 is 0 whatever the spread.
 *
 * Simulated capacity: with max_batch N above 0 at most N chat or
 * completion generations (every dialect, streamed or not; not embeddings,
 * not error replies) run at once. The others wait in one FIFO queue,
 * sending nothing and with their TTFT clock not started, so TTFT grows
 * with load as on a real server. A stream holds its slot until its last
 * event is sent or its connection closes (a client that disconnects, also
 * while queued, frees its slot; an EOF from a client whose request is still
 * queued counts as a disconnect, as uvicorn counts it). With max_batch above 0 a whole reply is
 * sent after ttft + tokens * itl_ms (its generation time, for which it
 * holds its slot); with max_batch 0 (unlimited, the default) after ttft.
 *
 * Tool calls: a chat request with a "tools" key that names a function and
 * holds no tool result (a "role":"tool" message, an Anthropic "tool_result",
 * a Gemini "functionResponse") is answered with one call of the first
 * function named in "tools" (Gemini: in functionDeclarations) with the
 * arguments {"city":"Paris","days":3}, id call_mock_<n> (Anthropic
 * toolu_mock_<n>), in each dialect's shape (finish "tool_calls" /
 * "tool_use" / "stop" / "STOP"). It counts 4 completion tokens, ignores the
 * max-token field, and streams (OpenAI, Anthropic) as 4 argument fragments
 * {"city": | "Paris", | "days": | 3} (Ollama, Gemini: one event).
 *
 * Faults, by rate (--fault KIND:RATE), per request by the header
 * `x-mock-fault: KIND`, or by the marker `mock-fault:KIND` anywhere in the
 * request body (so batch lines can ask for them). Error bodies take the
 * dialect's shape: OpenAI {"error":{"message","type","param","code"}},
 * Anthropic {"type":"error","error":{"type","message"}}, Ollama
 * {"error":"..."}, Gemini {"error":{"code","message","status"}}.
 *   429            429 with Retry-After: 1 (OpenAI also retry-after-ms: 1000)
 *   500, 503       error status with an error body
 *   529            529 "overloaded" (Anthropic overloaded_error)
 *   400, 401, 403, 404, 409, 422
 *                  that status, with the dialect's error type for it
 *   context        400 saying the context window is exceeded (OpenAI code
 *                  context_length_exceeded; each provider's own wording)
 *   quota          a spent quota: OpenAI 429 insufficient_quota, Anthropic
 *                  400 "credit balance is too low", Ollama and Gemini 429
 *   stream-error   a stream sends up to 2 token events, then an error event in
 *                  the dialect's way (OpenAI data: {"error":{...}}, Anthropic
 *                  event: error, Ollama {"error":"..."} line, Gemini data:
 *                  {"error":{...}}), then ends the chunked body normally; a
 *                  non-streaming request gets 500
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
	MOCK_FAULT_529,
	MOCK_FAULT_STREAM_ERROR,
	/* Refusals a client must tell apart (the Python package's error
	 * classes): 4xx statuses, a context window exceeded, a spent quota. */
	MOCK_FAULT_400,
	MOCK_FAULT_401,
	MOCK_FAULT_403,
	MOCK_FAULT_404,
	MOCK_FAULT_409,
	MOCK_FAULT_422,
	MOCK_FAULT_CONTEXT,
	MOCK_FAULT_QUOTA,
	MOCK_FAULT_COUNT
};

/* Faults of the batch APIs (--batch-fault KIND:RATE, or per request the
 * header `x-mock-batch-fault: KIND`; mock_batch_api.c). */
enum mock_batch_fault {
	MOCK_BF_NONE = 0,
	MOCK_BF_INVALID, /* a batch fails validation */
	MOCK_BF_EXPIRE,  /* that share of a batch's lines expire (header: half) */
	MOCK_BF_FAIL,    /* a batch fails while in progress */
	MOCK_BF_CUT,     /* a file's (results') first download is cut half way */
	MOCK_BF_429,     /* a batch create (or upload) is refused with 429 */
	MOCK_BF_COUNT
};

struct mock_options {
	const char *host;          /* "127.0.0.1" */
	uint16_t port;             /* 0: ephemeral */
	unsigned ttft_ms;          /* delay before the first token (or whole reply):
	                            * the mean when ttft_spread_ms is set */
	unsigned itl_ms;           /* delay between streamed tokens (the mean) */
	unsigned ttft_spread_ms;   /* log-normal standard deviation of TTFT (0: exact) */
	unsigned itl_spread_ms;    /* log-normal standard deviation of ITL (0: exact) */
	unsigned max_batch;        /* concurrent generations; the rest queue (0: unlimited) */
	int ignore_eos;            /* nonzero: a max-token field is the exact length */
	unsigned tokens;           /* completion tokens per reply (16) */
	uint64_t seed;             /* deterministic fault choice and text */
	double fault_rate[MOCK_FAULT_COUNT]; /* 0..1 per kind */
	unsigned close_every;      /* send Connection: close every N responses (0 = never) */
	unsigned slow_header_ms;   /* slow-headers: delay between head bytes (100; 0 = 100) */
	int plain_ring;            /* nonzero: no SINGLE_ISSUER|DEFER_TASKRUN (also env
	                            * LLMRING_RING_PLAIN=1) */
	const char *tls_cert_file; /* both set: serve HTTPS (PEM or DER; chain allowed) */
	const char *tls_key_file;
	const char *state_dir;     /* batch APIs: keep files and batches here (NULL: memory) */
	unsigned batch_phase_ms;   /* batch APIs: each lifecycle phase lasts this (0 = 1000) */
	double batch_fault_rate[MOCK_BF_COUNT]; /* 0..1 per kind */
	char *error;               /* optional, error_size bytes: when mock_server_start
	                            * fails because of the TLS files, why (one line);
	                            * left empty for every other failure */
	size_t error_size;
};

struct mock_server;

void mock_options_default(struct mock_options *o);
/* Parses "KIND" into a fault; -1 when unknown. */
int mock_fault_from_name(const char *name);
/* The batch faults by name ("invalid", "expire", "fail", "cut", "429"). */
int mock_batch_fault_from_mem(const char *name, size_t n);
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
/* Generations holding a slot now (at most max_batch when it is set). */
unsigned mock_server_generating(const struct mock_server *s);
/* Generations waiting in the capacity's queue now. */
unsigned mock_server_waiting(const struct mock_server *s);
/* One latency draw in microseconds: log-normal with mean mean_ms and
 * standard deviation spread_ms (exactly mean_ms * 1000 when either is 0),
 * a pure function of its arguments (at most an hour). The server draws
 * request n's TTFT as (seed, ttft_ms, ttft_spread_ms, n, 0) and the gap
 * after its token k (k >= 1) as (seed, itl_ms, itl_spread_ms, n, k). */
uint64_t mock_draw_delay_us(uint64_t seed, unsigned mean_ms, unsigned spread_ms,
			    uint64_t request, uint64_t index);
/* Stops the thread, closes every socket, frees. */
void mock_server_stop(struct mock_server *s);

/* `llmring mock ...` (argv[0] is "mock"). Runs until SIGINT/SIGTERM. */
int mock_main(int argc, char **argv);

#endif

/*
 * llmring: requests to large-language-model HTTP APIs over io_uring.
 *
 * The engine is itself a ring: submit requests from any thread, reap
 * completions. Every function that can fail returns a negative LR_E* code
 * (or NULL); lr_strerror() describes it and lr_error_name() gives the stable
 * snake_case code used in batch output ("timeout", "connect_error", ...).
 *
 * Ownership:
 *   - lr_request: the caller's until lr_submit(), which takes it over (also
 *     on failure). lr_request_free() only for requests never submitted.
 *   - lr_future: every handle returned by lr_submit() or lr_engine_reap()
 *     is released exactly once with lr_future_release(). The result it
 *     points to lives as long as the last handle.
 */
#ifndef LLMRING_H
#define LLMRING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LR_BUILDING_LIBRARY)
#define LR_API __attribute__((visibility("default")))
#else
#define LR_API
#endif

#define LR_VERSION_MAJOR 0
#define LR_VERSION_MINOR 1
#define LR_VERSION_PATCH 0
#define LR_VERSION_STRING "0.1.0"

/*
 * Error codes: one list gives the enum, the names (the stable codes of
 * batch output) and the messages (lr_strerror), as libuv's UV_ERRNO_MAP.
 * Values are part of the ABI: append, never renumber.
 */
#define LR_ERRNO_MAP(XX) \
	XX(EINVAL, -1, "invalid_input", "invalid argument or request") /* bad argument or request */ \
	XX(ENOMEM, -2, "out_of_memory", "out of memory") \
	XX(EDUPLICATE, -3, "duplicate_custom_id", "duplicate custom_id") \
	XX(EAUTH, -4, "auth_error", "authentication failed (HTTP 401)") /* HTTP 401 */ \
	XX(EPERMISSION, -5, "permission_denied", "permission denied (HTTP 403)") /* HTTP 403 */ \
	XX(ENOTFOUND, -6, "not_found", "not found (HTTP 404)") /* HTTP 404 */ \
	XX(EBADREQUEST, -7, "bad_request", "bad request") /* HTTP 400, 422 */ \
	XX(ECONTEXT, -8, "context_length_exceeded", "context length exceeded") \
	XX(ERATELIMIT, -9, "rate_limited", "rate limited (HTTP 429)") /* HTTP 429 */ \
	XX(EQUOTA, -10, "insufficient_quota", "insufficient quota") \
	XX(EOVERLOADED, -11, "overloaded", "server overloaded") /* HTTP 503, 529 */ \
	XX(ESERVER, -12, "server_error", "server error") /* other 5xx */ \
	XX(ECONNECT, -13, "connect_error", "could not connect") \
	XX(ECONNRESET, -14, "connection_reset", "connection reset by peer") \
	XX(ETIMEOUT, -15, "timeout", "deadline exceeded") \
	XX(EPROTO, -16, "protocol_error", "malformed response") /* malformed HTTP/SSE/JSON */ \
	XX(ETOOLARGE, -17, "response_too_large", "response too large") \
	XX(ETLS_UNTRUSTED, -18, "tls_untrusted", "TLS certificate not trusted") \
	XX(ETLS_NAME, -19, "tls_name_mismatch", "TLS certificate name mismatch") \
	XX(ETLS_EXPIRED, -20, "tls_expired", "TLS certificate expired") \
	XX(ETLS_HANDSHAKE, -21, "tls_handshake", "TLS handshake failed") \
	XX(ECANCELLED, -22, "cancelled", "cancelled") \
	XX(EHTTP, -23, "http_error", "HTTP error status") /* another 4xx status */ \
	XX(EUNSUPPORTED, -24, "unsupported", "not supported in this build") /* a provider or this build cannot do it */ \
	XX(ESYSTEM, -25, "system_error", "system error") /* ring setup, fd limit, ... */ \
	XX(EIO, -26, "io_error", "I/O error") /* reading or writing a file */ \
	XX(ENOTCACHED, -27, "not_cached", "not in the response cache") /* lr_request_set_cache_only */

enum lr_error {
	LR_OK = 0,
#define LR_XX_ENUM(code, value, name, text) LR_##code = value,
	LR_ERRNO_MAP(LR_XX_ENUM)
#undef LR_XX_ENUM
};


/* Human description of an LR_E* code. Never NULL. */
LR_API const char *lr_strerror(int err);
/* Stable snake_case name of an LR_E* code ("timeout"); "ok" for 0. */
LR_API const char *lr_error_name(int err);
LR_API const char *lr_version(void);

/* Why a call failed, for the user: the code, the errno behind it when the
 * system refused (0 otherwise), and a message naming what was wrong (which
 * prices file and where, which setup step). Never holds a key. */
typedef struct lr_error_info {
	int code;          /* LR_E*, 0 when nothing failed */
	int sys_errno;     /* errno of a refused system call, or 0 */
	char message[256]; /* NUL-terminated; "" when code is 0 */
} lr_error_info;

typedef struct lr_engine lr_engine;
typedef struct lr_request lr_request;
typedef struct lr_future lr_future;

/* ---- configuration ---------------------------------------------------- */

/* What on_progress sees: counts since the engine started. */
typedef struct lr_progress {
	uint64_t submitted;
	uint64_t queued;            /* waiting for a slot, the rate limits or a retry */
	uint64_t in_flight;         /* on the wire */
	uint64_t succeeded;
	uint64_t failed;
	uint64_t retried;           /* attempts after the first */
	int64_t input_tokens;
	int64_t output_tokens;
	double cost_usd;            /* priced models only */
} lr_progress;

/* lr_config.cache_mode: which way the cache is used. */
enum lr_cache_mode {
	LR_CACHE_READWRITE = 0,     /* answer hits, store successful responses */
	LR_CACHE_READ = 1,          /* answer hits, store nothing (a shared, fixed cache) */
	LR_CACHE_WRITE = 2,         /* always ask, store (refresh) every success */
	LR_CACHE_OFF = 3,           /* as if cache_path were NULL */
};

typedef struct lr_config {
	/* Where every request goes, whatever its provider (each in its own
	 * dialect). NULL: each provider's own endpoint (OPENAI_BASE_URL,
	 * ANTHROPIC_BASE_URL, OLLAMA_HOST, GEMINI_BASE_URL, LLMRING_MOCK_URL,
	 * else the public one). */
	const char *base_url;
	/* The key, sent in each provider's own header. NULL: each provider's
	 * variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY), also
	 * under a base_url (a missing one is an error only for the provider's
	 * public endpoint). */
	const char *api_key;
	unsigned max_in_flight;       /* requests on the wire at once (64) */
	unsigned max_conns_per_origin; /* pool cap per scheme+host+port (0 = max_in_flight) */
	double connect_timeout_s;     /* TCP connect (10) */
	double idle_timeout_s;        /* longest silence inside a response (60) */
	double total_timeout_s;       /* whole attempt (600) */
	double pool_idle_s;           /* keep an idle pooled connection (90) */
	size_t max_header_bytes;      /* response header block cap (64 KiB) */
	size_t max_body_bytes;        /* response body cap (64 MiB) */
	unsigned ring_entries;        /* SQ size (256) */
	/* Completed futures are queued for lr_engine_reap() and the
	 * completion fd becomes readable. Off: use lr_future_wait(). */
	int reap_completions;
	/* Force plain io_uring setup flags (no SINGLE_ISSUER/DEFER_TASKRUN).
	 * Also forced by the environment variable LLMRING_RING_PLAIN=1. */
	int ring_plain;
	/* Tries after the first, as the official SDKs do (2): on connection
	 * failures and timeouts, HTTP 408, 409, 429 and 5xx (Anthropic's 529),
	 * a response that broke off, and a stream's error before any delta
	 * reached the caller; x-should-retry decides when present; never an
	 * exhausted quota or another 4xx. The wait is retry-after-ms or
	 * Retry-After (seconds or HTTP date) up to 60 s, else 0.5 s doubling
	 * to 8 s with up to 25% jitter. Each attempt gets the full timeouts.
	 * 0: no retries; < 0: the default. */
	int max_retries;
	/* TLS: CA bundle replacing the system one (NULL: SSL_CERT_FILE, then
	 * /etc/ssl/certs/ca-certificates.crt); insecure turns verification
	 * off entirely (callers should warn). */
	const char *ca_file;
	int insecure;
	double dns_ttl_s;             /* how long resolved addresses are kept (60) */
	int tls_no_resumption;        /* never offer a saved TLS session (benchmarks, tests) */
	/* No engine thread: the ring belongs to the thread that calls
	 * lr_engine_new and moves only when that thread calls lr_engine_reap,
	 * lr_engine_reap_batch, lr_future_wait or lr_engine_run (and
	 * lr_engine_destroy, also on that thread). Other threads may still
	 * submit and cancel. Saves the cross-thread hand-offs of bulk jobs. */
	int drive_from_caller;

	/* Rate limits as token buckets, whole engine (0: none). A request
	 * waits in the engine's queue until both buckets hold what it needs:
	 * one request, and its estimated tokens (prompt bytes / 4 plus
	 * max_tokens, or 256 when absent), corrected with the usage reported.
	 * Rate-limit headers (x-ratelimit-remaining-*, anthropic-ratelimit-*)
	 * and Retry-After on a 429 drain the buckets to what they say. */
	double requests_per_minute;
	double tokens_per_minute;
	/* A prices JSON file replacing the compiled-in table (NULL:
	 * LLMRING_PRICES, else the compiled-in one). lr_engine_new fails
	 * with LR_EINVAL when it cannot be read. */
	const char *prices_file;
	/* Called on the engine's thread (or the driving thread) when counts
	 * changed, at most every progress_interval_ms (100; < 0: on every
	 * change). Must not block. */
	void (*on_progress)(void *user, const struct lr_progress *progress);
	void *progress_user;
	int progress_interval_ms;
	/* Response bytes the engine may hold for requests in flight, all
	 * together (0: an eighth of physical memory, at least 256 MiB; the
	 * environment variable LLMRING_MAX_BUFFERED_BYTES overrides). Past it
	 * the largest response in flight fails with LR_ETOOLARGE. */
	size_t max_buffered_bytes;
	/* 1: waiting in the engine's queue (for a max_in_flight slot, the
	 * rate limits, or a socket when out of file descriptors) does not
	 * count against the total timeout; each attempt's deadline starts
	 * when it leaves the queue, which suits bulk jobs that submit far
	 * ahead of what is on the wire. 0: the total deadline counts from
	 * submission, queue included. */
	int queue_wait_untimed;
	/* The caller's, untouched by the engine: lr_engine_user_data()
	 * returns it (as a libuv handle's data). */
	void *user_data;
	/* Diagnostics the library would otherwise print (it never writes to
	 * stderr): one line, no newline, on the engine's thread. NULL: none. */
	void (*on_log)(void *user, const char *message);
	void *log_user;
	/*
	 * A response cache (0.3): a SQLite file (created when absent; WAL, so
	 * several processes may share it) of successful responses, keyed by
	 * the SHA-256 of the provider, the endpoint, the base URL (origin and
	 * path) and the request body in RFC 8785 canonical JSON without its
	 * top-level "user", "metadata", "stream" and "stream_options" (key
	 * order, spacing and 1.0 versus 1 do not matter; every other field
	 * does). A hit completes without a request (lr_result.cached; a
	 * streamed request gets the reply replayed as deltas). Lookups and
	 * writes run on a thread of the cache's own. A cache that cannot be
	 * used (locked, corrupt, disk full) never fails a request: it goes to
	 * the network, and on_log hears of the problem once. NULL: no cache.
	 */
	const char *cache_path;
	int cache_mode;               /* enum lr_cache_mode; 0 is read and write */
	/*
	 * The growth rule: lr_config is passed and returned by value, so its
	 * size is fixed for good. A new field takes its bytes from here (the
	 * array shrinks by as much), and zero, what lr_config_default leaves
	 * here, must mean the old behaviour. Never read; keep it zero.
	 */
	unsigned char reserved[164];
} lr_config;

/* sizeof(lr_config) on every 64-bit Linux ABI, for all versions. */
#define LR_CONFIG_SIZE_LP64 384



LR_API lr_config lr_config_default(void);

/* ---- engine ----------------------------------------------------------- */

/* Starts the engine thread (which creates its own io_uring). 0, or LR_E*:
 * LR_EINVAL for a configuration that cannot be used (a base URL, a prices
 * file, LLMRING_MAX_BUFFERED_BYTES), LR_ENOMEM, LR_ESYSTEM when the
 * system refused a step (io_uring, eventfd, a thread). */
LR_API int lr_engine_new(const lr_config *cfg, lr_engine **out);
/* lr_engine_new that also says why it failed, in *error (NULL: not
 * wanted); on success error->code is 0. */
LR_API int lr_engine_create(const lr_config *cfg, lr_engine **out, lr_error_info *error);
/* Cancels whatever is in flight, waits for the thread, frees the engine.
 * Outstanding future handles stay valid until released. A lr_submit on
 * another thread that overlaps this call returns a future completed
 * LR_ECANCELLED; no call on eng may start after this one returns. */
LR_API void lr_engine_destroy(lr_engine *eng);
/* Readable when lr_engine_reap() has something (reap_completions only).
 * With drive_from_caller (call it on the owner thread) it is readable,
 * from this call on, whenever the ring has completions: call
 * lr_engine_run(eng, 0), then reap; poll it with
 * lr_engine_next_deadline_ms() as the timeout. */
LR_API int lr_engine_completion_fd(lr_engine *eng);
/* Moves up to max completed futures into out[]; waits up to timeout_ms
 * (0: no wait, <0: forever) for the first. Returns how many, or LR_E*. */
LR_API int lr_engine_reap(lr_engine *eng, lr_future **out, int max, int timeout_ms);
/* The same, but sleeps until at least min futures are ready (or the
 * timeout passes; then hands out what there is): fewer wake-ups for bulk
 * consumers that keep more requests queued than are on the wire. */
LR_API int lr_engine_reap_batch(lr_engine *eng, lr_future **out, int max, int min, int timeout_ms);

/* drive_from_caller only, on the owner thread: one loop turn, waiting up
 * to timeout_ms (<0 forever) for ring activity. 0 or LR_E*. */
LR_API int lr_engine_run(lr_engine *eng, int timeout_ms);
/* drive_from_caller only, on the owner thread: milliseconds until the
 * engine's next deadline (a timeout, a retry, a rate-limit refill), 0
 * when work is ready now, -1 when nothing is timed. Poll the completion
 * fd with it, then call lr_engine_run(eng, 0). */
LR_API int lr_engine_next_deadline_ms(lr_engine *eng);

/* Which io_uring setup the engine thread got: "single_issuer+defer_taskrun",
 * "coop_taskrun" or "plain" (set before lr_engine_new returns); NULL for a
 * NULL eng. */
LR_API const char *lr_engine_ring_mode(lr_engine *eng);
/* lr_config.user_data as given to lr_engine_new (NULL for a NULL eng). */
LR_API void *lr_engine_user_data(const lr_engine *eng);

typedef struct lr_engine_stats {
	uint64_t connections_opened;
	uint64_t connections_reused;   /* requests sent on a pooled connection */
	uint64_t stale_resends;        /* transport-level resend on a dead pooled connection */
	uint64_t requests_completed;
	uint64_t tls_full_handshakes;
	uint64_t tls_resumed_handshakes;
	uint64_t retries;              /* attempts after the first, all requests */
} lr_engine_stats;
LR_API void lr_engine_get_stats(lr_engine *eng, lr_engine_stats *out);

/* ---- usage and cost ----------------------------------------------------- */

/* Token totals and cost per model (the model the response names, else
 * the one requested). Updated on the engine thread without locks;
 * readable from any thread at any time, every figure of one report
 * taken at the same instant. */
typedef struct lr_model_usage {
	char model[128];
	char provider[16];
	uint64_t requests;          /* completed, success or not */
	int64_t input_tokens;       /* including cached */
	int64_t output_tokens;
	int64_t cached_input_tokens;
	double cost_usd;            /* 0 when unpriced */
	int priced;                 /* the price table knows the model */
} lr_model_usage;

typedef struct lr_usage_report {
	uint64_t requests, succeeded, failed, retries;
	int64_t input_tokens, output_tokens, cached_input_tokens;
	double cost_usd;            /* sum over priced models */
	int models;                 /* entries (all of them, even beyond max_models) */
	int unpriced_models;
} lr_usage_report;

/* Fills *total (may be NULL) and up to max_models entries of models[];
 * returns the number of models, or LR_EINVAL. */
LR_API int lr_engine_usage(lr_engine *eng, lr_usage_report *total, lr_model_usage *models, int max_models);
/* The response cache's counts (lr_config.cache_path), since the engine
 * started; all 0 without a cache. A hit also counts in lr_engine_usage
 * as a succeeded request, without tokens or cost (nothing was paid). */
typedef struct lr_cache_stats {
	uint64_t lookups;           /* requests looked up */
	uint64_t hits;              /* answered from the cache */
	uint64_t stores;            /* responses written */
	uint64_t errors;            /* cache operations that failed (reported once by on_log) */
	double cost_saved_usd;      /* what the hits would have cost at the price table */
} lr_cache_stats;
/* 0, or LR_EINVAL for a NULL argument. Any thread. */
LR_API int lr_engine_cache_stats(lr_engine *eng, lr_cache_stats *out);

/*
 * 0.6: the cache for a caller that gets responses another way (a
 * provider's batch API): look a request up without sending it
 * (lr_request_set_cache_only), keep its key (lr_future_cache_key), and
 * store the response under that key once it arrives
 * (lr_engine_cache_store), so that a later request finds it as if the
 * engine had fetched it.
 */
typedef struct lr_cache_key {
	unsigned char sha256[32];   /* what the entry is found by (lr_config.cache_path says of what) */
	char provider[16];          /* "openai", "anthropic", ...: kept with the entry */
	int endpoint;               /* enum lr_endpoint: kept with the entry; how its body is read */
} lr_cache_key;
/* The key of a complete future that the cache keyed (any chat,
 * completions or embeddings request of an engine with a cache, looked up
 * or not, hit or miss). 0, or LR_EINVAL: a NULL argument, f not complete,
 * or not keyed (no cache, an HTTP call, a body without a canonical form,
 * refused before it was keyed). */
LR_API int lr_future_cache_key(const lr_future *f, lr_cache_key *out);
/* Stores body (len bytes: a 2xx response in OpenAI's shape, as the
 * engine stores a provider's reply after translating it) under key;
 * request_id (may be NULL) is what a hit reports as its request id. The
 * write is queued, as the engine's own stores are (committed within
 * about 50 ms, and by lr_engine_destroy). 1 when queued; 0 when the
 * engine's cache does not store (no cache, LR_CACHE_READ, LR_CACHE_OFF);
 * LR_EINVAL for a NULL argument, a key of no known provider or endpoint,
 * or a body that a hit could not read back (not JSON, not that shape);
 * LR_ENOMEM. Any thread. */
LR_API int lr_engine_cache_store(lr_engine *eng, const lr_cache_key *key, const char *request_id,
                                 const char *body, size_t len);
/* Waits until every response queued for storing before the call (the
 * engine's, and lr_engine_cache_store's from this thread) is committed
 * to the file, where a kill -9 of this process no longer loses it and
 * another process finds it. 1 when it is (at once without a cache that
 * stores), 0 when timeout_ms passed first (< 0 waits for good),
 * LR_EINVAL for a NULL eng or from inside a callback. A store the file
 * refused (disk full) counts as done: on_log hears of it. */
LR_API int lr_engine_cache_flush(lr_engine *eng, int timeout_ms);

/* USD per million tokens of a model in the engine's price table (dated
 * and prefixed names resolved as for accounting). 0, or LR_ENOTFOUND. */
LR_API int lr_engine_price(lr_engine *eng, const char *model, double *input, double *cached_input,
                           double *output);
/* 0.4: the same model's rates through the provider's batch API (OpenAI
 * Batch, Anthropic Message Batches, Gemini Batch Mode). 0, or
 * LR_ENOTFOUND when the table does not know the model or has no batch
 * rates for it (lr_engine_price tells the two apart). */
LR_API int lr_engine_batch_price(lr_engine *eng, const char *model, double *input,
                                 double *cached_input, double *output);

/* ---- requests --------------------------------------------------------- */

/* LR_ENDPOINT_COMPLETIONS: OpenAI's legacy text completions (POST
 * {base}/completions, a prompt instead of messages), the OpenAI dialect
 * only (OpenAI-compatible servers: vLLM, SGLang, llama.cpp, ...). */
enum lr_endpoint { LR_ENDPOINT_CHAT = 0, LR_ENDPOINT_EMBEDDINGS = 1, LR_ENDPOINT_COMPLETIONS = 2 };
enum lr_role { LR_ROLE_SYSTEM, LR_ROLE_USER, LR_ROLE_ASSISTANT, LR_ROLE_TOOL };

/*
 * Models are "provider/model" strings, as in LiteLLM: "openai/gpt-4o-mini",
 * "anthropic/claude-haiku-4-5", "ollama/qwen3:4b", "gemini/gemini-2.0-flash",
 * "mock/any". The prefix is stripped before sending when it names a known
 * provider; any other string goes to the openai provider unchanged (so
 * "meta-llama/Llama-3.1-8B-Instruct" works against vLLM). Each provider has
 * its default base URL and key variable (OPENAI_API_KEY, ANTHROPIC_API_KEY,
 * GEMINI_API_KEY; OPENAI_BASE_URL, ANTHROPIC_BASE_URL, OLLAMA_HOST,
 * GEMINI_BASE_URL override). lr_config.base_url and .api_key, when set,
 * apply to every provider; a custom base URL without a key sends no key.
 * "mock/" needs a base URL (lr_config.base_url or LLMRING_MOCK_URL).
 *
 * The request is the OpenAI chat-completions shape whatever the provider:
 * each provider's builder translates it, and the result comes back
 * normalised (text, tool calls, OpenAI finish reasons, usage).
 */

/* model may be NULL when a JSON body carrying "model" is set. */
LR_API lr_request *lr_request_new(const char *model);
LR_API void lr_request_free(lr_request *rq);
LR_API int lr_request_set_endpoint(lr_request *rq, enum lr_endpoint ep);
LR_API int lr_request_add_message(lr_request *rq, enum lr_role role, const char *text);
LR_API int lr_request_set_max_tokens(lr_request *rq, int max_tokens);
/* A message from raw JSON, in OpenAI's shape: multi-part content (text and
 * image_url parts), an assistant turn with tool_calls, ... Validated. */
LR_API int lr_request_add_message_json(lr_request *rq, const char *json);
/* A user message with text and one image (an https URL or a data: URL
 * with base64 data; detail may be NULL). */
LR_API int lr_request_add_image(lr_request *rq, const char *text, const char *image_url,
                                const char *detail);
/* The result of a tool call, answering the assistant's call tool_call_id
 * (a "tool" message; providers that key results by function name find it
 * in the earlier assistant message that made the call). */
LR_API int lr_request_add_tool_result(lr_request *rq, const char *tool_call_id, const char *content);
/* Embeddings: one input text (the endpoint must be LR_ENDPOINT_EMBEDDINGS). */
LR_API int lr_request_add_input(lr_request *rq, const char *text);
/* Text completions: the prompt, copied (replaces an earlier one). The
 * endpoint must already be LR_ENDPOINT_COMPLETIONS, else LR_EINVAL; such
 * a request takes no messages or tools. */
LR_API int lr_request_set_prompt(lr_request *rq, const char *prompt);
/* A function tool; parameters_json is its JSON Schema (NULL: no
 * parameters). */
LR_API int lr_request_add_tool(lr_request *rq, const char *name, const char *description,
                               const char *parameters_json);
/* "auto", "none", "required", or the name of one function to call. */
LR_API int lr_request_set_tool_choice(lr_request *rq, const char *choice);
/* A response_format object: {"type":"json_object"} or
 * {"type":"json_schema","json_schema":{"name":..,"schema":{..},"strict":true}}. */
LR_API int lr_request_set_response_format(lr_request *rq, const char *json);
LR_API int lr_request_set_temperature(lr_request *rq, double temperature);
LR_API int lr_request_set_top_p(lr_request *rq, double top_p);
LR_API int lr_request_set_seed(lr_request *rq, int64_t seed);
LR_API int lr_request_set_n(lr_request *rq, int n);
/* Adds one stop sequence (up to 4). */
LR_API int lr_request_add_stop(lr_request *rq, const char *stop);
/* The end user's id, for the provider's abuse monitoring. */
LR_API int lr_request_set_user(lr_request *rq, const char *user);
/* Any other top-level field of the chat-completions body, as raw JSON
 * ("reasoning_effort", "\"low\""). Replaces an earlier value of key. */
LR_API int lr_request_set_param(lr_request *rq, const char *key, const char *json_value);
/* Ask for a streamed response without a callback (lr_future_next_delta). */
LR_API int lr_request_set_stream(lr_request *rq, int stream);
/* A complete JSON request body (OpenAI shape), copied. With a model set
 * on the request, the body's "model" is replaced by it. Excludes the
 * message and parameter calls above. */
LR_API int lr_request_set_body(lr_request *rq, const char *json, size_t len);
/* Per-request override of the engine's base URL. */
LR_API int lr_request_set_base_url(lr_request *rq, const char *url);
/* An extra request header; name or value with CR/LF is LR_EINVAL. */
LR_API int lr_request_add_header(lr_request *rq, const char *name, const char *value);
/* Streaming: a delta of the reply as each event is parsed, called on
 * the engine's thread (or the driving thread of a caller-driven engine),
 * never batched. Setting one asks for a stream ("stream":true and
 * stream_options.include_usage in bodies built from messages; a body of
 * your own must ask for "stream":true itself). Any response that arrives
 * as text/event-stream is parsed as a stream, callback or not. */
typedef struct lr_delta {
	const char *text;           /* content delta (not NUL-terminated), may be empty */
	size_t text_len;
	int choice;                 /* choices[].index */
	const char *finish_reason;  /* set on the event that ends the choice, else NULL */
	/* A tool-call delta: tool_index >= 0 (-1 otherwise); id and name as
	 * far as known (NUL-terminated, or NULL), arguments_len bytes of the
	 * arguments' JSON text that follow what earlier deltas gave. */
	int tool_index;
	const char *tool_id;
	const char *tool_name;
	const char *tool_arguments;
	size_t tool_arguments_len;
} lr_delta;
typedef void (*lr_delta_fn)(void *user, const lr_delta *delta);
LR_API int lr_request_on_delta(lr_request *rq, lr_delta_fn fn, void *user);

/* Tries after the first for this request (lr_config.max_retries). */
LR_API int lr_request_set_max_retries(lr_request *rq, int max_retries);
/* Per-request deadlines in seconds; <= 0 keeps the engine default. */
LR_API int lr_request_set_timeouts(lr_request *rq, double connect_s, double idle_s, double total_s);
LR_API void lr_request_set_user_data(lr_request *rq, void *data);

/* 0.6: only = 1: answered from lr_config.cache_path or not at all. A hit
 * completes as any hit (lr_result.cached); a miss, an engine without a
 * cache or in LR_CACHE_WRITE mode completes with LR_ENOTCACHED and
 * nothing is sent (nor counted in lr_engine_usage). Either way
 * lr_future_cache_key gives the request's key. LR_EINVAL for an HTTP
 * call (lr_request_new_http), which is never cached. */
LR_API int lr_request_set_cache_only(lr_request *rq, int only);

/* ---- futures ---------------------------------------------------------- */

typedef struct lr_usage {
	int64_t input_tokens;
	int64_t output_tokens;
	int64_t cached_input_tokens;
} lr_usage;

typedef struct lr_timings {
	double queued_ms;   /* submit until the request went on the wire */
	double ttfb_ms;     /* submit until the first response byte */
	double total_ms;    /* submit until completion */
	double ttft_ms;     /* submit until the first token (text or tool call) was
	                     * parsed: in a stream its first delta, else the
	                     * whole reply; 0 when none came */
} lr_timings;

typedef struct lr_tool_call {
	const char *id;             /* NUL-terminated; "" when the provider gives none */
	const char *name;
	const char *arguments;      /* JSON text of the arguments, NUL-terminated */
	size_t arguments_len;
} lr_tool_call;

typedef struct lr_result {
	int error;                  /* LR_OK or LR_E* */
	const char *error_message;  /* NULL on success */
	int http_status;            /* 0 when no response arrived */
	const char *body;           /* raw response body (NUL-terminated), or NULL */
	size_t body_len;
	int body_is_json;           /* body parsed as one JSON object */
	/* The reply text (choices[0]; streamed deltas joined), NUL-terminated,
	 * or NULL; and why it ended ("stop", "length", "tool_calls", ...). For
	 * a stream, body is a chat.completion assembled from the events (a
	 * text_completion for LR_ENDPOINT_COMPLETIONS). */
	const char *text;
	size_t text_len;
	const char *finish_reason;
	int streamed;
	const char *request_id;     /* x-request-id / request-id (Gemini: responseId), or NULL */
	const char *model;          /* model the response names, or NULL */
	lr_usage usage;
	lr_timings timings;
	int attempts;
	double retry_after_s;       /* Retry-After / retry-after-ms, or -1 */
	/* Tool calls of choices[0] (assembled from stream deltas), in order. */
	const lr_tool_call *tool_calls;
	int tool_call_count;
	const char *provider;       /* "openai", "anthropic", "ollama", "gemini", "mock" */
	double cost_usd;            /* of this request's usage; < 0 when the model is unpriced */
	/* 0.3: answered from lr_config.cache_path without a request (body,
	 * text, tool calls and usage are the stored response's; cost_usd is
	 * 0, nothing was paid); cost_saved_usd is what it would have cost at
	 * the price table (< 0 unpriced; 0 when not cached). */
	int cached;
	double cost_saved_usd;
} lr_result;

/* Takes over rq. Never blocks on I/O. NULL only for a NULL eng or rq, or
 * out of memory (rq is freed then); a request refused or submitted while
 * the engine shuts down gets a future already complete with its error. */
LR_API lr_future *lr_submit(lr_engine *eng, lr_request *rq);
/* 1 when complete, 0 when timeout_ms passed first (<0 waits forever). */
LR_API int lr_future_wait(lr_future *f, int timeout_ms);
LR_API int lr_future_done(const lr_future *f);
/* The result once complete, NULL before. */
LR_API const lr_result *lr_future_result(const lr_future *f);
LR_API void *lr_future_user_data(const lr_future *f);
/* Asks the engine to end the request with LR_ECANCELLED; no effect when
 * it already completed. The future still completes exactly once. */
LR_API void lr_future_cancel(lr_future *f);
LR_API void lr_future_release(lr_future *f);

/* 0.5: a result that outlives its future. lr_result_copy makes one
 * allocation holding the struct and everything it points to (strings,
 * body, text, tool calls), so the future can be released at once and go
 * back to the engine's pool while the result is kept: a kept result costs
 * its own bytes, not a whole future's. The copy does not depend on the
 * future or the engine (it may outlive both). NULL for a NULL res or out
 * of memory. Free it with lr_result_free (NULL is ignored). */
LR_API lr_result *lr_result_copy(const lr_result *res);
LR_API void lr_result_free(lr_result *res);

/* Calls fn(user, f) once f is complete: on the engine's thread when it
 * completes later, or at once on this thread when it already has. fn may
 * read the result but must not block; it does not own f (release f as
 * usual). One callback per future; a second is LR_EINVAL. */
typedef void (*lr_future_fn)(void *user, lr_future *f);
LR_API int lr_future_then(lr_future *f, lr_future_fn fn, void *user);
/*
 * Calls from inside a callback (on_delta, then, on_progress: they run on
 * the engine's thread, inside its loop turn):
 *   - allowed: lr_submit, lr_future_cancel, lr_future_release,
 *     lr_future_then, lr_future_result/done/user_data, lr_engine_stats,
 *     lr_engine_usage, lr_engine_reap with timeout 0 (threaded engines),
 *     lr_future_wait with timeout 0 (a look: 1 or 0), sessions.
 *   - refused with LR_EINVAL, since only this thread could complete what
 *     they wait for: lr_future_wait / lr_wait_all with a timeout on a
 *     future not yet complete (the callback's own future included: it
 *     completes when the callback returns), lr_engine_reap(_batch) with a
 *     timeout (any reap on a caller-driven engine), lr_engine_run,
 *     lr_run_batch; lr_complete returns NULL (the request is freed).
 *   - never blocks: lr_future_next_delta (the timeout is taken as 0).
 *   - deferred: lr_engine_destroy. A threaded engine stops, completes
 *     everything as cancelled and frees itself on its own thread once the
 *     turn is over; the engine must not be used after the call. On a
 *     caller-driven engine it only stops the engine: call it again from
 *     outside the callback to free it.
 */
/* Waits until every one of fs[0..n) is complete or timeout_ms passed
 * (<0 forever). Returns how many are complete; each keeps its own result
 * (one failure never fails the others). */
LR_API int lr_wait_all(lr_future *const *fs, int n, int timeout_ms);

/* Blocking helpers for simple programs. lr_complete submits rq and waits
 * (timeout_ms <0: forever); the future is returned complete (release it),
 * or NULL when out of memory. lr_run_batch submits n requests (taking
 * them over) and waits for all; out[i] is request i's future. Returns how
 * many succeeded, or LR_E*. */
LR_API lr_future *lr_complete(lr_engine *eng, lr_request *rq, int timeout_ms);
LR_API int lr_run_batch(lr_engine *eng, lr_request **rqs, int n, lr_future **out, int timeout_ms);

/*
 * Sessions: a conversation on one engine. Each lr_session_send appends
 * the user message, sends the whole history, and once the reply succeeds
 * appends it (text and tool calls) to the history; a failed turn leaves
 * the history as it was. One turn at a time per session (a send while a
 * turn is in flight completes at once with LR_EINVAL); any number of
 * sessions may run at once.
 */
typedef struct lr_session lr_session;
LR_API lr_session *lr_session_new(lr_engine *eng, const char *model, const char *system);
LR_API lr_future *lr_session_send(lr_session *s, const char *text);
/* The history as a JSON array of OpenAI messages, NUL-terminated, in
 * malloc'd memory the caller frees; NULL when out of memory. */
LR_API char *lr_session_history(lr_session *s);
LR_API int lr_session_turns(lr_session *s);   /* completed turns */
/* The caller's pointer, untouched by the library (NULL until set). */
LR_API void lr_session_set_user_data(lr_session *s, void *user_data);
LR_API void *lr_session_user_data(const lr_session *s);
/* Frees the session; a turn in flight completes without touching it. */
LR_API void lr_session_free(lr_session *s);

/*
 * Pull-style streaming for synchronous callers: for a request submitted
 * with lr_request_set_stream, hands out the deltas in
 * order. Returns 1 with *out valid until the next call on f (or its
 * release), 0 once the stream has ended and every delta was handed out
 * (lr_future_result then holds the outcome), LR_ETIMEOUT when timeout_ms
 * (<0 forever) passed first, LR_EINVAL for a request not streamed this
 * way. One consumer thread per future. A callback set with
 * lr_request_on_delta still runs, on the engine thread, after the delta
 * was queued here: a callback that wakes the consumer, which then calls
 * lr_future_next_delta(f, &d, 0), always finds that delta.
 */
LR_API int lr_future_next_delta(lr_future *f, lr_delta *out, int timeout_ms);

/* ---- plain HTTP calls (0.3) --------------------------------------------- */

/*
 * A provider's own API routes beyond chat (files, batches, ...) through
 * the same engine: its pool, TLS, deadlines, retries, futures, cancel and
 * reaping. lr_request_new_http makes the request; lr_request_add_header,
 * lr_request_set_base_url, lr_request_set_timeouts,
 * lr_request_set_max_retries and lr_request_set_user_data apply as for
 * chat; the chat calls (messages, lr_request_set_body, ...) make
 * lr_submit refuse it with LR_EINVAL.
 *
 * Where it goes: target is a path under the provider's base URL (the
 * engine's, or lr_request_set_base_url's), joined with one "/"; a first
 * segment the base path already ends in is not repeated, so a provider's
 * own paths work under any base: under OpenAI's
 * "https://api.openai.com/v1", "/v1/files", "v1/files" and "files" all
 * go to /v1/files, and "/v1/messages/batches" goes there under
 * Anthropic's "https://api.anthropic.com" or a base ending in /v1. A
 * query may follow ("/v1/batches?limit=20&after=b1"). Or target is an
 * absolute http:// or https:// URL (Anthropic's results_url).
 *
 * Headers: the provider's key headers (and its fixed ones, such as
 * anthropic-version) only when the request goes to the origin (scheme,
 * host, port) the engine's endpoint of that provider names: a URL on
 * another origin never gets the key. Then Accept-Encoding: identity,
 * User-Agent, the caller's headers, and, with a body, Content-Type
 * (application/json unless the caller added one) and Content-Length; a
 * POST without a body sends Content-Length: 0. A missing key for the
 * provider's public endpoint fails the request as for chat (LR_EAUTH).
 *
 * The response: lr_result's http_status, error, error_message,
 * request_id, attempts, timings and retry_after_s as for chat; body is
 * the response body (NUL-terminated, not parsed; body_is_json 0), NULL
 * when it was empty (a 204) or a sink took it (below); text, usage and
 * tool calls stay empty, and the
 * call is not counted in lr_engine_usage nor held or counted by the rate
 * limits (requests_per_minute, tokens_per_minute: they are the model
 * requests' and a files 429 does not pause them); it does take a
 * max_in_flight slot and counts in lr_progress. A 2xx status is success; any
 * other is an error with the code and message the provider's error body
 * gives (LR_ENOTFOUND, LR_ERATELIMIT, ...), its body kept in body.
 *
 * Retries follow lr_config.max_retries for every method, POST included,
 * as the official SDKs do (connection errors, 408, 409, 429, 5xx,
 * honouring Retry-After and x-should-retry); a POST that creates
 * something (an upload, a batch) may then run twice on the server when
 * the first answer was lost: set lr_request_set_max_retries(rq, 0) where
 * that matters. An attempt whose body bytes already reached a sink is
 * never retried (the sink would see them twice): the caller resumes.
 *
 * A response cut short after its head (the connection closed or reset
 * inside the body) ends with LR_ECONNRESET (broken framing is
 * LR_EPROTO); lr_future_response_bytes says how many body bytes arrived,
 * so a download resumes with "Range: bytes=N-" (expect 206 and check
 * Content-Range with lr_future_response_header).
 */
enum lr_method { LR_METHOD_GET = 0, LR_METHOD_POST = 1, LR_METHOD_DELETE = 2 };

/* provider: "openai", "anthropic", "ollama", "gemini" or "mock" (NULL:
 * "openai"). NULL for an unknown provider or method, an empty target or
 * one with spaces or control characters, or out of memory. */
LR_API lr_request *lr_request_new_http(const char *provider, enum lr_method method,
                                       const char *target);

/* Appends len bytes to the request body (the body is its parts in order,
 * up to 8; multipart/form-data is the caller's parts around a file).
 * release NULL: the bytes are copied now. Else they are borrowed: they
 * must stay unchanged until the engine calls release(user, data), once,
 * when it is done with them: at completion on the engine's thread (or
 * the driving thread), or in lr_request_free, or in lr_submit when it
 * refuses the request. On failure (LR_EINVAL, LR_ENOMEM) release is not
 * called and the bytes stay the caller's. */
typedef void (*lr_release_fn)(void *user, const void *data);
LR_API int lr_request_add_body_bytes(lr_request *rq, const void *data, size_t len,
                                     lr_release_fn release, void *user);
/* Appends len bytes of file fd from offset (len < 0: up to the end of the
 * file as fstat sees it now) to the body, read with pread (the file
 * offset never moves) a piece of 256 KiB at a time as the request is
 * sent: a 200 MB upload is never in memory. fd is borrowed: keep it open
 * and the file unchanged until the future completes. A file that gives
 * fewer bytes than counted fails the request with LR_EIO. */
LR_API int lr_request_add_body_file(lr_request *rq, int fd, int64_t offset, int64_t len);

/* A 2xx response's body goes to fn as it arrives (each piece once, in
 * order, on the engine's thread, never buffered, and not capped by
 * max_body_bytes) instead of lr_result.body; an error status's body is
 * still buffered in lr_result.body. fn returns 0 to go on; a negative
 * LR_E* ends the request with that code, any other value with LR_EIO.
 * Replaces lr_request_set_response_fd. */
typedef int (*lr_body_fn)(void *user, const char *data, size_t len);
LR_API int lr_request_on_response_body(lr_request *rq, lr_body_fn fn, void *user);
/* The same, written to fd (borrowed; write(2) on the engine's thread,
 * whole pieces, retried on EINTR); a failed write ends the request with
 * LR_EIO naming the error (a pipe whose reader left too: SIGPIPE is
 * blocked around the write). Replaces lr_request_on_response_body. */
LR_API int lr_request_set_response_fd(lr_request *rq, int fd);

/* A header of the final attempt's response (name in any case; the last
 * one of that name), NUL-terminated, valid as long as the future; NULL
 * when absent, before completion, or for a chat request. */
LR_API const char *lr_future_response_header(const lr_future *f, const char *name);
/* Body bytes of the final attempt's response that arrived (handed to the
 * sink, or held in lr_result.body), also when it failed or was cancelled
 * part way; 0 before completion and for a chat request. */
LR_API uint64_t lr_future_response_bytes(const lr_future *f);

/* Which provider a model string routes to ("openai" for anything without
 * a known prefix) and, in *model_out, the model name sent to it. */
LR_API const char *lr_model_provider(const char *model, const char **model_out);
/* 0 when an engine made with cfg (NULL: defaults) can send requests for
 * model: a usable base URL, and a key where its provider's own endpoint
 * needs one. Else LR_EAUTH or LR_EINVAL with a message in why that names
 * the variable to set (the key itself never appears). */
LR_API int lr_config_check_model(const lr_config *cfg, const char *model, char *why, size_t why_len);

#ifdef __cplusplus
}
#endif
#endif

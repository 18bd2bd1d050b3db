/*
 * What the mock server's files share; private to tools/mock (the CLI and
 * the tests use mock_server.h). Every function one file calls in another
 * is named mock_*: the mock links beside the engine, which has its own
 * conn_close, buf_free and the like.
 *
 * The files, in the order a request meets them:
 *   mock_server.c     public API: options, fault names, start/stop, the thread
 *   mock_conn.c       the ring: accept, recv, send, timers, the TLS hookup,
 *                     and the per-connection loop over pipelined requests
 *   mock_request.c    the mock's own HTTP request parser (head only)
 *   mock_route.c      path -> route and dialect; a complete request -> its reply
 *   mock_body.c       key scanners over the raw JSON request body
 *   mock_render.c     what every dialect shares: the head, error replies, the
 *                     dialect table
 *   mock_openai.c, mock_anthropic.c, mock_ollama.c, mock_gemini.c
 *                     one dialect's bodies, stream events and error body
 *   mock_completions.c  OpenAI's legacy /v1/completions bodies and chunks
 *   mock_stream.c     a reply in progress: stream event order, chunk framing,
 *                     pacing (ttft, itl, slow headers)
 *   mock_capacity.c   simulated capacity: max_batch generations, a FIFO queue
 *   mock_latency.c    the TTFT and ITL draws (log-normal, counter-based)
 *   mock_buf.c        the byte buffer and the generated text and vectors
 *   mock_tls.c        mbedTLS over memory buffers (its own header, mock_tls.h)
 *   mock_batch_*.c    the provider batch APIs (their own headers,
 *                     mock_batch.h and mock_batches.h)
 *
 * Memory: out-of-memory aborts (this is a test tool); everything else is
 * freed when the connection or the server goes away.
 */
#ifndef LR_MOCK_INTERNAL_H
#define LR_MOCK_INTERNAL_H

#include "mock_server.h"
#include "mock_tls.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct mock_bfile;
struct mock_bstore;

#define HEAD_MAX (64u * 1024)          /* request header block cap -> 431 */
#define BODY_MAX (64u * 1024 * 1024)   /* request body cap -> 413 */
#define IN_INITIAL 8192u
#define IN_BACKLOG_MAX (256u * 1024)   /* buffered pipelined input while busy */
#define PEND_HIGH (1024u * 1024)       /* stop answering until the client reads */
#define MODEL_MAX 256
#define MOCK_MAX_TOKENS_CAP 1000000u /* the most tokens a max-token field gets */
#define TOOL_NAME_MAX 128
#define RING_ENTRIES 4096
#define RING_CQ_ENTRIES 32768
#define CQE_BATCH 256
#define TLS_RECV_MIN (18u * 1024)      /* a whole TLS record fits one recv */
#define TLS_RECV_MAX (256u * 1024)
#define TLS_PLAIN_CHUNK (16u * 1024)   /* room made in `in` per decrypt */

/* ------------------------------------------------------------------ */
/* Byte buffers (mock_buf.c)                                           */

/* The mock's own, not engine/util/buf.h's struct buf: that one reports
 * out-of-memory to its caller, this one aborts, and the mock is built and
 * fuzzed beside the engine (so the names must differ). */
struct mock_buf {
	char *p;     /* owner: whoever holds the struct mock_buf */
	size_t len;
	size_t cap;
};

/* The slow path of mock_buf_reserve: reallocates; aborts when out of memory. */
void mock_buf_grow(struct mock_buf *b, size_t extra);
void mock_buf_free(struct mock_buf *b);

/* Room for extra more bytes. Inline: every put pays for this test. */
static inline void mock_buf_reserve(struct mock_buf *b, size_t extra)
{
	if (b->cap - b->len < extra)
		mock_buf_grow(b, extra);
}

static inline void put(struct mock_buf *b, const void *s, size_t n)
{
	mock_buf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

#define PUTL(b, lit) put((b), (lit), sizeof(lit) - 1)

static inline void put_ch(struct mock_buf *b, char ch)
{
	mock_buf_reserve(b, 1);
	b->p[b->len++] = ch;
}

static inline void put_u64(struct mock_buf *b, uint64_t v)
{
	char tmp[20];
	int i = 20;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(b, tmp + i, (size_t)(20 - i));
}

static inline void put_hex(struct mock_buf *b, size_t v)
{
	static const char hx[] = "0123456789abcdef";
	char tmp[16];
	int i = 16;
	do {
		tmp[--i] = hx[v & 15];
		v >>= 4;
	} while (v);
	put(b, tmp + i, (size_t)(16 - i));
}

/* Length of the UTF-8 sequence at p[0..n) (1 for ASCII); 0 when there is
 * none (a stray, overlong or cut-off sequence, a surrogate, past U+10FFFF). */
size_t mock_utf8_len(const char *p, size_t n);
/* JSON string contents (no quotes) for short texts we echo, like a path;
 * bytes that are not UTF-8 become U+FFFD. */
void mock_put_json_escaped(struct mock_buf *b, const char *s, size_t n);

/* ------------------------------------------------------------------ */
/* Deterministic choices (mock_buf.c)                                  */

static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The mock's 64-word vocabulary and the words' lengths. */
extern const char *const mock_words[64];
extern const uint8_t mock_word_len[64];

static inline unsigned word_at(uint64_t seed, uint64_t n, unsigned i)
{
	return (unsigned)(mix64(seed ^ mix64(n * 0x100000001b3ull + i)) & 63);
}

/* Reply n's first ntok words, joined by single spaces. */
void mock_put_text(struct mock_buf *b, uint64_t seed, uint64_t n, unsigned ntok);
/* Eight floats in [-1, 1] for embedding input i of reply n: "[f,...]". */
void mock_put_vector(struct mock_buf *b, uint64_t seed, uint64_t n, unsigned i);

/* ------------------------------------------------------------------ */
/* Server state                                                        */

enum phase { PH_TTFT, PH_HEAD, PH_BODY, PH_EVENTS };
enum dialect { D_OPENAI = 0, D_ANTHROPIC, D_OLLAMA, D_GEMINI };
enum ctype { CT_JSON = 0, CT_SSE, CT_NDJSON, CT_OCTET };
enum close_mode { CLOSE_NONE = 0, CLOSE_FIN, CLOSE_RST };
/* A generation's place in the simulated capacity (mock_capacity.c). */
enum batch_state { BATCH_NONE = 0, BATCH_WAITING, BATCH_READY, BATCH_GENERATING };

struct job {
	bool active;
	bool stream;
	bool include_usage;
	bool slow;              /* trickle the head */
	uint8_t phase;
	uint8_t close_mode;     /* applied when the job is done */
	uint8_t fault;
	bool length_cut;        /* finish_reason "length" */
	bool tool;              /* reply with a tool call */
	bool text_completion;   /* OpenAI's legacy /v1/completions */
	bool wait_send;         /* paused with PEND_HIGH bytes unsent (conn_process resumes) */
	uint8_t dialect;
	uint8_t batch;          /* enum batch_state */
	uint64_t ttft_us;       /* delay before the first token (or the whole reply) */
	uint64_t due_ns;        /* a stream's next paced event, CLOCK_MONOTONIC (0: none yet) */
	unsigned ntok;          /* completion tokens reported */
	unsigned nev;           /* stream events 1..nev carry tokens or tool pieces */
	unsigned prompt_tokens;
	unsigned ev;            /* next stream event */
	uint64_t n;             /* request number */
	uint64_t created;
	struct mock_buf whole;  /* head (+ body when not streaming); owned by the job */
	struct mock_buf prefix; /* stream chunk JSON up to "choices":; owned by the job */
	struct mock_bfile *src; /* a download's file after the head (a reference
	                         * the job holds until done or the conn goes) */
	const char *src_data;   /* the file's bytes (borrowed from src) */
	size_t src_off, src_end;
	size_t off;             /* bytes of whole already emitted */
	size_t head_len;        /* bytes of whole that are the head */
	size_t cut;             /* bytes of whole to emit in all */
	char model[MODEL_MAX];  /* JSON-escaped, no quotes */
	size_t model_len;
	char tool_name[TOOL_NAME_MAX]; /* JSON-escaped, no quotes */
	size_t tool_name_len;
};

enum route {
	R_NOTFOUND = 0, R_CHAT, R_EMBED, R_ANTHROPIC, R_OLLAMA_CHAT, R_OLLAMA_EMBED,
	R_GEMINI, R_GEMINI_STREAM, R_COMPLETIONS,
	R_BATCH /* the batch APIs and /mock/ (mock_batch_api.c): any method */
};
enum method { M_OTHER = 0, M_GET, M_POST, M_DELETE };
#define BATCH_BODY_MAX (272u * 1024 * 1024) /* Anthropic's 256 MB and some */

struct req {
	size_t head_len;
	size_t body_len;
	uint8_t route;
	uint8_t dialect;        /* also for R_NOTFOUND: guessed from the path */
	bool alt_sse;           /* Gemini: ?alt=sse */
	bool keep_alive;
	uint16_t model_off;     /* Gemini: the model in the path, from the head start */
	uint16_t model_len;
	int fault;              /* from x-mock-fault, -1 none, -2 unknown name */
	int batch_fault;        /* from x-mock-batch-fault, -1 none, -2 unknown name */
	uint8_t method;         /* enum method (R_BATCH only) */
	bool has_range;         /* Range: bytes=FROM-[TO] */
	uint64_t range_from, range_to;
	uint32_t path_off, path_len; /* from the head start (R_BATCH only) */
	uint32_t query_off, query_len; /* after the '?', 0 length: none */
	uint32_t ctype_off, ctype_len; /* the Content-Type value */
	char line[200];         /* "METHOD /path" for the 404 message */
	size_t line_len;
};

struct conn {
	struct conn *prev, *next; /* the server's list */
	int fd;
	unsigned inflight;      /* ring ops referring to this conn */
	bool recv_armed, send_armed, timer_armed;
	bool closing;           /* cancels issued; freed when inflight hits 0 */
	bool rd_eof;
	bool head_done;         /* rq holds a parsed head, waiting for the body */
	uint8_t want_close;     /* close once everything is sent */
	bool rst;               /* SO_LINGER 0 on close */
	struct mock_buf in;     /* received bytes; owned by the conn */
	size_t in_start;        /* first unconsumed byte */
	size_t scan;            /* head-end search resumes here (relative) */
	struct req rq;
	struct mock_buf out;    /* in flight in the kernel; owned by the conn */
	size_t out_off;
	struct mock_buf pend;   /* produced while out is in flight; owned by the conn
	                         * (TLS: plaintext, encrypted into tpend at flush) */
	struct mock_tls_conn *tls; /* NULL in plain mode; owned by the conn */
	struct mock_buf tpend;  /* TLS: ciphertext waiting for the next send; owned by the conn */
	bool tls_notified;      /* close_notify queued */
	bool tls_bare_close;    /* close without close_notify (truncate, errors) */
	struct job job;
	struct __kernel_timespec ts;
	struct conn *batch_prev, *batch_next; /* the capacity's wait or ready list */
};

struct mock_server {
	struct mock_options o;
	char host[256];
	int lfd;
	int efd;
	uint16_t port;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int started;            /* 1 running, -errno failed; under mu */
	_Atomic uint64_t requests;
	_Atomic uint64_t connections;
	_Atomic unsigned stat_generating; /* copies of generating and waiting */
	_Atomic unsigned stat_waiting;

	/* Thread-only from here on. */
	struct io_uring ring;
	struct conn *conns;     /* list head; every conn owned by the server */
	unsigned nconns;
	bool accept_armed;
	bool accept_retry_armed; /* backing off after an accept error (EMFILE) */
	struct __kernel_timespec accept_retry_ts;
	bool stopping;
	uint64_t efd_val;
	uint64_t next_n;
	uint64_t now;
	struct mock_buf scratch; /* per-request body rendering; owned by the server */
	struct mock_tls *tls;   /* NULL in plain mode; owned by the server */
	double fault_cum[MOCK_FAULT_COUNT];
	/* Simulated capacity (mock_capacity.c); the conns are the list's. */
	unsigned generating;    /* holding a slot (ready or running) */
	unsigned waiting;       /* in the FIFO queue */
	struct conn *wait_head, *wait_tail;
	struct conn *ready_head, *ready_tail;
	struct mock_bstore *bs; /* the batch APIs' store; owned by the server
	                         * (NULL: those routes are 404) */
};

enum {
	TAG_IGNORE = 0, TAG_RECV, TAG_SEND, TAG_TIMER, TAG_ACCEPT, TAG_STOP, TAG_ACCEPT_RETRY,
	TAG_BATCH /* the batch lifecycle's timer (mock_batch_run.c) */
};
#define TAG_MASK ((uint64_t)7)

/* Token event ev's text (JSON string contents): " word" after the first. */
static inline void put_token(const struct mock_server *s, const struct job *j,
			     struct mock_buf *b, unsigned ev)
{
	unsigned w = word_at(s->o.seed, j->n, ev - 1);
	if (ev > 1)
		put_ch(b, ' ');
	put(b, mock_words[w], mock_word_len[w]);
}

/* The one tool call every dialect answers with (mock_server.h): its
 * arguments as a JSON object, as JSON string contents, and as the pieces a
 * stream sends (string contents), which concatenate to TOOL_ARGS. */
#define TOOL_ARGS "{\"city\":\"Paris\",\"days\":3}"
#define TOOL_ARGS_STR "{\\\"city\\\":\\\"Paris\\\",\\\"days\\\":3}"
#define TOOL_FRAGS 4
extern const char *const mock_tool_frag[TOOL_FRAGS];

/* ------------------------------------------------------------------ */
/* mock_server.c                                                       */

/* The fault named by s[0..n) (case-insensitive); -1 when none is. */
int mock_fault_from_mem(const char *s, size_t n);

/* ------------------------------------------------------------------ */
/* mock_conn.c                                                         */

void mock_accept_arm(struct mock_server *s);
/* Arms the read of the eventfd that asks the thread to stop. */
void mock_stop_arm(struct mock_server *s);
void mock_handle_cqe(struct mock_server *s, struct io_uring_cqe *cqe);
/* Starts the next send when none is in flight (TLS: encrypts first). */
void mock_conn_flush(struct mock_server *s, struct conn *c);
/* The connection's one timer: the job runs again after us microseconds. */
void mock_timer_arm_us(struct mock_server *s, struct conn *c, uint64_t us);
/* At an absolute CLOCK_MONOTONIC time (at once when it has passed): a
 * stream's events keep their schedule however late one send was. */
void mock_timer_arm_at_ns(struct mock_server *s, struct conn *c, uint64_t due_ns);
uint64_t mock_now_ns(void);
/* Runs c's job (admitted from the capacity's queue) and what follows it. */
void mock_conn_resume(struct mock_server *s, struct conn *c);
/* Closes the socket, unlinks and frees c; nothing of it may be in flight. */
void mock_conn_free(struct mock_server *s, struct conn *c);

/* ------------------------------------------------------------------ */
/* mock_request.c                                                      */

/* Parses the head in c->in[c->in_start..] into c->rq. 1: head parsed;
 * 0: incomplete; otherwise an HTTP status to answer with before closing. */
int mock_parse_head(struct conn *c);

/* ------------------------------------------------------------------ */
/* mock_route.c                                                        */

/* Sets rq's route and dialect from the path (without the query; q is the
 * '?' or NULL, qe the end of the target, head the start of the head). */
void mock_route_path(struct req *rq, const char *path, size_t plen, const char *q,
		     const char *qe, const char *head);
/* The request in c->in[in_start..] is complete: plans its reply in c->job. */
void mock_dispatch(struct mock_server *s, struct conn *c);

/* ------------------------------------------------------------------ */
/* mock_body.c: scanners over the raw request body [b, end)            */

static inline bool is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* memmem for the short keys searched in request bodies. */
const char *mock_key_find(const char *h, size_t n, const char *k, size_t kl);
/* First value of "key" (qkey given with its quotes), or NULL. */
const char *mock_find_value(const char *b, const char *end, const char *qkey);
bool mock_value_is_true(const char *v, const char *end);
/* The fault a `mock-fault:KIND` marker in the body asks for; -1 none. */
int mock_body_fault(const char *b, const char *end);
/* Counts the inputs of qkey (with quotes; "input" of embeddings, "prompt"
 * of completions: a string, a list of strings, token arrays) and their
 * words. */
void mock_scan_inputs(const char *b, const char *end, const char *qkey, unsigned *ninputs,
		      unsigned *ntokens);
/* A chat (or completion) reply's prompt tokens, tool call, token and
 * event counts (mock_route.c; also each batch line's answer). */
void mock_plan_chat(struct mock_server *s, struct job *j, const char *body, const char *end);
/* Drops a download's file reference (mock_batch_store.c); NULL is a no-op. */
void mock_bfile_unref(struct mock_bfile *f);
/* j->model from the body's "model" ("mock" when there is none). */
void mock_copy_model(struct job *j, const char *b, const char *end);
/* j->model from the model named in a Gemini path. */
void mock_copy_path_model(struct job *j, const char *p, size_t n);
/* Sets j->tool and j->tool_name when the body asks for a tool call. */
void mock_find_tool(struct job *j, const char *body, const char *end);
bool mock_wants_stream(const struct req *rq, const char *body, const char *end);
/* The dialect's max-token field, when present. */
bool mock_max_tokens(uint8_t dialect, const char *body, const char *end, uint64_t *mt);
unsigned mock_prompt_words(uint8_t dialect, const char *body, const char *end);

/* ------------------------------------------------------------------ */
/* Rendering: mock_render.c and one file per dialect                   */

enum ev_kind { EV_START, EV_TOKEN, EV_FINISH, EV_USAGE, EV_DONE, EV_MALFORMED, EV_ERROR };

/* One dialect's renderers, each appending to b. */
struct mock_dialect {
	/* The 200 body of a chat reply that is not streamed. */
	void (*chat_body)(struct mock_server *s, struct job *j, struct mock_buf *b);
	/* Stream event ev, of kind k, whole (SSE events or NDJSON lines); nothing
	 * for a kind the dialect does not send. Never called for EV_DONE. */
	void (*event)(struct mock_server *s, const struct job *j, struct mock_buf *b,
		      unsigned ev, enum ev_kind k);
	/* An error body; msg is JSON-escaped; type and code are OpenAI's. */
	void (*error_body)(struct mock_buf *b, int st, const char *msg, size_t mlen,
			   const char *type, const char *code);
	/* The embeddings body for ninputs inputs; NULL without an endpoint. */
	void (*embed_body)(struct mock_server *s, struct job *j, struct mock_buf *b,
			   unsigned ninputs);
	const char *malformed_chat;  /* 200 bodies that are not valid JSON */
	const char *malformed_embed;
};

extern const struct mock_dialect mock_openai, mock_anthropic, mock_ollama, mock_gemini;
/* Indexed by enum dialect. */
extern const struct mock_dialect *const mock_dialects[4];

/* clen SIZE_MAX: chunked. extra: more header lines, each ending in CRLF. */
void mock_put_head(struct mock_buf *b, int st, enum ctype ct, size_t clen, uint64_t n,
		   bool close, const char *extra, uint8_t dialect);
/* An error reply in the job's dialect as c->job; msg is JSON-escaped, type
 * and code are used by the OpenAI shape only. */
void mock_respond_error(struct mock_server *s, struct conn *c, uint64_t n, int st,
			const char *msg, size_t mlen, const char *type, const char *code,
			bool close, const char *extra);
#define ERRL(s, c, n, st, lit, type, code, close, extra) \
	mock_respond_error(s, c, n, st, lit, sizeof(lit) - 1, type, code, close, extra)
/* A 4xx, context-window or quota refusal fault, as the dialect words it. */
void mock_respond_refusal(struct mock_server *s, struct conn *c, uint64_t n, int fault,
			  bool close);
/* The error faults (429, 500, 503, 529; stream-error without a stream is
 * 500), worded as each provider words them. */
void mock_respond_fault(struct mock_server *s, struct conn *c, uint64_t n, int fault,
			bool close);
/* The reply to a head mock_parse_head refused with status st. */
void mock_respond_parse_error(struct mock_server *s, struct conn *c, int st);

/* ------------------------------------------------------------------ */
/* mock_stream.c: the reply in progress on a connection (c->job)       */

/* Clears the per-request fields; keeps the buffers (reused). */
void mock_job_reset(struct job *j);
/* A complete reply in j->whole, emitted right away. */
void mock_job_whole(struct conn *c, bool close);
/* The stream's head (and, for OpenAI, the chunk prefix): events follow. */
void mock_start_stream(struct job *j, uint64_t n, bool close);
/* Advances the job until it waits on its timer or is done. */
void mock_job_run(struct mock_server *s, struct conn *c);

/* ------------------------------------------------------------------ */
/* mock_completions.c: OpenAI's legacy completions (j->text_completion) */

void mock_completion_body(struct mock_server *s, struct job *j, struct mock_buf *b);
void mock_completion_event(struct mock_server *s, const struct job *j, struct mock_buf *b,
			   unsigned ev, enum ev_kind k);
/* The stream chunk prefix up to "choices": into j->prefix. */
void mock_completion_prefix(struct job *j, uint64_t n);

/* ------------------------------------------------------------------ */
/* mock_capacity.c: at most o.max_batch generations at once            */

/* Takes a slot for c's job (true), or queues it (false: the job waits,
 * mock_job_run does nothing, until mock_batch_run_ready runs it). */
bool mock_batch_admit(struct mock_server *s, struct conn *c);
/* The job is done or its connection is going: gives its slot (or queue
 * place) back and admits the next waiting jobs. No-op without one. */
void mock_batch_release(struct mock_server *s, struct conn *c);
/* Runs the jobs admitted since the last call (server thread loop). */
void mock_batch_run_ready(struct mock_server *s);

/* ------------------------------------------------------------------ */
/* mock_latency.c                                                      */

/* Request n's TTFT draw; the gap before token `token`+1 (token >= 1). */
uint64_t mock_ttft_us(const struct mock_server *s, uint64_t request);
uint64_t mock_itl_us(const struct mock_server *s, uint64_t request, unsigned token);

#endif

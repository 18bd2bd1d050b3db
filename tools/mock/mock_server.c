/*
 * The mock LLM server: one thread, one io_uring, plain fds, four wire
 * dialects (OpenAI, Anthropic, Ollama, Gemini; mock_server.h lists them).
 *
 * Shape of the loop: a multishot accept on the listener, one plain recv per
 * connection into its own growable buffer, at most one send per connection
 * (bytes produced while it is in flight collect in a second buffer and go
 * out in the next send), one ring timeout per connection for delays
 * (ttft, itl, slow headers), and an eventfd read that asks the thread to
 * stop. Completions are reaped in batches and every SQE produced while
 * handling them goes to the kernel in the next io_uring_submit_and_wait, so
 * many sends share one io_uring_enter.
 *
 * Requests on one connection are answered strictly in order: while a
 * response is still in progress (waiting on a timer) later pipelined
 * requests stay in the input buffer.
 *
 * Token counting (documented for users of the mock's usage numbers):
 *   - prompt tokens: whitespace-separated words in every JSON string value
 *     of a "content" key anywhere in the request body (Anthropic: also of
 *     "text" and "system" keys; Gemini: of "text" keys only; embeddings: in
 *     the "input" strings, a token-array input counts its numbers). Words
 *     are counted in the escaped JSON text, where the escapes \n \t \r
 *     count as whitespace.
 *   - completion tokens: the words generated; the reply text is that many
 *     words from a fixed 64-word list, picked by a hash of (seed, request
 *     number, word index), joined by single spaces. Streaming sends one
 *     word per event (" word" after the first). A tool call counts
 *     TOOL_FRAGS tokens.
 *
 * Dialects: the route fixes the dialect, which picks the body renderers,
 * the error shape and the stream events. A stream is numbered the same way
 * in every dialect (ev_kind): event 0 opens it (OpenAI role chunk,
 * Anthropic message_start + content_block_start + ping; nothing for Ollama
 * and Gemini), events 1..nev carry the tokens (or tool-call pieces), then
 * finish, usage (OpenAI with include_usage) and the end of the chunked body.
 * So ttft, itl and the stream faults work alike everywhere. The OpenAI
 * path keeps its precomputed chunk prefix and pays only for a few flag
 * tests; the other dialects render each event whole (they are not used by
 * the throughput benchmarks).
 *
 * TLS (mock_tls.c) sits between the ring and the same HTTP code: a TLS
 * connection receives ciphertext into its TLS engine's buffer, decrypts it
 * into `in` on each recv completion, and at flush time encrypts `pend` into
 * `tpend`, which is sent like `pend` in plain mode. Plain connections only
 * pay for the `c->tls` branches.
 *
 * Memory: out-of-memory aborts (this is a test tool); everything else is
 * freed when the connection or the server goes away.
 */
#include "mock_server.h"
#include "mock_tls.h"

#include <errno.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define HEAD_MAX (64u * 1024)          /* request header block cap -> 431 */
#define BODY_MAX (64u * 1024 * 1024)   /* request body cap -> 413 */
#define IN_INITIAL 8192u
#define IN_BACKLOG_MAX (256u * 1024)   /* buffered pipelined input while busy */
#define PEND_HIGH (1024u * 1024)       /* stop answering until the client reads */
#define MODEL_MAX 256
#define TOOL_NAME_MAX 128
#define RING_ENTRIES 4096
#define RING_CQ_ENTRIES 32768
#define CQE_BATCH 256
#define TLS_RECV_MIN (18u * 1024)      /* a whole TLS record fits one recv */
#define TLS_RECV_MAX (256u * 1024)
#define TLS_PLAIN_CHUNK (16u * 1024)   /* room made in `in` per decrypt */

enum { TAG_IGNORE = 0, TAG_RECV, TAG_SEND, TAG_TIMER, TAG_ACCEPT, TAG_STOP, TAG_ACCEPT_RETRY };
#define TAG_MASK ((uint64_t)7)

/* ------------------------------------------------------------------ */
/* Byte buffers                                                        */

struct buf {
	char *p;     /* owned by whoever holds the struct buf */
	size_t len;
	size_t cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		abort(); /* a test tool: out of memory is fatal */
	b->p = p;
	b->cap = cap;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static inline void put(struct buf *b, const void *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

#define PUTL(b, lit) put((b), (lit), sizeof(lit) - 1)

static inline void put_ch(struct buf *b, char ch)
{
	buf_reserve(b, 1);
	b->p[b->len++] = ch;
}

static void put_u64(struct buf *b, uint64_t v)
{
	char tmp[20];
	int i = 20;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(b, tmp + i, (size_t)(20 - i));
}

static void put_hex(struct buf *b, size_t v)
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
 * none (a stray, overlong or cut-off sequence, a surrogate, past U+10FFFF).
 * What we echo must stay JSON, and JSON text is UTF-8. */
static size_t utf8_len(const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* JSON string contents (no quotes) for short texts we echo, like a path;
 * bytes that are not UTF-8 become U+FFFD. */
static void put_json_escaped(struct buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x80) {
			size_t l = utf8_len(s + i, n - i);
			if (l) {
				put(b, s + i, l);
				i += l - 1;
			} else {
				PUTL(b, "\\ufffd");
			}
		} else if (ch == '"' || ch == '\\') {
			put_ch(b, '\\');
			put_ch(b, (char)ch);
		} else if (ch < 0x20) {
			static const char hx[] = "0123456789abcdef";
			char e[6] = {'\\', 'u', '0', '0', hx[ch >> 4], hx[ch & 15]};
			put(b, e, 6);
		} else {
			put_ch(b, (char)ch);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Deterministic choices                                               */

static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The mock's vocabulary; lengths computed at compile time (a table
 * filled at start would be rewritten under a running mock by the next
 * mock_server_start on another thread). */
#define MOCK_WORDS(X) \
	X("the") X("quick") X("brown") X("fox") X("jumps") X("over") X("lazy") X("dog") \
	X("ring") X("buffer") X("token") X("stream") X("model") X("server") X("client") X("reply") \
	X("kernel") X("socket") X("queue") X("event") X("batch") X("prompt") X("answer") X("cache") \
	X("fast") X("small") X("large") X("simple") X("clear") X("quiet") X("bright") X("steady") \
	X("river") X("mountain") X("forest") X("ocean") X("cloud") X("stone") X("light") X("shadow") \
	X("alpha") X("beta") X("gamma") X("delta") X("omega") X("sigma") X("theta") X("kappa") \
	X("one") X("two") X("three") X("four") X("five") X("six") X("seven") X("eight") \
	X("red") X("green") X("blue") X("amber") X("silver") X("golden") X("violet") X("white")
#define WORD_TEXT(w) w,
#define WORD_LENGTH(w) sizeof(w) - 1,
static const char *const words[64] = {MOCK_WORDS(WORD_TEXT)};
static const uint8_t word_len[64] = {MOCK_WORDS(WORD_LENGTH)};

static inline unsigned word_at(uint64_t seed, uint64_t n, unsigned i)
{
	return (unsigned)(mix64(seed ^ mix64(n * 0x100000001b3ull + i)) & 63);
}

/* ------------------------------------------------------------------ */
/* Server state                                                        */

enum phase { PH_TTFT, PH_HEAD, PH_BODY, PH_EVENTS };
enum dialect { D_OPENAI = 0, D_ANTHROPIC, D_OLLAMA, D_GEMINI };
enum ctype { CT_JSON = 0, CT_SSE, CT_NDJSON };
enum close_mode { CLOSE_NONE = 0, CLOSE_FIN, CLOSE_RST };

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
	uint8_t dialect;
	unsigned ttft_ms;
	unsigned ntok;          /* completion tokens reported */
	unsigned nev;           /* stream events 1..nev carry tokens or tool pieces */
	unsigned prompt_tokens;
	unsigned ev;            /* next stream event */
	uint64_t n;             /* request number */
	uint64_t created;
	struct buf whole;       /* head (+ body when not streaming); owned by the job */
	struct buf prefix;      /* stream chunk JSON up to "choices":; owned by the job */
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
	R_GEMINI, R_GEMINI_STREAM
};

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
	struct buf in;          /* received bytes; owned by the conn */
	size_t in_start;        /* first unconsumed byte */
	size_t scan;            /* head-end search resumes here (relative) */
	struct req rq;
	struct buf out;         /* in flight in the kernel; owned by the conn */
	size_t out_off;
	struct buf pend;        /* produced while out is in flight; owned by the conn
	                         * (TLS: plaintext, encrypted into tpend at flush) */
	struct mock_tls_conn *tls; /* NULL in plain mode; owned by the conn */
	struct buf tpend;       /* TLS: ciphertext waiting for the next send; owned by the conn */
	bool tls_notified;      /* close_notify queued */
	bool tls_bare_close;    /* close without close_notify (truncate, errors) */
	struct job job;
	struct __kernel_timespec ts;
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
	struct buf scratch;     /* per-request body rendering; owned by the server */
	struct mock_tls *tls;   /* NULL in plain mode; owned by the server */
	double fault_cum[MOCK_FAULT_COUNT];
};

static const char *const fault_names[MOCK_FAULT_COUNT] = {
	[MOCK_FAULT_NONE] = "none",
	[MOCK_FAULT_429] = "429",
	[MOCK_FAULT_500] = "500",
	[MOCK_FAULT_503] = "503",
	[MOCK_FAULT_RESET] = "reset",
	[MOCK_FAULT_TRUNCATE] = "truncate",
	[MOCK_FAULT_MALFORMED] = "malformed",
	[MOCK_FAULT_SLOW_HEADERS] = "slow-headers",
	[MOCK_FAULT_CLOSE] = "close",
	[MOCK_FAULT_529] = "529",
	[MOCK_FAULT_STREAM_ERROR] = "stream-error",
};

static int fault_from_mem(const char *s, size_t n)
{
	for (int i = 1; i < MOCK_FAULT_COUNT; i++)
		if (strlen(fault_names[i]) == n && strncasecmp(fault_names[i], s, n) == 0)
			return i;
	return -1;
}

int mock_fault_from_name(const char *name)
{
	return name ? fault_from_mem(name, strlen(name)) : -1;
}

const char *mock_fault_name(int fault)
{
	return fault >= 0 && fault < MOCK_FAULT_COUNT ? fault_names[fault] : NULL;
}

void mock_options_default(struct mock_options *o)
{
	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->port = 0;
	o->tokens = 16;
	o->slow_header_ms = 100;
}

/* ------------------------------------------------------------------ */
/* Ring plumbing                                                       */

static struct io_uring_sqe *sqe_get(struct mock_server *s)
{
	struct io_uring_sqe *sqe;
	while (!(sqe = io_uring_get_sqe(&s->ring)))
		io_uring_submit(&s->ring); /* SQ full: hand what we have over */
	return sqe;
}

static inline uint64_t ud(struct conn *c, unsigned tag)
{
	return (uint64_t)(uintptr_t)c | tag;
}

static void recv_arm(struct mock_server *s, struct conn *c);
static void tls_recv_arm(struct mock_server *s, struct conn *c, size_t want);
static void conn_process(struct mock_server *s, struct conn *c);

static void send_arm(struct mock_server *s, struct conn *c)
{
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_send(sqe, c->fd, c->out.p + c->out_off, c->out.len - c->out_off,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, ud(c, TAG_SEND));
	c->send_armed = true;
	c->inflight++;
}

static void timer_arm(struct mock_server *s, struct conn *c, unsigned ms)
{
	c->ts.tv_sec = ms / 1000;
	c->ts.tv_nsec = (long long)(ms % 1000) * 1000000;
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_timeout(sqe, &c->ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud(c, TAG_TIMER));
	c->timer_armed = true;
	c->inflight++;
}

/* Encrypts what the HTTP side produced, then sends like plain mode does. */
static void tls_flush(struct mock_server *s, struct conn *c)
{
	if (c->closing)
		return;
	if (c->pend.len) {
		/* Cannot fail with a memory sink after the handshake; if it does,
		 * drop the bytes and let conn_process close (callers still use c). */
		if (mock_tls_conn_write(c->tls, c->pend.p, c->pend.len) < 0) {
			c->want_close = CLOSE_FIN;
			c->tls_bare_close = true;
		}
		c->pend.len = 0;
	}
	if (c->send_armed || c->tpend.len == 0)
		return;
	struct buf t = c->out;
	c->out = c->tpend;
	c->tpend = t;
	c->tpend.len = 0;
	c->out_off = 0;
	send_arm(s, c);
}

/* Starts the next send when none is in flight: pend becomes out. */
static void conn_flush(struct mock_server *s, struct conn *c)
{
	if (c->tls) {
		tls_flush(s, c);
		return;
	}
	if (c->send_armed || c->closing || c->pend.len == 0)
		return;
	struct buf t = c->out;
	c->out = c->pend;
	c->pend = t;
	c->pend.len = 0;
	c->out_off = 0;
	send_arm(s, c);
}

static void conn_free(struct mock_server *s, struct conn *c)
{
	if (c->rst) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->pend);
	buf_free(&c->tpend);
	mock_tls_conn_free(c->tls);
	buf_free(&c->job.whole);
	buf_free(&c->job.prefix);
	free(c);
}

static void conn_maybe_free(struct mock_server *s, struct conn *c)
{
	if (c->closing && c->inflight == 0)
		conn_free(s, c);
}

/* Cancels what is in flight; the conn is freed after the last completion
 * (the kernel may still be using its buffers until then). */
static void conn_close(struct mock_server *s, struct conn *c, bool rst)
{
	if (c->closing)
		return;
	c->closing = true;
	c->rst = rst;
	if (c->recv_armed || c->send_armed) {
		struct io_uring_sqe *sqe = sqe_get(s);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	}
	if (c->timer_armed) {
		struct io_uring_sqe *sqe = sqe_get(s);
		io_uring_prep_timeout_remove(sqe, ud(c, TAG_TIMER), 0);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	}
	conn_maybe_free(s, c);
}

/* ------------------------------------------------------------------ */
/* Small JSON scanning over the raw request body                       */

static inline bool is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* memmem for the short keys searched in request bodies (every request pays
 * for several whole-body searches). With SSE2, 16 start positions at a time
 * are filtered on the key's second and second-to-last bytes (the first and
 * last are often both '"'), then candidates are compared. */
static const char *key_find(const char *h, size_t n, const char *k, size_t kl)
{
#ifdef __SSE2__
	size_t i = 0;
	if (kl >= 4) {
		const __m128i c1 = _mm_set1_epi8(k[1]), c2 = _mm_set1_epi8(k[kl - 2]);
		for (; i + kl + 15 <= n; i += 16) {
			__m128i a = _mm_loadu_si128((const __m128i *)(const void *)(h + i + 1));
			__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(h + i + kl - 2));
			unsigned mask = (unsigned)_mm_movemask_epi8(
				_mm_and_si128(_mm_cmpeq_epi8(a, c1), _mm_cmpeq_epi8(b, c2)));
			while (mask) {
				const char *m = h + i + __builtin_ctz(mask);
				if (memcmp(m, k, kl) == 0)
					return m;
				mask &= mask - 1;
			}
		}
	}
	/* The tail: a short plain loop (glibc memmem sets up a table per call). */
	for (; i + kl <= n; i++)
		if (h[i] == k[0] && memcmp(h + i, k, kl) == 0)
			return h + i;
	return NULL;
#else
	return memmem(h, n, k, kl);
#endif
}

/* p just after an opening quote; returns the closing quote or NULL. */
static const char *str_end(const char *p, const char *end)
{
	while (p < end) {
		const char *q = memchr(p, '"', (size_t)(end - p));
		if (!q)
			return NULL;
		size_t bs = 0;
		for (const char *b = q - 1; b >= p && *b == '\\'; b--)
			bs++;
		if ((bs & 1) == 0)
			return q;
		p = q + 1;
	}
	return NULL;
}

/* After a match of "key" (with quotes) at p: the value after ':' or NULL. */
static const char *after_colon(const char *p, const char *end)
{
	while (p < end && is_ws(*p))
		p++;
	if (p >= end || *p != ':')
		return NULL;
	p++;
	while (p < end && is_ws(*p))
		p++;
	return p < end ? p : NULL;
}

/* First value of "key" (key given with its quotes). */
static const char *find_value(const char *b, const char *end, const char *qkey)
{
	size_t kl = strlen(qkey);
	const char *p = b;
	while (p < end) {
		const char *m = key_find(p, (size_t)(end - p), qkey, kl);
		if (!m)
			return NULL;
		const char *v = after_colon(m + kl, end);
		if (v)
			return v;
		p = m + kl;
	}
	return NULL;
}

static unsigned count_words(const char *p, const char *end)
{
	unsigned n = 0;
	bool in_word = false;
	while (p < end) {
		bool ws;
		if (*p == '\\' && p + 1 < end) {
			ws = p[1] == 'n' || p[1] == 't' || p[1] == 'r';
			p += 2;
		} else {
			ws = is_ws(*p);
			p++;
		}
		if (!ws && !in_word)
			n++;
		in_word = !ws;
	}
	return n;
}

/* Words in every string value of qkey (given with its quotes). */
static unsigned count_key_words(const char *b, const char *end, const char *qkey, size_t kl)
{
	unsigned n = 0;
	const char *p = b;
	while (p < end) {
		const char *m = key_find(p, (size_t)(end - p), qkey, kl);
		if (!m)
			break;
		p = m + kl;
		const char *v = after_colon(p, end);
		if (!v || *v != '"')
			continue;
		const char *e = str_end(v + 1, end);
		if (!e)
			break;
		n += count_words(v + 1, e);
		p = e + 1;
	}
	return n;
}

#define COUNT_KEY_WORDS(b, end, lit) count_key_words((b), (end), (lit), sizeof(lit) - 1)

static unsigned count_content_words(const char *b, const char *end)
{
	return COUNT_KEY_WORDS(b, end, "\"content\"");
}

/* Does some value of qkey (with quotes) equal the string want (no quotes)? */
static bool has_str_value(const char *b, const char *end, const char *qkey, const char *want)
{
	size_t kl = strlen(qkey), wl = strlen(want);
	const char *p = b;
	while (p < end) {
		const char *m = key_find(p, (size_t)(end - p), qkey, kl);
		if (!m)
			return false;
		p = m + kl;
		const char *v = after_colon(p, end);
		if (v && *v == '"' && (size_t)(end - v) > wl + 1 && memcmp(v + 1, want, wl) == 0 &&
		    v[1 + wl] == '"')
			return true;
	}
	return false;
}

static bool value_is_false(const char *v, const char *end)
{
	return v && end - v >= 5 && memcmp(v, "false", 5) == 0;
}

static bool value_is_true(const char *v, const char *end)
{
	return v && end - v >= 4 && memcmp(v, "true", 4) == 0;
}

static bool value_uint(const char *v, const char *end, uint64_t *out)
{
	if (!v || v >= end || *v < '0' || *v > '9')
		return false;
	uint64_t x = 0;
	while (v < end && *v >= '0' && *v <= '9') {
		if (x > UINT32_MAX)
			break;
		x = x * 10 + (uint64_t)(*v - '0');
		v++;
	}
	*out = x;
	return true;
}

/* ------------------------------------------------------------------ */
/* Rendering                                                           */

static const char *status_text(int st)
{
	switch (st) {
	case 200: return "200 OK";
	case 400: return "400 Bad Request";
	case 404: return "404 Not Found";
	case 411: return "411 Length Required";
	case 413: return "413 Content Too Large";
	case 429: return "429 Too Many Requests";
	case 431: return "431 Request Header Fields Too Large";
	case 500: return "500 Internal Server Error";
	case 529: return "529 Overloaded";
	default: return "503 Service Unavailable";
	}
}

/* clen SIZE_MAX: chunked. Anthropic calls its request id header request-id. */
static void put_head(struct buf *b, int st, enum ctype ct, size_t clen, uint64_t n,
		     bool close, const char *extra, uint8_t dialect)
{
	PUTL(b, "HTTP/1.1 ");
	put(b, status_text(st), strlen(status_text(st)));
	if (ct == CT_SSE)
		PUTL(b, "\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache");
	else if (ct == CT_NDJSON)
		PUTL(b, "\r\nContent-Type: application/x-ndjson");
	else
		PUTL(b, "\r\nContent-Type: application/json");
	if (clen == SIZE_MAX) {
		PUTL(b, "\r\nTransfer-Encoding: chunked");
	} else {
		PUTL(b, "\r\nContent-Length: ");
		put_u64(b, clen);
	}
	if (dialect == D_ANTHROPIC)
		PUTL(b, "\r\nrequest-id: req_mock_");
	else
		PUTL(b, "\r\nx-request-id: req_mock_");
	put_u64(b, n);
	PUTL(b, "\r\n");
	if (extra)
		put(b, extra, strlen(extra));
	if (close)
		PUTL(b, "Connection: close\r\n");
	PUTL(b, "\r\n");
}

static const char *anthropic_error_type(int st)
{
	switch (st) {
	case 404: return "not_found_error";
	case 413: return "request_too_large";
	case 429: return "rate_limit_error";
	case 529: return "overloaded_error";
	default: return st < 500 ? "invalid_request_error" : "api_error";
	}
}

static const char *gemini_status(int st)
{
	switch (st) {
	case 404: return "NOT_FOUND";
	case 429: return "RESOURCE_EXHAUSTED";
	case 503:
	case 529: return "UNAVAILABLE";
	default: return st < 500 ? "INVALID_ARGUMENT" : "INTERNAL";
	}
}

/* msg is JSON-escaped already; type and code are for the OpenAI shape. */
static void put_error_body(struct buf *b, uint8_t dialect, int st, const char *msg,
			   size_t mlen, const char *type, const char *code)
{
	switch (dialect) {
	case D_ANTHROPIC:
		PUTL(b, "{\"type\":\"error\",\"error\":{\"type\":\"");
		put(b, anthropic_error_type(st), strlen(anthropic_error_type(st)));
		PUTL(b, "\",\"message\":\"");
		put(b, msg, mlen);
		PUTL(b, "\"}}");
		return;
	case D_OLLAMA:
		PUTL(b, "{\"error\":\"");
		put(b, msg, mlen);
		PUTL(b, "\"}");
		return;
	case D_GEMINI:
		PUTL(b, "{\"error\":{\"code\":");
		put_u64(b, (uint64_t)st);
		PUTL(b, ",\"message\":\"");
		put(b, msg, mlen);
		PUTL(b, "\",\"status\":\"");
		put(b, gemini_status(st), strlen(gemini_status(st)));
		if (st == 429)
			PUTL(b, "\",\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\","
				"\"retryDelay\":\"1s\"}]}}");
		else
			PUTL(b, "\"}}");
		return;
	default:
		break;
	}
	PUTL(b, "{\"error\":{\"message\":\"");
	put(b, msg, mlen);
	PUTL(b, "\",\"type\":\"");
	put(b, type, strlen(type));
	PUTL(b, "\",\"param\":null,\"code\":");
	if (code) {
		put_ch(b, '"');
		put(b, code, strlen(code));
		put_ch(b, '"');
	} else {
		PUTL(b, "null");
	}
	PUTL(b, "}}");
}

static void put_text(struct buf *b, uint64_t seed, uint64_t n, unsigned ntok)
{
	for (unsigned i = 0; i < ntok; i++) {
		unsigned w = word_at(seed, n, i);
		if (i)
			put_ch(b, ' ');
		put(b, words[w], word_len[w]);
	}
}

static void put_usage(struct buf *b, unsigned p, unsigned c)
{
	PUTL(b, "\"usage\":{\"prompt_tokens\":");
	put_u64(b, p);
	PUTL(b, ",\"completion_tokens\":");
	put_u64(b, c);
	PUTL(b, ",\"total_tokens\":");
	put_u64(b, (uint64_t)p + c);
	PUTL(b, ",\"prompt_tokens_details\":{\"cached_tokens\":0},"
		"\"completion_tokens_details\":{\"reasoning_tokens\":0}}");
}

/* The one tool call every dialect answers with (mock_server.h): its
 * arguments as a JSON object, as JSON string contents, and as the pieces a
 * stream sends (string contents), which concatenate to TOOL_ARGS. */
#define TOOL_ARGS "{\"city\":\"Paris\",\"days\":3}"
#define TOOL_ARGS_STR "{\\\"city\\\":\\\"Paris\\\",\\\"days\\\":3}"
#define TOOL_FRAGS 4
static const char *const tool_frag[TOOL_FRAGS] = {
	"{\\\"city\\\":", "\\\"Paris\\\",", "\\\"days\\\":", "3}",
};

static void put_openai_finish(struct buf *b, const struct job *j)
{
	if (j->tool)
		PUTL(b, "tool_calls");
	else if (j->length_cut)
		PUTL(b, "length");
	else
		PUTL(b, "stop");
}

/* {"id":...,"type":"function","function":{"name":...,"arguments":"ARGS"}} */
static void put_openai_tool_call(struct buf *b, const struct job *j, bool args)
{
	PUTL(b, "\"id\":\"call_mock_");
	put_u64(b, j->n);
	PUTL(b, "\",\"type\":\"function\",\"function\":{\"name\":\"");
	put(b, j->tool_name, j->tool_name_len);
	if (args)
		PUTL(b, "\",\"arguments\":\"" TOOL_ARGS_STR "\"}");
	else
		PUTL(b, "\",\"arguments\":\"\"}");
}

static void put_chat_body(struct mock_server *s, struct job *j, struct buf *b)
{
	PUTL(b, "{\"id\":\"chatcmpl-mock-");
	put_u64(b, j->n);
	PUTL(b, "\",\"object\":\"chat.completion\",\"created\":");
	put_u64(b, j->created);
	PUTL(b, ",\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
	if (j->tool) {
		PUTL(b, "null,\"tool_calls\":[{");
		put_openai_tool_call(b, j, true);
		PUTL(b, "}]");
	} else {
		put_ch(b, '"');
		put_text(b, s->o.seed, j->n, j->ntok);
		put_ch(b, '"');
	}
	PUTL(b, ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"");
	put_openai_finish(b, j);
	PUTL(b, "\"}],");
	put_usage(b, j->prompt_tokens, j->ntok);
	PUTL(b, ",\"system_fingerprint\":\"fp_mock\"}");
}

/* Anthropic Messages ------------------------------------------------- */

static void put_anthropic_stop(struct buf *b, const struct job *j)
{
	if (j->tool)
		PUTL(b, "tool_use");
	else if (j->length_cut)
		PUTL(b, "max_tokens");
	else
		PUTL(b, "end_turn");
}

static void put_anthropic_tool_head(struct buf *b, const struct job *j)
{
	PUTL(b, "{\"type\":\"tool_use\",\"id\":\"toolu_mock_");
	put_u64(b, j->n);
	PUTL(b, "\",\"name\":\"");
	put(b, j->tool_name, j->tool_name_len);
	PUTL(b, "\",\"input\":");
}

static void put_anthropic_body(struct mock_server *s, struct job *j, struct buf *b)
{
	PUTL(b, "{\"id\":\"msg_mock_");
	put_u64(b, j->n);
	PUTL(b, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"content\":[");
	if (j->tool) {
		put_anthropic_tool_head(b, j);
		PUTL(b, TOOL_ARGS "}");
	} else {
		PUTL(b, "{\"type\":\"text\",\"text\":\"");
		put_text(b, s->o.seed, j->n, j->ntok);
		PUTL(b, "\"}");
	}
	PUTL(b, "],\"stop_reason\":\"");
	put_anthropic_stop(b, j);
	PUTL(b, "\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, ",\"output_tokens\":");
	put_u64(b, j->ntok);
	PUTL(b, ",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0}}");
}

/* Ollama ------------------------------------------------------------- */

/* {"model":M,"created_at":...,"message":{"role":"assistant","content":" */
static void put_ollama_open(struct buf *b, const struct job *j)
{
	PUTL(b, "{\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\","
		"\"content\":\"");
}

/* Ends the message (with the tool call when asked) and the object. */
static void put_ollama_close(struct buf *b, const struct job *j, bool tool, bool done)
{
	put_ch(b, '"');
	if (tool) {
		PUTL(b, ",\"tool_calls\":[{\"function\":{\"name\":\"");
		put(b, j->tool_name, j->tool_name_len);
		PUTL(b, "\",\"arguments\":" TOOL_ARGS "}}]");
	}
	if (!done) {
		PUTL(b, "},\"done\":false}");
		return;
	}
	PUTL(b, "},\"done\":true,\"done_reason\":\"");
	if (j->length_cut && !j->tool)
		PUTL(b, "length");
	else
		PUTL(b, "stop");
	PUTL(b, "\",\"total_duration\":1000,\"load_duration\":0,\"prompt_eval_count\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, ",\"prompt_eval_duration\":0,\"eval_count\":");
	put_u64(b, j->ntok);
	PUTL(b, ",\"eval_duration\":0}");
}

static void put_ollama_body(struct mock_server *s, struct job *j, struct buf *b)
{
	put_ollama_open(b, j);
	if (!j->tool)
		put_text(b, s->o.seed, j->n, j->ntok);
	put_ollama_close(b, j, j->tool, true);
}

/* Gemini ------------------------------------------------------------- */

static void put_gemini_open(struct buf *b)
{
	PUTL(b, "{\"candidates\":[{\"content\":{\"parts\":[");
}

static void put_gemini_call(struct buf *b, const struct job *j)
{
	PUTL(b, "{\"functionCall\":{\"name\":\"");
	put(b, j->tool_name, j->tool_name_len);
	PUTL(b, "\",\"args\":" TOOL_ARGS "}}");
}

/* After the parts: the candidate's end, usage with k output tokens, ids. */
static void put_gemini_close(struct buf *b, const struct job *j, unsigned k, bool finish)
{
	PUTL(b, "],\"role\":\"model\"}");
	if (finish) {
		if (j->length_cut && !j->tool)
			PUTL(b, ",\"finishReason\":\"MAX_TOKENS\"");
		else
			PUTL(b, ",\"finishReason\":\"STOP\"");
	}
	PUTL(b, ",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, ",\"candidatesTokenCount\":");
	put_u64(b, k);
	PUTL(b, ",\"totalTokenCount\":");
	put_u64(b, (uint64_t)j->prompt_tokens + k);
	PUTL(b, "},\"modelVersion\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"responseId\":\"mock-");
	put_u64(b, j->n);
	PUTL(b, "\"}");
}

static void put_gemini_body(struct mock_server *s, struct job *j, struct buf *b)
{
	put_gemini_open(b);
	if (j->tool) {
		put_gemini_call(b, j);
	} else {
		PUTL(b, "{\"text\":\"");
		put_text(b, s->o.seed, j->n, j->ntok);
		PUTL(b, "\"}");
	}
	put_gemini_close(b, j, j->ntok, true);
}

/* Embeddings --------------------------------------------------------- */

/* One float in [-1, 1] with six decimals. */
static void put_unit_float(struct buf *b, uint64_t h)
{
	long v = (long)(h % 2000001) - 1000000;
	if (v < 0) {
		put_ch(b, '-');
		v = -v;
	}
	put_ch(b, (char)('0' + v / 1000000));
	put_ch(b, '.');
	char d[6];
	long f = v % 1000000;
	for (int i = 5; i >= 0; i--) {
		d[i] = (char)('0' + f % 10);
		f /= 10;
	}
	put(b, d, 6);
}

/* Counts the embedding inputs and their words. */
static void scan_embed_input(const char *b, const char *end, unsigned *ninputs,
			     unsigned *ntokens)
{
	*ninputs = 0;
	*ntokens = 0;
	const char *v = find_value(b, end, "\"input\"");
	if (!v)
		return;
	if (*v == '"') {
		const char *e = str_end(v + 1, end);
		*ninputs = 1;
		*ntokens = e ? count_words(v + 1, e) : 0;
		return;
	}
	if (*v != '[')
		return;
	const char *p = v + 1;
	bool numbers = false;
	while (p < end && *p != ']') {
		if (*p == '"') {
			const char *e = str_end(p + 1, end);
			if (!e)
				return;
			(*ninputs)++;
			*ntokens += count_words(p + 1, e);
			p = e + 1;
		} else if (*p == '[') {
			(*ninputs)++;
			p++;
			while (p < end && *p != ']') {
				if ((*p >= '0' && *p <= '9')) {
					(*ntokens)++;
					while (p < end && *p >= '0' && *p <= '9')
						p++;
				} else {
					p++;
				}
			}
			if (p < end)
				p++;
		} else if (*p >= '0' && *p <= '9') {
			numbers = true;
			(*ntokens)++;
			while (p < end && *p >= '0' && *p <= '9')
				p++;
		} else {
			p++;
		}
	}
	if (numbers && *ninputs == 0)
		*ninputs = 1; /* one token array */
}

/* [8 floats] for input i. */
static void put_vector(struct mock_server *s, const struct job *j, struct buf *b, unsigned i)
{
	put_ch(b, '[');
	for (unsigned k = 0; k < 8; k++) {
		if (k)
			put_ch(b, ',');
		put_unit_float(b, mix64(s->o.seed ^ mix64(j->n * 131 + i * 8 + k)));
	}
	put_ch(b, ']');
}

static void put_ollama_embed_body(struct mock_server *s, struct job *j, struct buf *b,
				  unsigned ninputs)
{
	PUTL(b, "{\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"embeddings\":[");
	for (unsigned i = 0; i < ninputs; i++) {
		if (i)
			put_ch(b, ',');
		put_vector(s, j, b, i);
	}
	PUTL(b, "],\"total_duration\":1000,\"load_duration\":0,\"prompt_eval_count\":");
	put_u64(b, j->prompt_tokens);
	put_ch(b, '}');
}

static void put_embed_body(struct mock_server *s, struct job *j, struct buf *b,
			   unsigned ninputs)
{
	PUTL(b, "{\"object\":\"list\",\"data\":[");
	for (unsigned i = 0; i < ninputs; i++) {
		if (i)
			put_ch(b, ',');
		PUTL(b, "{\"object\":\"embedding\",\"index\":");
		put_u64(b, i);
		PUTL(b, ",\"embedding\":");
		put_vector(s, j, b, i);
		put_ch(b, '}');
	}
	PUTL(b, "],\"model\":\"");
	put(b, j->model, j->model_len);
	PUTL(b, "\",\"usage\":{\"prompt_tokens\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, ",\"total_tokens\":");
	put_u64(b, j->prompt_tokens);
	PUTL(b, "}}");
}

/* ------------------------------------------------------------------ */
/* Jobs: one response in progress on a connection                      */

enum ev_kind { EV_START, EV_TOKEN, EV_FINISH, EV_USAGE, EV_DONE, EV_MALFORMED, EV_ERROR };

/* Events: 0 start, 1..nev tokens, finish, usage (OpenAI, when asked), done.
 * stream-error: at most 2 tokens (dispatch cut nev), an error, then done. */
static enum ev_kind ev_kind(const struct job *j, unsigned ev)
{
	if (ev == 0)
		return EV_START;
	if (j->fault == MOCK_FAULT_MALFORMED)
		return ev == 1 ? EV_MALFORMED : EV_DONE;
	if (ev <= j->nev)
		return EV_TOKEN;
	if (j->fault == MOCK_FAULT_STREAM_ERROR)
		return ev == j->nev + 1 ? EV_ERROR : EV_DONE;
	if (ev == j->nev + 1)
		return EV_FINISH;
	if (ev == j->nev + 2 && j->include_usage)
		return EV_USAGE;
	return EV_DONE;
}

static bool ev_is_last(const struct job *j, unsigned ev)
{
	if (j->fault == MOCK_FAULT_RESET)
		return ev == (j->nev ? 1u : 0u);
	if (j->fault == MOCK_FAULT_TRUNCATE)
		return ev == j->nev / 2;
	return ev_kind(j, ev) == EV_DONE;
}

/* Token event ev's text (JSON string contents): " word" after the first. */
static void put_token(struct mock_server *s, const struct job *j, struct buf *b, unsigned ev)
{
	unsigned w = word_at(s->o.seed, j->n, ev - 1);
	if (ev > 1)
		put_ch(b, ' ');
	put(b, words[w], word_len[w]);
}

/* Anthropic: event ev into b (whole SSE events). */
static void anthropic_event(struct mock_server *s, const struct job *j, struct buf *b,
			    unsigned ev, enum ev_kind k)
{
	switch (k) {
	case EV_START:
		PUTL(b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"
			"{\"id\":\"msg_mock_");
		put_u64(b, j->n);
		PUTL(b, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
		put(b, j->model, j->model_len);
		PUTL(b, "\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
			"\"usage\":{\"input_tokens\":");
		put_u64(b, j->prompt_tokens);
		PUTL(b, ",\"output_tokens\":1}}}\n\n"
			"event: content_block_start\ndata: {\"type\":\"content_block_start\","
			"\"index\":0,\"content_block\":");
		if (j->tool) {
			put_anthropic_tool_head(b, j);
			PUTL(b, "{}}");
		} else {
			PUTL(b, "{\"type\":\"text\",\"text\":\"\"}");
		}
		PUTL(b, "}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n");
		break;
	case EV_TOKEN:
		PUTL(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
			"\"index\":0,\"delta\":");
		if (j->tool) {
			PUTL(b, "{\"type\":\"input_json_delta\",\"partial_json\":\"");
			put(b, tool_frag[ev - 1], strlen(tool_frag[ev - 1]));
		} else {
			PUTL(b, "{\"type\":\"text_delta\",\"text\":\"");
			put_token(s, j, b, ev);
		}
		PUTL(b, "\"}}\n\n");
		break;
	case EV_FINISH:
		PUTL(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\","
			"\"index\":0}\n\n"
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":"
			"{\"stop_reason\":\"");
		put_anthropic_stop(b, j);
		PUTL(b, "\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":");
		put_u64(b, j->ntok);
		PUTL(b, "}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
		break;
	case EV_ERROR:
		PUTL(b, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
			"\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n");
		break;
	case EV_MALFORMED:
		PUTL(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
			"\"index\":0,\"delta\":{\n\n");
		break;
	default:
		break;
	}
}

/* Ollama: event ev into b (whole NDJSON lines). */
static void ollama_event(struct mock_server *s, const struct job *j, struct buf *b,
			 unsigned ev, enum ev_kind k)
{
	switch (k) {
	case EV_TOKEN:
		put_ollama_open(b, j);
		if (!j->tool)
			put_token(s, j, b, ev);
		put_ollama_close(b, j, j->tool, false);
		put_ch(b, '\n');
		break;
	case EV_FINISH:
		put_ollama_open(b, j);
		put_ollama_close(b, j, false, true);
		put_ch(b, '\n');
		break;
	case EV_ERROR:
		PUTL(b, "{\"error\":\"mock stream error\"}\n");
		break;
	case EV_MALFORMED:
		PUTL(b, "{\"model\":\"");
		put(b, j->model, j->model_len);
		PUTL(b, "\",\"message\":{\n");
		break;
	default:
		break;
	}
}

/* Gemini: event ev into b (whole SSE events, CRLF CRLF as Google ends them). */
static void gemini_event(struct mock_server *s, const struct job *j, struct buf *b,
			 unsigned ev, enum ev_kind k)
{
	switch (k) {
	case EV_TOKEN:
		PUTL(b, "data: ");
		put_gemini_open(b);
		if (j->tool) {
			put_gemini_call(b, j);
		} else {
			PUTL(b, "{\"text\":\"");
			put_token(s, j, b, ev);
			PUTL(b, "\"}");
		}
		/* The last token carries the finish reason, unless an error follows. */
		put_gemini_close(b, j, j->tool ? j->ntok : ev,
				 ev == j->nev && j->fault != MOCK_FAULT_STREAM_ERROR);
		PUTL(b, "\r\n\r\n");
		break;
	case EV_FINISH:
		if (j->nev)
			break; /* said by the last token */
		PUTL(b, "data: ");
		put_gemini_open(b);
		PUTL(b, "{\"text\":\"\"}");
		put_gemini_close(b, j, 0, true);
		PUTL(b, "\r\n\r\n");
		break;
	case EV_ERROR:
		PUTL(b, "data: {\"error\":{\"code\":500,\"message\":\"mock stream error\","
			"\"status\":\"INTERNAL\"}}\r\n\r\n");
		break;
	case EV_MALFORMED:
		PUTL(b, "data: {\"candidates\":[{\r\n\r\n");
		break;
	default:
		break;
	}
}

/* OpenAI events of a tool call and the mid-stream error, kept out of the
 * text path below. */
static void openai_event_rare(const struct job *j, struct buf *b, unsigned ev, enum ev_kind k)
{
	if (k == EV_ERROR) {
		PUTL(b, "data: {\"error\":{\"message\":\"mock stream error\",\"type\":"
			"\"server_error\",\"param\":null,\"code\":null}}\n\n");
		return;
	}
	PUTL(b, "data: ");
	put(b, j->prefix.p, j->prefix.len);
	if (k == EV_START) {
		PUTL(b, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,"
			"\"tool_calls\":[{\"index\":0,");
		put_openai_tool_call(b, j, false);
		PUTL(b, "}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]");
	} else {
		PUTL(b, "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
			"{\"arguments\":\"");
		put(b, tool_frag[ev - 1], strlen(tool_frag[ev - 1]));
		PUTL(b, "\"}}]},\"logprobs\":null,\"finish_reason\":null}]");
	}
	if (j->include_usage)
		PUTL(b, ",\"usage\":null");
	PUTL(b, "}\n\n");
}

/* Appends stream event ev to pend as one HTTP chunk (none when empty). */
static void emit_event(struct mock_server *s, struct conn *c, unsigned ev)
{
	struct job *j = &c->job;
	struct buf *b = &s->scratch;
	enum ev_kind k = ev_kind(j, ev);
	b->len = 0;
	if (k == EV_DONE) {
		if (j->dialect == D_OPENAI && j->fault != MOCK_FAULT_STREAM_ERROR)
			PUTL(&c->pend, "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
		else
			PUTL(&c->pend, "0\r\n\r\n");
		return;
	}
	if (j->dialect != D_OPENAI) {
		if (j->dialect == D_ANTHROPIC)
			anthropic_event(s, j, b, ev, k);
		else if (j->dialect == D_OLLAMA)
			ollama_event(s, j, b, ev, k);
		else
			gemini_event(s, j, b, ev, k);
		if (b->len == 0)
			return; /* an empty chunk would end the body */
		goto frame;
	}
	if (j->tool && (k == EV_START || k == EV_TOKEN)) {
		openai_event_rare(j, b, ev, k);
		goto frame;
	}
	switch (k) {
	case EV_DONE:
		break;
	case EV_ERROR:
		openai_event_rare(j, b, ev, k);
		break;
	case EV_MALFORMED:
		PUTL(b, "data: {\"id\":\"chatcmpl-mock\",\"choices\":[{\n\n");
		break;
	case EV_START:
	case EV_TOKEN:
	case EV_FINISH:
		PUTL(b, "data: ");
		put(b, j->prefix.p, j->prefix.len);
		if (k == EV_START) {
			PUTL(b, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
				"\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]");
		} else if (k == EV_TOKEN) {
			PUTL(b, "[{\"index\":0,\"delta\":{\"content\":\"");
			put_token(s, j, b, ev);
			PUTL(b, "\"},\"logprobs\":null,\"finish_reason\":null}]");
		} else {
			PUTL(b, "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"");
			put_openai_finish(b, j);
			PUTL(b, "\"}]");
		}
		if (j->include_usage)
			PUTL(b, ",\"usage\":null");
		PUTL(b, "}\n\n");
		break;
	case EV_USAGE:
		PUTL(b, "data: ");
		put(b, j->prefix.p, j->prefix.len);
		PUTL(b, "[],");
		put_usage(b, j->prompt_tokens, j->ntok);
		PUTL(b, "}\n\n");
		break;
	}
frame:
	put_hex(&c->pend, b->len);
	PUTL(&c->pend, "\r\n");
	put(&c->pend, b->p, b->len);
	PUTL(&c->pend, "\r\n");
}

/* Clears the per-request fields; keeps the buffers (reused). */
static void job_reset(struct job *j)
{
	struct buf whole = j->whole, prefix = j->prefix;
	memset(j, 0, sizeof(*j));
	j->whole = whole;
	j->prefix = prefix;
	j->whole.len = j->prefix.len = 0;
}

static void job_done(struct conn *c)
{
	c->job.active = false;
	if (c->job.close_mode) {
		c->want_close = c->job.close_mode;
		c->rst = c->job.close_mode == CLOSE_RST;
		/* A truncation must look like one at the TLS layer too. */
		c->tls_bare_close = c->job.fault == MOCK_FAULT_TRUNCATE;
	}
}

/* Advances the job until it waits on its timer or is done. */
static void job_run(struct mock_server *s, struct conn *c)
{
	struct job *j = &c->job;
	for (;;) {
		switch (j->phase) {
		case PH_TTFT:
			j->phase = j->stream ? PH_EVENTS : PH_HEAD;
			if (j->ttft_ms) {
				conn_flush(s, c);
				timer_arm(s, c, j->ttft_ms);
				return;
			}
			break;
		case PH_HEAD:
			if (j->slow) {
				put(&c->pend, j->whole.p + j->off, 1);
				j->off++;
				if (j->off < j->head_len) {
					conn_flush(s, c);
					timer_arm(s, c, s->o.slow_header_ms);
					return;
				}
			} else {
				put(&c->pend, j->whole.p + j->off, j->head_len - j->off);
				j->off = j->head_len;
			}
			j->phase = j->stream ? PH_TTFT : PH_BODY;
			break;
		case PH_BODY:
			put(&c->pend, j->whole.p + j->off, j->cut - j->off);
			j->off = j->cut;
			job_done(c);
			return;
		case PH_EVENTS: {
			unsigned ev = j->ev++;
			emit_event(s, c, ev);
			if (ev_is_last(j, ev)) {
				job_done(c);
				return;
			}
			if (s->o.itl_ms) {
				conn_flush(s, c); /* one event per send */
				if (ev_kind(j, ev) == EV_TOKEN && ev_kind(j, ev + 1) == EV_TOKEN) {
					timer_arm(s, c, s->o.itl_ms);
					return;
				}
			}
			break;
		}
		}
	}
}

/* A complete response in j->whole, emitted right away. */
static void job_whole(struct conn *c, bool close)
{
	struct job *j = &c->job;
	j->active = true;
	j->stream = false;
	j->slow = false;
	j->ttft_ms = 0;
	j->phase = PH_HEAD;
	j->off = 0;
	j->cut = j->whole.len;
	j->close_mode = close ? CLOSE_FIN : CLOSE_NONE;
}

/* An error response in the job's dialect; msg is JSON-escaped, type and
 * code are used by the OpenAI shape only. */
static void respond_error(struct mock_server *s, struct conn *c, uint64_t n, int st,
			  const char *msg, size_t mlen, const char *type, const char *code,
			  bool close, const char *extra)
{
	struct buf *body = &s->scratch;
	struct job *j = &c->job;
	body->len = 0;
	put_error_body(body, j->dialect, st, msg, mlen, type, code);
	j->whole.len = 0;
	put_head(&j->whole, st, CT_JSON, body->len, n, close, extra, j->dialect);
	j->head_len = j->whole.len;
	put(&j->whole, body->p, body->len);
	job_whole(c, close);
}

#define ERRL(s, c, n, st, lit, type, code, close, extra) \
	respond_error(s, c, n, st, lit, sizeof(lit) - 1, type, code, close, extra)

/* The error faults (429, 500, 503, 529; stream-error without a stream is
 * 500), worded as each provider words them. */
static void respond_fault(struct mock_server *s, struct conn *c, uint64_t n, int fault,
			  bool close)
{
	static const char *const msg[][4] = {
		/* OpenAI, Anthropic, Ollama, Gemini */
		{"Rate limit reached for requests (mock). Please try again in 1s.",
		 "Number of requests has exceeded your rate limit (mock). Please try again later.",
		 "rate limit exceeded (mock)",
		 "Resource has been exhausted (e.g. check quota). (mock)"},
		{"The server had an error while processing your request. Sorry about that!",
		 "Internal server error", "internal server error (mock)",
		 "An internal error has occurred. Please retry. (mock)"},
		{"The server is overloaded or not ready yet.", "Service unavailable (mock)",
		 "server busy, please try again. (mock)",
		 "The model is overloaded. Please try again later."},
		{"The server is overloaded (mock). Please try again later.", "Overloaded",
		 "server overloaded (mock)", "The model is overloaded. Please try again later."},
	};
	uint8_t d = c->job.dialect;
	int row, st;
	const char *type = "server_error", *code = NULL, *extra = NULL;
	switch (fault) {
	case MOCK_FAULT_429:
		row = 0;
		st = 429;
		type = "requests";
		code = "rate_limit_exceeded";
		extra = d == D_OPENAI ? "Retry-After: 1\r\nretry-after-ms: 1000\r\n"
				      : "Retry-After: 1\r\n";
		break;
	case MOCK_FAULT_503:
		row = 2;
		st = 503;
		break;
	case MOCK_FAULT_529:
		row = 3;
		st = 529;
		break;
	default: /* 500, stream-error */
		row = 1;
		st = 500;
		break;
	}
	respond_error(s, c, n, st, msg[row][d], strlen(msg[row][d]), type, code, close, extra);
}

static int pick_fault(struct mock_server *s, uint64_t n)
{
	if (s->fault_cum[MOCK_FAULT_COUNT - 1] <= 0)
		return MOCK_FAULT_NONE;
	double u = (double)(mix64(s->o.seed * 0x2545f4914f6cdd1dull ^ mix64(n)) >> 11) *
		   (1.0 / 9007199254740992.0);
	for (int k = 1; k < MOCK_FAULT_COUNT; k++)
		if (u < s->fault_cum[k])
			return k;
	return MOCK_FAULT_NONE;
}

/* Copies the JSON string contents at v (its opening quote) into dst, at most
 * cap - 8 bytes, never splitting an escape or a UTF-8 character, raw
 * control characters made spaces and bytes that are not UTF-8 '?'.
 * Returns the length, or -1 when v is not a complete string. */
static long copy_str(char *dst, size_t cap, const char *v, const char *end)
{
	const char *e = v && *v == '"' ? str_end(v + 1, end) : NULL;
	if (!e)
		return -1;
	const char *s = v + 1;
	size_t n = (size_t)(e - s), o = 0;
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)s[i];
		size_t l = 1;
		char rep = 0;
		if (ch == '\\')
			l = i + 1 < n && s[i + 1] == 'u' ? 6 : 2;
		else if (ch < 0x20)
			rep = ' '; /* raw control chars are invalid JSON */
		else if (ch >= 0x80 && (l = utf8_len(s + i, n - i)) == 0)
			l = 1, rep = '?';
		if (i + l > n || o + l > cap - 8)
			break;
		if (rep)
			dst[o] = rep;
		else
			memcpy(dst + o, s + i, l);
		o += l;
		i += l;
	}
	return (long)o;
}

static void copy_model(struct job *j, const char *b, const char *end)
{
	long n = copy_str(j->model, MODEL_MAX, find_value(b, end, "\"model\""), end);
	if (n < 0) {
		memcpy(j->model, "mock", 4);
		n = 4;
	}
	j->model_len = (size_t)n;
}

/* Gemini: the model named in the path (raw URL text, made JSON-safe: no
 * quote, backslash, control character or byte that is not UTF-8). */
static void copy_path_model(struct job *j, const char *p, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)p[i];
		size_t l = 1;
		bool bad = ch < 0x20 || ch == '"' || ch == '\\';
		if (ch >= 0x80 && (l = utf8_len(p + i, n - i)) == 0)
			l = 1, bad = true;
		if (o + l > MODEL_MAX - 8)
			break;
		if (bad)
			j->model[o] = '_';
		else
			memcpy(j->model + o, p + i, l);
		o += l;
		i += l;
	}
	j->model_len = o;
}

/* Tool calls: a "tools" key naming a function and no tool result yet. Sets
 * j->tool and j->tool_name. */
static void find_tool(struct job *j, const char *body, const char *end)
{
	const char *t = find_value(body, end, "\"tools\"");
	if (!t)
		return;
	switch (j->dialect) {
	case D_ANTHROPIC:
		if (key_find(body, (size_t)(end - body), "\"tool_result\"", 13))
			return;
		break;
	case D_GEMINI: {
		if (key_find(body, (size_t)(end - body), "\"functionResponse\"", 18))
			return;
		const char *fd = find_value(t, end, "\"functionDeclarations\"");
		if (fd)
			t = fd;
		break;
	}
	default:
		if (has_str_value(body, end, "\"role\"", "tool"))
			return;
		break;
	}
	long n = copy_str(j->tool_name, TOOL_NAME_MAX, find_value(t, end, "\"name\""), end);
	if (n <= 0)
		return;
	j->tool_name_len = (size_t)n;
	j->tool = true;
}

/* Does this request ask for a stream? */
static bool wants_stream(const struct req *rq, const char *body, const char *end)
{
	switch (rq->route) {
	case R_CHAT:
	case R_ANTHROPIC:
		return value_is_true(find_value(body, end, "\"stream\""), end);
	case R_OLLAMA_CHAT: /* Ollama streams unless told not to */
		return !value_is_false(find_value(body, end, "\"stream\""), end);
	case R_GEMINI_STREAM:
		return true;
	default:
		return false;
	}
}

/* The dialect's max-token field, when present. */
static bool max_tokens(uint8_t dialect, const char *body, const char *end, uint64_t *mt)
{
	switch (dialect) {
	case D_ANTHROPIC:
		return value_uint(find_value(body, end, "\"max_tokens\""), end, mt);
	case D_OLLAMA:
		return value_uint(find_value(body, end, "\"num_predict\""), end, mt);
	case D_GEMINI:
		return value_uint(find_value(body, end, "\"maxOutputTokens\""), end, mt);
	default:
		return value_uint(find_value(body, end, "\"max_completion_tokens\""), end, mt) ||
		       value_uint(find_value(body, end, "\"max_tokens\""), end, mt);
	}
}

static unsigned prompt_words(uint8_t dialect, const char *body, const char *end)
{
	switch (dialect) {
	case D_ANTHROPIC:
		return count_content_words(body, end) + COUNT_KEY_WORDS(body, end, "\"text\"") +
		       COUNT_KEY_WORDS(body, end, "\"system\"");
	case D_GEMINI:
		return COUNT_KEY_WORDS(body, end, "\"text\"");
	default:
		return count_content_words(body, end);
	}
}

/* The stream's head (and, for OpenAI, the chunk prefix): events follow. */
static void start_stream(struct job *j, uint64_t n, bool close)
{
	enum ctype ct = CT_SSE;
	if (j->dialect == D_OPENAI) {
		j->prefix.len = 0;
		PUTL(&j->prefix, "{\"id\":\"chatcmpl-mock-");
		put_u64(&j->prefix, n);
		PUTL(&j->prefix, "\",\"object\":\"chat.completion.chunk\",\"created\":");
		put_u64(&j->prefix, j->created);
		PUTL(&j->prefix, ",\"model\":\"");
		put(&j->prefix, j->model, j->model_len);
		PUTL(&j->prefix, "\",\"system_fingerprint\":\"fp_mock\",\"choices\":");
	} else if (j->dialect == D_OLLAMA) {
		ct = CT_NDJSON;
	}
	put_head(&j->whole, 200, ct, SIZE_MAX, n, close, NULL, j->dialect);
	j->head_len = j->cut = j->whole.len;
	j->phase = PH_HEAD; /* head at once, then ttft, then events */
}

/* The request in c->in[in_start..] is complete: start its response. */
static void dispatch(struct mock_server *s, struct conn *c)
{
	struct req *rq = &c->rq;
	struct job *j = &c->job;
	const char *body = c->in.p + c->in_start + rq->head_len;
	const char *end = body + rq->body_len;
	uint64_t n = ++s->next_n;
	atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);

	bool close = !rq->keep_alive || (s->o.close_every && n % s->o.close_every == 0);
	job_reset(j);
	j->n = n;
	j->created = s->now;
	j->dialect = rq->dialect;

	if (rq->route == R_NOTFOUND) {
		struct buf m = {0}; /* owned here, freed below */
		PUTL(&m, "Invalid URL (");
		put_json_escaped(&m, rq->line, rq->line_len);
		PUTL(&m, ")");
		respond_error(s, c, n, 404, m.p, m.len, "invalid_request_error", "not_found",
			      close, NULL);
		buf_free(&m);
		return;
	}
	if (rq->fault == -2) {
		ERRL(s, c, n, 400, "Unknown x-mock-fault value.", "invalid_request_error", NULL,
		     close, NULL);
		return;
	}
	const char *p = body;
	while (p < end && is_ws(*p))
		p++;
	if (p >= end || *p != '{') {
		ERRL(s, c, n, 400,
		     "We could not parse the JSON body of your request. (HINT: This likely means "
		     "you aren't using your HTTP library correctly.)",
		     "invalid_request_error", NULL, close, NULL);
		return;
	}

	int fault = rq->fault;
	if (fault < 0) {
		const char *m = key_find(body, rq->body_len, "mock-fault:", 11);
		if (m) {
			const char *q = m + 11, *qe = q;
			while (qe < end && (((*qe | 32) >= 'a' && (*qe | 32) <= 'z') ||
					    (*qe >= '0' && *qe <= '9') || *qe == '-'))
				qe++;
			fault = fault_from_mem(q, (size_t)(qe - q));
		}
	}
	if (fault < 0)
		fault = pick_fault(s, n);
	j->fault = (uint8_t)fault;

	if (fault == MOCK_FAULT_STREAM_ERROR && !wants_stream(rq, body, end)) {
		respond_fault(s, c, n, fault, close); /* without a stream: 500 */
		return;
	}
	switch (fault) {
	case MOCK_FAULT_429:
	case MOCK_FAULT_500:
	case MOCK_FAULT_503:
	case MOCK_FAULT_529:
		respond_fault(s, c, n, fault, close);
		return;
	case MOCK_FAULT_CLOSE:
		close = true;
		break;
	default:
		break;
	}
	/* Validation after the error faults: an asked-for fault always shows. */
	if (rq->route == R_ANTHROPIC && !find_value(body, end, "\"max_tokens\"")) {
		ERRL(s, c, n, 400, "max_tokens: Field required", "invalid_request_error", NULL,
		     close, NULL);
		return;
	}
	if (rq->route == R_GEMINI_STREAM && !rq->alt_sse) {
		ERRL(s, c, n, 400, "mock: streamGenerateContent is served with ?alt=sse only",
		     "invalid_request_error", NULL, close, NULL);
		return;
	}

	if (rq->route == R_GEMINI || rq->route == R_GEMINI_STREAM)
		copy_path_model(j, c->in.p + c->in_start + rq->model_off, rq->model_len);
	else
		copy_model(j, body, end);
	j->active = true;
	j->ttft_ms = s->o.ttft_ms;
	j->slow = fault == MOCK_FAULT_SLOW_HEADERS;
	if (fault == MOCK_FAULT_TRUNCATE)
		close = true; /* the cut body cannot be framed for a next request */
	j->close_mode = close ? CLOSE_FIN : CLOSE_NONE;
	if (fault == MOCK_FAULT_RESET)
		j->close_mode = CLOSE_RST;
	j->whole.len = 0;
	j->off = 0;

	if (rq->route == R_EMBED || rq->route == R_OLLAMA_EMBED) {
		unsigned ninputs, ntok;
		scan_embed_input(body, end, &ninputs, &ntok);
		j->prompt_tokens = ntok;
		struct buf *b = &s->scratch;
		b->len = 0;
		if (rq->route == R_OLLAMA_EMBED) {
			if (fault == MOCK_FAULT_MALFORMED)
				PUTL(b, "{\"model\":\"mock\",\"embeddings\":[[");
			else
				put_ollama_embed_body(s, j, b, ninputs);
		} else if (fault == MOCK_FAULT_MALFORMED) {
			PUTL(b, "{\"object\":\"list\",\"data\":[{");
		} else {
			put_embed_body(s, j, b, ninputs);
		}
		goto whole_body;
	}

	/* Chat, in every dialect. */
	j->prompt_tokens = prompt_words(j->dialect, body, end);
	find_tool(j, body, end);
	if (j->tool) {
		/* OpenAI and Anthropic stream the arguments in pieces. */
		j->ntok = TOOL_FRAGS;
		j->nev = j->dialect == D_OPENAI || j->dialect == D_ANTHROPIC ? TOOL_FRAGS : 1;
	} else {
		j->ntok = s->o.tokens;
		uint64_t mt;
		if (max_tokens(j->dialect, body, end, &mt) && mt < j->ntok) {
			j->ntok = (unsigned)mt;
			j->length_cut = true;
		}
		j->nev = j->ntok;
	}
	j->stream = wants_stream(rq, body, end);
	if (j->stream) {
		if (fault == MOCK_FAULT_STREAM_ERROR && j->nev > 2)
			j->nev = 2;
		if (j->dialect == D_OPENAI && fault != MOCK_FAULT_STREAM_ERROR)
			j->include_usage =
				value_is_true(find_value(body, end, "\"include_usage\""), end);
		start_stream(j, n, close);
		return;
	}
	{
		struct buf *b = &s->scratch;
		b->len = 0;
		if (fault == MOCK_FAULT_MALFORMED) {
			switch (j->dialect) {
			case D_ANTHROPIC:
				PUTL(b, "{\"id\":\"msg_mock\",\"type\":\"message\",\"content\":[{");
				break;
			case D_OLLAMA:
				PUTL(b, "{\"model\":\"mock\",\"message\":{");
				break;
			case D_GEMINI:
				PUTL(b, "{\"candidates\":[{");
				break;
			default:
				PUTL(b, "{\"id\":\"chatcmpl-mock\",\"choices\":[{");
				break;
			}
		} else {
			switch (j->dialect) {
			case D_ANTHROPIC: put_anthropic_body(s, j, b); break;
			case D_OLLAMA: put_ollama_body(s, j, b); break;
			case D_GEMINI: put_gemini_body(s, j, b); break;
			default: put_chat_body(s, j, b); break;
			}
		}
	}

whole_body:;
	struct buf *b = &s->scratch;
	if (fault == MOCK_FAULT_TRUNCATE) {
		/* Chunked, cut off after the first half of the body. */
		put_head(&j->whole, 200, CT_JSON, SIZE_MAX, n, true, NULL, j->dialect);
		j->head_len = j->whole.len;
		size_t half = b->len / 2;
		put_hex(&j->whole, half);
		PUTL(&j->whole, "\r\n");
		put(&j->whole, b->p, half);
		PUTL(&j->whole, "\r\n");
		j->cut = j->whole.len;
	} else {
		put_head(&j->whole, 200, CT_JSON, b->len, n, close, NULL, j->dialect);
		j->head_len = j->whole.len;
		put(&j->whole, b->p, b->len);
		j->cut = fault == MOCK_FAULT_RESET ? j->head_len + b->len / 2 : j->whole.len;
	}
	j->phase = PH_TTFT;
}

/* ------------------------------------------------------------------ */
/* Request parsing                                                     */

static bool hdr_is(const char *name, size_t nlen, const char *want)
{
	return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

static bool has_token(const char *v, size_t vlen, const char *tok)
{
	size_t tl = strlen(tok);
	for (size_t i = 0; i + tl <= vlen; i++)
		if (strncasecmp(v + i, tok, tl) == 0)
			return true;
	return false;
}

static bool has_prefix(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n >= l && memcmp(s, lit, l) == 0;
}

/* Route and dialect from the path (without the query; q is the '?' or NULL,
 * qe the end of the target, head the start of the head). Unknown paths get
 * the dialect their prefix suggests, for the 404 body. */
static void route_path(struct req *rq, const char *path, size_t plen, const char *q,
		       const char *qe, const char *head)
{
#define PATH_IS(lit) (plen == sizeof(lit) - 1 && memcmp(path, lit, plen) == 0)
	if (PATH_IS("/v1/chat/completions") || PATH_IS("/chat/completions")) {
		rq->route = R_CHAT;
		return;
	}
	if (PATH_IS("/v1/embeddings") || PATH_IS("/embeddings")) {
		rq->route = R_EMBED;
		return;
	}
	if (PATH_IS("/v1/messages") || PATH_IS("/messages")) {
		rq->route = R_ANTHROPIC;
		rq->dialect = D_ANTHROPIC;
		return;
	}
	if (has_prefix(path, plen, "/v1/messages/") || has_prefix(path, plen, "/messages/")) {
		rq->dialect = D_ANTHROPIC;
		return;
	}
	if (has_prefix(path, plen, "/api/")) {
		rq->dialect = D_OLLAMA;
		if (PATH_IS("/api/chat"))
			rq->route = R_OLLAMA_CHAT;
		else if (PATH_IS("/api/embed"))
			rq->route = R_OLLAMA_EMBED;
		return;
	}
#undef PATH_IS
	/* Gemini: [/v1beta|/v1]/models/MODEL:METHOD */
	const char *m = path, *pend = path + plen;
	if (has_prefix(m, plen, "/v1beta/"))
		m += 7;
	else if (has_prefix(m, plen, "/v1/"))
		m += 3;
	if (!has_prefix(m, (size_t)(pend - m), "/models/"))
		return;
	rq->dialect = D_GEMINI;
	m += 8;
	const char *colon = memchr(m, ':', (size_t)(pend - m));
	if (!colon || colon == m || memchr(m, '/', (size_t)(colon - m)))
		return;
	size_t ml = (size_t)(pend - colon - 1);
	if (ml == 15 && memcmp(colon + 1, "generateContent", 15) == 0)
		rq->route = R_GEMINI;
	else if (ml == 21 && memcmp(colon + 1, "streamGenerateContent", 21) == 0)
		rq->route = R_GEMINI_STREAM;
	else
		return;
	rq->model_off = (uint16_t)(m - head);
	rq->model_len = (uint16_t)(colon - m);
	/* alt=sse as one of the query's parameters */
	for (const char *a = q; a && a + 8 <= qe; a++)
		if ((*a == '?' || *a == '&') && memcmp(a + 1, "alt=sse", 7) == 0 &&
		    (a + 8 == qe || a[8] == '&')) {
			rq->alt_sse = true;
			break;
		}
}

/* Parses the head in in[in_start..]. 1: head parsed; 0: incomplete;
 * otherwise an HTTP status to answer with before closing. */
static int parse_head(struct conn *c)
{
	const char *p = c->in.p + c->in_start;
	size_t n = c->in.len - c->in_start;
	size_t from = c->scan > 3 ? c->scan - 3 : 0;
	const char *e = n > from ? memmem(p + from, n - from, "\r\n\r\n", 4) : NULL;
	if (!e) {
		c->scan = n;
		if (n <= HEAD_MAX)
			return 0;
		memset(&c->rq, 0, sizeof(c->rq)); /* no stale dialect for the 431 */
		return 431;
	}
	struct req *rq = &c->rq;
	memset(rq, 0, sizeof(*rq));
	rq->fault = -1;
	size_t head_len = (size_t)(e - p) + 4;
	if (head_len > HEAD_MAX)
		return 431;

	const char *le = memmem(p, head_len, "\r\n", 2);
	const char *sp1 = memchr(p, ' ', (size_t)(le - p));
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(le - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1 || le - sp2 - 1 != 8 ||
	    memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
		return 400;
	bool http11 = sp2[8] == '1';
	bool conn_close_hdr = false, conn_keep = false, have_cl = false, have_te = false;
	uint64_t cl = 0;

	size_t ll = (size_t)(sp2 - p);
	rq->line_len = ll < sizeof(rq->line) ? ll : sizeof(rq->line);
	memcpy(rq->line, p, rq->line_len);

	const char *path = sp1 + 1;
	const char *pe = memchr(path, '?', (size_t)(sp2 - path));
	size_t plen = (size_t)((pe ? pe : sp2) - path);
	route_path(rq, path, plen, pe, sp2, p);
	if (!(sp1 - p == 4 && memcmp(p, "POST", 4) == 0))
		rq->route = R_NOTFOUND; /* dialect kept for the 404 body */

	const char *h = le + 2;
	const char *hend = p + head_len - 2;
	while (h < hend) {
		const char *eol = memmem(h, (size_t)(hend - h), "\r\n", 2);
		if (*h == ' ' || *h == '\t')
			return 400; /* obsolete line folding */
		const char *colon = memchr(h, ':', (size_t)(eol - h));
		if (!colon || colon == h)
			return 400;
		size_t nlen = (size_t)(colon - h);
		if (memchr(h, ' ', nlen) || memchr(h, '\n', (size_t)(eol - h)))
			return 400;
		const char *v = colon + 1, *ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		size_t vlen = (size_t)(ve - v);
		if (hdr_is(h, nlen, "content-length")) {
			uint64_t x = 0;
			if (vlen == 0 || vlen > 12)
				return 400;
			for (size_t i = 0; i < vlen; i++) {
				if (v[i] < '0' || v[i] > '9')
					return 400;
				x = x * 10 + (uint64_t)(v[i] - '0');
			}
			if (have_cl && x != cl)
				return 400;
			have_cl = true;
			cl = x;
		} else if (hdr_is(h, nlen, "transfer-encoding")) {
			have_te = true;
		} else if (hdr_is(h, nlen, "connection")) {
			if (has_token(v, vlen, "close"))
				conn_close_hdr = true;
			if (has_token(v, vlen, "keep-alive"))
				conn_keep = true;
		} else if (hdr_is(h, nlen, "x-mock-fault")) {
			int f = fault_from_mem(v, vlen);
			rq->fault = f < 0 ? -2 : f;
		}
		h = eol + 2;
	}
	if (have_te)
		return 411; /* chunked request bodies are not supported */
	if (cl > BODY_MAX)
		return 413;
	rq->head_len = head_len;
	rq->body_len = (size_t)cl;
	rq->keep_alive = !conn_close_hdr && (http11 || conn_keep);
	return 1;
}

static void respond_parse_error(struct mock_server *s, struct conn *c, int st)
{
	uint64_t n = ++s->next_n;
	atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
	job_reset(&c->job);
	c->job.dialect = c->rq.dialect; /* parse_head set it (0 before the path) */
	switch (st) {
	case 411:
		ERRL(s, c, n, 411, "Chunked request bodies are not supported; send Content-Length.",
		     "invalid_request_error", NULL, true, NULL);
		break;
	case 413:
		ERRL(s, c, n, 413, "Request body too large.", "invalid_request_error", NULL, true,
		     NULL);
		break;
	case 431:
		ERRL(s, c, n, 431, "Request header fields too large.", "invalid_request_error",
		     NULL, true, NULL);
		break;
	default:
		ERRL(s, c, n, 400, "Malformed HTTP request.", "invalid_request_error", NULL, true,
		     NULL);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Connection driving                                                  */

/* Queues close_notify before an orderly close; true when a send of it is
 * now in flight. Not after a reset, a truncation or a failed handshake. */
static bool tls_close_notify(struct mock_server *s, struct conn *c)
{
	if (c->tls_notified || c->rst || c->tls_bare_close)
		return false;
	c->tls_notified = true;
	if (mock_tls_conn_close_notify(c->tls) < 0)
		return false;
	tls_flush(s, c);
	return c->send_armed;
}

/* Answers complete requests in order, sends, decides on closing, keeps a
 * recv armed. Called after every completion on the connection. */
static void conn_process(struct mock_server *s, struct conn *c)
{
	while (!c->closing && !c->want_close && !c->job.active &&
	       c->pend.len + c->tpend.len < PEND_HIGH) {
		if (!c->head_done) {
			int r = parse_head(c);
			if (r == 0)
				break;
			if (r != 1) {
				respond_parse_error(s, c, r);
				job_run(s, c);
				break;
			}
			c->head_done = true;
		}
		if (c->in.len - c->in_start < c->rq.head_len + c->rq.body_len)
			break;
		dispatch(s, c);
		c->in_start += c->rq.head_len + c->rq.body_len;
		c->head_done = false;
		c->scan = 0;
		job_run(s, c);
	}
	if (c->closing)
		return;
	conn_flush(s, c);
	bool idle = !c->job.active && !c->send_armed && c->pend.len == 0;
	if (idle && c->rd_eof && !c->want_close)
		c->want_close = CLOSE_FIN; /* the client is done sending */
	if (idle && c->want_close) {
		if (c->tls && tls_close_notify(s, c))
			return; /* closed once the alert is sent */
		conn_close(s, c, c->rst);
		return;
	}
	if (!c->recv_armed && !c->rd_eof && !c->want_close)
		recv_arm(s, c);
}

static void recv_arm(struct mock_server *s, struct conn *c)
{
	/* Only here is the buffer moved: no recv is writing into it. */
	size_t have = c->in.len - c->in_start;
	if (c->in_start) {
		memmove(c->in.p, c->in.p + c->in_start, have);
		c->in.len = have;
		c->in_start = 0;
	}
	if (c->job.active && have >= IN_BACKLOG_MAX)
		return; /* re-armed when the job is done */
	size_t want = 4096;
	if (c->head_done && c->rq.head_len + c->rq.body_len > have &&
	    c->rq.head_len + c->rq.body_len - have > want)
		want = c->rq.head_len + c->rq.body_len - have;
	if (c->tls) {
		tls_recv_arm(s, c, want);
		return;
	}
	if (c->in.cap == 0)
		buf_reserve(&c->in, IN_INITIAL > want ? IN_INITIAL : want);
	else
		buf_reserve(&c->in, want);
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_recv(sqe, c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
	io_uring_sqe_set_data64(sqe, ud(c, TAG_RECV));
	c->recv_armed = true;
	c->inflight++;
}

/* TLS: the recv lands in the TLS engine's ciphertext buffer (left alone
 * until the completion: only on_recv consumes from it). */
static void tls_recv_arm(struct mock_server *s, struct conn *c, size_t want)
{
	want = want < TLS_RECV_MIN ? TLS_RECV_MIN : want > TLS_RECV_MAX ? TLS_RECV_MAX : want;
	unsigned char *p;
	size_t n;
	mock_tls_conn_in_space(c->tls, want, &p, &n);
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_recv(sqe, c->fd, p, n, 0);
	io_uring_sqe_set_data64(sqe, ud(c, TAG_RECV));
	c->recv_armed = true;
	c->inflight++;
}

/* TLS: res ciphertext bytes arrived. Advances the handshake, then decrypts
 * all complete records into `in`. A handshake or record failure closes this
 * connection (after any alert mbedTLS queued has been sent). */
static void tls_absorb(struct conn *c, size_t res)
{
	mock_tls_conn_in_commit(c->tls, res);
	int r = mock_tls_conn_handshake(c->tls);
	if (r == 0)
		return;
	if (r < 0) {
		c->want_close = CLOSE_FIN;
		c->tls_bare_close = true;
		return;
	}
	for (;;) {
		buf_reserve(&c->in, TLS_PLAIN_CHUNK);
		int n = mock_tls_conn_read(c->tls, c->in.p + c->in.len, c->in.cap - c->in.len);
		if (n > 0) {
			c->in.len += (size_t)n;
			continue;
		}
		if (n == -EPIPE) {
			c->rd_eof = true; /* close_notify: the client is done sending */
		} else if (n < 0) {
			c->want_close = CLOSE_FIN;
			c->tls_bare_close = true;
		}
		return;
	}
}

static void on_recv(struct mock_server *s, struct conn *c, int res)
{
	c->recv_armed = false;
	c->inflight--;
	if (c->closing) {
		conn_maybe_free(s, c);
		return;
	}
	if (res < 0) {
		if (res == -EINTR || res == -EAGAIN) {
			recv_arm(s, c);
			return;
		}
		conn_close(s, c, false);
		return;
	}
	if (res == 0)
		c->rd_eof = true;
	else if (c->tls)
		tls_absorb(c, (size_t)res);
	else
		c->in.len += (size_t)res;
	conn_process(s, c);
}

static void on_send(struct mock_server *s, struct conn *c, int res)
{
	c->send_armed = false;
	c->inflight--;
	if (c->closing) {
		conn_maybe_free(s, c);
		return;
	}
	if (res < 0 && (res == -EINTR || res == -EAGAIN)) {
		send_arm(s, c);
		return;
	}
	if (res <= 0) {
		conn_close(s, c, false);
		return;
	}
	c->out_off += (size_t)res;
	if (c->out_off < c->out.len) {
		send_arm(s, c); /* short send */
		return;
	}
	c->out.len = 0;
	conn_process(s, c);
}

static void on_timer(struct mock_server *s, struct conn *c, int res)
{
	c->timer_armed = false;
	c->inflight--;
	if (c->closing) {
		conn_maybe_free(s, c);
		return;
	}
	job_run(s, c);
	conn_process(s, c);
}

static void accept_arm(struct mock_server *s)
{
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_multishot_accept(sqe, s->lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, TAG_ACCEPT);
	s->accept_armed = true;
}

/* The multishot accept ended: start it again, after a pause on errors. */
static void accept_rearm(struct mock_server *s, int res)
{
	if (s->stopping)
		return;
	if (res >= 0 || res == -EINTR || res == -EAGAIN) {
		accept_arm(s);
		return;
	}
	/* Out of fds and the like: retry in 10 ms, not in a hot loop. */
	s->accept_retry_ts.tv_sec = 0;
	s->accept_retry_ts.tv_nsec = 10 * 1000000;
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_timeout(sqe, &s->accept_retry_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, TAG_ACCEPT_RETRY);
	s->accept_retry_armed = true;
}

/* mbedTLS output: queued for the next send. */
static void tls_sink(void *arg, const unsigned char *p, size_t n)
{
	struct conn *c = arg;
	put(&c->tpend, p, n);
}

static void on_accept(struct mock_server *s, int res, unsigned flags)
{
	if (!(flags & IORING_CQE_F_MORE)) {
		s->accept_armed = false;
		accept_rearm(s, res);
	}
	if (res < 0)
		return;
	if (s->stopping) {
		close(res);
		return;
	}
	int one = 1;
	setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct conn *c = calloc(1, sizeof(*c)); /* owned by the server's list */
	if (!c)
		abort();
	if (s->tls) {
		c->tls = mock_tls_conn_new(s->tls, tls_sink, c);
		if (!c->tls) {
			free(c);
			close(res);
			return;
		}
	}
	c->fd = res;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	atomic_fetch_add_explicit(&s->connections, 1, memory_order_relaxed);
	recv_arm(s, c);
}

static void stop_arm(struct mock_server *s)
{
	struct io_uring_sqe *sqe = sqe_get(s);
	io_uring_prep_read(sqe, s->efd, &s->efd_val, sizeof(s->efd_val), 0);
	io_uring_sqe_set_data64(sqe, TAG_STOP);
}

static void begin_stop(struct mock_server *s)
{
	s->stopping = true;
	if (s->accept_armed) {
		struct io_uring_sqe *sqe = sqe_get(s);
		io_uring_prep_cancel64(sqe, TAG_ACCEPT, 0);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	}
	if (s->accept_retry_armed) {
		struct io_uring_sqe *sqe = sqe_get(s);
		io_uring_prep_timeout_remove(sqe, TAG_ACCEPT_RETRY, 0);
		io_uring_sqe_set_data64(sqe, TAG_IGNORE);
	}
	for (struct conn *c = s->conns, *nx; c; c = nx) {
		nx = c->next;
		conn_close(s, c, false);
	}
}

static void handle_cqe(struct mock_server *s, struct io_uring_cqe *cqe)
{
	uint64_t d = cqe->user_data;
	unsigned tag = (unsigned)(d & TAG_MASK);
	struct conn *c = (struct conn *)(uintptr_t)(d & ~TAG_MASK);
	switch (tag) {
	case TAG_RECV: on_recv(s, c, cqe->res); break;
	case TAG_SEND: on_send(s, c, cqe->res); break;
	case TAG_TIMER: on_timer(s, c, cqe->res); break;
	case TAG_ACCEPT: on_accept(s, cqe->res, cqe->flags); break;
	case TAG_ACCEPT_RETRY:
		s->accept_retry_armed = false;
		if (!s->stopping)
			accept_arm(s);
		break;
	case TAG_STOP:
		if (cqe->res == -EINTR || cqe->res == -EAGAIN)
			stop_arm(s);
		else
			begin_stop(s);
		break;
	default: break;
	}
}

static int ring_init(struct mock_server *s)
{
	struct io_uring_params p;
	const char *plain = getenv("LLMRING_RING_PLAIN");
	if (!s->o.plain_ring && !(plain && strcmp(plain, "1") == 0)) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
			  IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
		p.cq_entries = RING_CQ_ENTRIES;
		if (io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p) == 0)
			return 0;
	}
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = RING_CQ_ENTRIES;
	int r = io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p);
	if (r == 0)
		return 0;
	return io_uring_queue_init(RING_ENTRIES, &s->ring, 0);
}

static void set_started(struct mock_server *s, int v)
{
	pthread_mutex_lock(&s->mu);
	s->started = v;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void *server_thread(void *arg)
{
	struct mock_server *s = arg;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals belong to the host */

	int r = ring_init(s); /* created here: the ring belongs to this thread */
	if (r < 0) {
		set_started(s, r);
		return NULL;
	}
	accept_arm(s);
	stop_arm(s);
	set_started(s, 1);

	struct io_uring_cqe *cqes[CQE_BATCH];
	for (;;) {
		if (s->stopping && s->nconns == 0 && !s->accept_armed && !s->accept_retry_armed)
			break;
		r = io_uring_submit_and_wait(&s->ring, 1);
		if (r < 0 && r != -EINTR && r != -EBUSY && r != -ETIME && r != -EAGAIN) {
			fprintf(stderr, "mock server: io_uring_submit_and_wait: %s\n", strerror(-r));
			break;
		}
		unsigned got;
		while ((got = io_uring_peek_batch_cqe(&s->ring, cqes, CQE_BATCH)) > 0) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME_COARSE, &ts);
			s->now = (uint64_t)ts.tv_sec;
			for (unsigned i = 0; i < got; i++)
				handle_cqe(s, cqes[i]);
			io_uring_cq_advance(&s->ring, got);
		}
	}
	/* Normally empty; after a ring failure, drop what is left. */
	io_uring_queue_exit(&s->ring);
	while (s->conns) {
		s->conns->closing = true;
		s->conns->inflight = 0;
		conn_free(s, s->conns);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */

static int listen_socket(const char *host, uint16_t port, uint16_t *bound)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL; /* owned here, freed below */
	char ps[8];
	snprintf(ps, sizeof(ps), "%u", (unsigned)port);
	if (host && strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	int r = getaddrinfo(host && *host ? host : NULL, ps, &hints, &ai);
	if (r != 0)
		return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	int fd = -1, err = -EADDRNOTAVAIL;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 4096) == 0)
			break;
		err = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return err;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

int mock_server_start(const struct mock_options *o, struct mock_server **out)
{
	*out = NULL;
	struct mock_server *s = calloc(1, sizeof(*s)); /* caller's, via mock_server_stop */
	if (!s)
		return -ENOMEM;
	s->o = *o;
	snprintf(s->host, sizeof(s->host), "%s", o->host ? o->host : "127.0.0.1");
	s->o.host = s->host;
	if (!s->o.slow_header_ms)
		s->o.slow_header_ms = 100;
	double cum = 0;
	for (int k = 0; k < MOCK_FAULT_COUNT; k++) {
		double r = k == MOCK_FAULT_NONE ? 0 : o->fault_rate[k];
		cum += r > 0 ? r : 0;
		s->fault_cum[k] = cum;
	}
	if (o->error && o->error_size)
		o->error[0] = '\0';
	if (o->tls_cert_file || o->tls_key_file) {
		int r = mock_tls_new(o->tls_cert_file, o->tls_key_file, &s->tls, o->error,
				     o->error ? o->error_size : 0);
		if (r < 0) {
			free(s);
			return r;
		}
	}
	s->o.tls_cert_file = s->o.tls_key_file = NULL; /* not kept: the files are loaded */
	s->o.error = NULL;
	int fd = listen_socket(s->host, o->port, &s->port);
	if (fd < 0) {
		mock_tls_free(s->tls);
		free(s);
		return fd;
	}
	s->lfd = fd;
	s->efd = eventfd(0, EFD_CLOEXEC);
	if (s->efd < 0) {
		int e = -errno;
		close(fd);
		mock_tls_free(s->tls);
		free(s);
		return e;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	int r = pthread_create(&s->thread, NULL, server_thread, s);
	if (r == 0) {
		pthread_mutex_lock(&s->mu);
		while (s->started == 0)
			pthread_cond_wait(&s->cv, &s->mu);
		pthread_mutex_unlock(&s->mu);
		if (s->started < 0) {
			r = s->started;
			pthread_join(s->thread, NULL);
		}
	} else {
		r = -r;
	}
	if (r < 0) {
		close(s->lfd);
		close(s->efd);
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		mock_tls_free(s->tls);
		free(s);
		return r;
	}
	*out = s;
	return 0;
}

uint16_t mock_server_port(const struct mock_server *s)
{
	return s->port;
}

uint64_t mock_server_requests(const struct mock_server *s)
{
	return atomic_load_explicit(&((struct mock_server *)s)->requests, memory_order_relaxed);
}

uint64_t mock_server_connections(const struct mock_server *s)
{
	return atomic_load_explicit(&((struct mock_server *)s)->connections,
				    memory_order_relaxed);
}

uint64_t mock_server_tls_resumptions(const struct mock_server *s)
{
	return s->tls ? mock_tls_resumptions(s->tls) : 0;
}

void mock_server_stop(struct mock_server *s)
{
	if (!s)
		return;
	uint64_t one = 1;
	ssize_t w;
	do
		w = write(s->efd, &one, sizeof(one));
	while (w < 0 && errno == EINTR);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	close(s->efd);
	buf_free(&s->scratch);
	mock_tls_free(s->tls); /* after the thread: its connections used it */
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

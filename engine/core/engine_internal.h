/*
 * What the engine's files in core/ (future, submit, schedule,
 * retry, response, loop, reap, endpoints, engine) share: the future and
 * engine records, the lists and stacks that link them, and the calls
 * between the files. Nothing outside core/ includes it.
 */
#ifndef LR_ENGINE_INTERNAL_H
#define LR_ENGINE_INTERNAL_H

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/prices.h"
#include "core/ratelimit.h"
#include "core/usage.h"
#include "format/json.h"
#include "http/pool.h"
#include "io/resolve.h"
#include "io/ring.h"
#include "io/url.h"
#include "llmring.h"
#include "provider/provider.h"
#include "provider/reply.h"
#include "util/buf.h"
#include "util/errors.h"
#include "util/list.h"

struct cache; /* core/cache.h */

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum future_state { F_SUBMITTED = 0, F_WAITING, F_ACTIVE, F_BACKOFF, F_DONE };

struct lr_future {
	_Atomic int refs;
	_Atomic uint32_t done;          /* futex word: 0 pending, 1 complete */
	_Atomic int waiters;
	_Atomic int cancel_pushed;
	struct lr_engine *eng;
	void *user_data;
	lr_result result;

	/* Result storage, owner: the future. */
	struct buf resp_body;
	size_t buffered;                /* response bytes counted in eng->buffered_bytes */
	bool over_budget;               /* failed by the engine-wide buffered-bytes cap */
	bool encoded_body;              /* refused: a Content-Encoding other than identity */
	struct reply reply;             /* text, tool calls, usage, ids (normalised) */
	struct http_call *call;         /* owner: future; a plain HTTP call, NULL for chat */
	struct stream_decoder *stream;  /* owner: future; while a streamed response is read */
	struct pull_queue *pull;        /* owner: future; deltas for lr_future_next_delta */
	lr_delta_fn on_delta;           /* borrowed from the request */
	void *on_delta_user;
	enum provider provider;
	enum lr_endpoint endpoint;

	/* Engine-side state. */
	enum future_state state;
	struct url *own_url;            /* owner: future; NULL uses the engine's URL */
	struct buf req_bytes;      /* owner: future; the whole request */
	struct http_exchange ex;
	struct ring_timer deadline;
	uint64_t submit_ns, start_ns;
	uint64_t attempt_ns;            /* when this attempt began (total deadline base) */
	uint64_t connect_ns, idle_ns, total_ns;
	int attempts;                   /* started so far */
	int max_retries;
	int should_retry;               /* x-should-retry: 1 true, 0 false, -1 absent */
	double est_tokens;              /* taken from the token bucket per attempt */
	lr_future_fn then_fn;           /* lr_future_then */
	void *then_user;
	_Atomic int then_state;         /* 0 none, 1 registered, 2 completed */
	_Atomic int then_used;
	/* The response cache (cache.c). */
	unsigned char cache_state;      /* enum cache_state */
	unsigned char cache_key[32];    /* SHA-256, once looked up */
	bool cache_only;                /* lr_request_set_cache_only: a miss is never sent */
	size_t key_body_off, key_body_len; /* the unified body inside req_bytes (OpenAI's dialect) */
	struct buf key_body;            /* owner: future; other dialects' unified body, until keyed */
	struct lr_future *next;         /* cache queue, submit stack, then reap stack */
	struct lr_future *next_cancel;  /* cancel stack */
	/* Engine queue (over max_in_flight) while F_WAITING, the active
	 * list while F_ACTIVE, the backoff list while F_BACKOFF. */
	struct lr_future *wait_prev, *wait_next;
	/* Reuse (future.c): the slab a released future goes back to (NULL:
	 * it is freed), and memory kept from an earlier use for resp_body,
	 * taken on the first byte (future_body_buf) so that a body is still
	 * NULL until there is one. */
	struct future_slab *slab;
	struct buf spare_body;          /* owner: the future */
	struct buf spare_path;          /* owner: the future; the provider path's memory (submit.c) */

	/* Text read only as NUL-terminated strings: a reused future empties
	 * them instead of wiping them, so they come last (future_reset). */
	char request_id[128];
	char requested_model[96];       /* for accounting when the reply names none */
	struct error_info err;          /* a failure: lr_result.error_message points at err.message */
};

/* Released futures kept for the next lr_submit (future.c), so that a
 * request costs no allocation of its future or of its buffers' first
 * bytes. Futures outlive their engine (lr_engine_destroy), so the slab is
 * shared by the engine and every future allocated from it, and freed by
 * the last of them. */
struct future_slab {
	pthread_mutex_t lock;           /* releases and submissions come from any thread */
	struct lr_future *free;         /* owner: the slab; LIFO (warmest first), through next */
	unsigned count, cap;
	bool closed;                    /* the engine is gone: released futures are freed */
	_Atomic size_t refs;            /* the engine's, and one per future allocated from it */
};

/* A doubly linked list through lr_future.wait_prev/wait_next: a future is
 * on at most one (waiting or active) at a time. */
struct future_list {
	struct lr_future *head, *tail;
};

LIST_FUNCTIONS(flist, struct future_list, struct lr_future, head, tail, wait_prev, wait_next)

/* Where one provider's requests go: its base URL and the headers every
 * request to it carries (Host, key, content type). */
struct endpoint {
	struct error_info err;          /* code != 0: this provider cannot be used */
	struct url url;
	struct buf fixed_headers;  /* owner: engine; may hold a key: wiped on free */
	struct buf auth_headers;   /* owner: engine; the key headers alone (HTTP calls): wiped on free */
	bool needs_key;                 /* the provider's own endpoint and no key found */
};

/* Deltas handed from the engine thread to a lr_future_next_delta caller. */
struct pull_delta {
	struct pull_delta *next;
	lr_delta d;                     /* strings point into data */
	char data[];
};

struct pull_queue {
	pthread_mutex_t lock;
	struct pull_delta *head, *tail; /* owner: the queue */
	struct pull_delta *current;     /* owner: the queue; the one handed out last */
	_Atomic uint32_t seq;           /* futex word: bumped on each delta and at completion */
	_Atomic int waiting;
};

struct lr_engine {
	lr_config cfg;
	struct endpoint ep[PROVIDER_COUNT];
	pthread_t thread;
	int wake_fd;                    /* eventfd: submitters -> engine */
	int completion_fd;              /* eventfd: engine -> reaper */
	_Atomic(struct lr_future *) submit_head;
	/* lr_submit calls under way: the last free waits for them, so a
	 * submission that raced with lr_engine_destroy is always taken. */
	_Atomic unsigned submitting;
	_Atomic(struct lr_future *) cancel_head;
	_Atomic(struct lr_future *) reap_head;
	_Atomic int reap_ready;         /* futures on reap_head (may dip below 0 briefly) */
	_Atomic int reap_want;          /* the reaper sleeps until this many are ready */
	struct lr_future *reap_local;   /* reaper's private leftovers, FIFO */
	int reap_local_count;
	_Atomic int stopping;
	_Atomic(const char *) ring_mode;
	_Atomic int start_result;       /* 1 running, <0 setup error (futex word) */
	struct error_info setup_error;  /* engine_setup's failure, read after start_result */

	pthread_t owner;                /* drive_from_caller: the thread that drives the ring */
	bool evfd_registered;           /* drive_from_caller: the kernel signals completion_fd */

	char *ca_file;                  /* owner: engine; copy of cfg.ca_file */
	char *cache_path;               /* owner: engine; copy of cfg.cache_path */

	/* Engine-thread (or owner-thread) only. */
	bool shutting_down;
	bool ring_broken;               /* ring.failed seen: every future fails (loop.c) */
	struct error_info broken;       /* why, once ring_broken */
	bool self_free;                 /* destroyed from a callback: the thread frees e */
	uint64_t completions;           /* futures completed by this loop */
	struct resolver *resolver;      /* owner: engine */
	struct ring ring;
	struct pool pool;
	struct json_doc doc;            /* owner: engine; scratch for response parsing */
	struct ring_op op_wake;
	uint64_t wake_value;
	bool wake_armed;
	unsigned active_count;
	size_t buffered_bytes;          /* sum of the active futures' `buffered` */
	struct future_list waiting;     /* over max_in_flight, FIFO */
	struct future_list active;      /* on the wire (for shutdown) */
	struct future_list backoff;     /* waiting to be retried (for shutdown and cancel) */
	struct limits limits;           /* rpm / tpm buckets */
	struct ring_timer limit_timer;  /* wakes the queue when the buckets refill */
	struct cache *cache;            /* owner: engine; NULL: no response cache */
	struct future_slab *slab;       /* shared: the engine's reference (future_slab_close) */
	struct price_table *prices;     /* owner: engine */
	struct usage_table usage;       /* owner: engine */
	uint64_t submitted;             /* accepted by the loop (progress) */
	uint64_t starts;                /* attempts put on the wire (progress) */
	uint64_t progress_ns;           /* last on_progress call */
	uint64_t progress_seen;         /* completions + retries + submissions at that call */
	uint64_t jitter_state;          /* xorshift state for retry jitter */
	struct lr_future *reap_pending, *reap_pending_last; /* newest first */
	int reap_pending_count;

	/* Statistics, written by the engine thread, read by anyone. */
	_Atomic uint64_t stat_opened, stat_reused, stat_resends, stat_completed;
	_Atomic uint64_t stat_tls_full, stat_tls_resumed;
	_Atomic uint64_t stat_retries;
};

static inline long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

static inline void eventfd_signal(int fd)
{
	uint64_t one = 1;
	ssize_t n;
	do {
		n = write(fd, &one, sizeof(one));
	} while (n < 0 && errno == EINTR);
}

/* A reused future's kept memory becomes resp_body's on the first reserve
 * or append (resp_body.data stays NULL until then, as in a new future). */
static inline struct buf *future_body_buf(struct lr_future *f)
{
	if (!f->resp_body.data && f->spare_body.data) {
		f->resp_body = f->spare_body;
		f->spare_body = (struct buf){0};
	}
	return &f->resp_body;
}

static inline double ns_to_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Pushes the chain first..last (linked newest first; *last_link is the
 * last one's own link field) onto a lock-free stack; true when the stack
 * was empty (the taker may need a wake-up). One future is a chain of one.
 * The submit, cancel and reap stacks all push through here. */
static inline bool stack_push(_Atomic(struct lr_future *) *head, struct lr_future *first,
                              struct lr_future **last_link)
{
	struct lr_future *old = atomic_load_explicit(head, memory_order_relaxed);
	do {
		*last_link = old;
	} while (!atomic_compare_exchange_weak_explicit(head, &old, first, memory_order_release,
	                                                memory_order_relaxed));
	return old == NULL;
}

static inline struct lr_future *stack_take_fifo(_Atomic(struct lr_future *) *head, size_t link_offset)
{
	struct lr_future *f = atomic_exchange_explicit(head, NULL, memory_order_acquire);
	struct lr_future *fifo = NULL;
	while (f) {
		struct lr_future **link = (struct lr_future **)((char *)f + link_offset);
		struct lr_future *next = *link;
		*link = fifo;
		fifo = f;
		f = next;
	}
	return fifo;
}

/* Futures (future.c) */
int future_slab_new(struct lr_engine *e);
void future_slab_close(struct future_slab *s);
struct lr_future *future_alloc(struct lr_engine *e);
void future_keep_req_bytes(struct lr_future *f);
void future_unref(struct lr_future *f);
void engine_publish_stats(struct lr_engine *e);
void future_delta(void *user, const lr_delta *d);
void future_complete(struct lr_future *f, int err, const char *msg);

/* Response handling (response.c) */
extern const struct http_exchange_handler future_exchange_handler;

/* Scheduling (schedule.c) */
void future_deadline_fired(struct ring_timer *t);
void engine_start_waiting(struct lr_engine *e);
void limit_timer_fired(struct ring_timer *t);
void engine_drain_inbox(struct lr_engine *e);
void engine_fail_held(struct lr_engine *e, int err, const char *msg);
void engine_shutdown(struct lr_engine *e);
void engine_report_progress(struct lr_engine *e);

/* The reap queue (reap.c) */
void reap_push(struct lr_engine *e, struct lr_future *first, struct lr_future *last, int n);
void engine_flush_reaped(struct lr_engine *e);

/* The loop (loop.c) */
int engine_setup(struct lr_engine *e);
void engine_teardown(struct lr_engine *e);
bool in_engine_callback(const struct lr_engine *e);
int engine_turn(struct lr_engine *e, uint64_t max_wait_ns);
void *engine_thread(void *arg);
bool engine_on_owner(const struct lr_engine *e);
void engine_drive(struct lr_engine *e, int timeout_ms, bool (*done)(void *), void *arg);

/* Endpoints and keys (endpoints.c) */
int build_fixed_headers(struct buf *b, enum provider p, const char *api_key);
void endpoint_wipe(struct endpoint *ep);
int endpoints_init(struct lr_engine *e, const char *cfg_base, const char *cfg_key);

/* Plain HTTP calls (http_call.c) */
int future_build_http(lr_engine *e, struct lr_future *f, lr_request *rq);
int future_body_at(struct http_exchange *ex, uint64_t offset, const char **data, size_t *len);
void call_on_head(struct lr_future *f, const struct http_head *h);
int call_deliver(struct lr_future *f, const char *data, size_t len);

/* Submission (submit.c) */
void future_fail_early(lr_engine *e, struct lr_future *f, int err, const char *why);

/* The engine's lifetime (engine.c) */
void engine_free_after_stop(lr_engine *e);

#endif

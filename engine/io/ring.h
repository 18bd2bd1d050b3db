/*
 * The io_uring loop of one engine thread: SQE allocation that never fails
 * (once the kernel refuses the ring for good, SQEs go to a spare and the
 * ring reports the failure: see ring.failed),
 * CQE dispatch to ring_op callbacks, a provided-buffer ring for multishot
 * receives, a timer heap driven by the wait timeout of each enter (no timer
 * SQEs), and a cached clock.
 *
 * user_data of every SQE is a struct ring_op pointer embedded in its owner,
 * or 0 for fire-and-forget SQEs (cancels) whose completion is ignored. The
 * owner keeps the op's memory alive until its last CQE (libuv's rule:
 * closing is asynchronous, memory is freed only after the last completion).
 */
#ifndef LR_RING_H
#define LR_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ring_op;
typedef void (*ring_op_fn)(struct ring_op *op, int res, unsigned cqe_flags);
struct ring_op {
	ring_op_fn complete;
};

struct ring;
struct ring_timer;

/* Work put off to the start of the next loop turn (see ring_defer). */
struct ring_deferred;
typedef void (*ring_deferred_fn)(struct ring_deferred *d);
struct ring_deferred {
	struct ring_deferred *next;
	ring_deferred_fn run;
};
struct ring_heap_entry {
	uint64_t deadline_ns;
	struct ring_timer *timer;
};
typedef void (*ring_timer_fn)(struct ring_timer *t);
struct ring_timer {
	uint64_t deadline_ns;
	unsigned heap_index;    /* RING_TIMER_IDLE when not armed */
	ring_timer_fn fire;
};
#define RING_TIMER_IDLE UINT32_MAX

struct ring {
	struct io_uring uring;
	const char *mode;           /* setup flags the kernel accepted */
	uint64_t now_ns;            /* clock at the start of this loop turn and when its wait ended */

	/* Provided buffers for multishot recv (group RING_BUF_GROUP). */
	struct io_uring_buf_ring *buf_ring; /* owner: ring (mmap) */
	char *buf_base;             /* owner: ring (mmap) */
	unsigned buf_count, buf_size;
	unsigned buf_recycled;      /* added since the last advance */

	/* Run at the start of the next turn, oldest first; the entries are
	 * their owners'. */
	struct ring_deferred *deferred_head, *deferred_tail;

	/* Min-heap of armed timers by deadline; each entry keeps a copy of
	 * its deadline so sifting never touches the timers' own memory. */
	struct ring_heap_entry *heap; /* owner: ring; the timers are their owners' */
	unsigned heap_len, heap_cap;

	/* -errno of a submit or enter the kernel refused for good (not
	 * EINTR, EAGAIN, EBUSY, ETIME), or 0. Sticky: nothing submitted
	 * after it completes, so the owner must end what waits on the ring. */
	int failed;
	struct io_uring_sqe spare;  /* what ring_sqe hands out once failed */
};

#define RING_BUF_GROUP 0

/* The setup flags a ring is tried with first (each falls back to plainer
 * ones the kernel accepts). */
enum ring_kind {
	/* SINGLE_ISSUER + DEFER_TASKRUN: completions are posted only when the
	 * owner enters the ring to wait; the cheapest for a loop that waits
	 * in io_uring_enter. */
	RING_DEFERRED = 0,
	/* SINGLE_ISSUER + COOP_TASKRUN: completions are posted as they come,
	 * so a registered eventfd is signalled at once. For a ring a host
	 * loop polls through that eventfd: under DEFER_TASKRUN the kernel
	 * signals it only when the owner next enters the ring (measured 10-17
	 * ms late on Linux 6.18, at once on the kernels seen here before). */
	RING_POLLABLE,
	RING_PLAIN, /* setup flags 0 */
};

/* Creates the ring in the calling thread. */
int ring_init(struct ring *r, unsigned entries, unsigned buf_count, unsigned buf_size,
              enum ring_kind kind);
void ring_exit(struct ring *r);

/* An SQE with user_data op; submits to make room when the SQ is full.
 * Never NULL: once the ring has failed, the spare (never submitted). */
struct io_uring_sqe *ring_sqe(struct ring *r, struct ring_op *op);

/* Submits pending SQEs, waits for at least one CQE or the next timer
 * (never past max_wait_ns from now), dispatches every CQE, fires due
 * timers. Returns 0, or ring.failed (at once, without waiting, once set). */
int ring_run_once(struct ring *r, uint64_t max_wait_ns);

/* Provided buffer bid's memory, and giving it back after its bytes were used. */
static inline char *ring_buf(struct ring *r, unsigned bid)
{
	return r->buf_base + (size_t)bid * r->buf_size;
}
void ring_buf_recycle(struct ring *r, unsigned bid);

/* Runs d->run at the start of the next loop turn, before that turn's
 * submit. For a re-arm that must not happen inside this turn's dispatch
 * (a multishot receive that ran out of buffers would fail again at once,
 * and with enough connections the CQ would never drain). d must stay
 * valid until it has run. */
void ring_defer(struct ring *r, struct ring_deferred *d, ring_deferred_fn run);

void ring_timer_init(struct ring_timer *t, ring_timer_fn fire);
/* Arms t (or moves its deadline). 0, or -ENOMEM when t was idle and the
 * heap could not grow: t stays idle. Moving an armed timer never fails,
 * nor arming one while another has just been cancelled or fired. */
int ring_timer_set(struct ring *r, struct ring_timer *t, uint64_t deadline_ns);
void ring_timer_cancel(struct ring *r, struct ring_timer *t);
static inline bool ring_timer_armed(const struct ring_timer *t)
{
	return t->heap_index != RING_TIMER_IDLE;
}

#endif

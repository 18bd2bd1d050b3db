/*
 * The io_uring loop. One ring per engine thread, created in that thread
 * (SINGLE_ISSUER ties it to its creator). CQEs are copied out in batches
 * and the CQ advanced before dispatch, so callbacks may queue any number
 * of new SQEs without the CQ filling up under the loop's feet.
 */
#include "io/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/clock.h"
#include "util/test_hooks.h"

#define RING_CQE_BATCH 128

static int ring_setup(struct ring *r, unsigned entries, enum ring_kind kind)
{
	struct {
		unsigned flags;
		const char *mode;
	} const attempts[] = {
		{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
		 "single_issuer+defer_taskrun"},
		{IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
		     IORING_SETUP_SUBMIT_ALL,
		 "single_issuer+coop_taskrun"},
		{IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL, "coop_taskrun"},
		{0, "plain"},
	};
	size_t first = kind == RING_PLAIN ? 3 : kind == RING_POLLABLE ? 1 : 0;
	int ret = -EINVAL;
	for (size_t i = first; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		/* A large CQ leaves room for multishot bursts from many
		 * connections (16 bytes an entry). */
		p.flags = attempts[i].flags | IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 4 > 8192 ? entries * 4 : 8192;
		ret = io_uring_queue_init_params(entries, &r->uring, &p);
		if (ret == 0) {
			r->mode = attempts[i].mode;
			return 0;
		}
		if (ret != -EINVAL)
			break; /* ENOMEM, EMFILE, EPERM: another flag set will not help */
	}
	return ret;
}

static int ring_setup_buffers(struct ring *r, unsigned count, unsigned size)
{
	size_t ring_bytes = (size_t)count * sizeof(struct io_uring_buf);
	void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		return -errno;
	void *base = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
	                  MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (base == MAP_FAILED) {
		int err = -errno;
		munmap(br, ring_bytes);
		return err;
	}
	r->buf_ring = br;
	r->buf_base = base;
	r->buf_count = count;
	r->buf_size = size;

	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)br;
	reg.ring_entries = count;
	reg.bgid = RING_BUF_GROUP;
	int ret = io_uring_register_buf_ring(&r->uring, &reg, 0);
	if (ret < 0)
		return ret; /* ring_exit unmaps */
	io_uring_buf_ring_init(r->buf_ring);
	int mask = io_uring_buf_ring_mask(count);
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(r->buf_ring, ring_buf(r, i), size, (unsigned short)i, mask, (int)i);
	io_uring_buf_ring_advance(r->buf_ring, (int)count);
	return 0;
}

int ring_init(struct ring *r, unsigned entries, unsigned buf_count, unsigned buf_size,
              enum ring_kind kind)
{
	memset(r, 0, sizeof(*r));
	if (buf_count == 0 || (buf_count & (buf_count - 1)) || buf_count > 32768)
		return -EINVAL; /* the kernel wants a power of two, bids are 16 bits */
	int ret = ring_setup(r, entries, kind);
	if (ret < 0)
		return ret;
	ret = ring_setup_buffers(r, buf_count, buf_size);
	if (ret < 0) {
		ring_exit(r);
		return ret;
	}
	r->now_ns = clock_now_ns();
	return 0;
}

void ring_exit(struct ring *r)
{
	if (r->mode)
		io_uring_queue_exit(&r->uring);
	if (r->buf_ring)
		munmap(r->buf_ring, (size_t)r->buf_count * sizeof(struct io_uring_buf));
	if (r->buf_base)
		munmap(r->buf_base, (size_t)r->buf_count * r->buf_size);
	free(r->heap);
	memset(r, 0, sizeof(*r));
}

/* Whether a submit or enter result means the ring cannot go on. */
static bool ring_refused(int ret)
{
	return ret < 0 && ret != -EBUSY && ret != -EINTR && ret != -EAGAIN && ret != -ETIME;
}

struct io_uring_sqe *ring_sqe(struct ring *r, struct ring_op *op)
{
	struct io_uring_sqe *sqe = NULL;
	while (!r->failed && (sqe = io_uring_get_sqe(&r->uring)) == NULL) {
		/* SQ full: hand what we have to the kernel. -EBUSY (CQ
		 * overflow back-pressure) cannot last: the loop drains the
		 * CQ before its next enter; until then spinning here would
		 * deadlock, so treat a failed submit as "try the next slot". */
		int ret = io_uring_submit(&r->uring);
		if (ring_refused(ret))
			r->failed = ret;
	}
	if (r->failed) {
		/* Nothing will run it: ring_run_once reports the failure and
		 * the owner ends whatever waits on the ring. */
		memset(&r->spare, 0, sizeof(r->spare));
		sqe = &r->spare;
	}
	sqe->user_data = (uint64_t)(uintptr_t)op;
	return sqe;
}

void ring_defer(struct ring *r, struct ring_deferred *d, ring_deferred_fn run)
{
	d->run = run;
	d->next = NULL;
	if (r->deferred_tail)
		r->deferred_tail->next = d;
	else
		r->deferred_head = d;
	r->deferred_tail = d;
}

static void ring_run_deferred(struct ring *r)
{
	/* Only what was deferred before this turn: a run that defers again
	 * waits for the next one. */
	struct ring_deferred *d = r->deferred_head;
	r->deferred_head = r->deferred_tail = NULL;
	while (d) {
		struct ring_deferred *next = d->next;
		d->run(d);
		d = next;
	}
}

/* Hands recycled buffers back to the kernel. Done after every CQE batch,
 * not once per turn: a receive armed later in the same dispatch must find
 * them, or with more connections than buffers every receive ends in
 * ENOBUFS and the CQ never drains. */
static void ring_buf_publish(struct ring *r)
{
	if (r->buf_recycled) {
		io_uring_buf_ring_advance(r->buf_ring, (int)r->buf_recycled);
		r->buf_recycled = 0;
	}
}

void ring_buf_recycle(struct ring *r, unsigned bid)
{
	io_uring_buf_ring_add(r->buf_ring, ring_buf(r, bid), r->buf_size, (unsigned short)bid,
	                      io_uring_buf_ring_mask(r->buf_count), (int)r->buf_recycled);
	r->buf_recycled++;
}

/* ---- timer heap ---- */

static void heap_place(struct ring *r, unsigned i, struct ring_heap_entry e)
{
	r->heap[i] = e;
	e.timer->heap_index = i;
}

static void heap_up(struct ring *r, unsigned i)
{
	struct ring_heap_entry e = r->heap[i];
	while (i > 0) {
		unsigned parent = (i - 1) / 2;
		if (r->heap[parent].deadline_ns <= e.deadline_ns)
			break;
		heap_place(r, i, r->heap[parent]);
		i = parent;
	}
	heap_place(r, i, e);
}

static void heap_down(struct ring *r, unsigned i)
{
	struct ring_heap_entry e = r->heap[i];
	for (;;) {
		unsigned l = 2 * i + 1, m = l;
		if (l >= r->heap_len)
			break;
		if (l + 1 < r->heap_len && r->heap[l + 1].deadline_ns < r->heap[l].deadline_ns)
			m = l + 1;
		if (r->heap[m].deadline_ns >= e.deadline_ns)
			break;
		heap_place(r, i, r->heap[m]);
		i = m;
	}
	heap_place(r, i, e);
}

void ring_timer_init(struct ring_timer *t, ring_timer_fn fire)
{
	t->deadline_ns = 0;
	t->heap_index = RING_TIMER_IDLE;
	t->fire = fire;
}

void ring_timer_cancel(struct ring *r, struct ring_timer *t)
{
	if (t->heap_index == RING_TIMER_IDLE)
		return;
	unsigned i = t->heap_index;
	t->heap_index = RING_TIMER_IDLE;
	r->heap_len--;
	if (i == r->heap_len)
		return;
	struct ring_heap_entry moved = r->heap[r->heap_len];
	heap_place(r, i, moved);
	heap_up(r, i);
	heap_down(r, moved.timer->heap_index);
}

int ring_timer_set(struct ring *r, struct ring_timer *t, uint64_t deadline_ns)
{
	/* No zero-length timers: a deadline at or before this turn's clock
	 * fires on the next turn, never in the loop that is firing now. */
	if (deadline_ns <= r->now_ns)
		deadline_ns = r->now_ns + 1;
	if (t->heap_index != RING_TIMER_IDLE) {
		uint64_t old = t->deadline_ns;
		t->deadline_ns = deadline_ns;
		r->heap[t->heap_index].deadline_ns = deadline_ns;
		if (deadline_ns < old)
			heap_up(r, t->heap_index);
		else
			heap_down(r, t->heap_index);
		return 0;
	}
	if (r->heap_len == r->heap_cap) {
		/* From one entry: the common case holds a few timers, and each
		 * growth is a failure point the allocation sweep reaches. */
		unsigned cap = r->heap_cap ? r->heap_cap * 2 : 1;
		struct ring_heap_entry *h = realloc(r->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM; /* t stays idle; its owner fails what it was for */
		r->heap = h;
		r->heap_cap = cap;
	}
	t->deadline_ns = deadline_ns;
	unsigned i = r->heap_len++;
	r->heap[i].deadline_ns = deadline_ns;
	r->heap[i].timer = t;
	heap_up(r, i);
	return 0;
}

/* Fires the timers due at the start of this call. A timer set again by a
 * fire function for a moment already past waits for the next turn (see
 * ring_timer_set), so a zero-length re-arm cannot spin here. */
static void ring_fire_timers(struct ring *r)
{
	while (r->heap_len && r->heap[0].deadline_ns <= r->now_ns) {
		struct ring_timer *t = r->heap[0].timer;
		ring_timer_cancel(r, t);
		t->fire(t);
	}
}

/* ---- the loop turn ---- */

struct cqe_copy {
	uint64_t user_data;
	int res;
	unsigned flags;
};

/* Dispatches the CQEs, at most about one CQ's worth per turn so that
 * timers and the owner's turn work run however fast CQEs arrive. */
static unsigned ring_dispatch(struct ring *r)
{
	struct cqe_copy batch[RING_CQE_BATCH];
	unsigned total = 0, limit = r->uring.cq.ring_entries;
	while (total < limit) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		io_uring_for_each_cqe(&r->uring, head, cqe) {
			batch[n].user_data = cqe->user_data;
			batch[n].res = cqe->res;
			batch[n].flags = cqe->flags;
			if (++n == RING_CQE_BATCH)
				break;
		}
		if (n == 0)
			break;
		io_uring_cq_advance(&r->uring, n);
		for (unsigned i = 0; i < n; i++) {
			struct ring_op *op = (struct ring_op *)(uintptr_t)batch[i].user_data;
			if (op)
				op->complete(op, batch[i].res, batch[i].flags);
		}
		ring_buf_publish(r);
		total += n;
	}
	return total;
}

/* Weak, so a test program can make the kernel refuse (util/test_hooks.h). */
__attribute__((weak)) int ring_enter_fault(void)
{
	return 0;
}

int ring_run_once(struct ring *r, uint64_t max_wait_ns)
{
	if (r->failed) {
		r->now_ns = clock_now_ns();
		return r->failed;
	}
	ring_run_deferred(r);
	uint64_t wait_ns = max_wait_ns;
	if (r->heap_len) {
		uint64_t d = r->heap[0].deadline_ns;
		uint64_t until = d > r->now_ns ? d - r->now_ns : 0;
		if (until < wait_ns)
			wait_ns = until;
	}
	int ret = ring_enter_fault();
	if (ret) {
		/* a test's refusal stands in for the kernel's */
	} else if (io_uring_cq_ready(&r->uring)) {
		ret = io_uring_submit(&r->uring);
	} else if (wait_ns == UINT64_MAX) {
		ret = io_uring_submit_and_wait(&r->uring, 1);
	} else if (wait_ns == 0) {
		/* Still run deferred task work so completions appear. */
		ret = io_uring_submit_and_get_events(&r->uring);
	} else {
		struct __kernel_timespec ts = {
			.tv_sec = (long long)(wait_ns / 1000000000u),
			.tv_nsec = (long long)(wait_ns % 1000000000u),
		};
		struct io_uring_cqe *cqe;
		ret = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, &ts, NULL);
	}
	if (ring_refused(ret) && !r->failed)
		r->failed = ret;
	r->now_ns = clock_now_ns();
	ring_dispatch(r);
	ring_fire_timers(r);
	return r->failed;
}

/*
 * The reap queue: completed futures handed to lr_engine_reap through a
 * lock-free stack and the completion eventfd. The engine publishes a
 * turn's completions with one push; the reaper takes the whole stack.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>

#include "core/engine_internal.h"
#include "util/clock.h"
#include "llmring.h"

/*
 * Pushes a chain (newest first, last->next free) onto the reap stack and
 * signals the completion fd when the count of ready futures reaches what
 * the reaper waits for (1 unless it asked for more: lr_engine_reap_batch).
 * The count and the threshold are sequentially consistent, so either the
 * reaper sees the new count or this sees its threshold: no lost wake-up.
 */
void reap_push(struct lr_engine *e, struct lr_future *first, struct lr_future *last, int n)
{
	bool was_empty = stack_push(&e->reap_head, first, &last->next);
	int after = atomic_fetch_add(&e->reap_ready, n) + n;
	int want = atomic_load(&e->reap_want);
	/* A push onto an empty stack always signals: the stack is emptied
	 * only by the reaper's exchange, which takes whatever was pushed
	 * before it, so every future is either taken by a reap already under
	 * way or announced by a signal (the count alone raced with that
	 * exchange and could skip the signal for good). */
	if ((was_empty || (after >= want && after - n < want)) && !e->cfg.drive_from_caller)
		eventfd_signal(e->completion_fd);
}

/* One CAS and at most one eventfd write per loop turn, however many
 * futures completed in it. */
void engine_flush_reaped(struct lr_engine *e)
{
	if (!e->reap_pending)
		return;
	reap_push(e, e->reap_pending, e->reap_pending_last, e->reap_pending_count);
	e->reap_pending = e->reap_pending_last = NULL;
	e->reap_pending_count = 0;
}

LR_API int lr_engine_completion_fd(lr_engine *e)
{
	if (!e)
		return LR_EINVAL;
	/* A caller-driven engine has no thread to signal the fd: the kernel
	 * does, for every completion posted to the ring, once a host loop asks
	 * for the fd (only then: it costs a signal per completion). The
	 * registration must come from the ring's owner. */
	if (e->cfg.drive_from_caller && !e->evfd_registered && engine_on_owner(e)) {
		if (io_uring_register_eventfd(&e->ring.uring, e->completion_fd) < 0)
			return LR_ESYSTEM;
		e->evfd_registered = true;
	}
	return e->completion_fd;
}

static int reap_hand_out(lr_engine *e, lr_future **out, int max)
{
	int n = 0;
	while (n < max && e->reap_local) {
		struct lr_future *f = e->reap_local;
		e->reap_local = f->next;
		f->next = NULL;
		out[n++] = f;
	}
	e->reap_local_count -= n;
	/* Level-triggered: a host loop may read the fd and then reap fewer
	 * than are ready; what is left must keep the fd readable. */
	if ((e->reap_local || atomic_load_explicit(&e->reap_head, memory_order_acquire)) &&
	    (!e->cfg.drive_from_caller || e->evfd_registered))
		eventfd_signal(e->completion_fd);
	return n;
}

/* Moves the reap stack into the reaper's FIFO. */
static void reap_take(lr_engine *e)
{
	struct lr_future *fifo = stack_take_fifo(&e->reap_head, offsetof(struct lr_future, next));
	if (!fifo)
		return;
	int n = 1;
	struct lr_future *tail = fifo;
	while (tail->next) {
		tail = tail->next;
		n++;
	}
	atomic_fetch_sub(&e->reap_ready, n);
	/* Append after any leftovers, keeping completion order. */
	struct lr_future **link = &e->reap_local;
	while (*link)
		link = &(*link)->next;
	*link = fifo;
	e->reap_local_count += n;
}

struct reap_goal {
	lr_engine *e;
	int min;
};

static bool reap_goal_met(void *arg)
{
	struct reap_goal *g = arg;
	return g->e->reap_local_count + atomic_load_explicit(&g->e->reap_ready, memory_order_relaxed) >=
	       g->min;
}

LR_API int lr_engine_reap_batch(lr_engine *e, lr_future **out, int max, int min, int timeout_ms)
{
	if (!e || !out || max <= 0)
		return LR_EINVAL;
	if (!e->cfg.reap_completions)
		return LR_EINVAL;
	if (in_engine_callback(e) && (timeout_ms != 0 || e->cfg.drive_from_caller))
		return LR_EINVAL;
	if (min < 1)
		min = 1;
	if (min > max)
		min = max;
	if (e->cfg.drive_from_caller) {
		if (!engine_on_owner(e))
			return LR_EINVAL;
		struct reap_goal goal = {e, min};
		engine_drive(e, timeout_ms, reap_goal_met, &goal);
		reap_take(e);
		return reap_hand_out(e, out, max);
	}
	uint64_t deadline = timeout_ms > 0 ? clock_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
	for (;;) {
		if (e->reap_local_count >= min)
			return reap_hand_out(e, out, max);
		/* Announce the threshold, clear the signal, then look: a push
		 * after the look signals again, so nothing is missed. */
		atomic_store(&e->reap_want, min - e->reap_local_count);
		uint64_t v;
		while (read(e->completion_fd, &v, sizeof(v)) > 0)
			;
		if (atomic_load(&e->reap_ready) >= min - e->reap_local_count) {
			reap_take(e);
			continue;
		}
		int wait_ms = timeout_ms < 0 ? -1 : 0;
		if (timeout_ms > 0) {
			uint64_t now = clock_now_ns();
			if (now < deadline)
				wait_ms = (int)((deadline - now + 999999) / 1000000);
		}
		if (wait_ms == 0) {
			/* Out of time: hand out whatever there is. */
			atomic_store(&e->reap_want, 1);
			reap_take(e);
			return reap_hand_out(e, out, max);
		}
		struct pollfd pfd = {.fd = e->completion_fd, .events = POLLIN};
		int pr = poll(&pfd, 1, wait_ms);
		if (pr < 0 && errno != EINTR) {
			atomic_store(&e->reap_want, 1);
			return LR_ESYSTEM;
		}
		if (pr > 0)
			reap_take(e);
	}
}

LR_API int lr_engine_reap(lr_engine *e, lr_future **out, int max, int timeout_ms)
{
	return lr_engine_reap_batch(e, out, max, 1, timeout_ms);
}

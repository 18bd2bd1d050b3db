/*
 * Simulated capacity (mock_options.max_batch): at most max_batch
 * generations run at once; the chat and completion requests beyond that
 * wait in one FIFO queue, their TTFT clock not yet started, as requests
 * wait in a real inference server's scheduler. 0 = unlimited.
 *
 * A generation holds its slot from admission until its last byte is
 * queued for sending (job_done in mock_stream.c) or its connection goes
 * away (mock_batch_forget from conn_close), so a client that disconnects
 * mid-stream, or while waiting, gives its slot back.
 *
 * A freed slot is not handed over by running the next job at once: that
 * job may finish at once too and free its slot in turn, recursing as deep
 * as the queue is long. The admitted conn goes to a ready list instead,
 * which the server thread runs after each batch of completions
 * (mock_batch_run_ready). Its slot is taken at admission, so a request
 * arriving in between queues behind it: the order stays first come, first
 * served.
 *
 * The lists link conns through conn.batch_prev/batch_next; a conn is on
 * at most one of them (job.batch says which).
 */
#include "mock_internal.h"

static void list_push(struct conn **head, struct conn **tail, struct conn *c)
{
	c->batch_next = NULL;
	c->batch_prev = *tail;
	if (*tail)
		(*tail)->batch_next = c;
	else
		*head = c;
	*tail = c;
}

static void list_unlink(struct conn **head, struct conn **tail, struct conn *c)
{
	if (c->batch_prev)
		c->batch_prev->batch_next = c->batch_next;
	else
		*head = c->batch_next;
	if (c->batch_next)
		c->batch_next->batch_prev = c->batch_prev;
	else
		*tail = c->batch_prev;
	c->batch_prev = c->batch_next = NULL;
}

static void publish(struct mock_server *s)
{
	atomic_store_explicit(&s->stat_generating, s->generating, memory_order_relaxed);
	atomic_store_explicit(&s->stat_waiting, s->waiting, memory_order_relaxed);
}

/* Hands free slots to the head of the queue. */
static void promote(struct mock_server *s)
{
	while (s->wait_head && s->generating < s->o.max_batch) {
		struct conn *c = s->wait_head;
		list_unlink(&s->wait_head, &s->wait_tail, c);
		s->waiting--;
		s->generating++;
		c->job.batch = BATCH_READY;
		list_push(&s->ready_head, &s->ready_tail, c);
	}
	publish(s);
}

bool mock_batch_admit(struct mock_server *s, struct conn *c)
{
	struct job *j = &c->job;
	if (s->o.max_batch == 0 || s->generating < s->o.max_batch) {
		s->generating++;
		j->batch = BATCH_GENERATING;
		publish(s);
		return true;
	}
	j->batch = BATCH_WAITING;
	list_push(&s->wait_head, &s->wait_tail, c);
	s->waiting++;
	publish(s);
	return false;
}

void mock_batch_release(struct mock_server *s, struct conn *c)
{
	struct job *j = &c->job;
	switch (j->batch) {
	case BATCH_WAITING:
		list_unlink(&s->wait_head, &s->wait_tail, c);
		s->waiting--;
		break;
	case BATCH_READY:
		list_unlink(&s->ready_head, &s->ready_tail, c);
		s->generating--;
		break;
	case BATCH_GENERATING:
		s->generating--;
		break;
	default:
		return;
	}
	j->batch = BATCH_NONE;
	promote(s);
}

void mock_batch_run_ready(struct mock_server *s)
{
	while (s->ready_head) {
		struct conn *c = s->ready_head;
		list_unlink(&s->ready_head, &s->ready_tail, c);
		c->job.batch = BATCH_GENERATING;
		mock_conn_resume(s, c);
	}
}

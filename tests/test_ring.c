/*
 * The ring layer on its own: the timer heap keeps deadline order through
 * any mix of set, re-set and cancel; timers fire from ring_run_once in
 * deadline order; the plain-flags fallback gives a working ring.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/clock.h"
#include "io/ring.h"
#include "io/conn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define NTIMERS 1000

struct fired_log {
	uint64_t last_deadline;
	int count;
	bool out_of_order;
};
static struct fired_log fired;

static void on_fire(struct ring_timer *t)
{
	if (t->deadline_ns < fired.last_deadline)
		fired.out_of_order = true;
	fired.last_deadline = t->deadline_ns;
	fired.count++;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void test_heap_fires_in_deadline_order_after_random_updates(void **state)
{
	(void)state;
	struct ring r;
	assert_int_equal(ring_init(&r, 64, 16, 4096, RING_DEFERRED), 0);
	static struct ring_timer timers[NTIMERS];
	uint64_t seed = 42;
	for (int i = 0; i < NTIMERS; i++)
		ring_timer_init(&timers[i], on_fire);
	/* Deadlines within the first millisecond of the monotonic clock are
	 * long past, so one turn fires everything still armed. */
	int armed = 0;
	for (int step = 0; step < 20000; step++) {
		struct ring_timer *t = &timers[xorshift(&seed) % NTIMERS];
		switch (xorshift(&seed) % 3) {
		case 0:
		case 1:
			if (!ring_timer_armed(t))
				armed++;
			ring_timer_set(&r, t, 1 + xorshift(&seed) % 1000000);
			break;
		default:
			if (ring_timer_armed(t))
				armed--;
			ring_timer_cancel(&r, t);
			break;
		}
	}
	assert_int_equal(r.heap_len, armed);
	memset(&fired, 0, sizeof(fired));
	assert_int_equal(ring_run_once(&r, 0), 0);
	assert_int_equal(fired.count, armed);
	assert_false(fired.out_of_order);
	assert_int_equal(r.heap_len, 0);
	for (int i = 0; i < NTIMERS; i++)
		assert_false(ring_timer_armed(&timers[i]));
	ring_exit(&r);
}

static void test_timer_wait_ends_the_enter_on_time(void **state)
{
	(void)state;
	struct ring r;
	assert_int_equal(ring_init(&r, 64, 16, 4096, RING_DEFERRED), 0);
	struct ring_timer t;
	ring_timer_init(&t, on_fire);
	memset(&fired, 0, sizeof(fired));
	uint64_t start = clock_now_ns();
	ring_timer_set(&r, &t, start + 20 * 1000000u);
	/* No SQE is pending: only the timer can end the wait. */
	while (fired.count == 0)
		assert_int_equal(ring_run_once(&r, UINT64_MAX), 0);
	uint64_t waited = clock_now_ns() - start;
	assert_true(waited >= 20 * 1000000u);
	assert_true(waited < 2000 * 1000000u);
	ring_exit(&r);
}

struct nop_op {
	struct ring_op op; /* first member: the op pointer is the nop_op */
	int result;
};

static void nop_done(struct ring_op *op, int res, unsigned flags)
{
	(void)flags;
	((struct nop_op *)op)->result = res + 1;
}

static void run_nops(bool plain)
{
	struct ring r;
	assert_int_equal(ring_init(&r, 8, 16, 4096, plain ? RING_PLAIN : RING_DEFERRED), 0);
	if (plain)
		assert_string_equal(r.mode, "plain");
	/* More SQEs than the SQ holds: ring_sqe submits to make room. */
	struct nop_op ops[100];
	for (int i = 0; i < 100; i++) {
		ops[i].op.complete = nop_done;
		ops[i].result = 0;
		io_uring_prep_nop(ring_sqe(&r, &ops[i].op));
	}
	for (int turns = 0; turns < 1000; turns++) {
		int done = 0;
		for (int i = 0; i < 100; i++)
			done += ops[i].result == 1;
		if (done == 100)
			break;
		assert_int_equal(ring_run_once(&r, 1000000), 0);
	}
	for (int i = 0; i < 100; i++)
		assert_int_equal(ops[i].result, 1);
	ring_exit(&r);
}

static void test_more_sqes_than_the_sq_all_complete(void **state)
{
	(void)state;
	run_nops(false);
}

static void test_plain_setup_works(void **state)
{
	(void)state;
	run_nops(true);
}

static void test_buffer_count_must_be_a_power_of_two(void **state)
{
	(void)state;
	struct ring r;
	assert_int_equal(ring_init(&r, 8, 12, 4096, RING_DEFERRED), -22 /* -EINVAL */);
}


/* A timer whose fire function sets it again for a moment already past
 * fires once per turn, not forever inside one (issue 9: a sub-nanosecond
 * idle timeout spun the loop). */
static struct ring *rearm_ring;
static int rearm_fired;
static void rearm_at_now(struct ring_timer *t)
{
	rearm_fired++;
	ring_timer_set(rearm_ring, t, rearm_ring->now_ns); /* zero length */
}

static void test_zero_length_timer_fires_once_per_turn(void **state)
{
	(void)state;
	struct ring r;
	assert_int_equal(ring_init(&r, 64, 16, 4096, RING_DEFERRED), 0);
	rearm_ring = &r;
	rearm_fired = 0;
	struct ring_timer t;
	ring_timer_init(&t, rearm_at_now);
	ring_timer_set(&r, &t, 0);
	for (int turn = 1; turn <= 50; turn++) {
		assert_int_equal(ring_run_once(&r, 1000000), 0);
		assert_true(rearm_fired <= turn);
	}
	assert_true(rearm_fired >= 49);
	ring_timer_cancel(&r, &t);
	ring_exit(&r);
}

/* Many more connections with data waiting than provided buffers: every
 * receive that finds none ends in ENOBUFS. The loop must still drain the
 * CQ, return buffers, deliver every byte and fire its timers (issue 9:
 * it livelocked at 8,000 connections on 1,024 buffers). */
#define STARVE_CONNS 256
#define STARVE_BYTES 65536
struct starve_conn {
	struct conn c;
	size_t got;
	bool connected, closed;
};
static size_t starve_total;
static int starve_connected, starve_closed;
static void sc_connected(struct conn *c, int err)
{
	assert_int_equal(err, 0);
	((struct starve_conn *)c)->connected = true;
	starve_connected++;
}
static void sc_sent(struct conn *c, int err) {}
static void sc_received(struct conn *c, char *data, size_t len)
{
	((struct starve_conn *)c)->got += len;
	starve_total += len;
}
static void sc_eof(struct conn *c, int err) {}
static void sc_closed(struct conn *c)
{
	((struct starve_conn *)c)->closed = true;
	starve_closed++;
}
static const struct conn_handler starve_handler = {
	.connected = sc_connected, .sent = sc_sent, .received = sc_received,
	.eof = sc_eof, .closed = sc_closed,
};
static int starve_timer_fired;
static void starve_tick(struct ring_timer *t) { starve_timer_fired++; }

static void test_receives_survive_running_out_of_buffers(void **state)
{
	(void)state;
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(lfd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	socklen_t sl = sizeof(sa);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	assert_int_equal(listen(lfd, STARVE_CONNS), 0);

	struct ring r;
	assert_int_equal(ring_init(&r, 64, 4, 4096, RING_DEFERRED), 0); /* 4 buffers for 256 conns */
	static struct starve_conn conns[STARVE_CONNS];
	starve_total = 0;
	starve_connected = starve_closed = 0;
	for (int i = 0; i < STARVE_CONNS; i++) {
		memset(&conns[i], 0, sizeof(conns[i]));
		conn_init(&conns[i].c, &r, &starve_handler);
		conn_connect(&conns[i].c, (struct sockaddr *)&sa, sizeof(sa));
	}
	uint64_t give_up = clock_now_ns() + 20ull * 1000000000u;
	while (starve_connected < STARVE_CONNS && clock_now_ns() < give_up)
		assert_int_equal(ring_run_once(&r, 10000000), 0);
	assert_int_equal(starve_connected, STARVE_CONNS);
	/* Every peer has its whole payload queued before the loop reads. */
	static char payload[STARVE_BYTES];
	memset(payload, 'x', sizeof(payload));
	int peers[STARVE_CONNS];
	for (int i = 0; i < STARVE_CONNS; i++) {
		peers[i] = accept(lfd, NULL, NULL);
		assert_true(peers[i] >= 0);
		int big = 1 << 20;
		setsockopt(peers[i], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		assert_int_equal(write(peers[i], payload, sizeof(payload)), (ssize_t)sizeof(payload));
	}
	struct ring_timer tick;
	ring_timer_init(&tick, starve_tick);
	starve_timer_fired = 0;
	ring_timer_set(&r, &tick, clock_now_ns() + 1000000);
	while (starve_total < (size_t)STARVE_CONNS * STARVE_BYTES && clock_now_ns() < give_up)
		assert_int_equal(ring_run_once(&r, 10000000), 0);
	assert_int_equal(starve_total, (size_t)STARVE_CONNS * STARVE_BYTES);
	for (int i = 0; i < STARVE_CONNS; i++)
		assert_int_equal(conns[i].got, STARVE_BYTES);
	while (starve_timer_fired == 0 && clock_now_ns() < give_up)
		assert_int_equal(ring_run_once(&r, 10000000), 0);
	assert_int_equal(starve_timer_fired, 1);
	for (int i = 0; i < STARVE_CONNS; i++) {
		conn_close(&conns[i].c);
		close(peers[i]);
	}
	while (starve_closed < STARVE_CONNS && clock_now_ns() < give_up)
		assert_int_equal(ring_run_once(&r, 10000000), 0);
	assert_int_equal(starve_closed, STARVE_CONNS);
	close(lfd);
	ring_exit(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heap_fires_in_deadline_order_after_random_updates),
		cmocka_unit_test(test_timer_wait_ends_the_enter_on_time),
		cmocka_unit_test(test_more_sqes_than_the_sq_all_complete),
		cmocka_unit_test(test_plain_setup_works),
		cmocka_unit_test(test_buffer_count_must_be_a_power_of_two),
		cmocka_unit_test(test_zero_length_timer_fires_once_per_turn),
		cmocka_unit_test(test_receives_survive_running_out_of_buffers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

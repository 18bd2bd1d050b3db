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

#include "clock.h"
#include "ring.h"

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
	assert_int_equal(ring_init(&r, 64, 16, 4096, false), 0);
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
	assert_int_equal(ring_init(&r, 64, 16, 4096, false), 0);
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
	assert_int_equal(ring_init(&r, 8, 16, 4096, plain), 0);
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
	assert_int_equal(ring_init(&r, 8, 12, 4096, false), -22 /* -EINVAL */);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heap_fires_in_deadline_order_after_random_updates),
		cmocka_unit_test(test_timer_wait_ends_the_enter_on_time),
		cmocka_unit_test(test_more_sqes_than_the_sq_all_complete),
		cmocka_unit_test(test_plain_setup_works),
		cmocka_unit_test(test_buffer_count_must_be_a_power_of_two),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

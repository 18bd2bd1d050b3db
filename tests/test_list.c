/* util/list.h: both kinds of list, at the ends and in the middle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "util/list.h"

struct item {
	int v;
	struct item *up, *down; /* names of the owner's choosing */
};
struct owner {
	struct item *first, *last;
};

LIST_FUNCTIONS(both, struct owner, struct item, first, last, up, down)
HEAD_LIST_FUNCTIONS(front, struct owner, struct item, first, up, down)

/* The values head to tail, checking the back links on the way. */
static int walk(const struct owner *o, int *out, int max)
{
	int n = 0;
	const struct item *prev = NULL;
	for (const struct item *i = o->first; i && n < max; i = i->down) {
		assert_ptr_equal(i->up, prev);
		out[n++] = i->v;
		prev = i;
	}
	return n;
}

static void ends_and_middle(void **state)
{
	(void)state;
	struct item it[4] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}};
	struct owner o = {0};
	both_push_back(&o, &it[1]);
	both_push_back(&o, &it[2]);
	both_push_front(&o, &it[0]);
	both_push_back(&o, &it[3]);
	int v[8];
	assert_int_equal(walk(&o, v, 8), 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(v[i], i);
	assert_ptr_equal(o.last, &it[3]);
	both_unlink(&o, &it[2]); /* middle */
	assert_null(it[2].up);
	assert_null(it[2].down);
	both_unlink(&o, &it[3]); /* tail */
	assert_ptr_equal(o.last, &it[1]);
	both_unlink(&o, &it[0]); /* head */
	assert_ptr_equal(o.first, &it[1]);
	both_unlink(&o, &it[1]); /* the last one */
	assert_null(o.first);
	assert_null(o.last);
}

static void a_list_without_a_tail(void **state)
{
	(void)state;
	struct item it[3] = {{.v = 0}, {.v = 1}, {.v = 2}};
	struct owner o = {0};
	for (int i = 0; i < 3; i++)
		front_push_front(&o, &it[i]);
	int v[8];
	assert_int_equal(walk(&o, v, 8), 3);
	assert_int_equal(v[0], 2);
	assert_int_equal(v[2], 0);
	front_unlink(&o, &it[1]);
	assert_int_equal(walk(&o, v, 8), 2);
	front_unlink(&o, &it[2]);
	assert_ptr_equal(o.first, &it[0]);
	front_unlink(&o, &it[0]);
	assert_null(o.first);
	assert_null(o.last); /* never touched */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ends_and_middle),
		cmocka_unit_test(a_list_without_a_tail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

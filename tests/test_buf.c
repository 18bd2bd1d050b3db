/* util/buf: growth, the sticky error, clear and free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "llmring.h"
#include "util/buf.h"

static void appends_and_formats(void **state)
{
	(void)state;
	struct buf b = {0};
	assert_int_equal(buf_puts(&b, "abc"), 0);
	assert_int_equal(buf_printf(&b, "-%d-", 42), 0);
	assert_int_equal(buf_append(&b, "xyz", 2), 0);
	assert_int_equal(b.len, 9);
	assert_memory_equal(b.data, "abc-42-xy", 9);
	assert_int_equal(buf_error(&b), 0);
	buf_free(&b);
	assert_null(b.data);
}

static void an_error_sticks_until_clear(void **state)
{
	(void)state;
	struct buf b = {0};
	assert_int_equal(buf_puts(&b, "keep"), 0);
	/* an impossible size fails without touching the bytes */
	assert_int_equal(buf_reserve(&b, SIZE_MAX), LR_ENOMEM);
	assert_int_equal(buf_puts(&b, "more"), LR_ENOMEM);
	assert_int_equal(buf_printf(&b, "%d", 1), LR_ENOMEM);
	assert_int_equal(b.len, 4);
	assert_int_equal(buf_error(&b), LR_ENOMEM);
	buf_clear(&b);
	assert_int_equal(buf_error(&b), 0);
	assert_int_equal(buf_puts(&b, "again"), 0);
	assert_int_equal(b.len, 5);
	buf_free(&b);
}

static void an_overlong_format_is_an_error(void **state)
{
	(void)state;
	struct buf b = {0};
	char big[400];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = 0;
	assert_int_equal(buf_printf(&b, "%s", big), LR_EINVAL);
	assert_int_equal(buf_error(&b), LR_EINVAL);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	assert_int_equal(buf_error(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(appends_and_formats),
		cmocka_unit_test(an_error_sticks_until_clear),
		cmocka_unit_test(an_overlong_format_is_an_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

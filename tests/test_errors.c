/* Every LR_E* code has its name and message, from the one list
 * (LR_ERRNO_MAP); nothing out of range gives NULL. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "llmring.h"

struct code {
	int value;
	const char *name, *text;
};

static const struct code codes[] = {
#define CODE(code, value, name, text) {LR_##code, name, text},
	LR_ERRNO_MAP(CODE)
#undef CODE
};
enum { NCODES = sizeof(codes) / sizeof(codes[0]) };

static void every_code_has_its_name_and_message(void **state)
{
	(void)state;
	for (int i = 0; i < NCODES; i++) {
		/* Contiguous from -1: the table in errors.c is indexed by -code. */
		assert_int_equal(codes[i].value, -(i + 1));
		assert_non_null(lr_strerror(codes[i].value));
		assert_non_null(lr_error_name(codes[i].value));
		assert_string_equal(lr_strerror(codes[i].value), codes[i].text);
		assert_string_equal(lr_error_name(codes[i].value), codes[i].name);
		for (int j = 0; j < i; j++)
			assert_true(strcmp(codes[i].name, codes[j].name) != 0);
	}
	assert_string_equal(lr_error_name(LR_OK), "ok");
	assert_string_equal(lr_strerror(LR_OK), "success");
}

static void codes_out_of_range_are_unknown_never_null(void **state)
{
	(void)state;
	const int outside[] = {1, 2, -(NCODES + 1), -1000, INT_MIN, INT_MAX};
	for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
		assert_string_equal(lr_error_name(outside[i]), "unknown_error");
		assert_string_equal(lr_strerror(outside[i]), "unknown error");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_code_has_its_name_and_message),
		cmocka_unit_test(codes_out_of_range_are_unknown_never_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Every LR_E* code has its name and message, from the one list
 * (LR_ERRNO_MAP); nothing out of range gives NULL. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "llmring.h"
#include "util/errors.h"

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

static void error_set_formats_and_returns_its_code(void **state)
{
	(void)state;
	struct error_info e = {0};
	assert_int_equal(error_set(&e, LR_ETIMEOUT, 4, "after %d s", 3), LR_ETIMEOUT);
	assert_int_equal(e.code, LR_ETIMEOUT);
	assert_int_equal(e.sys_errno, 4);
	assert_string_equal(e.message, "after 3 s");
	assert_int_equal(error_set(NULL, LR_EINVAL, 0, "nobody asked"), LR_EINVAL);
	struct error_info copy;
	assert_int_equal(error_copy(&copy, &e), LR_ETIMEOUT);
	assert_memory_equal(&copy, &e, sizeof(e));
	error_clear(&copy);
	assert_int_equal(copy.code, 0);
	assert_int_equal(copy.sys_errno, 0);
	assert_string_equal(copy.message, "");
}

/* lr_engine_create's text was formatted straight into the public 256
 * bytes; filled from the larger internal message it must cut at the same
 * byte, and a message that fits must pass whole. */
static void export_cuts_where_the_public_size_did(void **state)
{
	(void)state;
	char long_text[ERROR_MESSAGE_MAX];
	for (size_t i = 0; i < sizeof(long_text) - 1; i++)
		long_text[i] = (char)('a' + i % 26);
	long_text[sizeof(long_text) - 1] = '\0';
	struct error_info e = {0};
	error_set(&e, LR_EINVAL, 22, "prices file %s", long_text);
	lr_error_info out;
	memset(&out, 0x55, sizeof(out));
	error_export(&out, &e);
	char direct[sizeof(out.message)]; /* what snprintf into 256 bytes kept */
	memcpy(direct, e.message, sizeof(direct) - 1);
	direct[sizeof(direct) - 1] = '\0';
	assert_int_equal(out.code, LR_EINVAL);
	assert_int_equal(out.sys_errno, 22);
	assert_int_equal(strlen(out.message), sizeof(out.message) - 1);
	assert_string_equal(out.message, direct);
	error_set(&e, LR_ENOMEM, 0, "short");
	error_export(&out, &e);
	assert_string_equal(out.message, "short");
	error_export(NULL, &e); /* nobody asked: nothing to do */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_code_has_its_name_and_message),
		cmocka_unit_test(codes_out_of_range_are_unknown_never_null),
		cmocka_unit_test(error_set_formats_and_returns_its_code),
		cmocka_unit_test(export_cuts_where_the_public_size_did),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

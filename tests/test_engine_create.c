/*
 * lr_engine_create explains a failure: which variable, which prices file
 * and where, which base URL, which setup step and its errno. And the
 * explanation never carries the key.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmring.h"

static void success_clears_the_error(void **state)
{
	(void)state;
	lr_error_info err;
	memset(&err, 0x5a, sizeof(err));
	lr_engine *e = NULL;
	lr_config cfg = lr_config_default();
	cfg.base_url = "http://127.0.0.1:9";
	assert_int_equal(lr_engine_create(&cfg, &e, &err), 0);
	assert_non_null(e);
	assert_int_equal(err.code, 0);
	assert_int_equal(err.sys_errno, 0);
	assert_string_equal(err.message, "");
	lr_engine_destroy(e);
}

static void a_null_out_is_explained(void **state)
{
	(void)state;
	lr_error_info err;
	assert_int_equal(lr_engine_create(NULL, NULL, &err), LR_EINVAL);
	assert_int_equal(err.code, LR_EINVAL);
	assert_non_null(strstr(err.message, "NULL"));
	/* and without a place for the explanation */
	assert_int_equal(lr_engine_create(NULL, NULL, NULL), LR_EINVAL);
}

static void an_unreadable_buffered_limit_names_the_variable(void **state)
{
	(void)state;
	setenv("LLMRING_MAX_BUFFERED_BYTES", "12MB", 1);
	lr_error_info err;
	lr_engine *e = NULL;
	lr_config cfg = lr_config_default();
	cfg.base_url = "http://127.0.0.1:9";
	int rc = lr_engine_create(&cfg, &e, &err);
	unsetenv("LLMRING_MAX_BUFFERED_BYTES");
	assert_int_equal(rc, LR_EINVAL);
	assert_null(e);
	assert_int_equal(err.code, LR_EINVAL);
	assert_non_null(strstr(err.message, "LLMRING_MAX_BUFFERED_BYTES=12MB"));
}

static void a_bad_prices_file_is_named_with_what_is_wrong(void **state)
{
	(void)state;
	char path[] = "/tmp/llmring-prices-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "{\"models\": [1, 2";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	lr_error_info err;
	lr_engine *e = NULL;
	lr_config cfg = lr_config_default();
	cfg.base_url = "http://127.0.0.1:9";
	cfg.prices_file = path;
	assert_int_equal(lr_engine_create(&cfg, &e, &err), LR_EINVAL);
	assert_null(e);
	assert_non_null(strstr(err.message, path));
	unlink(path);
	/* a file that is not there says so */
	assert_int_equal(lr_engine_create(&cfg, &e, &err), LR_EINVAL);
	assert_non_null(strstr(err.message, path));
	assert_true(strlen(err.message) > strlen(path) + 4);
}

static void a_bad_base_url_is_explained_without_the_key(void **state)
{
	(void)state;
	lr_error_info err;
	lr_engine *e = NULL;
	lr_config cfg = lr_config_default();
	cfg.base_url = "ftp://example.com/v1";
	cfg.api_key = "sk-secret-key-never-shown";
	assert_int_equal(lr_engine_create(&cfg, &e, &err), LR_EINVAL);
	assert_null(e);
	assert_non_null(strstr(err.message, "base URL"));
	assert_null(strstr(err.message, "sk-secret"));
	cfg.base_url = "http://user:sk-secret-in-url@example.com/v1";
	assert_int_equal(lr_engine_create(&cfg, &e, &err), LR_EINVAL);
	assert_null(strstr(err.message, "sk-secret"));
}

static void a_ring_the_kernel_refuses_names_the_step_and_errno(void **state)
{
	(void)state;
	lr_error_info err;
	lr_engine *e = NULL;
	lr_config cfg = lr_config_default();
	cfg.base_url = "http://127.0.0.1:9";
	cfg.ring_entries = 1u << 30; /* beyond any kernel's maximum: EINVAL */
	for (int caller_driven = 0; caller_driven < 2; caller_driven++) {
		cfg.drive_from_caller = caller_driven;
		assert_int_equal(lr_engine_create(&cfg, &e, &err), LR_ESYSTEM);
		assert_null(e);
		assert_int_equal(err.code, LR_ESYSTEM);
		assert_int_equal(err.sys_errno, EINVAL);
		assert_non_null(strstr(err.message, "io_uring setup failed"));
		assert_non_null(strstr(err.message, strerror(EINVAL)));
	}
}

static void out_of_descriptors_names_the_limit(void **state)
{
	(void)state;
	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	/* Use up every descriptor, then ask. */
	int fds[4096], n = 0;
	struct rlimit low = {.rlim_cur = 64, .rlim_max = old.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (n < 4096 && (fds[n] = dup(0)) >= 0)
		n++;
	lr_error_info err;
	lr_engine *e = NULL;
	lr_config cfg = lr_config_default();
	cfg.base_url = "http://127.0.0.1:9";
	int rc = lr_engine_create(&cfg, &e, &err);
	while (n > 0)
		close(fds[--n]);
	setrlimit(RLIMIT_NOFILE, &old);
	assert_int_equal(rc, LR_ESYSTEM);
	assert_int_equal(err.sys_errno, EMFILE);
	assert_non_null(strstr(err.message, "ulimit -n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(success_clears_the_error),
		cmocka_unit_test(a_null_out_is_explained),
		cmocka_unit_test(an_unreadable_buffered_limit_names_the_variable),
		cmocka_unit_test(a_bad_prices_file_is_named_with_what_is_wrong),
		cmocka_unit_test(a_bad_base_url_is_explained_without_the_key),
		cmocka_unit_test(a_ring_the_kernel_refuses_names_the_step_and_errno),
		cmocka_unit_test(out_of_descriptors_names_the_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

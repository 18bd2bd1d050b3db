/*
 * The custom_id set of `llmring batch` (tools/cli/batch_idset.c): every
 * id found again with its state through growth, none found that was not
 * added, collisions forced (hash_bits) to prove a fingerprint match is
 * always checked against the id's bytes, ids longer than the spool's
 * window, and the memory a key costs at the sizes a batch reaches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "batch_idset.h"

static size_t make_id(char *out, size_t cap, const char *prefix, size_t i)
{
	int n = snprintf(out, cap, "%s%zu", prefix, i);
	assert_true(n > 0 && (size_t)n < cap);
	return (size_t)n;
}

static enum id_state state_for(size_t i)
{
	return (enum id_state)(1 + i % 3);
}

/* Adds prefix0 .. prefix(n-1), each absent before its add, then checks
 * each is found with its number and state, and that other ids are not. */
static void add_and_check(struct id_set *set, const char *prefix, size_t n)
{
	char id[64];
	size_t first = set->count;
	for (size_t i = 0; i < n; i++) {
		size_t len = make_id(id, sizeof id, prefix, i);
		assert_int_equal(id_set_find(set, id, len), ID_ABSENT);
		assert_int_equal(id_set_add(set, id, len, state_for(i)), 0);
	}
	assert_int_equal(set->count, first + n);
	for (size_t i = 0; i < n; i++) {
		size_t len = make_id(id, sizeof id, prefix, i);
		long no = id_set_find(set, id, len);
		assert_int_equal(no, (long)(first + i));
		assert_int_equal(id_set_state(set, no), state_for(i));
		/* An extension of an id is another id. */
		id[len] = 'x';
		assert_int_equal(id_set_find(set, id, len + 1), ID_ABSENT);
	}
	for (size_t i = 0; i < n; i += 7) {
		size_t len = make_id(id, sizeof id, "other-", i);
		assert_int_equal(id_set_find(set, id, len), ID_ABSENT);
	}
}

static void finds_every_id_through_growth(void **state)
{
	(void)state;
	struct id_set set = {0};
	add_and_check(&set, "r", 200000);
	assert_true(set.cap > 200000); /* grew many times from 4096 */
	/* Fingerprints (24 bits) rarely match a different id. */
	assert_true(set.rereads < 400000 + 200000 / 100);
	id_set_free(&set);
}

/* Looked up in another order than added (a resume whose output was
 * shuffled): every read of the spool lands elsewhere. */
static void finds_ids_in_shuffled_order(void **state)
{
	(void)state;
	struct id_set set = {.hash_bits = 16}; /* collisions: every find reads the spool */
	char id[64];
	size_t n = 100000;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(id_set_add(&set, id, make_id(id, sizeof id, "shuffled-", i), ID_DONE_OK), 0);
	uint64_t x = 88172645463325252u;
	for (size_t k = 0; k < n; k++) {
		x ^= x << 13; /* xorshift64: a fixed pseudo-random order */
		x ^= x >> 7;
		x ^= x << 17;
		size_t i = (size_t)(x % n);
		assert_int_equal(id_set_find(&set, id, make_id(id, sizeof id, "shuffled-", i)), (long)i);
		assert_int_equal(id_set_find(&set, id, make_id(id, sizeof id, "unshuffled-", i)), ID_ABSENT);
	}
	id_set_free(&set);
}

static void states_change_and_stay(void **state)
{
	(void)state;
	struct id_set set = {0};
	char id[64];
	add_and_check(&set, "s", 5000);
	for (size_t i = 0; i < 5000; i += 2) {
		size_t len = make_id(id, sizeof id, "s", i);
		id_set_set_state(&set, id_set_find(&set, id, len), ID_SEEN);
	}
	add_and_check(&set, "t", 20000); /* growth keeps the states */
	for (size_t i = 0; i < 5000; i++) {
		size_t len = make_id(id, sizeof id, "s", i);
		long no = id_set_find(&set, id, len);
		assert_true(no >= 0);
		assert_int_equal(id_set_state(&set, no), i % 2 ? state_for(i) : ID_SEEN);
	}
	id_set_free(&set);
}

/* Every id hashes to one of 2^bits values, home and fingerprint alike:
 * only the bytes tell them apart. */
static void forced_collisions_never_match(void **state)
{
	(void)state;
	static const unsigned bits[] = {1, 4, 10};
	static const size_t counts[] = {600, 3000, 30000};
	for (size_t k = 0; k < 3; k++) {
		struct id_set set = {.hash_bits = bits[k]};
		add_and_check(&set, "c", counts[k]);
		assert_true(set.rereads > counts[k]); /* the collisions were compared */
		id_set_free(&set);
	}
}

/* Ids hashed together that differ only in length or in their last byte,
 * with the empty id and NUL bytes among them. */
static void near_ids_are_distinct(void **state)
{
	(void)state;
	struct id_set set = {.hash_bits = 1};
	const char ids[][4] = {"", "a", "aa", "ab", "a\0b", "a\0c", "\0", "\0\0"};
	const size_t lens[] = {0, 1, 2, 2, 3, 3, 1, 2};
	for (size_t i = 0; i < 8; i++) {
		assert_int_equal(id_set_find(&set, ids[i], lens[i]), ID_ABSENT);
		assert_int_equal(id_set_add(&set, ids[i], lens[i], ID_SEEN), 0);
	}
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(id_set_find(&set, ids[i], lens[i]), (long)i);
	id_set_free(&set);
}

/* Ids longer than the spool's buffers are written and compared in pieces,
 * also when growing reads them back. */
static void long_ids_through_growth(void **state)
{
	(void)state;
	size_t big = 3 * ID_SPOOL_BUF + 17;
	char *a = malloc(big), *b = malloc(big); /* owner: here */
	assert_non_null(a);
	assert_non_null(b);
	memset(a, 'x', big);
	memcpy(b, a, big);
	b[big - 1] = 'y'; /* differs in the last piece only */
	struct id_set set = {.hash_bits = 1}; /* a, b and the rest collide */
	assert_int_equal(id_set_add(&set, a, big, ID_DONE_ERR), 0);
	assert_int_equal(id_set_find(&set, b, big), ID_ABSENT);
	assert_int_equal(id_set_find(&set, a, big - 1), ID_ABSENT);
	add_and_check(&set, "short-", 200);
	assert_int_equal(id_set_find(&set, a, big), 0);
	assert_int_equal(id_set_find(&set, b, big), ID_ABSENT);
	id_set_free(&set);
	set.hash_bits = 0;
	assert_int_equal(id_set_add(&set, a, big, ID_DONE_ERR), 0);
	add_and_check(&set, "after-a-long-one-", 8000);
	assert_int_equal(id_set_add(&set, b, big, ID_SEEN), 0);
	add_and_check(&set, "more-", 8000);
	assert_int_equal(id_set_find(&set, a, big), 0);
	assert_int_equal(id_set_state(&set, 0), ID_DONE_ERR);
	assert_int_equal(id_set_find(&set, b, big), 8001);
	id_set_free(&set);
	free(a);
	free(b);
}

/* The spool goes to spool_dir, else $TMPDIR or /tmp; free keeps the
 * configuration and the set can be used again. */
static void spool_dir_falls_back_and_free_reuses(void **state)
{
	(void)state;
	struct id_set set = {.spool_dir = "/nonexistent/llmring-test", .hash_bits = 20};
	add_and_check(&set, "d", 30000); /* more than the buffer: the file is used */
	assert_true(set.spool.is_open);
	id_set_free(&set);
	assert_string_equal(set.spool_dir, "/nonexistent/llmring-test");
	assert_int_equal(set.hash_bits, 20);
	char id[] = "d7";
	assert_int_equal(id_set_find(&set, id, 2), ID_ABSENT);
	add_and_check(&set, "d", 100);
	id_set_free(&set);
}

/* At most 16 bytes a key at every size a batch reaches, including right
 * after the table grew (measured at each growth and in between). */
static void memory_per_key_stays_under_16_bytes(void **state)
{
	(void)state;
	struct id_set set = {0};
	char id[64];
	double worst = 0;
	size_t worst_at = 0, cap = 0;
	for (size_t i = 0; i < 3000000; i++) {
		size_t len = make_id(id, sizeof id, "req-", i);
		assert_int_equal(id_set_add(&set, id, len, ID_SEEN), 0);
		if (set.count < 100000 || (set.cap == cap && i % 4096))
			continue;
		cap = set.cap;
		/* The two 64 KiB windows are the same at any size. */
		double per = (double)(id_set_memory(&set) - 2 * ID_SPOOL_BUF) / (double)set.count;
		if (per > worst) {
			worst = per;
			worst_at = set.count;
		}
	}
	print_message("     worst %.2f bytes a key (at %zu keys), 3,000,000 keys: %.2f\n", worst,
	              worst_at, (double)id_set_memory(&set) / (double)set.count);
	assert_true(worst <= 16.0);
	id_set_free(&set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(finds_every_id_through_growth),
		cmocka_unit_test(finds_ids_in_shuffled_order),
		cmocka_unit_test(states_change_and_stay),
		cmocka_unit_test(forced_collisions_never_match),
		cmocka_unit_test(near_ids_are_distinct),
		cmocka_unit_test(long_ids_through_growth),
		cmocka_unit_test(spool_dir_falls_back_and_free_reuses),
		cmocka_unit_test(memory_per_key_stays_under_16_bytes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

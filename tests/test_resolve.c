/*
 * The resolver: inline answers (numeric hosts, localhost), lookups on the
 * helper threads, sharing of one lookup between waiters, the cache and its
 * lifetimes, cancellation, and shutdown with lookups in flight.
 *
 * Most tests swap getaddrinfo for a hook that counts calls, can hold the
 * helpers inside the call (a "gate"), and answers "*.test" names with
 * 192.0.2.1 and "bad*" names with EAI_NONAME, so they need no network and
 * no /etc/hosts entry. Two tests use the real getaddrinfo.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"
#include "llmring.h"
#include "io/resolve.h"
#include "util/test_hooks.h"

/* The lookup the resolver's threads use while set (NULL: getaddrinfo);
 * set only while no resolver exists. */
static int (*resolve_getaddrinfo_hook)(const char *host, const char *service, const struct addrinfo *hints,
                                       struct addrinfo **res);

/* Replaces the library's weak resolve_getaddrinfo (util/test_hooks.h). */
int resolve_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                        struct addrinfo **res)
{
	return resolve_getaddrinfo_hook ? resolve_getaddrinfo_hook(host, service, hints, res)
	                                : getaddrinfo(host, service, hints, res);
}

#define MS 1000000ull
#define WAIT_LIMIT_MS 20000   /* a real lookup of a bad name may be slow */

/* ---- getaddrinfo hook ---- */

static atomic_uint hook_calls;
static atomic_bool hook_gate_closed;   /* helpers wait in the hook while set */
static atomic_uint hook_inside;        /* helpers in the hook right now */

static int fake_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
			    struct addrinfo **res)
{
	atomic_fetch_add(&hook_calls, 1);
	atomic_fetch_add(&hook_inside, 1);
	while (atomic_load(&hook_gate_closed))
		usleep(1000);
	atomic_fetch_sub(&hook_inside, 1);

	if (strncmp(host, "bad", 3) == 0)
		return EAI_NONAME;
	size_t len = strlen(host);
	if (len > 5 && strcmp(host + len - 5, ".test") == 0) {
		/* A real list, so the resolver may freeaddrinfo it. */
		struct addrinfo numeric = *hints;
		numeric.ai_flags |= AI_NUMERICHOST;
		return getaddrinfo("192.0.2.1", service, &numeric, res);
	}
	return getaddrinfo(host, service, hints, res);
}

/* ---- fixture ---- */

struct fx {
	int efd;              /* owned: closed in teardown */
	struct resolver *r;   /* owned: freed in teardown unless a test did */
};

/* One requester's view: how many answers came, in which order, the last one. */
struct answer {
	int calls;
	int seq;              /* value of answer_seq when answered */
	struct resolve_result res;
};

static int answer_seq;

static void record_answer(void *ctx, const struct resolve_result *res)
{
	struct answer *a = ctx;
	a->calls++;
	a->seq = ++answer_seq;
	a->res = *res;
}

static void fx_resolver(struct fx *fx, unsigned threads, uint64_t ttl_ns)
{
	resolver_free(fx->r);
	fx->r = NULL;
	assert_int_equal(resolver_new(fx->efd, threads, ttl_ns, &fx->r), 0);
}

static int fx_setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	if (!fx)
		return -1;
	fx->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fx->efd < 0) {
		free(fx);
		return -1;
	}
	atomic_store(&hook_calls, 0);
	atomic_store(&hook_gate_closed, false);
	atomic_store(&hook_inside, 0);
	answer_seq = 0;
	resolve_getaddrinfo_hook = fake_getaddrinfo;
	if (resolver_new(fx->efd, 2, 60000 * MS, &fx->r) != 0) {
		close(fx->efd);
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *fx = *state;
	atomic_store(&hook_gate_closed, false);   /* or resolver_free would wait */
	resolver_free(fx->r);
	resolve_getaddrinfo_hook = NULL;
	close(fx->efd);
	free(fx);
	return 0;
}

/* The loop: waits on the eventfd and drains, with drain's clock shifted by
 * clock_shift_ns, until *counter reaches want. False on timeout. */
static bool loop_until_shifted(struct fx *fx, const int *counter, int want, int64_t clock_shift_ns,
			       int limit_ms)
{
	uint64_t deadline = clock_now_ns() + (uint64_t)limit_ms * MS;
	while (*counter < want) {
		uint64_t now = clock_now_ns();
		if (now >= deadline)
			return false;
		struct pollfd pfd = {.fd = fx->efd, .events = POLLIN};
		int wait_ms = (int)((deadline - now) / MS) + 1;
		if (poll(&pfd, 1, wait_ms > 50 ? 50 : wait_ms) > 0) {
			uint64_t value;
			assert_int_equal(read(fx->efd, &value, sizeof value), (ssize_t)sizeof value);
		}
		resolver_drain(fx->r, (uint64_t)((int64_t)clock_now_ns() + clock_shift_ns));
	}
	return true;
}

static bool loop_until(struct fx *fx, const int *counter, int want)
{
	return loop_until_shifted(fx, counter, want, 0, WAIT_LIMIT_MS);
}

/* Keeps the loop running for ms, for tests that expect nothing to happen. */
static void loop_for(struct fx *fx, int ms)
{
	int never = 0;
	assert_false(loop_until_shifted(fx, &never, 1, 0, ms));
}

static uint16_t port_of(const struct resolve_result *res, unsigned i)
{
	const struct sockaddr_storage *ss = &res->addr[i];
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static void assert_ipv4(const struct resolve_result *res, const char *text, uint16_t port)
{
	assert_int_equal(res->error, 0);
	assert_int_equal(res->count, 1);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&res->addr[0];
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(res->addr_len[0], sizeof *sin);
	char got[INET_ADDRSTRLEN];
	assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, got, sizeof got));
	assert_string_equal(got, text);
	assert_int_equal(ntohs(sin->sin_port), port);
}

/* ---- inline answers ---- */

static void numeric_ipv4_answers_inline_with_port(void **state)
{
	struct fx *fx = *state;
	struct answer a = {0};
	assert_int_equal(resolver_lookup(fx->r, "192.0.2.7", 8080, record_answer, &a), 1);
	assert_int_equal(a.calls, 1);
	assert_ipv4(&a.res, "192.0.2.7", 8080);
	assert_int_equal(atomic_load(&hook_calls), 0);
}

static void numeric_ipv6_answers_inline_with_port(void **state)
{
	struct fx *fx = *state;
	struct answer a = {0};
	assert_int_equal(resolver_lookup(fx->r, "2001:DB8::1", 443, record_answer, &a), 1);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.res.error, 0);
	assert_int_equal(a.res.count, 1);
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.res.addr[0];
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(a.res.addr_len[0], sizeof *sin6);
	assert_int_equal(ntohs(sin6->sin6_port), 443);
	char got[INET6_ADDRSTRLEN];
	assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, got, sizeof got));
	assert_string_equal(got, "2001:db8::1");
	assert_int_equal(atomic_load(&hook_calls), 0);
}

static void localhost_answers_inline_any_case(void **state)
{
	struct fx *fx = *state;
	const char *names[] = {"localhost", "LocalHost", "localhost.", "LOCALHOST."};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		struct answer a = {0};
		assert_int_equal(resolver_lookup(fx->r, names[i], 11434, record_answer, &a), 1);
		assert_int_equal(a.calls, 1);
		assert_ipv4(&a.res, "127.0.0.1", 11434);
	}
	assert_int_equal(atomic_load(&hook_calls), 0);
}

static void empty_or_overlong_host_fails_inline(void **state)
{
	struct fx *fx = *state;
	struct answer a = {0};
	assert_int_equal(resolver_lookup(fx->r, "", 80, record_answer, &a), 1);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.res.error, LR_ECONNECT);
	assert_non_null(strstr(a.res.message, "empty"));

	char longname[300];
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	assert_int_equal(resolver_lookup(fx->r, longname, 80, record_answer, &a), 1);
	assert_int_equal(a.calls, 2);
	assert_int_equal(a.res.error, LR_ECONNECT);
	assert_int_equal(atomic_load(&hook_calls), 0);
}

/* ---- real getaddrinfo ---- */

/* The machine's own name resolves through /etc/hosts in containers; skip
 * where getaddrinfo itself cannot resolve it. */
static void own_hostname_resolves_on_a_helper_thread(void **state)
{
	struct fx *fx = *state;
	resolve_getaddrinfo_hook = NULL;
	fx_resolver(fx, 2, 60000 * MS);

	char name[256] = {0};
	if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0')
		skip();
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *expect = NULL;
	if (getaddrinfo(name, NULL, &hints, &expect) != 0)
		skip();

	struct answer a = {0};
	int rc = resolver_lookup(fx->r, name, 9, record_answer, &a);
	if (rc == 0) {   /* 1 only if the name is numeric */
		assert_int_equal(a.calls, 0);
		assert_true(loop_until(fx, &a.calls, 1));
	}
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.res.error, 0);
	assert_true(a.res.count >= 1);
	assert_int_equal(a.res.addr[0].ss_family, expect->ai_family);
	assert_int_equal(port_of(&a.res, 0), 9);
	freeaddrinfo(expect);
}

/* .invalid is reserved (RFC 6761): it never resolves, network or not. */
static void unresolvable_name_fails_with_connect_error(void **state)
{
	struct fx *fx = *state;
	resolve_getaddrinfo_hook = NULL;
	fx_resolver(fx, 2, 60000 * MS);

	struct answer a = {0};
	assert_int_equal(resolver_lookup(fx->r, "nonexistent.invalid", 443, record_answer, &a), 0);
	assert_true(loop_until(fx, &a.calls, 1));
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.res.error, LR_ECONNECT);
	assert_int_equal(a.res.count, 0);
	assert_non_null(strstr(a.res.message, "cannot resolve host 'nonexistent.invalid': "));
}

/* ---- lookups through the hook ---- */

static void failure_message_names_host_and_reason(void **state)
{
	struct fx *fx = *state;
	struct answer a = {0};
	assert_int_equal(resolver_lookup(fx->r, "bad.example", 443, record_answer, &a), 0);
	assert_true(loop_until(fx, &a.calls, 1));
	assert_int_equal(a.res.error, LR_ECONNECT);
	char expect[256];
	snprintf(expect, sizeof expect, "cannot resolve host 'bad.example': %s", gai_strerror(EAI_NONAME));
	assert_string_equal(a.res.message, expect);
}

static void waiters_on_one_pending_name_share_one_getaddrinfo(void **state)
{
	struct fx *fx = *state;
	struct answer first = {0}, second = {0};
	atomic_store(&hook_gate_closed, true);
	assert_int_equal(resolver_lookup(fx->r, "shared.test", 1111, record_answer, &first), 0);
	assert_int_equal(resolver_lookup(fx->r, "SHARED.test", 2222, record_answer, &second), 0);
	atomic_store(&hook_gate_closed, false);

	assert_true(loop_until(fx, &second.calls, 1));
	assert_int_equal(first.calls, 1);
	assert_int_equal(atomic_load(&hook_calls), 1);
	/* Each waiter gets its own port, and the first asker is answered first. */
	assert_ipv4(&first.res, "192.0.2.1", 1111);
	assert_ipv4(&second.res, "192.0.2.1", 2222);
	assert_true(first.seq < second.seq);
}

static void cached_answer_comes_inline(void **state)
{
	struct fx *fx = *state;
	struct answer a = {0}, b = {0};
	assert_int_equal(resolver_lookup(fx->r, "cached.test", 80, record_answer, &a), 0);
	assert_true(loop_until(fx, &a.calls, 1));

	assert_int_equal(resolver_lookup(fx->r, "Cached.Test", 8443, record_answer, &b), 1);
	assert_int_equal(b.calls, 1);
	assert_ipv4(&b.res, "192.0.2.1", 8443);
	assert_int_equal(atomic_load(&hook_calls), 1);
}

static void answer_is_looked_up_again_after_ttl(void **state)
{
	struct fx *fx = *state;
	fx_resolver(fx, 1, 50 * MS);
	struct answer a = {0};
	assert_int_equal(resolver_lookup(fx->r, "short.test", 80, record_answer, &a), 0);
	assert_true(loop_until(fx, &a.calls, 1));
	assert_int_equal(resolver_lookup(fx->r, "short.test", 80, record_answer, &a), 1);
	assert_int_equal(atomic_load(&hook_calls), 1);

	usleep(80 * 1000);
	assert_int_equal(resolver_lookup(fx->r, "short.test", 80, record_answer, &a), 0);
	assert_true(loop_until(fx, &a.calls, 3));
	assert_int_equal(atomic_load(&hook_calls), 2);
	assert_ipv4(&a.res, "192.0.2.1", 80);
}

/* With a 60 s lifetime a failure is still kept only 5 s. Drain's clock is
 * set 4.8 s back, so the 5 s end in 200 ms; an answer stored the same way
 * stays fresh. */
static void failure_is_cached_at_most_five_seconds(void **state)
{
	struct fx *fx = *state;
	const int64_t back = -4800 * (int64_t)MS;
	struct answer bad = {0}, good = {0};
	assert_int_equal(resolver_lookup(fx->r, "bad.test", 80, record_answer, &bad), 0);
	assert_int_equal(resolver_lookup(fx->r, "good.test", 80, record_answer, &good), 0);
	assert_true(loop_until_shifted(fx, &bad.calls, 1, back, WAIT_LIMIT_MS));
	assert_true(loop_until_shifted(fx, &good.calls, 1, back, WAIT_LIMIT_MS));
	assert_int_equal(bad.res.error, LR_ECONNECT);

	/* Fresh failure: answered inline, no second getaddrinfo. */
	assert_int_equal(resolver_lookup(fx->r, "bad.test", 80, record_answer, &bad), 1);
	assert_int_equal(bad.calls, 2);
	assert_int_equal(bad.res.error, LR_ECONNECT);
	assert_int_equal(atomic_load(&hook_calls), 2);

	usleep(300 * 1000);
	assert_int_equal(resolver_lookup(fx->r, "good.test", 80, record_answer, &good), 1);
	assert_int_equal(resolver_lookup(fx->r, "bad.test", 80, record_answer, &bad), 0);
	assert_true(loop_until(fx, &bad.calls, 3));
	assert_int_equal(atomic_load(&hook_calls), 3);
}

static void forget_drops_the_cached_answer(void **state)
{
	struct fx *fx = *state;
	struct answer a = {0};
	assert_int_equal(resolver_lookup(fx->r, "forget.test", 80, record_answer, &a), 0);
	assert_true(loop_until(fx, &a.calls, 1));
	resolver_forget(fx->r, "FORGET.test");
	assert_int_equal(resolver_lookup(fx->r, "forget.test", 80, record_answer, &a), 0);
	assert_true(loop_until(fx, &a.calls, 2));
	assert_int_equal(atomic_load(&hook_calls), 2);
}

static void cancel_prevents_the_callback(void **state)
{
	struct fx *fx = *state;
	struct answer gone = {0}, stays = {0}, alone = {0}, after = {0};
	atomic_store(&hook_gate_closed, true);
	assert_int_equal(resolver_lookup(fx->r, "c.test", 80, record_answer, &gone), 0);
	assert_int_equal(resolver_lookup(fx->r, "c.test", 81, record_answer, &stays), 0);
	assert_int_equal(resolver_lookup(fx->r, "gone.test", 80, record_answer, &gone), 0);
	assert_int_equal(resolver_lookup(fx->r, "alone.test", 80, record_answer, &alone), 0);
	resolver_cancel(fx->r, &gone);
	resolver_cancel(fx->r, &alone);
	atomic_store(&hook_gate_closed, false);

	assert_true(loop_until(fx, &stays.calls, 1));
	assert_ipv4(&stays.res, "192.0.2.1", 81);
	loop_for(fx, 200);   /* every lookup has finished by now */
	assert_int_equal(gone.calls, 0);
	assert_int_equal(alone.calls, 0);
	assert_int_equal(atomic_load(&hook_calls), 3);
	/* A lookup whose waiters all left still fills the cache. */
	assert_int_equal(resolver_lookup(fx->r, "alone.test", 80, record_answer, &after), 1);
}

/* A callback that cancels another requester of the same name, and looks
 * the name up again (answered from the cache, inline). */
struct reentrant {
	struct fx *fx;
	struct answer own;
	struct answer again;
	void *cancel_ctx;
	int again_rc;
};

static void reentrant_answer(void *ctx, const struct resolve_result *res)
{
	struct reentrant *re = ctx;
	record_answer(&re->own, res);
	resolver_cancel(re->fx->r, re->cancel_ctx);
	re->again_rc = resolver_lookup(re->fx->r, "re.test", 90, record_answer, &re->again);
}

static void callback_may_cancel_and_look_up_again(void **state)
{
	struct fx *fx = *state;
	struct answer victim = {0};
	struct reentrant re = {.fx = fx, .cancel_ctx = &victim, .again_rc = -100};
	atomic_store(&hook_gate_closed, true);
	assert_int_equal(resolver_lookup(fx->r, "re.test", 80, reentrant_answer, &re), 0);
	assert_int_equal(resolver_lookup(fx->r, "re.test", 80, record_answer, &victim), 0);
	atomic_store(&hook_gate_closed, false);

	assert_true(loop_until(fx, &re.own.calls, 1));
	loop_for(fx, 100);
	assert_int_equal(victim.calls, 0);
	assert_int_equal(re.again_rc, 1);
	assert_int_equal(re.again.calls, 1);
	assert_ipv4(&re.again.res, "192.0.2.1", 90);
	assert_int_equal(atomic_load(&hook_calls), 1);
}

/* 300 names through one helper (so they finish in order) into a cache of
 * 256: the oldest names are evicted, the newest stay. */
static void cache_is_bounded_and_evicts_the_oldest(void **state)
{
	struct fx *fx = *state;
	fx_resolver(fx, 1, 60000 * MS);
	enum { N = 300 };
	static struct answer answers[N];
	int answered = 0;
	memset(answers, 0, sizeof answers);
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof name, "n%d.test", i);
		assert_int_equal(resolver_lookup(fx->r, name, 80, record_answer, &answers[i]), 0);
	}
	/* answer_seq counts every callback. */
	assert_true(loop_until(fx, &answer_seq, N));
	for (int i = 0; i < N; i++)
		answered += answers[i].calls;
	assert_int_equal(answered, N);
	assert_int_equal(atomic_load(&hook_calls), N);

	struct answer probe = {0};
	assert_int_equal(resolver_lookup(fx->r, "n299.test", 80, record_answer, &probe), 1);
	assert_int_equal(resolver_lookup(fx->r, "n44.test", 80, record_answer, &probe), 1);
	assert_int_equal(resolver_lookup(fx->r, "n0.test", 80, record_answer, &probe), 0);
	assert_int_equal(resolver_lookup(fx->r, "n43.test", 80, record_answer, &probe), 0);
}

static void *open_gate_later(void *arg)
{
	(void)arg;
	usleep(100 * 1000);
	atomic_store(&hook_gate_closed, false);
	return NULL;
}

/* Two helpers stuck inside getaddrinfo, more lookups queued behind them:
 * resolver_free waits for the two calls, drops the rest, calls no
 * callback and leaks nothing (ASan checks at exit). */
static void free_with_lookups_pending_calls_nothing(void **state)
{
	struct fx *fx = *state;
	struct answer a[6] = {{0}};
	atomic_store(&hook_gate_closed, true);
	assert_int_equal(resolver_lookup(fx->r, "p0.test", 80, record_answer, &a[0]), 0);
	assert_int_equal(resolver_lookup(fx->r, "p1.test", 80, record_answer, &a[1]), 0);
	assert_int_equal(resolver_lookup(fx->r, "p2.test", 80, record_answer, &a[2]), 0);
	assert_int_equal(resolver_lookup(fx->r, "p3.test", 80, record_answer, &a[3]), 0);
	assert_int_equal(resolver_lookup(fx->r, "p0.test", 80, record_answer, &a[4]), 0);
	assert_int_equal(resolver_lookup(fx->r, "bad.p", 80, record_answer, &a[5]), 0);
	for (int i = 0; i < 2000 && atomic_load(&hook_inside) < 2; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&hook_inside), 2);

	pthread_t opener;
	assert_int_equal(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
	uint64_t start = clock_now_ns();
	resolver_free(fx->r);
	fx->r = NULL;
	uint64_t took = clock_now_ns() - start;
	pthread_join(opener, NULL);

	assert_true(took < 5000 * MS);
	assert_int_equal(atomic_load(&hook_calls), 2);   /* the queued ones never ran */
	for (int i = 0; i < 6; i++)
		assert_int_equal(a[i].calls, 0);
}

/* Finished but not yet drained answers are dropped too. */
static void free_with_answers_undrained_calls_nothing(void **state)
{
	struct fx *fx = *state;
	struct answer a = {0};
	assert_int_equal(resolver_lookup(fx->r, "undrained.test", 80, record_answer, &a), 0);
	struct pollfd pfd = {.fd = fx->efd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, WAIT_LIMIT_MS), 1);
	resolver_free(fx->r);
	fx->r = NULL;
	assert_int_equal(a.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)
		T(numeric_ipv4_answers_inline_with_port),
		T(numeric_ipv6_answers_inline_with_port),
		T(localhost_answers_inline_any_case),
		T(empty_or_overlong_host_fails_inline),
		T(own_hostname_resolves_on_a_helper_thread),
		T(unresolvable_name_fails_with_connect_error),
		T(failure_message_names_host_and_reason),
		T(waiters_on_one_pending_name_share_one_getaddrinfo),
		T(cached_answer_comes_inline),
		T(answer_is_looked_up_again_after_ttl),
		T(failure_is_cached_at_most_five_seconds),
		T(forget_drops_the_cached_answer),
		T(cancel_prevents_the_callback),
		T(callback_may_cancel_and_look_up_again),
		T(cache_is_bounded_and_evicts_the_oldest),
		T(free_with_lookups_pending_calls_nothing),
		T(free_with_answers_undrained_calls_nothing),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

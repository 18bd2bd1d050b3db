/*
 * Resolver: getaddrinfo on helper threads, answers cached per loop.
 *
 * Every lookup in flight is a struct lookup owned by the loop thread's
 * pending list, which dedupes concurrent lookups of one name and lets
 * resolver_cancel find waiters. A lookup also travels through the shared
 * request queue (loop -> helper) and done list (helper -> loop); those two
 * lists and the thread counters are the only state under the mutex. While
 * a helper runs getaddrinfo it alone writes the lookup's answer fields; the
 * loop only touches the waiter list, so the two never share a field.
 *
 * Helper threads start lazily (a loop that only talks to numeric hosts or
 * localhost never starts one) up to the configured count, with every
 * signal blocked so the application's handlers never run on them.
 */
#include "io/resolve.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/list.h"
#include "util/test_hooks.h"
#include "llmring.h"

#define RESOLVE_MAX_THREADS 16
#define RESOLVE_CACHE_MAX 256
#define RESOLVE_FAILURE_TTL_NS (5ull * 1000000000ull)
#define RESOLVE_HOST_MAX 255   /* longest DNS name in text form */

/* Weak, so a test program can replace it (util/test_hooks.h). */
__attribute__((weak)) int resolve_getaddrinfo(const char *host, const char *service,
                                              const struct addrinfo *hints, struct addrinfo **res)
{
	return getaddrinfo(host, service, hints, res);
}

struct waiter {
	resolve_cb cb;
	void *ctx;
	uint16_t port;
	struct waiter *next;
};

struct lookup {
	/* Loop thread only. */
	struct waiter *waiters;                /* owned: freed as each is answered or cancelled */
	struct waiter *waiters_tail;           /* requesters are answered first come, first served */
	struct lookup *pending_prev, *pending_next;
	/* Under the mutex: request queue, then done list. */
	struct lookup *shared_next;
	/* Written by the helper thread between dequeue and done; read by the
	 * loop after it took the lookup off the done list. */
	struct resolve_result answer;          /* addresses without port */
	char host[];                           /* lower-cased; immutable */
};

struct cache_entry {
	struct cache_entry *prev, *next;       /* most recently used first */
	uint64_t expires_ns;
	struct resolve_result answer;          /* addresses without port */
	char host[];                           /* lower-cased */
};

struct resolver {
	int wake_fd;                           /* borrowed from the loop */
	uint64_t ttl_ns;
	unsigned max_threads;

	/* Loop thread only. */
	struct lookup *pending_head;           /* owns every lookup in flight */
	struct lookup *delivering;             /* lookup whose waiters drain is calling */
	struct cache_entry *cache_head, *cache_tail; /* owned: at most RESOLVE_CACHE_MAX */
	unsigned cache_len;
	pthread_t threads[RESOLVE_MAX_THREADS];
	unsigned nthreads;                     /* started; joined by resolver_free */

	pthread_mutex_t lock;
	pthread_cond_t work;
	/* Under lock. */
	struct lookup *queue_head, *queue_tail; /* links only: owned by pending list */
	struct lookup *done_head, *done_tail;   /* links only: owned by pending list */
	unsigned queued;
	unsigned idle_threads;                 /* helpers waiting on `work` */
	bool stopping;
};

/* ---- small helpers ---- */

/* Lower-cases host into key; false when it cannot be a host name. */
static bool host_key(const char *host, char key[RESOLVE_HOST_MAX + 1])
{
	size_t len = strlen(host);
	if (len == 0 || len > RESOLVE_HOST_MAX)
		return false;
	for (size_t i = 0; i <= len; i++)
		key[i] = (char)tolower((unsigned char)host[i]);
	return true;
}

static void set_port(struct resolve_result *res, uint16_t port)
{
	for (unsigned i = 0; i < res->count; i++) {
		if (res->addr[i].ss_family == AF_INET)
			((struct sockaddr_in *)&res->addr[i])->sin_port = htons(port);
		else if (res->addr[i].ss_family == AF_INET6)
			((struct sockaddr_in6 *)&res->addr[i])->sin6_port = htons(port);
	}
}

/* Hands a copy of answer, with the waiter's port, to cb. */
static void answer_waiter(const struct resolve_result *answer, uint16_t port, resolve_cb cb, void *ctx)
{
	struct resolve_result res = *answer;
	set_port(&res, port);
	cb(ctx, &res);
}

static void fail_result(struct resolve_result *res, int error, const char *host, const char *why)
{
	memset(res, 0, sizeof *res);
	res->error = error;
	snprintf(res->message, sizeof res->message, "cannot resolve host '%s': %s", host, why);
}

/* Numeric addresses and localhost, which need no lookup. */
static bool resolve_inline(const char *key, struct resolve_result *res)
{
	struct in_addr a4;
	struct in6_addr a6;
	bool is_v4 = true;
	memset(res, 0, sizeof *res);
	if (strcmp(key, "localhost") == 0 || strcmp(key, "localhost.") == 0)
		a4.s_addr = htonl(INADDR_LOOPBACK);
	else
		is_v4 = inet_pton(AF_INET, key, &a4) == 1;

	if (is_v4) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&res->addr[0];
		v4->sin_family = AF_INET;
		v4->sin_addr = a4;
		res->addr_len[0] = sizeof *v4;
	} else if (inet_pton(AF_INET6, key, &a6) == 1) {
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&res->addr[0];
		v6->sin6_family = AF_INET6;
		v6->sin6_addr = a6;
		res->addr_len[0] = sizeof *v6;
	} else {
		return false;
	}
	res->count = 1;
	return true;
}

/* ---- cache (loop thread) ---- */

LIST_FUNCTIONS(cache_list, struct resolver, struct cache_entry, cache_head, cache_tail, prev, next)

/* The cache's list, counted (cache_len bounds it). */
static void cache_unlink(struct resolver *r, struct cache_entry *e)
{
	cache_list_unlink(r, e);
	r->cache_len--;
}

static void cache_push_front(struct resolver *r, struct cache_entry *e)
{
	cache_list_push_front(r, e);
	r->cache_len++;
}
HEAD_LIST_FUNCTIONS(pending, struct resolver, struct lookup, pending_head, pending_prev, pending_next)

/* The entry for key, moved to the front (a linear scan: a loop talks to a
 * handful of hosts, and the list is bounded). */
static struct cache_entry *cache_find(struct resolver *r, const char *key)
{
	for (struct cache_entry *e = r->cache_head; e; e = e->next) {
		if (strcmp(e->host, key) == 0) {
			if (e != r->cache_head) {
				cache_unlink(r, e);
				cache_push_front(r, e);
			}
			return e;
		}
	}
	return NULL;
}

static void cache_store(struct resolver *r, const char *key, const struct resolve_result *answer, uint64_t now_ns)
{
	uint64_t life = r->ttl_ns;
	if (answer->error == LR_ENOMEM)
		return;   /* our own shortage, not a property of the name */
	if (answer->error && life > RESOLVE_FAILURE_TTL_NS)
		life = RESOLVE_FAILURE_TTL_NS;   /* retry a bad name soon, but not on every request */
	if (life == 0)
		return;

	struct cache_entry *e = cache_find(r, key);
	if (!e) {
		size_t len = strlen(key);
		e = malloc(sizeof *e + len + 1);   /* owner: r's cache list */
		if (!e)
			return;   /* not caching is harmless */
		memcpy(e->host, key, len + 1);
		if (r->cache_len >= RESOLVE_CACHE_MAX) {
			struct cache_entry *oldest = r->cache_tail;
			cache_unlink(r, oldest);
			free(oldest);
		}
		cache_push_front(r, e);
	}
	e->answer = *answer;
	e->expires_ns = now_ns + life;
}

/* ---- helper threads ---- */

static void run_getaddrinfo(struct lookup *lk)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *list = NULL;   /* owned: freed below */
	errno = 0;
	int rc = resolve_getaddrinfo(lk->host, NULL, &hints, &list);
	int saved_errno = errno;
	struct resolve_result *res = &lk->answer;

	if (rc != 0) {
		if (rc == EAI_MEMORY)
			fail_result(res, LR_ENOMEM, lk->host, gai_strerror(rc));
		else if (rc == EAI_SYSTEM && saved_errno)
			fail_result(res, LR_ECONNECT, lk->host, strerror(saved_errno));
		else
			fail_result(res, LR_ECONNECT, lk->host, gai_strerror(rc));
		return;
	}
	memset(res, 0, sizeof *res);
	for (struct addrinfo *ai = list; ai && res->count < RESOLVE_MAX_ADDRS; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof res->addr[0])
			continue;
		memcpy(&res->addr[res->count], ai->ai_addr, ai->ai_addrlen);
		res->addr_len[res->count] = ai->ai_addrlen;
		res->count++;
	}
	freeaddrinfo(list);
	if (res->count == 0)
		fail_result(res, LR_ECONNECT, lk->host, "no IPv4 or IPv6 address");
}

static void wake_loop(struct resolver *r)
{
	uint64_t one = 1;
	/* EAGAIN: the counter is full, so the loop is woken anyway. */
	ssize_t n = write(r->wake_fd, &one, sizeof one);
	(void)n;
}

static void *helper_main(void *arg)
{
	struct resolver *r = arg;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->stopping && !r->queue_head) {
			r->idle_threads++;
			pthread_cond_wait(&r->work, &r->lock);
			r->idle_threads--;
		}
		if (r->stopping)
			break;   /* queued lookups are dropped: their waiters are gone */
		struct lookup *lk = r->queue_head;
		r->queue_head = lk->shared_next;
		if (!r->queue_head)
			r->queue_tail = NULL;
		r->queued--;
		pthread_mutex_unlock(&r->lock);

		run_getaddrinfo(lk);

		pthread_mutex_lock(&r->lock);
		lk->shared_next = NULL;
		if (r->done_tail)
			r->done_tail->shared_next = lk;
		else
			r->done_head = lk;
		r->done_tail = lk;
		pthread_mutex_unlock(&r->lock);
		wake_loop(r);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Starts one more helper thread; false when the system refuses. */
static bool spawn_helper(struct resolver *r)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);   /* the thread inherits the full mask */
	int rc = pthread_create(&r->threads[r->nthreads], NULL, helper_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return false;
	pthread_setname_np(r->threads[r->nthreads], "llmring-dns");
	r->nthreads++;
	return true;
}

/* ---- public ---- */

int resolver_new(int wake_fd, unsigned threads, uint64_t ttl_ns, struct resolver **out)
{
	*out = NULL;
	if (wake_fd < 0)
		return -EINVAL;
	struct resolver *r = calloc(1, sizeof *r);   /* owner: caller, via resolver_free */
	if (!r)
		return -ENOMEM;
	r->wake_fd = wake_fd;
	r->ttl_ns = ttl_ns;
	/* Clamped rather than refused: a config value out of range should
	 * not stop the engine. */
	r->max_threads = threads == 0 ? 1 : threads > RESOLVE_MAX_THREADS ? RESOLVE_MAX_THREADS : threads;
	int rc = pthread_mutex_init(&r->lock, NULL);
	if (rc != 0) {
		free(r);
		return -rc;
	}
	rc = pthread_cond_init(&r->work, NULL);
	if (rc != 0) {
		pthread_mutex_destroy(&r->lock);
		free(r);
		return -rc;
	}
	*out = r;
	return 0;
}

static void free_waiters(struct waiter *w)
{
	while (w) {
		struct waiter *next = w->next;
		free(w);
		w = next;
	}
}

void resolver_free(struct resolver *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_cond_broadcast(&r->work);
	pthread_mutex_unlock(&r->lock);
	/* A helper inside getaddrinfo finishes that call first. */
	for (unsigned i = 0; i < r->nthreads; i++)
		pthread_join(r->threads[i], NULL);

	/* Every lookup, queued or done or neither, is on the pending list. */
	while (r->pending_head) {
		struct lookup *lk = r->pending_head;
		r->pending_head = lk->pending_next;
		free_waiters(lk->waiters);
		free(lk);
	}
	while (r->cache_head) {
		struct cache_entry *e = r->cache_head;
		r->cache_head = e->next;
		free(e);
	}
	pthread_cond_destroy(&r->work);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

int resolver_lookup(struct resolver *r, const char *host, uint16_t port, resolve_cb cb, void *ctx)
{
	char key[RESOLVE_HOST_MAX + 1];
	struct resolve_result res;

	if (!host_key(host, key)) {
		memset(&res, 0, sizeof res);
		res.error = LR_ECONNECT;
		snprintf(res.message, sizeof res.message, "cannot resolve host: %s",
			 host[0] ? "name longer than 255 characters" : "empty name");
		cb(ctx, &res);
		return 1;
	}
	if (resolve_inline(key, &res)) {
		set_port(&res, port);
		cb(ctx, &res);
		return 1;
	}
	struct cache_entry *e = cache_find(r, key);
	if (e && clock_now_ns() < e->expires_ns) {
		answer_waiter(&e->answer, port, cb, ctx);
		return 1;
	}

	struct waiter *w = malloc(sizeof *w);   /* owner: the lookup it joins */
	if (!w)
		return LR_ENOMEM;
	*w = (struct waiter){.cb = cb, .ctx = ctx, .port = port};

	for (struct lookup *lk = r->pending_head; lk; lk = lk->pending_next) {
		if (strcmp(lk->host, key) == 0) {
			/* One getaddrinfo per name. */
			if (lk->waiters_tail)
				lk->waiters_tail->next = w;
			else
				lk->waiters = w;
			lk->waiters_tail = w;
			return 0;
		}
	}

	size_t len = strlen(key);
	struct lookup *lk = calloc(1, sizeof *lk + len + 1);   /* owner: r's pending list */
	if (!lk) {
		free(w);
		return LR_ENOMEM;
	}
	memcpy(lk->host, key, len + 1);
	lk->waiters = lk->waiters_tail = w;

	pthread_mutex_lock(&r->lock);
	bool need_helper = r->queued + 1 > r->idle_threads && r->nthreads < r->max_threads;
	pthread_mutex_unlock(&r->lock);
	/* Only the loop thread starts helpers, so nthreads needs no lock. */
	if (need_helper && !spawn_helper(r) && r->nthreads == 0) {
		free(w);
		free(lk);
		return LR_ENOMEM;
	}

	pending_push_front(r, lk);

	pthread_mutex_lock(&r->lock);
	if (r->queue_tail)
		r->queue_tail->shared_next = lk;
	else
		r->queue_head = lk;
	r->queue_tail = lk;
	r->queued++;
	pthread_cond_signal(&r->work);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

/* Removes ctx's waiters from lk; the others keep their order. */
static void remove_waiters(struct lookup *lk, void *ctx)
{
	struct waiter **link = &lk->waiters;
	lk->waiters_tail = NULL;
	while (*link) {
		struct waiter *w = *link;
		if (w->ctx == ctx) {
			*link = w->next;
			free(w);
		} else {
			lk->waiters_tail = w;
			link = &w->next;
		}
	}
}

void resolver_cancel(struct resolver *r, void *ctx)
{
	/* A lookup left without waiters still runs and fills the cache. */
	for (struct lookup *lk = r->pending_head; lk; lk = lk->pending_next)
		remove_waiters(lk, ctx);
	/* A callback of drain may cancel a requester still waiting on the
	 * lookup being delivered. */
	if (r->delivering)
		remove_waiters(r->delivering, ctx);
}

unsigned resolver_drain(struct resolver *r, uint64_t now_ns)
{
	pthread_mutex_lock(&r->lock);
	struct lookup *done = r->done_head;
	r->done_head = r->done_tail = NULL;
	pthread_mutex_unlock(&r->lock);

	unsigned called = 0;
	while (done) {
		struct lookup *lk = done;
		done = lk->shared_next;
		/* Stored before any callback, so a callback that looks the name
		 * up again is answered from the cache. */
		pending_unlink(r, lk);
		cache_store(r, lk->host, &lk->answer, now_ns);

		/* One waiter at a time, off the lookup, so a callback's
		 * resolver_cancel still sees the rest. */
		r->delivering = lk;
		while (lk->waiters) {
			struct waiter *w = lk->waiters;
			lk->waiters = w->next;
			if (!lk->waiters)
				lk->waiters_tail = NULL;
			answer_waiter(&lk->answer, w->port, w->cb, w->ctx);
			free(w);
			called++;
		}
		r->delivering = NULL;
		free(lk);
	}
	return called;
}

void resolver_forget(struct resolver *r, const char *host)
{
	char key[RESOLVE_HOST_MAX + 1];
	if (!host_key(host, key))
		return;
	struct cache_entry *e = cache_find(r, key);
	if (e) {
		cache_unlink(r, e);
		free(e);
	}
}

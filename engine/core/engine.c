/*
 * The engine's own public calls: configuration defaults, creation and
 * destruction, statistics, usage and prices. The engine is one thread,
 * one ring and futures; the parts live beside this file: futures
 * (future.c), submission (submit.c), scheduling (schedule.c), the retry
 * policy (retry.c), response handling (response.c), the loop (loop.c),
 * the reap queue (reap.c), endpoints and keys (endpoints.c).
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/cache.h"
#include "core/engine_internal.h"
#include "util/errors.h"
#include "core/prices.h"
#include "core/usage.h"
#include "io/ring.h"
#include "util/clock.h"
#include "llmring.h"

LR_API lr_config lr_config_default(void)
{
	lr_config c;
	memset(&c, 0, sizeof(c));
	c.max_in_flight = 64;
	c.connect_timeout_s = 10;
	c.idle_timeout_s = 60;
	c.total_timeout_s = 600;
	c.pool_idle_s = 90;
	c.max_header_bytes = 64 * 1024;
	c.max_body_bytes = 64 * 1024 * 1024;
	c.ring_entries = 256;
	c.max_retries = 2;
	c.dns_ttl_s = 60;
	return c;
}

/* The caller's configuration with every unset field at its default, and
 * the environment read (here, on the caller's thread: getenv races with
 * setenv in other threads, so never while the engine runs). The config
 * keeps no pointer the caller may free: what is needed later is copied. */
static int engine_configure(lr_engine *e, const lr_config *cfg, struct error_info *error)
{
	e->cfg = cfg ? *cfg : lr_config_default();
	lr_config d = lr_config_default();
	if (e->cfg.max_in_flight == 0)
		e->cfg.max_in_flight = d.max_in_flight;
	if (!(e->cfg.connect_timeout_s > 0))
		e->cfg.connect_timeout_s = d.connect_timeout_s;
	if (!(e->cfg.idle_timeout_s > 0))
		e->cfg.idle_timeout_s = d.idle_timeout_s;
	if (!(e->cfg.total_timeout_s > 0))
		e->cfg.total_timeout_s = d.total_timeout_s;
	if (!(e->cfg.pool_idle_s > 0))
		e->cfg.pool_idle_s = d.pool_idle_s;
	if (e->cfg.max_header_bytes == 0)
		e->cfg.max_header_bytes = d.max_header_bytes;
	if (e->cfg.max_body_bytes == 0)
		e->cfg.max_body_bytes = d.max_body_bytes;
	if (!(e->cfg.dns_ttl_s > 0))
		e->cfg.dns_ttl_s = d.dns_ttl_s;
	if (e->cfg.max_retries < 0)
		e->cfg.max_retries = d.max_retries;
	const char *buffered_env = getenv("LLMRING_MAX_BUFFERED_BYTES");
	if (buffered_env && *buffered_env) {
		char *end;
		unsigned long long v = strtoull(buffered_env, &end, 10);
		if (*end || v == 0) /* a limit was asked for and cannot be read */
			return error_set(error, LR_EINVAL, 0,
			                 "LLMRING_MAX_BUFFERED_BYTES=%.40s is not a positive number of bytes",
			                 buffered_env);
		e->cfg.max_buffered_bytes = (size_t)v;
	}
	if (e->cfg.max_buffered_bytes == 0) {
		long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
		uint64_t eighth = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 8 : 0;
		e->cfg.max_buffered_bytes = eighth > (256u << 20) ? (size_t)eighth : (size_t)256 << 20;
	}
	const char *ca = e->cfg.ca_file && e->cfg.ca_file[0] ? e->cfg.ca_file : getenv("SSL_CERT_FILE");
	e->cfg.ca_file = NULL;
	if (ca && ca[0] && !(e->ca_file = strdup(ca)))
		return error_set(error, LR_ENOMEM, 0, "out of memory copying the CA file name");
	const char *plain_env = getenv("LLMRING_RING_PLAIN");
	if (plain_env && plain_env[0] == '1')
		e->cfg.ring_plain = 1;
	/* Jitter only spreads retries apart: any varying seed will do. */
	e->jitter_state = clock_now_ns() ^ ((uint64_t)(uintptr_t)e << 17) ^ 0x9e3779b97f4a7c15ull;
	const char *base = e->cfg.base_url, *key = e->cfg.api_key, *prices = e->cfg.prices_file;
	e->cfg.base_url = e->cfg.api_key = e->cfg.prices_file = NULL;
	int ret = endpoints_init(e, base, key);
	if (ret == LR_ENOMEM)
		return error_set(error, ret, 0, "out of memory building the request headers");
	if (ret)
		return error_set(error, ret, 0, "%s", e->ep[PROVIDER_OPENAI].err.message);
	ret = price_table_load(&e->prices, prices, error);
	if (ret) /* a prices file was named and cannot be used */
		return error->code = ret == LR_ENOMEM ? ret : LR_EINVAL;
	ret = usage_init(&e->usage, e->prices);
	if (ret)
		return error_set(error, ret, 0, "out of memory for the usage table");
	if (e->cfg.cache_mode < LR_CACHE_READWRITE || e->cfg.cache_mode > LR_CACHE_OFF)
		return error_set(error, LR_EINVAL, 0, "cache_mode %d is not an enum lr_cache_mode",
		                 e->cfg.cache_mode);
	/* Copied: the caller's string need not outlive lr_engine_new. */
	if (e->cfg.cache_path && !(e->cfg.cache_path = e->cache_path = strdup(e->cfg.cache_path)))
		return error_set(error, LR_ENOMEM, 0, "out of memory copying the cache path");
	return 0;
}

/* The loop: on a thread of its own, or on the caller's (drive_from_caller). */
static int engine_start(lr_engine *e, struct error_info *error)
{
	e->wake_fd = eventfd(0, EFD_CLOEXEC);
	e->completion_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->wake_fd < 0 || e->completion_fd < 0)
		return error_set(error, error_from_errno(-errno), errno, "eventfd failed: %s%s",
		                 strerror(errno),
		                 errno == EMFILE || errno == ENFILE ? " (out of file descriptors: raise ulimit -n)" : "");
	if (e->cfg.drive_from_caller) {
		/* No thread: the ring is this thread's, and moves when this
		 * thread reaps, waits or calls lr_engine_run. */
		e->owner = pthread_self();
		int ret = engine_setup(e);
		if (ret)
			error_copy(error, &e->setup_error);
		return ret;
	}
	int err = pthread_create(&e->thread, NULL, engine_thread, e);
	if (err) /* EAGAIN: no memory for the thread's stack, or the thread limit */
		return error_set(error, error_from_errno(-err), err, "starting the engine thread failed: %s",
		                 strerror(err));
	int s;
	while ((s = atomic_load(&e->start_result)) == 0)
		futex((_Atomic uint32_t *)&e->start_result, FUTEX_WAIT_PRIVATE, 0, NULL);
	if (s < 0) {
		pthread_join(e->thread, NULL);
		error_copy(error, &e->setup_error);
		return s;
	}
	return 0;
}

static int engine_create(const lr_config *cfg, lr_engine **out, struct error_info *error)
{
	if (!out)
		return error_set(error, LR_EINVAL, 0, "no place for the engine (out is NULL)");
	*out = NULL;
	lr_engine *e = calloc(1, sizeof(*e)); /* owner: the caller, via lr_engine_destroy */
	if (!e)
		return error_set(error, LR_ENOMEM, 0, "out of memory for the engine");
	e->wake_fd = e->completion_fd = -1;
	atomic_init(&e->reap_want, 1);
	int ret = engine_configure(e, cfg, error);
	if (!ret && future_slab_new(e))
		ret = error_set(error, LR_ENOMEM, 0, "out of memory for the engine");
	/* e->cache before the loop starts (its thread reads it); the cache's
	 * thread after (it writes the loop's wake eventfd). */
	if (!ret)
		ret = cache_new(e, &e->cache, error);
	if (!ret)
		ret = engine_start(e, error);
	if (!ret && e->cache && (ret = cache_start(e->cache, error)) != 0) {
		atomic_store(&e->stopping, 1);
		if (e->cfg.drive_from_caller) {
			while (engine_turn(e, UINT64_MAX) > 0)
				;
			engine_teardown(e);
		} else {
			eventfd_signal(e->wake_fd);
			pthread_join(e->thread, NULL);
		}
	}
	if (!ret) {
		*out = e;
		return 0;
	}
	if (e->wake_fd >= 0)
		close(e->wake_fd);
	if (e->completion_fd >= 0)
		close(e->completion_fd);
	cache_free(e->cache); /* its thread never started */
	future_slab_close(e->slab);
	for (int p = 0; p < PROVIDER_COUNT; p++)
		endpoint_wipe(&e->ep[p]);
	usage_free(&e->usage);
	price_table_free(e->prices);
	free(e->ca_file);
	free(e->cache_path);
	free(e);
	return ret;
}

LR_API int lr_engine_create(const lr_config *cfg, lr_engine **out, lr_error_info *error)
{
	struct error_info why = {0}; /* filled here, handed out through error_export */
	int ret = engine_create(cfg, out, &why);
	error_export(error, &why);
	return ret;
}

LR_API int lr_engine_new(const lr_config *cfg, lr_engine **out)
{
	return lr_engine_create(cfg, out, NULL);
}

LR_API void lr_engine_destroy(lr_engine *e)
{
	if (!e)
		return;
	if (in_engine_callback(e)) {
		/* From a callback: the thread cannot join itself, nor a turn
		 * tear down the ring it runs on. The stop is deferred: the
		 * engine finishes its shutdown and frees itself (threaded), or
		 * the owner's next call sees it stopped (caller-driven: the
		 * owner must still call lr_engine_destroy outside callbacks). */
		atomic_store(&e->stopping, 1); /* seq_cst: see submitting */
		if (!e->cfg.drive_from_caller && !e->self_free) {
			e->self_free = true;
			pthread_detach(e->thread);
		}
		return;
	}
	atomic_store(&e->stopping, 1); /* seq_cst: see submitting */
	if (e->cfg.drive_from_caller) {
		/* Must be the owner thread (documented): finish the shutdown here. */
		while (engine_turn(e, UINT64_MAX) > 0)
			;
		engine_teardown(e);
	} else {
		eventfd_signal(e->wake_fd);
		pthread_join(e->thread, NULL);
	}
	engine_free_after_stop(e);
}

/* After the loop has stopped: what raced with the stop, then the memory. */
void engine_free_after_stop(lr_engine *e)
{
	/* Submissions that raced with the stop go through the one completion
	 * path (then-callback before waiters, accounting, provider), on this
	 * thread: the engine's own has ended. A submitter that saw stopping
	 * unset is still inside lr_submit: wait for its push (a few
	 * instructions) so that it is taken here, not lost or pushed onto
	 * freed memory. */
	while (atomic_load(&e->submitting))
		sched_yield();
	/* The cache's queue ends on the submit stack, taken below. */
	cache_free(e->cache);
	e->cache = NULL;
	struct lr_future *f = stack_take_fifo(&e->submit_head, offsetof(struct lr_future, next));
	while (f) {
		struct lr_future *next = f->next;
		f->next = NULL;
		future_complete(f, LR_ECANCELLED, "the engine is shutting down");
		f = next;
	}
	engine_flush_reaped(e);
	f = stack_take_fifo(&e->cancel_head, offsetof(struct lr_future, next_cancel));
	while (f) {
		struct lr_future *next = f->next_cancel;
		future_unref(f);
		f = next;
	}
	/* Unreaped completions: the queue's references are dropped. */
	f = e->reap_local;
	while (f) {
		struct lr_future *next = f->next;
		future_unref(f);
		f = next;
	}
	f = atomic_exchange(&e->reap_head, NULL);
	while (f) {
		struct lr_future *next = f->next;
		future_unref(f);
		f = next;
	}
	close(e->wake_fd);
	close(e->completion_fd);
	for (int p = 0; p < PROVIDER_COUNT; p++)
		endpoint_wipe(&e->ep[p]);
	usage_free(&e->usage);
	price_table_free(e->prices);
	free(e->ca_file);
	free(e->cache_path);
	future_slab_close(e->slab); /* futures still held free themselves */
	free(e);
}

LR_API void *lr_engine_user_data(const lr_engine *e)
{
	return e ? e->cfg.user_data : NULL;
}

/* The growth rule of lr_config (llmring.h): its size never changes. */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(lr_config) == LR_CONFIG_SIZE_LP64,
               "lr_config's size is part of the ABI: take a new field's bytes from reserved");
#endif

LR_API const char *lr_engine_ring_mode(lr_engine *e)
{
	return e ? atomic_load(&e->ring_mode) : NULL;
}

LR_API void lr_engine_get_stats(lr_engine *e, lr_engine_stats *out)
{
	if (!e || !out)
		return;
	out->connections_opened = atomic_load_explicit(&e->stat_opened, memory_order_relaxed);
	out->connections_reused = atomic_load_explicit(&e->stat_reused, memory_order_relaxed);
	out->stale_resends = atomic_load_explicit(&e->stat_resends, memory_order_relaxed);
	out->requests_completed = atomic_load_explicit(&e->stat_completed, memory_order_relaxed);
	out->tls_full_handshakes = atomic_load_explicit(&e->stat_tls_full, memory_order_relaxed);
	out->tls_resumed_handshakes = atomic_load_explicit(&e->stat_tls_resumed, memory_order_relaxed);
	out->retries = atomic_load_explicit(&e->stat_retries, memory_order_relaxed);
}

LR_API int lr_engine_usage(lr_engine *e, lr_usage_report *total, lr_model_usage *models, int max_models)
{
	if (!e || max_models < 0)
		return LR_EINVAL;
	return usage_read(&e->usage, total, models, max_models);
}

LR_API int lr_engine_cache_stats(lr_engine *e, lr_cache_stats *out)
{
	if (!e || !out)
		return LR_EINVAL;
	cache_read_stats(e->cache, out);
	return 0;
}

static int give_price(bool found, const struct price *p, double *input, double *cached_input,
                      double *output)
{
	if (!found)
		return LR_ENOTFOUND;
	if (input)
		*input = p->input;
	if (cached_input)
		*cached_input = p->cached_input;
	if (output)
		*output = p->output;
	return 0;
}

LR_API int lr_engine_price(lr_engine *e, const char *model, double *input, double *cached_input,
                           double *output)
{
	if (!e || !model)
		return LR_EINVAL;
	struct price p;
	bool found = e->prices && price_lookup(e->prices, model, strlen(model), &p);
	return give_price(found, &p, input, cached_input, output);
}

LR_API int lr_engine_batch_price(lr_engine *e, const char *model, double *input,
                                 double *cached_input, double *output)
{
	if (!e || !model)
		return LR_EINVAL;
	struct price p;
	bool found = e->prices && price_lookup_batch(e->prices, model, strlen(model), &p);
	return give_price(found, &p, input, cached_input, output);
}

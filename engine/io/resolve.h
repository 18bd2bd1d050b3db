/*
 * Host name resolution off the loop thread (getaddrinfo blocks and gives
 * no TTL). Lookups run on a small pool of helper threads; the
 * results are cached for a configured lifetime and handed back to the
 * owning loop, which drains them when its wake eventfd fires.
 *
 * Numeric hosts and "localhost" never reach a helper thread: they resolve
 * inline. One resolver belongs to one loop thread: resolver_lookup and
 * resolver_drain are called only there; the helper threads only touch the
 * request queue and the done queue, under the resolver's mutex.
 */
#ifndef LR_RESOLVE_H
#define LR_RESOLVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define RESOLVE_MAX_ADDRS 8

struct resolve_result {
	int error;                    /* 0, or LR_ECONNECT (name does not resolve), LR_ENOMEM */
	char message[256];            /* for errors: "cannot resolve host 'x': Name or service not known" */
	unsigned count;               /* addresses, in getaddrinfo's order */
	struct sockaddr_storage addr[RESOLVE_MAX_ADDRS];
	socklen_t addr_len[RESOLVE_MAX_ADDRS];
};

/* Called on the loop thread (from resolver_lookup when the answer is
 * known at once, else from resolver_drain), exactly once per lookup. */
typedef void (*resolve_cb)(void *ctx, const struct resolve_result *res);

struct resolver;

/* wake_fd: an eventfd the owning loop watches; the resolver writes it
 * when an answer is ready. threads: helper threads (1..16). ttl_ns: how
 * long an answer (or a failure, for min(ttl, 5 s)) is cached. 0 or -errno. */
int resolver_new(int wake_fd, unsigned threads, uint64_t ttl_ns, struct resolver **out);
/* Cancels pending lookups without calling their callbacks, joins the
 * helper threads, frees the cache. */
void resolver_free(struct resolver *r);

/* Resolves host:port (port goes into every returned address). Returns 1
 * when cb was already called (numeric host, localhost, fresh cache entry),
 * 0 when the answer will come through resolver_drain, or LR_ENOMEM.
 * Concurrent lookups of the same name share one getaddrinfo call. */
int resolver_lookup(struct resolver *r, const char *host, uint16_t port, resolve_cb cb, void *ctx);

/* Forgets a pending lookup's callback (its requester went away): the
 * callback with this ctx will not be called. */
void resolver_cancel(struct resolver *r, void *ctx);

/* On the loop thread, after wake_fd fired: calls the callbacks of every
 * finished lookup. Returns how many were called. */
unsigned resolver_drain(struct resolver *r, uint64_t now_ns);

/* Drops the cached answer for host (after every address failed to connect). */
void resolver_forget(struct resolver *r, const char *host);

#endif

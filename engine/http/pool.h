/*
 * HTTP/1.1 exchanges over a keep-alive pool of connections per origin.
 *
 * An exchange is one request and its response. The pool finds it an idle
 * connection (most recently used first), opens a new one while the origin
 * is under its cap, or queues it. The one transport-level resend lives
 * here (a kept-alive connection the server has just closed is the usual
 * cause, RFC 9112 section 9.3.1): a request that fails on a reused connection before
 * any response byte is sent again, once, on a fresh connection. Nothing
 * else is retried at this layer.
 */
#ifndef LR_POOL_H
#define LR_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "io/conn.h"
#include "http/http_reader.h"
#include "io/resolve.h"
#include "io/ring.h"
#include "io/tls.h"
#include "io/url.h"
#include "util/errors.h"

struct http_exchange;
struct pconn;
struct origin;

struct http_exchange_handler {
	/* Return 0, or a negative LR_E* to end the exchange with it. */
	int (*on_head)(struct http_exchange *ex, const struct http_head *h);
	int (*on_body)(struct http_exchange *ex, const char *data, size_t len);
	/* Exactly once per pool_start: err 0 when the whole response was
	 * read, else LR_E* with a message (static or in ex->err). */
	void (*on_done)(struct http_exchange *ex, int err, const char *msg);
	/* The request body after req, when ex->body_len > 0: up to *len
	 * bytes at offset into *data (borrowed until the next call or
	 * on_done; fewer than asked is fine, none is an error). 0, or LR_E*
	 * with the message in ex->err. Sent a piece at a time, so a large
	 * body is never copied whole (TLS encrypts each piece). */
	int (*body_at)(struct http_exchange *ex, uint64_t offset, const char **data, size_t *len);
};

enum exchange_phase {
	EX_IDLE = 0,
	EX_QUEUED,      /* waiting for a connection slot */
	EX_CONNECTING,  /* resolving the name or opening TCP */
	EX_HANDSHAKE,   /* TCP up, TLS handshake running */
	EX_SENDING,
	EX_WAITING,     /* request sent, no response byte yet */
	EX_RECEIVING,
	EX_DONE,
};

struct http_exchange {
	const struct http_exchange_handler *h;
	struct origin *origin;
	const char *req;            /* borrowed: request bytes, until on_done */
	size_t req_len;
	uint64_t body_len;          /* body bytes body_at gives after req (0: none) */
	uint64_t max_body_bytes;    /* response body cap of this exchange (0: the pool's) */
	bool cut;                   /* the connection ended inside the response body */
	enum exchange_phase phase;
	bool resent;                /* the one transport-level resend was used */
	bool reused;                /* sent on a pooled connection */
	bool owner_tracks_progress; /* the owner moves last_byte_ns (streams: comments are no progress) */
	uint64_t phase_start_ns;    /* when the current phase began */
	uint64_t first_byte_ns, last_byte_ns;
	/* When the request went on the wire: the ring's clock of this turn,
	 * or a fresh reading when that is before not_before_ns (the owner's
	 * submission time, read on another thread or after the turn began). */
	uint64_t sent_ns;
	uint64_t not_before_ns;     /* set by the owner before pool_start */
	uint64_t dequeued_ns;       /* when it last left the wait for a connection (0: never) */
	struct pconn *pc;
	struct http_exchange *next_queued;
	struct error_info err;      /* a failure's code and text, when the pool made the text */
};

struct pool_config {
	unsigned max_per_origin;
	uint64_t idle_ns;           /* how long an idle connection is kept */
	size_t max_head_bytes;
	uint64_t max_body_bytes;
	struct resolver *resolver;  /* borrowed: host names (NULL: numeric hosts only) */
	uint64_t dns_ttl_ns;        /* how long an origin keeps its addresses */
	const char *ca_file;        /* borrowed for the pool's life; NULL: the system bundle */
	bool insecure;              /* TLS without verification */
	bool no_resumption;         /* never offer saved sessions */
};

struct pool_stats {
	uint64_t connections_opened;
	uint64_t connections_reused;
	uint64_t stale_resends;
	uint64_t fd_waits;          /* connects put back to wait: out of file descriptors */
	uint64_t tls_full_handshakes;
	uint64_t tls_resumed_handshakes;
};

struct pool {
	struct ring *ring;
	struct pool_config cfg;
	struct origin *origins;     /* owner: pool (list) */
	unsigned open_conns;        /* pconns not yet fully closed */
	struct pconn *conns;        /* owner: pool; every pconn until `closed` */
	/* Sockets the pool may hold at once: below the open-file limit, and
	 * lowered when a socket fails with EMFILE/ENFILE while others are
	 * open (then exchanges wait for a socket instead of failing). */
	unsigned fd_cap, fd_cap_max;
	uint64_t fd_cap_probe_ns;   /* when the cap may try one more again */
	bool closing;               /* no connection goes back to idle */
	/* Connections opening (socket, TCP connect, TLS handshake) at once,
	 * capped at POOL_MAX_OPENING: a storm of thousands of connects would
	 * hold the loop in the kernel for seconds (connect() to one address
	 * scans the ephemeral ports once half are in use) while connect
	 * deadlines of exchanges whose connects already succeeded expire. */
	unsigned opening;
	bool open_deferred;         /* open_retry is queued on the ring */
	struct ring_deferred open_retry;
	struct tls_config *tls;     /* owner: pool; made on the first https connection */
	struct pool_stats stats;
};

void pool_init(struct pool *p, struct ring *r, const struct pool_config *cfg);
/* Closes every idle connection; busy ones close as their exchanges end.
 * The pool is empty when open_conns reaches 0; then pool_free. */
void pool_close_idle(struct pool *p);
void pool_free(struct pool *p);
/* After the ring failed (ring.failed): frees every connection still open
 * or closing, whose completions will never come. Before pool_free. */
void pool_abandon(struct pool *p);

/* The origin of u, created on first use (owner: the pool). NULL on ENOMEM. */
struct origin *pool_origin(struct pool *p, const struct url *u);

const struct url *origin_url(const struct origin *o);

void pool_start(struct pool *p, struct http_exchange *ex);
/* Ends a started exchange now (deadline, cancel): its connection, if
 * any, is closed (never reused) and on_done gets err/msg. */
void pool_abort(struct pool *p, struct http_exchange *ex, int err, const char *msg);

#endif

/*
 * Keep-alive pool. Idle connections of an origin are a LIFO list (the
 * warmest first) with an idle timer each; a multishot recv stays armed on
 * idle connections, so a server closing one is noticed at once and it
 * leaves the pool instead of failing the next request.
 *
 * Why this file is long: a connection's life (open, attach, send, the
 * conn and reader callbacks, finish, retire) and its origin's queue and
 * lookups are one state machine whose static functions call each other
 * both ways; cut in two, each half would need an internal header naming
 * a dozen of the other's steps. At about 830 lines it stays one file.
 */
#include "http/pool.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "util/clock.h"
#include "util/list.h"
#include "llmring.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Opens in progress at once (struct pool: opening). Enough to fill a
 * fast link quickly: 1,024 connects per round trip. */
#define POOL_MAX_OPENING 1024

struct origin {
	struct url url;
	struct pconn *idle_head;    /* most recently used first */
	unsigned conns;             /* connections counted against the cap */
	struct http_exchange *queue_head, *queue_tail;
	struct origin *next;
	struct pool *pool;
	/* Addresses to connect to, tried in order; numeric hosts never expire. */
	struct resolve_result addrs;
	uint64_t addrs_expire_ns;   /* 0: none yet */
	bool resolving;
	struct tls_session *session; /* owner: origin; offered to new TLS connections */
};

/* How old a name's addresses must be before a total connect failure
 * forgets them (pconn_connected). */
#define ADDRS_MIN_AGE_NS 1000000000ull

struct pconn {
	struct conn conn;
	struct pool *pool;
	struct origin *origin;
	struct http_reader reader;  /* owner: this pconn (its partial buffer) */
	struct http_exchange *ex;   /* current exchange, or NULL when idle */
	struct pconn *idle_prev, *idle_next;
	bool in_idle_list;
	bool counted;               /* counted in origin->conns */
	bool connected;
	bool opening;               /* counted in pool->opening */
	bool keep_alive;            /* the current response allows reuse */
	bool response_done;
	bool sending;               /* the request (head or body) is not all sent */
	uint64_t body_sent;         /* body bytes handed to conn_send so far */
	uint64_t reader_cap;        /* the pool's response body cap, as the reader has it */
	unsigned served;
	unsigned addr_index;        /* which of the origin's addresses */
	struct ring_timer idle_timer;
	struct pconn *all_prev, *all_next; /* pool.conns */
};

static const struct conn_handler pconn_handler;
static const struct http_reader_callbacks pconn_reader_cb;
static void pool_dispatch(struct pool *p, struct http_exchange *ex, bool allow_idle);
static void queue_push(struct origin *o, struct http_exchange *ex, enum exchange_phase phase, uint64_t now);
static bool pool_can_open(struct pool *p, struct origin *o);
static void pool_dispatch_waiting(struct pool *p);
static bool origin_has_addrs(const struct origin *o, uint64_t now);
static void origin_resolve(struct pool *p, struct origin *o);
static struct http_exchange *queue_pop(struct origin *o);

/*
 * Takes up to max exchanges from o's queue while connections may open.
 * Without addresses the queue waits for the lookup, whose answer serves
 * it: dispatching would only queue each exchange again at the tail (and a
 * loop over the queue would spin for ever, as it once did when a lookup
 * was under way while a socket closed).
 */
static void origin_serve_queue(struct pool *p, struct origin *o, unsigned max)
{
	for (unsigned n = 0; n < max && o->queue_head && pool_can_open(p, o); n++) {
		if (!origin_has_addrs(o, p->ring->now_ns)) {
			origin_resolve(p, o);
			return;
		}
		pool_dispatch(p, queue_pop(o), false);
	}
}

/* ---- idle list ---- */

HEAD_LIST_FUNCTIONS(idle_list, struct origin, struct pconn, idle_head, idle_prev, idle_next)
HEAD_LIST_FUNCTIONS(all_conns, struct pool, struct pconn, conns, all_prev, all_next)

static void idle_remove(struct pconn *pc)
{
	if (!pc->in_idle_list)
		return;
	idle_list_unlink(pc->origin, pc);
	pc->in_idle_list = false;
	ring_timer_cancel(pc->pool->ring, &pc->idle_timer);
}

/* false: no memory for the idle timer, and the connection is not kept. */
static bool idle_push(struct pconn *pc)
{
	struct origin *o = pc->origin;
	if (ring_timer_set(pc->pool->ring, &pc->idle_timer, pc->pool->ring->now_ns + pc->pool->cfg.idle_ns))
		return false;
	idle_list_push_front(o, pc); /* LIFO: the warmest first */
	pc->in_idle_list = true;
	return true;
}

/* ---- connection lifetime ---- */

static struct http_exchange *queue_pop(struct origin *o)
{
	struct http_exchange *ex = o->queue_head;
	if (ex) {
		o->queue_head = ex->next_queued;
		if (!o->queue_head)
			o->queue_tail = NULL;
		ex->next_queued = NULL;
		if (ex->phase == EX_QUEUED)
			ex->dequeued_ns = o->pool->ring->now_ns;
	}
	return ex;
}

static void pconn_idle_expired(struct ring_timer *t);
static void pconn_finish(struct pconn *pc, int err, const char *msg);

static bool origin_has_addrs(const struct origin *o, uint64_t now)
{
	return o->addrs.count > 0 && (o->addrs_expire_ns == UINT64_MAX || now < o->addrs_expire_ns);
}

/* The pool's TLS config, made on first use (it reads the CA bundle). */
static int pool_tls(struct pool *p, struct error_info *why)
{
	if (p->tls)
		return 0;
	struct tls_config_options o = {.ca_file = p->cfg.ca_file, .insecure = p->cfg.insecure};
	return why->code = tls_config_new(&o, &p->tls, why->message, sizeof(why->message));
}

/* Opens a connection to the origin's address addr_index; NULL when out
 * of memory or the TLS config failed, and *why says which. */
static struct pconn *pconn_open(struct pool *p, struct origin *o, unsigned addr_index,
                                struct error_info *why)
{
	struct tls_conn *tls = NULL; /* owner: here until the conn takes it */
	error_set(why, LR_ENOMEM, 0, "out of memory opening a connection");
	if (o->url.https) {
		if (pool_tls(p, why))
			return NULL;
		error_set(why, LR_ENOMEM, 0, "out of memory opening a connection");
		tls = tls_conn_new(p->tls, o->url.host, p->cfg.no_resumption ? NULL : o->session);
		if (!tls)
			return NULL;
	}
	struct pconn *pc = calloc(1, sizeof(*pc)); /* owner: the pool until `closed` */
	if (!pc) {
		tls_conn_free(tls);
		return NULL;
	}
	conn_init(&pc->conn, p->ring, &pconn_handler);
	http_reader_init(&pc->reader, p->cfg.max_head_bytes, p->cfg.max_body_bytes);
	pc->reader_cap = pc->reader.max_body_bytes;
	ring_timer_init(&pc->idle_timer, pconn_idle_expired);
	pc->pool = p;
	pc->origin = o;
	all_conns_push_front(p, pc);
	pc->counted = true;
	pc->addr_index = addr_index;
	pc->opening = true;
	p->opening++;
	o->conns++;
	p->open_conns++;
	p->stats.connections_opened++;
	const struct sockaddr *sa = (const struct sockaddr *)&o->addrs.addr[addr_index];
	if (tls)
		conn_connect_tls(&pc->conn, sa, o->addrs.addr_len[addr_index], tls);
	else
		conn_connect(&pc->conn, sa, o->addrs.addr_len[addr_index]);
	return pc;
}

static void pool_open_retry(struct ring_deferred *d)
{
	struct pool *p = container_of(d, struct pool, open_retry);
	p->open_deferred = false;
	if (!p->closing)
		pool_dispatch_waiting(p);
}

/* The connection is open (or failed to open): another may start. The
 * queue is served next turn, after the completions already waiting. */
static void pconn_opened(struct pconn *pc)
{
	struct pool *p = pc->pool;
	if (!pc->opening)
		return;
	pc->opening = false;
	p->opening--;
	if (p->opening == POOL_MAX_OPENING - 1 && !p->open_deferred && !p->closing) {
		p->open_deferred = true;
		ring_defer(p->ring, &p->open_retry, pool_open_retry);
	}
}

/* Takes the connection out of service and closes it; a queued exchange
 * may now get a connection of its own. */
static void pconn_retire(struct pconn *pc)
{
	struct pool *p = pc->pool;
	struct origin *o = pc->origin;
	pconn_opened(pc);
	idle_remove(pc);
	if (pc->counted) {
		pc->counted = false;
		o->conns--;
	}
	conn_close(&pc->conn);
	origin_serve_queue(p, o, 1);
}

static void pconn_idle_expired(struct ring_timer *t)
{
	pconn_retire(container_of(t, struct pconn, idle_timer));
}

static void pconn_send_request(struct pconn *pc)
{
	struct http_exchange *ex = pc->ex;
	ex->phase = EX_SENDING;
	ex->phase_start_ns = pc->pool->ring->now_ns;
	/* The turn's clock (a read per turn, not per request), unless the
	 * owner's own clock says the request is newer than that. */
	uint64_t now = pc->pool->ring->now_ns;
	ex->sent_ns = now >= ex->not_before_ns ? now : clock_now_ns();
	pc->sending = true;
	pc->body_sent = 0;
	conn_send(&pc->conn, ex->req, ex->req_len);
}

/* The next piece of the body once the last one was sent; true when there
 * was one (or the body failed and the exchange ended). */
static bool pconn_send_body(struct pconn *pc)
{
	struct http_exchange *ex = pc->ex;
	if (pc->body_sent >= ex->body_len)
		return false;
	const char *data = NULL;
	size_t len = 0;
	int r = ex->h->body_at(ex, pc->body_sent, &data, &len);
	if (!r && len == 0)
		r = error_set(&ex->err, LR_EIO, 0, "the request body ended after %llu of %llu bytes",
		              (unsigned long long)pc->body_sent, (unsigned long long)ex->body_len);
	if (r) {
		pc->keep_alive = false;
		pconn_finish(pc, r, ex->err.code ? ex->err.message : lr_strerror(r));
		return true;
	}
	if (len > ex->body_len - pc->body_sent)
		len = (size_t)(ex->body_len - pc->body_sent);
	pc->body_sent += len;
	conn_send(&pc->conn, data, len);
	return true;
}

static void pconn_attach(struct pconn *pc, struct http_exchange *ex)
{
	pc->ex = ex;
	ex->pc = pc;
	http_reader_reset(&pc->reader);
	pc->reader.max_body_bytes = ex->max_body_bytes ? ex->max_body_bytes : pc->reader_cap;
	pc->response_done = false;
	pc->keep_alive = false;
	pc->sending = false;
	if (pc->connected) {
		pconn_send_request(pc);
	} else {
		ex->phase = EX_CONNECTING;
		ex->phase_start_ns = pc->pool->ring->now_ns;
	}
}

/* Ends the current exchange; the connection goes back to the pool when
 * the response allowed it, else it is closed. */
static void pconn_finish(struct pconn *pc, int err, const char *msg)
{
	struct http_exchange *ex = pc->ex;
	struct pool *p = pc->pool;
	pc->ex = NULL;
	ex->pc = NULL;
	ex->phase = EX_DONE;
	/* A response that came before the whole request went out (an early
	 * error status) leaves the connection mid-request: never reused. */
	if (err == 0 && pc->keep_alive && !pc->sending && !p->closing && pc->counted) {
		pc->served++;
		struct http_exchange *next = queue_pop(pc->origin);
		if (next) {
			next->reused = true;
			p->stats.connections_reused++;
			pconn_attach(pc, next);
		} else if (!idle_push(pc)) {
			pconn_retire(pc); /* a connection less to reuse, nothing lost */
		}
	} else {
		pconn_retire(pc);
	}
	ex->h->on_done(ex, err, msg);
}

/* A transport failure. Before any response byte on a reused connection
 * the server most likely closed it while idle: send once more, fresh. */
static void pconn_fail(struct pconn *pc, int err, const char *msg)
{
	struct http_exchange *ex = pc->ex;
	struct pool *p = pc->pool;
	if (ex->first_byte_ns == 0 && ex->reused && !ex->resent && !p->closing) {
		ex->resent = true;
		p->stats.stale_resends++;
		pc->ex = NULL;
		ex->pc = NULL;
		pconn_retire(pc);
		struct pconn *fresh = pconn_open(p, ex->origin, 0, &ex->err);
		if (fresh) {
			ex->reused = false;
			pconn_attach(fresh, ex);
			return;
		}
		ex->phase = EX_DONE;
		ex->h->on_done(ex, ex->err.code, ex->err.message);
		return;
	}
	pconn_finish(pc, err, msg);
}

/* ---- conn callbacks ---- */

static void pconn_handshaking(struct conn *c)
{
	struct pconn *pc = container_of(c, struct pconn, conn);
	if (pc->ex) {
		pc->ex->phase = EX_HANDSHAKE;
		pc->ex->phase_start_ns = pc->pool->ring->now_ns;
	}
}

static void pconn_connected(struct conn *c, int err)
{
	struct pconn *pc = container_of(c, struct pconn, conn);
	struct pool *p = pc->pool;
	struct origin *o = pc->origin;
	pconn_opened(pc);
	if (err == 0) {
		pc->connected = true;
		if (c->tls) {
			if (c->tls_resumed) {
				p->stats.tls_resumed_handshakes++;
			} else {
				p->stats.tls_full_handshakes++;
				tls_session_save(c->tls, &o->session);
			}
		}
		if (pc->ex)
			pconn_send_request(pc);
		return;
	}
	struct http_exchange *ex = pc->ex;
	const struct url *u = &o->url;
	if (err == -EPROTO && c->tls_err.code) {
		/* The handshake failed: verification or the peer; another
		 * address of the same name would present the same. */
		if (ex) {
			error_copy(&ex->err, &c->tls_err);
			pc->ex = NULL;
			ex->pc = NULL;
			ex->phase = EX_DONE;
			pconn_retire(pc);
			ex->h->on_done(ex, ex->err.code, ex->err.message);
			return;
		}
		pconn_retire(pc);
		return;
	}
	if ((err == -EMFILE || err == -ENFILE) && ex && p->open_conns > 1 && !p->closing) {
		/* Out of file descriptors with other sockets open: back-pressure.
		 * The cap drops to what is open and the exchange waits for a
		 * socket to close. With nothing else open it fails below. */
		unsigned others = p->open_conns - 1;
		if (others < p->fd_cap)
			p->fd_cap = others;
		p->fd_cap_probe_ns = p->ring->now_ns + 1000000000u;
		p->stats.fd_waits++;
		pc->ex = NULL;
		ex->pc = NULL;
		pconn_retire(pc);
		queue_push(o, ex, EX_QUEUED, p->ring->now_ns);
		return;
	}
	if (ex && pc->addr_index + 1 < o->addrs.count && !p->closing) {
		/* Try the name's next address with a fresh socket. */
		unsigned next = pc->addr_index + 1;
		pc->ex = NULL;
		ex->pc = NULL;
		pconn_retire(pc);
		struct pconn *fresh = pconn_open(p, o, next, &ex->err);
		if (fresh) {
			pconn_attach(fresh, ex);
			return;
		}
		ex->phase = EX_DONE;
		ex->h->on_done(ex, ex->err.code, ex->err.message);
		return;
	}
	if (ex && o->addrs_expire_ns != UINT64_MAX && p->cfg.resolver &&
	    p->ring->now_ns >= o->addrs_expire_ns - p->cfg.dns_ttl_ns + ADDRS_MIN_AGE_NS) {
		/* Every address of the name failed: the next exchange asks
		 * again instead of trying the same ones until the TTL runs out
		 * (a server that moved). Not for answers younger than a second,
		 * so a server that is down is not looked up per request. */
		o->addrs_expire_ns = 0;
		resolver_forget(p->cfg.resolver, u->host);
	}
	if (ex) {
		error_set(&ex->err, LR_ECONNECT, -err, "connect to %s port %u failed: %s%s", u->host,
		          u->port, strerror(-err),
		          err == -EMFILE || err == -ENFILE ? " (raise the open-file limit or lower concurrency)" : "");
		pc->ex = NULL;
		ex->pc = NULL;
		ex->phase = EX_DONE;
		pconn_retire(pc);
		ex->h->on_done(ex, ex->err.code, ex->err.message);
		return;
	}
	pconn_retire(pc);
}

static void pconn_sent(struct conn *c, int err)
{
	struct pconn *pc = container_of(c, struct pconn, conn);
	struct http_exchange *ex = pc->ex;
	if (!ex)
		return;
	if (err < 0) {
		if (err == -EPROTO && c->tls_err.code) {
			error_copy(&ex->err, &c->tls_err);
			pconn_finish(pc, ex->err.code, ex->err.message);
			return;
		}
		error_set(&ex->err, LR_ECONNRESET, -err, "sending the request failed: %s", strerror(-err));
		pconn_fail(pc, ex->err.code, ex->err.message);
		return;
	}
	if (pc->sending && pconn_send_body(pc))
		return;
	pc->sending = false;
	if (ex->phase == EX_SENDING) {
		ex->phase = EX_WAITING;
		ex->phase_start_ns = pc->pool->ring->now_ns;
	}
}

static void pconn_received(struct conn *c, char *data, size_t len)
{
	struct pconn *pc = container_of(c, struct pconn, conn);
	struct http_exchange *ex = pc->ex;
	if (!ex) {
		/* Bytes nobody asked for: the connection is out of step. */
		pconn_retire(pc);
		return;
	}
	uint64_t now = pc->pool->ring->now_ns;
	if (ex->first_byte_ns == 0)
		ex->first_byte_ns = ex->last_byte_ns = now;
	if (!ex->owner_tracks_progress)
		ex->last_byte_ns = now;
	ex->phase = EX_RECEIVING;
	long n = http_reader_feed(&pc->reader, data, len, &pconn_reader_cb, pc);
	if (n < 0) {
		pc->keep_alive = false;
		pconn_finish(pc, (int)n, pc->reader.error_message ? pc->reader.error_message : lr_strerror((int)n));
		return;
	}
	if (pc->response_done) {
		if ((size_t)n < len)
			pc->keep_alive = false; /* no pipelining: extra bytes mean trouble */
		pconn_finish(pc, 0, NULL);
	}
}

static void pconn_eof(struct conn *c, int err)
{
	struct pconn *pc = container_of(c, struct pconn, conn);
	struct http_exchange *ex = pc->ex;
	if (!ex) {
		pconn_retire(pc); /* the server closed an idle connection */
		return;
	}
	pc->keep_alive = false;
	/* Past the head: the body was cut short (a caller may resume it). */
	ex->cut = pc->reader.state != HTTP_READ_HEAD && pc->reader.state != HTTP_READ_DONE &&
	          pc->reader.state != HTTP_READ_ERROR;
	if (err == 0) {
		int r = http_reader_eof(&pc->reader, &pconn_reader_cb, pc);
		if (r == 0 && pc->response_done) {
			pconn_finish(pc, 0, NULL);
			return;
		}
		if (r == LR_ECONNRESET) {
			pconn_fail(pc, LR_ECONNRESET, "connection closed by the server before any response");
			return;
		}
		pconn_finish(pc, r < 0 ? r : LR_EPROTO,
		             pc->reader.error_message ? pc->reader.error_message
		                                      : "connection closed in the middle of the response");
		return;
	}
	if (err == -EPROTO && c->tls_err.code) {
		error_copy(&ex->err, &c->tls_err);
		pconn_finish(pc, ex->err.code, ex->err.message);
		return;
	}
	error_set(&ex->err, LR_ECONNRESET, -err, "connection failed: %s", strerror(-err));
	pconn_fail(pc, ex->err.code, ex->err.message);
}

static void pconn_closed(struct conn *c)
{
	struct pconn *pc = container_of(c, struct pconn, conn);
	struct pool *p = pc->pool;
	p->open_conns--;
	all_conns_unlink(p, pc);
	http_reader_free(&pc->reader);
	free(pc);
	if (!p->closing)
		pool_dispatch_waiting(p);
}

static const struct conn_handler pconn_handler = {
	.connected = pconn_connected,
	.sent = pconn_sent,
	.received = pconn_received,
	.eof = pconn_eof,
	.closed = pconn_closed,
	.handshaking = pconn_handshaking,
};

/* ---- reader callbacks ---- */

static int pconn_on_head(void *ctx, const struct http_head *h)
{
	struct pconn *pc = ctx;
	pc->keep_alive = !h->conn_close && !h->close_delimited;
	return pc->ex->h->on_head(pc->ex, h);
}

static int pconn_on_body(void *ctx, const char *data, size_t len)
{
	struct pconn *pc = ctx;
	return pc->ex->h->on_body(pc->ex, data, len);
}

static int pconn_on_done(void *ctx)
{
	struct pconn *pc = ctx;
	pc->response_done = true;
	return 0;
}

static const struct http_reader_callbacks pconn_reader_cb = {
	.on_head = pconn_on_head,
	.on_body = pconn_on_body,
	.on_done = pconn_on_done,
};

/* ---- pool ---- */

/* The sockets one process may open, leaving room for its other files
 * (stdio, the batch's input and output, eventfds, the ring, resolver). */
static unsigned pool_fd_budget(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1u << 24)
		return 1u << 24;
	unsigned limit = (unsigned)rl.rlim_cur;
	unsigned reserve = 16 + (limit / 16 < 256 ? limit / 16 : 256);
	return limit > reserve + 1 ? limit - reserve : 1;
}

void pool_init(struct pool *p, struct ring *r, const struct pool_config *cfg)
{
	memset(p, 0, sizeof(*p));
	p->ring = r;
	p->cfg = *cfg;
	if (p->cfg.max_per_origin == 0)
		p->cfg.max_per_origin = 64;
	p->fd_cap = p->fd_cap_max = pool_fd_budget();
}

/* Whether o may open one more connection now. */
static bool pool_can_open(struct pool *p, struct origin *o)
{
	if (p->closing || o->conns >= p->cfg.max_per_origin || p->opening >= POOL_MAX_OPENING)
		return false;
	if (p->open_conns < p->fd_cap)
		return true;
	/* A cap lowered by EMFILE probes for room again once a second. */
	if (p->fd_cap < p->fd_cap_max && p->ring->now_ns >= p->fd_cap_probe_ns) {
		p->fd_cap++;
		p->fd_cap_probe_ns = p->ring->now_ns + 1000000000u;
		return p->open_conns < p->fd_cap;
	}
	return false;
}

/* A socket closed: exchanges waiting for one (any origin) may go. */
static void pool_dispatch_waiting(struct pool *p)
{
	for (struct origin *o = p->origins; o && p->open_conns < p->fd_cap && p->opening < POOL_MAX_OPENING;
	     o = o->next)
		origin_serve_queue(p, o, UINT_MAX);
}

const struct url *origin_url(const struct origin *o)
{
	return &o->url;
}

struct origin *pool_origin(struct pool *p, const struct url *u)
{
	for (struct origin *o = p->origins; o; o = o->next)
		if (url_same_origin(&o->url, u))
			return o;
	struct origin *o = calloc(1, sizeof(*o)); /* owner: the pool's origin list */
	if (!o)
		return NULL;
	o->url = *u;
	o->pool = p;
	if (u->resolved) {
		/* Numeric hosts and localhost: one address, for good. */
		o->addrs.count = 1;
		memcpy(&o->addrs.addr[0], &u->addr, u->addr_len);
		o->addrs.addr_len[0] = u->addr_len;
		o->addrs_expire_ns = UINT64_MAX;
	}
	o->next = p->origins;
	p->origins = o;
	return o;
}

static void queue_push(struct origin *o, struct http_exchange *ex, enum exchange_phase phase, uint64_t now)
{
	ex->phase = phase;
	ex->phase_start_ns = now;
	ex->next_queued = NULL;
	if (o->queue_tail)
		o->queue_tail->next_queued = ex;
	else
		o->queue_head = ex;
	o->queue_tail = ex;
}

static void origin_resolve(struct pool *p, struct origin *o);

static void pool_dispatch(struct pool *p, struct http_exchange *ex, bool allow_idle)
{
	struct origin *o = ex->origin;
	if (allow_idle && o->idle_head) {
		struct pconn *pc = o->idle_head;
		idle_remove(pc);
		ex->reused = true;
		p->stats.connections_reused++;
		pconn_attach(pc, ex);
		return;
	}
	if (pool_can_open(p, o)) {
		if (!origin_has_addrs(o, p->ring->now_ns)) {
			/* Waits (as connecting: the connect deadline runs) for
			 * the name; the answer dispatches the queue. */
			queue_push(o, ex, EX_CONNECTING, p->ring->now_ns);
			origin_resolve(p, o);
			return;
		}
		struct pconn *pc = pconn_open(p, o, 0, &ex->err);
		if (!pc) {
			ex->phase = EX_DONE;
			ex->h->on_done(ex, ex->err.code, ex->err.message);
			return;
		}
		ex->reused = false;
		pconn_attach(pc, ex);
		return;
	}
	queue_push(o, ex, EX_QUEUED, p->ring->now_ns);
}

static void origin_resolved(void *ctx, const struct resolve_result *res)
{
	struct origin *o = ctx;
	struct pool *p = o->pool;
	o->resolving = false;
	if (res->error) {
		if (o->conns > 0)
			return; /* live connections will serve the queue */
		struct http_exchange *ex;
		while ((ex = queue_pop(o))) {
			error_set(&ex->err, res->error, 0, "%s", res->message);
			ex->phase = EX_DONE;
			ex->h->on_done(ex, ex->err.code, ex->err.message);
		}
		return;
	}
	o->addrs = *res;
	o->addrs_expire_ns = p->ring->now_ns + p->cfg.dns_ttl_ns;
	origin_serve_queue(p, o, UINT_MAX);
}

static void origin_resolve(struct pool *p, struct origin *o)
{
	if (o->resolving)
		return;
	if (!p->cfg.resolver) {
		struct resolve_result fail = {.error = LR_ECONNECT};
		snprintf(fail.message, sizeof(fail.message), "cannot resolve host '%.200s': no resolver",
		         o->url.host);
		origin_resolved(o, &fail);
		return;
	}
	o->resolving = true;
	int r = resolver_lookup(p->cfg.resolver, o->url.host, o->url.port, origin_resolved, o);
	if (r < 0) {
		o->resolving = false;
		struct resolve_result fail = {.error = r};
		snprintf(fail.message, sizeof(fail.message), "cannot resolve host '%.200s': out of memory",
		         o->url.host);
		origin_resolved(o, &fail);
	}
}

void pool_start(struct pool *p, struct http_exchange *ex)
{
	ex->pc = NULL;
	ex->resent = false;
	ex->reused = false;
	ex->owner_tracks_progress = false;
	ex->first_byte_ns = ex->last_byte_ns = ex->sent_ns = ex->dequeued_ns = 0;
	ex->cut = false;
	error_clear(&ex->err);
	if (p->closing) {
		ex->phase = EX_DONE;
		ex->h->on_done(ex, LR_ECANCELLED, "the engine is shutting down");
		return;
	}
	pool_dispatch(p, ex, true);
}

void pool_abort(struct pool *p, struct http_exchange *ex, int err, const char *msg)
{
	if (ex->phase == EX_DONE || ex->phase == EX_IDLE)
		return;
	if (ex->phase == EX_QUEUED) {
		struct origin *o = ex->origin;
		struct http_exchange **pp = &o->queue_head, *prev = NULL;
		while (*pp && *pp != ex) {
			prev = *pp;
			pp = &(*pp)->next_queued;
		}
		if (*pp) {
			*pp = ex->next_queued;
			if (o->queue_tail == ex)
				o->queue_tail = prev;
		}
		ex->next_queued = NULL;
	} else if (ex->pc) {
		struct pconn *pc = ex->pc;
		pc->ex = NULL;
		ex->pc = NULL;
		pconn_retire(pc);
	}
	ex->phase = EX_DONE;
	ex->h->on_done(ex, err, msg);
}

void pool_close_idle(struct pool *p)
{
	p->closing = true;
	for (struct origin *o = p->origins; o; o = o->next) {
		while (o->idle_head)
			pconn_retire(o->idle_head);
		if (o->resolving && p->cfg.resolver) {
			resolver_cancel(p->cfg.resolver, o);
			o->resolving = false;
		}
	}
}

void pool_abandon(struct pool *p)
{
	while (p->conns) {
		struct pconn *pc = p->conns;
		all_conns_unlink(p, pc);
		conn_abandon(&pc->conn);
		http_reader_free(&pc->reader);
		free(pc);
	}
	p->open_conns = 0;
}

void pool_free(struct pool *p)
{
	struct origin *o = p->origins;
	while (o) {
		struct origin *next = o->next;
		tls_session_free(o->session);
		free(o);
		o = next;
	}
	p->origins = NULL;
	tls_config_free(p->tls);
	p->tls = NULL;
}

/*
 * A TCP connection driven entirely by the ring: socket, connect, send,
 * multishot recv into provided buffers, cancel and close are SQEs.
 *
 * The owner embeds struct conn and gets callbacks; once conn_close() was
 * called only `closed` follows, after the last SQE of the connection has
 * completed, and only then may the owner free the memory.
 */
#ifndef LR_CONN_H
#define LR_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "util/buf.h"
#include "util/errors.h"
#include "io/ring.h"
#include "io/tls.h"

struct conn;
struct conn_handler {
	void (*connected)(struct conn *c, int err);       /* 0 or -errno */
	void (*sent)(struct conn *c, int err);            /* whole buffer sent, or -errno */
	/* Bytes in a provided buffer, valid only during the call (the
	 * handler may modify them in place). */
	void (*received)(struct conn *c, char *data, size_t len);
	void (*eof)(struct conn *c, int err);             /* 0: peer closed; -errno: recv failed */
	void (*closed)(struct conn *c);                   /* all done: the owner may free */
	/* TLS only: TCP is up and the handshake has begun (may be NULL). */
	void (*handshaking)(struct conn *c);
};

/* connected/sent/eof report -EPROTO for a TLS failure; tls_err then
 * holds its LR_E* code and what failed. */

struct conn {
	struct ring *ring;
	const struct conn_handler *h;
	int fd;
	unsigned ops_in_flight;
	bool recv_armed, closing, close_queued;
	bool recv_deferred;         /* out of buffers: re-armed next turn (counted in flight) */
	bool connect_inflight;      /* op_connect is in the kernel */
	bool send_inflight;         /* op_send is in the kernel */
	struct ring_deferred rearm;
	struct ring_op op_socket, op_connect, op_send, op_recv, op_close;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	const char *tx;             /* borrowed until `sent` (plain TCP) */
	size_t tx_len, tx_done;

	struct tls_conn *tls;       /* owner: conn; NULL for plain TCP */
	bool tls_ready;             /* handshake finished */
	bool tls_user_send;         /* a conn_send waits for its ciphertext to drain */
	bool tls_send_busy;         /* ciphertext in flight */
	bool tls_resumed;
	struct buf tls_tx;     /* owner: conn; ciphertext the kernel is sending */
	struct error_info tls_err;  /* code != 0: the LR_E* behind an -EPROTO report */
};

void conn_init(struct conn *c, struct ring *r, const struct conn_handler *h);
/* Opens a socket and connects; `connected` reports the outcome, after
 * which received data flows until eof or close. */
void conn_connect(struct conn *c, const struct sockaddr *sa, socklen_t len);
/* The same, then a TLS handshake over tls (taken over, freed with c):
 * `connected` comes once the handshake has finished. */
void conn_connect_tls(struct conn *c, const struct sockaddr *sa, socklen_t len, struct tls_conn *tls);
/* One send at a time; data must stay valid until `sent`. */
void conn_send(struct conn *c, const char *data, size_t len);
/* Asynchronous; idempotent. */
void conn_close(struct conn *c);
/* For a ring that has failed (no completion will come): closes the fd
 * with close(2) and frees the TLS state now, without any callback. The
 * owner then frees c. */
void conn_abandon(struct conn *c);

#endif

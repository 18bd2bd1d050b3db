/*
 * The mock server's TLS engine (mbedTLS 2.28, TLS 1.2, server side). Like
 * BearSSL's engine it does no socket I/O: the ring receives ciphertext into
 * the space mock_tls_conn_in_space() lends, and every ciphertext byte mbedTLS
 * produces goes to the connection's sink, which the ring sends. Everything
 * runs on the mock server's thread; mock_tls_resumptions() may be read from
 * any thread.
 */
#ifndef LR_MOCK_TLS_H
#define LR_MOCK_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mock_tls;      /* server-wide: config, rng, certificate, key, ticket key, cache */
struct mock_tls_conn; /* one connection's TLS state */

/* Receives ciphertext to send, in order. */
typedef void mock_tls_sink(void *arg, const unsigned char *p, size_t n);

/* Loads the certificate chain and the private key (PEM or DER) and sets up a
 * TLS 1.2 server with session tickets and a session cache. Returns 0, or
 * -errno from opening a file (-ENOENT, -EACCES...), -EINVAL when a file's
 * contents are unusable or the key does not match the certificate, -ENOMEM.
 * On failure writes a one-line reason to msg (when msgsz > 0). */
int mock_tls_new(const char *cert_file, const char *key_file, struct mock_tls **out,
		 char *msg, size_t msgsz);
void mock_tls_free(struct mock_tls *t);
/* Handshakes completed that resumed a session (ticket or session id). */
uint64_t mock_tls_resumptions(const struct mock_tls *t);

/* NULL when out of memory. */
struct mock_tls_conn *mock_tls_conn_new(struct mock_tls *t, mock_tls_sink *sink, void *arg);
void mock_tls_conn_free(struct mock_tls_conn *c);

/* Space for at least `want` bytes of ciphertext at *p (*n bytes in all);
 * valid until the next call on c. Report what arrived with _in_commit. */
void mock_tls_conn_in_space(struct mock_tls_conn *c, size_t want, unsigned char **p,
			    size_t *n);
void mock_tls_conn_in_commit(struct mock_tls_conn *c, size_t n);

/* Advances the handshake on the ciphertext received so far: 1 done (also
 * when it already was), 0 waits for more ciphertext, -EPROTO failed (an
 * alert may have gone to the sink; close the connection). */
int mock_tls_conn_handshake(struct mock_tls_conn *c);
bool mock_tls_conn_resumed(const struct mock_tls_conn *c);
/* Decrypts into dst: >0 bytes, 0 when it needs more ciphertext, -EPIPE
 * when the peer sent close_notify, -EPROTO on a TLS error. */
int mock_tls_conn_read(struct mock_tls_conn *c, void *dst, size_t cap);
/* Encrypts all n bytes to the sink. 0 or -EPROTO. */
int mock_tls_conn_write(struct mock_tls_conn *c, const void *p, size_t n);
/* Sends the close_notify alert to the sink. 0 or -EPROTO. */
int mock_tls_conn_close_notify(struct mock_tls_conn *c);

#endif

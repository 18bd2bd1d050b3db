/*
 * TLS as a byte transformer (BearSSL's engine shape over mbedTLS 2.28):
 * ciphertext from the network is fed in, ciphertext to send is taken out,
 * plaintext goes through tls_conn_read/tls_conn_write. This layer never
 * touches a socket; the ring does all I/O (conn.c).
 *
 * One tls_config per loop thread (entropy, DRBG, ssl_config, CA chain).
 * Verification is on unless the config says insecure; the host name is
 * always checked (mbedtls_ssl_set_hostname, or for an IP literal our own
 * iPAddress subjectAltName check: 2.28.3 has none, and sends no SNI then).
 */
#ifndef LR_TLS_H
#define LR_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct tls_config;
struct tls_conn;
struct tls_session;

struct tls_config_options {
	const char *ca_file;  /* NULL: the system bundle (the engine resolves SSL_CERT_FILE) */
	bool insecure;        /* no verification at all (the caller warns) */
};

/* The CA bundle is read here: create the config on first https use.
 * 0, or LR_E* with a message in err. */
int tls_config_new(const struct tls_config_options *o, struct tls_config **out, char *err,
                   size_t err_cap);
void tls_config_free(struct tls_config *cfg);

/* mbedTLS's default suites with AES-GCM first (AES-128 before AES-256)
 * when the CPU has AES and carry-less multiply instructions: libcrypto's
 * AES-GCM is then 1.7x faster than its ChaCha20-Poly1305 on a 700-byte
 * record. NULL (keep the default) otherwise or out of memory; owner: the
 * caller (free), and it must outlive the mbedtls_ssl_config using it. */
int *tls_suites_new(void);

/* A client connection to host (name or IP literal), offering a saved
 * session when resume is not NULL. NULL when out of memory. */
struct tls_conn *tls_conn_new(struct tls_config *cfg, const char *host,
                              const struct tls_session *resume);
void tls_conn_free(struct tls_conn *t);

/* Ciphertext received. After the handshake (AEAD suites) the bytes are
 * decrypted in place: the caller lends data until tls_conn_read returns
 * 0 or less, and must call it until then. 0, LR_ENOMEM, or LR_EPROTO. */
int tls_conn_feed(struct tls_conn *t, char *data, size_t len);
/* Moves the ciphertext waiting to be sent into *dst (which must be
 * empty) by swapping buffers: the kernel can read dst while mbedTLS
 * appends new output to the other one. Returns the bytes moved. */
struct buf;
size_t tls_conn_take_output(struct tls_conn *t, struct buf *dst);

/* Runs the handshake as far as the input allows: 1 done, 0 more input
 * needed, or LR_ETLS_* (untrusted, name, expired, handshake) with a
 * message saying what failed. */
int tls_conn_handshake(struct tls_conn *t, char *msg, size_t msg_cap);
/* Whether the finished handshake resumed the offered session. */
bool tls_conn_resumed(const struct tls_conn *t);

/* The next decrypted bytes: >0 bytes at *plain (valid until the next
 * feed or read), 0 more input needed, TLS_CLOSED after the peer's
 * close_notify, or LR_E* (with msg). */
#define TLS_CLOSED (-1000)
long tls_conn_read(struct tls_conn *t, char **plain, char *msg, size_t msg_cap);
/* Encrypts all of data into the output. 0 or LR_E*. */
int tls_conn_write(struct tls_conn *t, const char *data, size_t len);
/* Queues a close_notify alert in the output. */
void tls_conn_close_notify(struct tls_conn *t);

/* The session of a finished handshake, for the next connection to the
 * same origin (replaces *slot; owner: whoever holds the slot). */
void tls_session_save(struct tls_conn *t, struct tls_session **slot);
void tls_session_free(struct tls_session *s);

#endif

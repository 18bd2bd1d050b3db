/*
 * The TLS 1.2 AEAD record layer after the handshake, on OpenSSL's
 * libcrypto (EVP): AES-128/256-GCM (RFC 5288) and ChaCha20-Poly1305
 * (RFC 7905). mbedTLS 2.28 keeps the handshake; tls.c hands its keys and
 * sequence numbers over here once it is done (see tls.c for why).
 *
 * Input is lent, not copied: tls_rec_feed() takes the received buffer,
 * and tls_rec_open() decrypts whole records in place in it. Only a partial
 * record at the buffer's end is copied, into a staging buffer, when
 * tls_rec_open() returns 0: from then on the lent buffer is no longer
 * referenced and its owner may reuse it.
 */
#ifndef LR_TLS_REC_H
#define LR_TLS_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum tls_rec_cipher {
	TLS_REC_AES_128_GCM,
	TLS_REC_AES_256_GCM,
	TLS_REC_CHACHA20_POLY1305,
};

/* The largest TLSCiphertext.length RFC 5246 allows (6.2.3). */
#define TLS_REC_MAX_CIPHERTEXT (16384 + 2048)
#define TLS_REC_MAX_PLAINTEXT 16384
/* tls_rec_open after close_notify: tls.h's TLS_CLOSED (tls.c checks). */
#define TLS_REC_CLOSED (-1000)

enum tls_rec_type {
	TLS_REC_CHANGE_CIPHER_SPEC = 20,
	TLS_REC_ALERT = 21,
	TLS_REC_HANDSHAKE = 22,
	TLS_REC_APPLICATION_DATA = 23,
};

/* One direction's key material: for GCM only the first 4 bytes of iv
 * (the salt) are used, for ChaCha20-Poly1305 all 12. */
struct tls_rec_keys {
	enum tls_rec_cipher cipher;
	unsigned char write_key[32], read_key[32];
	unsigned char write_iv[12], read_iv[12];
	uint64_t write_seq, read_seq; /* the next record's sequence numbers */
};

struct tls_rec;

/* Whether libcrypto could be loaded (on the first call, on any thread;
 * util/lazy_lib.h): without it tls_rec_new says NULL and mbedTLS keeps
 * the records. why gets dlopen's words when not; NULL is fine. */
bool tls_rec_available(char *why, size_t why_cap);

/* NULL when out of memory or libcrypto refused the keys. The caller may
 * wipe k afterwards: the record layer keeps its own copy. */
struct tls_rec *tls_rec_new(const struct tls_rec_keys *k);
/* Wipes the keys and frees (NULL is fine). */
void tls_rec_free(struct tls_rec *r);

/* Lends received ciphertext (see above). Fails with LR_EPROTO when the
 * previous lent buffer was not read to the end: its bytes are gone. */
int tls_rec_feed(struct tls_rec *r, char *data, size_t len);

/* The next application data: >0 with *plain pointing at that many bytes
 * (valid until the next tls_rec_feed/tls_rec_open), 0 when more input is
 * needed, TLS_REC_CLOSED after close_notify, or LR_EPROTO / LR_ENOMEM
 * with a message in msg. After an error every call fails again. */
long tls_rec_open(struct tls_rec *r, char **plain, char *msg, size_t msg_cap);

/* Encrypts len bytes (split into records of at most 2^14) of the given
 * type onto out. 0, LR_ENOMEM, or LR_EPROTO (sequence numbers used up or
 * libcrypto failed). */
int tls_rec_seal(struct tls_rec *r, enum tls_rec_type type, const char *data, size_t len,
                 struct buf *out);

/* Bytes of the lent buffer not read yet (0 once tls_rec_open returned 0). */
size_t tls_rec_unread(const struct tls_rec *r);
/* Forgets the lent buffer, returning how many bytes at its end were not
 * read: the caller keeps them and lends them again with what follows. */
size_t tls_rec_take_back(struct tls_rec *r);

/* For tests: the next sequence numbers. */
void tls_rec_set_seq(struct tls_rec *r, uint64_t write_seq, uint64_t read_seq);

#endif

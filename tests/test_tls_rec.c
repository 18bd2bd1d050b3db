/*
 * The TLS 1.2 AEAD record layer on its own (engine/io/tls_rec.c): two
 * record layers with mirrored keys stand for client and server. Records
 * split at every byte boundary, coalesced, corrupted, oversized, alerts,
 * HelloRequest, sequence numbers at their end. The same code against
 * real servers (mbedTLS in the mock, OpenSSL in nginx): test_tls.c.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include <cmocka.h>

#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <openssl/evp.h>

#include "io/tls.h"
#include "io/tls_rec.h"
#include "llmring.h"
#include "mock_tls.h"
#include "util/buf.h"

static const enum tls_rec_cipher ciphers[] = {TLS_REC_AES_128_GCM, TLS_REC_AES_256_GCM,
                                              TLS_REC_CHACHA20_POLY1305};

/* A client and a server: one's write keys are the other's read keys. */
static void make_pair(enum tls_rec_cipher c, struct tls_rec **client, struct tls_rec **server)
{
	struct tls_rec_keys k = {.cipher = c, .write_seq = 1, .read_seq = 1};
	for (int i = 0; i < 32; i++)
		k.write_key[i] = (unsigned char)(i * 7 + 1), k.read_key[i] = (unsigned char)(i * 13 + 5);
	for (int i = 0; i < 12; i++)
		k.write_iv[i] = (unsigned char)(i * 3 + 2), k.read_iv[i] = (unsigned char)(i * 11 + 9);
	*client = tls_rec_new(&k);
	struct tls_rec_keys m = k;
	memcpy(m.write_key, k.read_key, 32);
	memcpy(m.read_key, k.write_key, 32);
	memcpy(m.write_iv, k.read_iv, 12);
	memcpy(m.read_iv, k.write_iv, 12);
	*server = tls_rec_new(&m);
	assert_non_null(*client);
	assert_non_null(*server);
}

static void fill_pattern(char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (char)((i * 31 + seed) & 0xff);
}

/* Lends a private copy of data[0..n) to r, reads everything, appends the
 * plaintext to plain, then scribbles over and frees the copy: the layer
 * must keep no pointer into it. Returns the last tls_rec_open result. */
static long feed_copy(struct tls_rec *r, const char *data, size_t n, struct buf *plain, char *msg,
                      size_t cap)
{
	char *copy = malloc(n ? n : 1);
	assert_non_null(copy);
	memcpy(copy, data, n);
	long rc = tls_rec_feed(r, copy, n);
	if (rc == 0) {
		for (;;) {
			char *p;
			rc = tls_rec_open(r, &p, msg, cap);
			if (rc <= 0)
				break;
			assert_int_equal(buf_append(plain, p, (size_t)rc), 0);
		}
	}
	memset(copy, 0xA5, n);
	free(copy);
	return rc;
}

/* The server's stream: records of these sizes, then close_notify. */
static void server_stream(struct tls_rec *server, const size_t *sizes, size_t count, struct buf *wire,
                          struct buf *expect)
{
	for (size_t i = 0; i < count; i++) {
		char *p = malloc(sizes[i] + 1);
		assert_non_null(p);
		fill_pattern(p, sizes[i], (unsigned)i);
		assert_int_equal(tls_rec_seal(server, TLS_REC_APPLICATION_DATA, p, sizes[i], wire), 0);
		assert_int_equal(buf_append(expect, p, sizes[i]), 0);
		free(p);
	}
	static const char close_notify[2] = {1, 0};
	assert_int_equal(tls_rec_seal(server, TLS_REC_ALERT, close_notify, 2, wire), 0);
}

static void test_request_and_response_round_trip_on_every_cipher(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(ciphers) / sizeof(ciphers[0]); c++) {
		struct tls_rec *client, *server;
		make_pair(ciphers[c], &client, &server);
		/* 40,000 bytes: three records (2^14 plaintext at most each). */
		size_t sizes[] = {1, 40000, 16384, 0, 700};
		for (int dir = 0; dir < 2; dir++) {
			struct tls_rec *from = dir ? client : server, *to = dir ? server : client;
			struct buf wire = {0}, expect = {0}, got = {0};
			server_stream(from, sizes, 5, &wire, &expect);
			/* 1 + 3 + 1 + 1 + 1 records and the alert: lengths add up. */
			size_t overhead = ciphers[c] == TLS_REC_CHACHA20_POLY1305 ? 21 : 29;
			assert_int_equal(wire.len, expect.len + 2 + 8 * overhead);
			char msg[160] = "";
			assert_int_equal(feed_copy(to, wire.data, wire.len, &got, msg, sizeof(msg)), TLS_REC_CLOSED);
			assert_int_equal(got.len, expect.len);
			assert_memory_equal(got.data, expect.data, expect.len);
			buf_free(&wire), buf_free(&expect), buf_free(&got);
		}
		tls_rec_free(client);
		tls_rec_free(server);
	}
}

/* A sealed AES-128-GCM record, byte for byte, against libcrypto's plain
 * (not TLS-mode) AES-GCM given the nonce and additional data the RFCs
 * define: nonce = salt(4) || seq(8) (RFC 5288 3), AAD = seq(8) type(1)
 * 0x03 0x03 length(2) (RFC 5246 6.2.3.3), all big-endian. A sequence
 * number with eight different bytes catches any byte-order slip, which a
 * pair of our own record layers would not (they would agree). */
static void test_a_sealed_record_is_the_rfc_aes_gcm_at_a_large_sequence_number(void **state)
{
	(void)state;
	const uint64_t seq = 0x0102030405060708ULL;
	struct tls_rec_keys k = {.cipher = TLS_REC_AES_128_GCM, .write_seq = seq, .read_seq = 0};
	for (int i = 0; i < 16; i++)
		k.write_key[i] = (unsigned char)(i * 7 + 1);
	for (int i = 0; i < 4; i++)
		k.write_iv[i] = (unsigned char)(0xA0 + i);
	struct tls_rec *r = tls_rec_new(&k);
	assert_non_null(r);
	char plain[300];
	fill_pattern(plain, sizeof(plain), 7);
	struct buf wire = {0};
	assert_int_equal(tls_rec_seal(r, TLS_REC_APPLICATION_DATA, plain, sizeof(plain), &wire), 0);
	assert_int_equal(wire.len, 5 + 8 + sizeof(plain) + 16);

	unsigned char nonce[12] = {0xA0, 0xA1, 0xA2, 0xA3, 1, 2, 3, 4, 5, 6, 7, 8};
	unsigned char aad[13] = {1, 2, 3, 4, 5, 6, 7, 8, 23, 3, 3, sizeof(plain) >> 8,
	                         sizeof(plain) & 0xff};
	unsigned char want[5 + 8 + sizeof(plain) + 16] = {23, 3, 3, (8 + sizeof(plain) + 16) >> 8,
	                                                   (8 + sizeof(plain) + 16) & 0xff};
	memcpy(want + 5, nonce + 4, 8);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, m = 0;
	assert_non_null(ctx);
	assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, k.write_key, nonce), 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, NULL, &n, aad, sizeof(aad)), 1);
	assert_int_equal(EVP_EncryptUpdate(ctx, want + 13, &n, (const unsigned char *)plain,
	                                   (int)sizeof(plain)), 1);
	assert_int_equal(EVP_EncryptFinal_ex(ctx, want + 13 + n, &m), 1);
	assert_int_equal(n + m, (int)sizeof(plain));
	assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, want + 13 + sizeof(plain)), 1);
	EVP_CIPHER_CTX_free(ctx);
	assert_memory_equal(wire.data, want, sizeof(want));

	/* And the next record carries the next number. */
	buf_clear(&wire);
	assert_int_equal(tls_rec_seal(r, TLS_REC_APPLICATION_DATA, plain, 1, &wire), 0);
	static const unsigned char next[8] = {1, 2, 3, 4, 5, 6, 7, 9};
	assert_memory_equal(wire.data + 5, next, 8);
	buf_free(&wire);
	tls_rec_free(r);
}

static void test_records_split_at_every_byte_boundary(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(ciphers) / sizeof(ciphers[0]); c++) {
		struct tls_rec *client, *server;
		make_pair(ciphers[c], &client, &server);
		size_t sizes[] = {1, 300, 2000};
		struct buf wire = {0}, expect = {0};
		server_stream(server, sizes, 3, &wire, &expect);
		tls_rec_free(server);
		tls_rec_free(client);
		for (size_t k = 0; k <= wire.len; k++) {
			make_pair(ciphers[c], &client, &server);
			struct buf got = {0};
			char msg[160] = "";
			long rc = feed_copy(client, wire.data, k, &got, msg, sizeof(msg));
			assert_int_equal(rc, k == wire.len ? TLS_REC_CLOSED : 0);
			if (k < wire.len)
				rc = feed_copy(client, wire.data + k, wire.len - k, &got, msg, sizeof(msg));
			assert_int_equal(rc, TLS_REC_CLOSED);
			assert_int_equal(got.len, expect.len);
			assert_memory_equal(got.data, expect.data, expect.len);
			buf_free(&got);
			tls_rec_free(client);
			tls_rec_free(server);
		}
		/* And one byte per received buffer. */
		make_pair(ciphers[c], &client, &server);
		struct buf got = {0};
		char msg[160] = "";
		long rc = 0;
		for (size_t i = 0; i < wire.len; i++) {
			rc = feed_copy(client, wire.data + i, 1, &got, msg, sizeof(msg));
			assert_int_equal(rc, i + 1 == wire.len ? TLS_REC_CLOSED : 0);
		}
		assert_int_equal(got.len, expect.len);
		assert_memory_equal(got.data, expect.data, expect.len);
		buf_free(&got), buf_free(&wire), buf_free(&expect);
		tls_rec_free(client);
		tls_rec_free(server);
	}
}

static void test_coalesced_records_come_out_one_by_one(void **state)
{
	(void)state;
	struct tls_rec *client, *server;
	make_pair(TLS_REC_AES_128_GCM, &client, &server);
	struct buf wire = {0};
	for (int i = 0; i < 50; i++) {
		char text[16];
		int n = snprintf(text, sizeof(text), "record %02d;", i);
		assert_int_equal(tls_rec_seal(server, TLS_REC_APPLICATION_DATA, text, (size_t)n, &wire), 0);
	}
	assert_int_equal(tls_rec_feed(client, wire.data, wire.len), 0);
	char msg[160];
	for (int i = 0; i < 50; i++) {
		char *p, text[16];
		int n = snprintf(text, sizeof(text), "record %02d;", i);
		assert_int_equal(tls_rec_open(client, &p, msg, sizeof(msg)), n);
		assert_memory_equal(p, text, (size_t)n);
	}
	char *p;
	assert_int_equal(tls_rec_open(client, &p, msg, sizeof(msg)), 0);
	assert_int_equal(tls_rec_unread(client), 0);
	buf_free(&wire);
	tls_rec_free(client);
	tls_rec_free(server);
}

/* Seals one record from server and returns what the client's open says. */
static long open_one(struct tls_rec *client, struct buf *wire, char *msg, size_t cap)
{
	long rc = tls_rec_feed(client, wire->data, wire->len);
	if (rc)
		return rc;
	char *p;
	do
		rc = tls_rec_open(client, &p, msg, cap);
	while (rc > 0);
	return rc;
}

static void test_a_flipped_byte_fails_with_a_clear_error(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(ciphers) / sizeof(ciphers[0]); c++) {
		struct tls_rec *client, *server;
		make_pair(ciphers[c], &client, &server);
		struct buf wire = {0};
		assert_int_equal(tls_rec_seal(server, TLS_REC_APPLICATION_DATA, "HTTP/1.1 200 OK", 15, &wire), 0);
		tls_rec_free(client), tls_rec_free(server);
		/* Every byte after the header: explicit nonce, ciphertext, tag. */
		for (size_t i = 5; i < wire.len; i++) {
			make_pair(ciphers[c], &client, &server);
			struct buf bad = {0};
			assert_int_equal(buf_append(&bad, wire.data, wire.len), 0);
			bad.data[i] ^= 0x01;
			char msg[160] = "";
			assert_int_equal(open_one(client, &bad, msg, sizeof(msg)), LR_EPROTO);
			assert_non_null(strstr(msg, "bad record authentication tag"));
			/* The error sticks. */
			char *p;
			assert_int_equal(tls_rec_open(client, &p, msg, sizeof(msg)), LR_EPROTO);
			buf_free(&bad);
			tls_rec_free(client), tls_rec_free(server);
		}
		buf_free(&wire);
	}
}

static void test_a_replayed_record_fails(void **state)
{
	(void)state;
	struct tls_rec *client, *server;
	make_pair(TLS_REC_CHACHA20_POLY1305, &client, &server);
	struct buf wire = {0};
	assert_int_equal(tls_rec_seal(server, TLS_REC_APPLICATION_DATA, "once", 4, &wire), 0);
	assert_int_equal(buf_append(&wire, wire.data, wire.len), 0); /* the same record twice */
	char msg[160] = "";
	assert_int_equal(open_one(client, &wire, msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "authentication tag"));
	buf_free(&wire);
	tls_rec_free(client), tls_rec_free(server);
}

static long open_raw(const unsigned char *bytes, size_t n, char *msg, size_t cap)
{
	struct tls_rec *client, *server;
	make_pair(TLS_REC_AES_256_GCM, &client, &server);
	struct buf wire = {0};
	assert_int_equal(buf_append(&wire, bytes, n), 0);
	long rc = open_one(client, &wire, msg, cap);
	buf_free(&wire);
	tls_rec_free(client), tls_rec_free(server);
	return rc;
}

static void test_bad_headers_fail_before_the_body_arrives(void **state)
{
	(void)state;
	char msg[160] = "";
	/* 2^14 + 2049 bytes announced: refused from the header alone. */
	const unsigned char oversized[] = {23, 3, 3, 0x48, 0x01};
	assert_int_equal(open_raw(oversized, sizeof(oversized), msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "18433 bytes, over the limit of 18432"));
	/* The limit itself waits for the body. */
	const unsigned char at_limit[] = {23, 3, 3, 0x48, 0x00};
	assert_int_equal(open_raw(at_limit, sizeof(at_limit), msg, sizeof(msg)), 0);
	const unsigned char tls10[] = {23, 3, 1, 0, 40};
	assert_int_equal(open_raw(tls10, sizeof(tls10), msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "version 0x0301"));
	const unsigned char unknown[] = {99, 3, 3, 0, 40};
	assert_int_equal(open_raw(unknown, sizeof(unknown), msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "unknown type 99"));
	const unsigned char too_short[] = {23, 3, 3, 0, 23};
	assert_int_equal(open_raw(too_short, sizeof(too_short), msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "too short"));
}

/* Sealed records of the given types and contents, then what the client makes of them. */
static long server_says(enum tls_rec_type type, const char *content, size_t n, struct buf *plain,
                        char *msg, size_t cap)
{
	struct tls_rec *client, *server;
	make_pair(TLS_REC_AES_128_GCM, &client, &server);
	struct buf wire = {0};
	assert_int_equal(tls_rec_seal(server, type, content, n, &wire), 0);
	assert_int_equal(tls_rec_seal(server, TLS_REC_APPLICATION_DATA, "after", 5, &wire), 0);
	long rc = feed_copy(client, wire.data, wire.len, plain, msg, cap);
	buf_free(&wire);
	tls_rec_free(client), tls_rec_free(server);
	return rc;
}

static void test_hello_request_is_ignored_other_handshakes_fail(void **state)
{
	(void)state;
	struct buf plain = {0};
	char msg[160] = "";
	/* One HelloRequest, and two in one record. */
	assert_int_equal(server_says(TLS_REC_HANDSHAKE, "\0\0\0\0", 4, &plain, msg, sizeof(msg)), 0);
	assert_int_equal(plain.len, 5);
	assert_memory_equal(plain.data, "after", 5);
	buf_clear(&plain);
	assert_int_equal(server_says(TLS_REC_HANDSHAKE, "\0\0\0\0\0\0\0\0", 8, &plain, msg, sizeof(msg)), 0);
	assert_int_equal(plain.len, 5);
	buf_clear(&plain);
	/* A NewSessionTicket (4) after the handshake, a truncated HelloRequest. */
	assert_int_equal(server_says(TLS_REC_HANDSHAKE, "\4\0\0\0", 4, &plain, msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "unexpected handshake message (type 4)"));
	assert_int_equal(server_says(TLS_REC_HANDSHAKE, "\0\0", 2, &plain, msg, sizeof(msg)), LR_EPROTO);
	assert_int_equal(server_says(TLS_REC_CHANGE_CIPHER_SPEC, "\1", 1, &plain, msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "type 20"));
	assert_int_equal(plain.len, 0);
	buf_free(&plain);
}

static void test_alerts(void **state)
{
	(void)state;
	struct buf plain = {0};
	char msg[160] = "";
	/* close_notify: nothing after it is delivered. */
	assert_int_equal(server_says(TLS_REC_ALERT, "\1\0", 2, &plain, msg, sizeof(msg)), TLS_REC_CLOSED);
	assert_int_equal(plain.len, 0);
	/* A fatal alert is named. */
	assert_int_equal(server_says(TLS_REC_ALERT, "\2\50", 2, &plain, msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "fatal alert: handshake_failure (40)"));
	assert_int_equal(server_says(TLS_REC_ALERT, "\2\120", 2, &plain, msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "internal_error (80)"));
	/* A warning (no_renegotiation) changes nothing. */
	assert_int_equal(server_says(TLS_REC_ALERT, "\1\144", 2, &plain, msg, sizeof(msg)), 0);
	assert_int_equal(plain.len, 5);
	buf_clear(&plain);
	assert_int_equal(server_says(TLS_REC_ALERT, "\1", 1, &plain, msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "malformed alert"));
	buf_free(&plain);
}

static void test_sequence_numbers_never_wrap(void **state)
{
	(void)state;
	struct tls_rec *client, *server;
	make_pair(TLS_REC_CHACHA20_POLY1305, &client, &server);
	tls_rec_set_seq(server, UINT64_MAX - 1, 0);
	tls_rec_set_seq(client, 0, UINT64_MAX - 1);
	struct buf wire = {0}, plain = {0};
	assert_int_equal(tls_rec_seal(server, TLS_REC_APPLICATION_DATA, "last", 4, &wire), 0);
	assert_int_equal(tls_rec_seal(server, TLS_REC_APPLICATION_DATA, "wraps", 5, &wire), LR_EPROTO);
	char msg[160] = "";
	assert_int_equal(feed_copy(client, wire.data, wire.len, &plain, msg, sizeof(msg)), 0);
	assert_int_equal(plain.len, 4);
	/* One more record from the peer finds the numbers used up. */
	tls_rec_set_seq(server, UINT64_MAX - 1, 0);
	buf_clear(&wire);
	assert_int_equal(tls_rec_seal(server, TLS_REC_APPLICATION_DATA, "x", 1, &wire), 0);
	assert_int_equal(feed_copy(client, wire.data, wire.len, &plain, msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "used up"));
	buf_free(&wire), buf_free(&plain);
	tls_rec_free(client), tls_rec_free(server);
}

static void test_a_buffer_dropped_unread_is_an_error(void **state)
{
	(void)state;
	struct tls_rec *client, *server;
	make_pair(TLS_REC_AES_128_GCM, &client, &server);
	struct buf wire = {0};
	assert_int_equal(tls_rec_seal(server, TLS_REC_APPLICATION_DATA, "a", 1, &wire), 0);
	assert_int_equal(tls_rec_feed(client, wire.data, wire.len), 0);
	assert_int_equal(tls_rec_unread(client), wire.len);
	assert_int_equal(tls_rec_feed(client, wire.data, wire.len), LR_EPROTO);
	buf_free(&wire);
	tls_rec_free(client), tls_rec_free(server);
}

/* ---- tls_conn against mbedTLS's server (the mock's), in memory ---- */

static int offloads, offloaded_cipher = -1;
void tls_offload_hook(int cipher)
{
	offloaded_cipher = cipher;
	offloads++;
}

static void sink(void *arg, const unsigned char *p, size_t n)
{
	assert_int_equal(buf_append(arg, p, n), 0);
}

static void server_feed(struct mock_tls_conn *sc, const char *p, size_t n)
{
	while (n > 0) {
		unsigned char *space;
		size_t cap;
		mock_tls_conn_in_space(sc, n, &space, &cap);
		size_t k = n < cap ? n : cap;
		memcpy(space, p, k);
		mock_tls_conn_in_commit(sc, k);
		p += k, n -= k;
	}
}

/* The server's first response follows its Finished in the same buffer,
 * and the next buffer comes before the client read anything: the
 * ciphertext mbedTLS's input held moves over to the record layer. */
static void test_data_after_finished_moves_over_and_close_notify_goes_out(void **state)
{
	(void)state;
	char dir[] = "/tmp/llmring-tlsrec-XXXXXX", cmd[PATH_MAX * 2], crt[PATH_MAX], key[PATH_MAX],
	     ca[PATH_MAX], msg[256] = "";
	assert_non_null(mkdtemp(dir));
	const char *src = getenv("LLMRING_SOURCE_DIR") ? getenv("LLMRING_SOURCE_DIR") : LLMRING_SOURCE_DIR;
	snprintf(cmd, sizeof(cmd), "bash %s/tests/certs/gen-certs.sh %s >/dev/null 2>&1", src, dir);
	assert_int_equal(system(cmd), 0);
	snprintf(crt, sizeof(crt), "%s/server.crt", dir);
	snprintf(key, sizeof(key), "%s/server.key", dir);
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	struct mock_tls *mt;
	assert_int_equal(mock_tls_new(crt, key, &mt, msg, sizeof(msg)), 0);
	struct buf s2c = {0}, c2s = {0};
	struct mock_tls_conn *sc = mock_tls_conn_new(mt, sink, &s2c);
	struct tls_config *cfg;
	struct tls_config_options o = {.ca_file = ca};
	assert_int_equal(tls_config_new(&o, &cfg, msg, sizeof(msg)), 0);
	struct tls_conn *t = tls_conn_new(cfg, "localhost", NULL);
	assert_non_null(t);
	int before = offloads;
	/* ClientHello ... until the server is done (its Finished is last). */
	assert_int_equal(tls_conn_handshake(t, msg, sizeof(msg)), 0);
	for (int round = 0; round < 10 && mock_tls_conn_handshake(sc) != 1; round++) {
		buf_clear(&c2s);
		tls_conn_take_output(t, &c2s);
		server_feed(sc, c2s.data, c2s.len);
		if (mock_tls_conn_handshake(sc) == 1)
			break;
		assert_int_equal(tls_conn_feed(t, s2c.data, s2c.len), 0);
		buf_clear(&s2c);
		assert_int_equal(tls_conn_handshake(t, msg, sizeof(msg)), 0);
	}
	/* 50,000 bytes (four records) right behind the Finished. */
	struct buf want = {0}, got = {0};
	assert_int_equal(buf_reserve(&want, 50000), 0);
	fill_pattern(want.data, 50000, 7);
	want.len = 50000;
	assert_int_equal(mock_tls_conn_write(sc, want.data, want.len), 0);
	size_t cut = s2c.len - 30000; /* inside the app data */
	char *first = malloc(cut), *second = malloc(s2c.len - cut);
	memcpy(first, s2c.data, cut);
	memcpy(second, s2c.data + cut, s2c.len - cut);
	assert_int_equal(tls_conn_feed(t, first, cut), 0);
	assert_int_equal(tls_conn_handshake(t, msg, sizeof(msg)), 1);
	assert_int_equal(offloads, before + 1);
	memset(first, 0, cut);
	free(first); /* the handshake's input was copied: nothing points here */
	assert_int_equal(tls_conn_feed(t, second, s2c.len - cut), 0);
	long n;
	char *p;
	while ((n = tls_conn_read(t, &p, msg, sizeof(msg))) > 0)
		assert_int_equal(buf_append(&got, p, (size_t)n), 0);
	assert_int_equal(n, 0);
	free(second);
	assert_int_equal(got.len, want.len);
	assert_memory_equal(got.data, want.data, want.len);
	/* A request the server reads, then our close_notify. */
	buf_clear(&c2s);
	assert_int_equal(tls_conn_write(t, "GET / HTTP/1.1\r\n\r\n", 18), 0);
	tls_conn_close_notify(t);
	tls_conn_take_output(t, &c2s);
	server_feed(sc, c2s.data, c2s.len);
	char in[64];
	assert_int_equal(mock_tls_conn_read(sc, in, sizeof(in)), 18);
	assert_memory_equal(in, "GET / HTTP/1.1\r\n\r\n", 18);
	assert_int_equal(mock_tls_conn_read(sc, in, sizeof(in)), -EPIPE);
	/* And the server's close_notify ends our stream. */
	buf_clear(&s2c);
	assert_int_equal(mock_tls_conn_close_notify(sc), 0);
	assert_int_equal(tls_conn_feed(t, s2c.data, s2c.len), 0);
	assert_int_equal(tls_conn_read(t, &p, msg, sizeof(msg)), TLS_CLOSED);
	tls_conn_free(t);
	tls_config_free(cfg);
	mock_tls_conn_free(sc);
	mock_tls_free(mt);
	buf_free(&s2c), buf_free(&c2s), buf_free(&want), buf_free(&got);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static bool cpu_has_aes_gcm(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
#else
	return tls_suites_new() != NULL; /* tls.c's own answer: only its order is checked */
#endif
}

static int suite_cipher(int id)
{
	const mbedtls_ssl_ciphersuite_t *cs = mbedtls_ssl_ciphersuite_from_id(id);
	return cs ? (int)cs->cipher : -1;
}

/* The reordered list is the default one, each suite once, with the
 * AES-128-GCM suites, then the AES-256-GCM ones, in front. */
static void test_suites_put_aes_gcm_first_when_the_cpu_has_it(void **state)
{
	(void)state;
	int *s = tls_suites_new();
	if (!cpu_has_aes_gcm()) {
		assert_null(s);
		return;
	}
	assert_non_null(s);
	const int *def = mbedtls_ssl_list_ciphersuites();
	size_t n = 0, m = 0;
	while (def[n])
		n++;
	while (s[m])
		m++;
	assert_int_equal(m, n);
	for (size_t i = 0; i < n; i++) {
		size_t seen = 0;
		for (size_t j = 0; j < n; j++)
			seen += s[j] == def[i];
		assert_int_equal(seen, 1);
	}
	int rank = 0; /* 0: AES-128-GCM, 1: AES-256-GCM, 2: the rest */
	for (size_t i = 0; i < n; i++) {
		const mbedtls_ssl_ciphersuite_t *cs = mbedtls_ssl_ciphersuite_from_id(s[i]);
		bool full = cs && !(cs->flags & MBEDTLS_CIPHERSUITE_SHORT_TAG);
		int r = full && suite_cipher(s[i]) == MBEDTLS_CIPHER_AES_128_GCM   ? 0
		        : full && suite_cipher(s[i]) == MBEDTLS_CIPHER_AES_256_GCM ? 1
		                                                                   : 2;
		assert_true(r >= rank);
		rank = r;
	}
	assert_int_equal(suite_cipher(s[0]), MBEDTLS_CIPHER_AES_128_GCM);
	free(s);
}

/* Runs t's handshake against sc in memory until both sides are done. */
static void handshake_in_memory(struct tls_conn *t, struct mock_tls_conn *sc, struct buf *s2c,
                                struct buf *c2s)
{
	char msg[256] = "";
	for (int round = 0; round < 20; round++) {
		int c = tls_conn_handshake(t, msg, sizeof(msg));
		assert_true(c >= 0);
		buf_clear(c2s);
		tls_conn_take_output(t, c2s);
		server_feed(sc, c2s->data, c2s->len);
		int srv = mock_tls_conn_handshake(sc);
		assert_true(srv >= 0);
		if (c == 1 && srv == 1 && s2c->len == 0)
			return;
		assert_int_equal(tls_conn_feed(t, s2c->data, s2c->len), 0);
		buf_clear(s2c);
	}
	fail_msg("the handshake did not finish");
}

struct mock_pair {
	char dir[32], ca[PATH_MAX];
	struct mock_tls *mt;
	struct tls_config *cfg;
};

static void mock_pair_start(struct mock_pair *mp)
{
	char cmd[PATH_MAX * 2], crt[PATH_MAX], key[PATH_MAX], msg[256] = "";
	snprintf(mp->dir, sizeof(mp->dir), "/tmp/llmring-tlsrec-XXXXXX");
	assert_non_null(mkdtemp(mp->dir));
	const char *src = getenv("LLMRING_SOURCE_DIR") ? getenv("LLMRING_SOURCE_DIR") : LLMRING_SOURCE_DIR;
	snprintf(cmd, sizeof(cmd), "bash %s/tests/certs/gen-certs.sh %s >/dev/null 2>&1", src, mp->dir);
	assert_int_equal(system(cmd), 0);
	snprintf(crt, sizeof(crt), "%s/server.crt", mp->dir);
	snprintf(key, sizeof(key), "%s/server.key", mp->dir);
	snprintf(mp->ca, sizeof(mp->ca), "%s/ca.crt", mp->dir);
	assert_int_equal(mock_tls_new(crt, key, &mp->mt, msg, sizeof(msg)), 0);
	struct tls_config_options o = {.ca_file = mp->ca};
	assert_int_equal(tls_config_new(&o, &mp->cfg, msg, sizeof(msg)), 0);
}

static void mock_pair_stop(struct mock_pair *mp)
{
	char cmd[64];
	tls_config_free(mp->cfg);
	mock_tls_free(mp->mt);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", mp->dir);
	assert_int_equal(system(cmd), 0);
}

/* After the handover (and mbedTLS's record buffers freed): one key
 * schedule per direction carries 1,500 requests and responses, every
 * nonce and sequence number checked by mbedTLS on the server side; every
 * seventh response reaches us in two receives cut inside a record; the
 * session saved afterwards resumes; a handshake call after the handover
 * is still "done"; close_notify ends the stream. */
static void test_many_records_each_way_against_mbedtls_after_the_handover(void **state)
{
	(void)state;
	struct mock_pair mp;
	mock_pair_start(&mp);
	struct buf s2c = {0}, c2s = {0}, got = {0};
	struct mock_tls_conn *sc = mock_tls_conn_new(mp.mt, sink, &s2c);
	struct tls_conn *t = tls_conn_new(mp.cfg, "localhost", NULL);
	assert_non_null(t);
	int before = offloads;
	handshake_in_memory(t, sc, &s2c, &c2s);
	assert_int_equal(offloads, before + 1);
	/* The mock lists the client's first choice first (tls_suites_new). */
	assert_int_equal(offloaded_cipher,
	                 cpu_has_aes_gcm() ? TLS_REC_AES_128_GCM : TLS_REC_CHACHA20_POLY1305);
	char msg[256] = "", req[2048], resp[2048], in[4096];
	assert_int_equal(tls_conn_handshake(t, msg, sizeof(msg)), 1);
	for (int i = 0; i < 1500; i++) {
		size_t qn = 1 + (size_t)(i * 37) % sizeof(req), rn = 1 + (size_t)(i * 53) % sizeof(resp);
		fill_pattern(req, qn, (unsigned)i);
		fill_pattern(resp, rn, (unsigned)i + 1);
		buf_clear(&c2s);
		assert_int_equal(tls_conn_write(t, req, qn), 0);
		tls_conn_take_output(t, &c2s);
		server_feed(sc, c2s.data, c2s.len);
		size_t have = 0;
		while (have < qn) {
			int k = mock_tls_conn_read(sc, in + have, sizeof(in) - have);
			assert_true(k > 0);
			have += (size_t)k;
		}
		assert_memory_equal(in, req, qn);
		assert_int_equal(mock_tls_conn_write(sc, resp, rn), 0);
		size_t cut = i % 7 == 0 ? s2c.len / 2 : s2c.len;
		buf_clear(&got);
		for (size_t off = 0; off < s2c.len; off = cut, cut = s2c.len) {
			assert_int_equal(tls_conn_feed(t, s2c.data + off, cut - off), 0);
			long n;
			char *p;
			while ((n = tls_conn_read(t, &p, msg, sizeof(msg))) > 0)
				assert_int_equal(buf_append(&got, p, (size_t)n), 0);
			assert_int_equal(n, 0);
		}
		buf_clear(&s2c);
		assert_int_equal(got.len, rn);
		assert_memory_equal(got.data, resp, rn);
	}
	struct tls_session *saved = NULL;
	tls_session_save(t, &saved);
	assert_non_null(saved);
	buf_clear(&c2s);
	tls_conn_close_notify(t);
	tls_conn_take_output(t, &c2s);
	server_feed(sc, c2s.data, c2s.len);
	assert_int_equal(mock_tls_conn_read(sc, in, sizeof(in)), -EPIPE);
	assert_int_equal(mock_tls_conn_close_notify(sc), 0);
	assert_int_equal(tls_conn_feed(t, s2c.data, s2c.len), 0);
	char *p;
	assert_int_equal(tls_conn_read(t, &p, msg, sizeof(msg)), TLS_CLOSED);
	tls_conn_free(t);
	mock_tls_conn_free(sc);
	/* The session of a connection whose record buffers were freed. */
	buf_clear(&s2c);
	uint64_t resumed = mock_tls_resumptions(mp.mt);
	sc = mock_tls_conn_new(mp.mt, sink, &s2c);
	t = tls_conn_new(mp.cfg, "localhost", saved);
	handshake_in_memory(t, sc, &s2c, &c2s);
	assert_true(tls_conn_resumed(t));
	assert_int_equal(mock_tls_resumptions(mp.mt), resumed + 1);
	buf_clear(&c2s);
	assert_int_equal(tls_conn_write(t, "ping", 4), 0);
	tls_conn_take_output(t, &c2s);
	server_feed(sc, c2s.data, c2s.len);
	assert_int_equal(mock_tls_conn_read(sc, in, sizeof(in)), 4);
	assert_memory_equal(in, "ping", 4);
	tls_conn_free(t);
	mock_tls_conn_free(sc);
	tls_session_free(saved);
	buf_free(&s2c), buf_free(&c2s), buf_free(&got);
	mock_pair_stop(&mp);
}

/* A response whose tag (its last byte) was changed on the way ends the
 * connection with an error that says so, and every later read fails too,
 * even with good records after it. */
static void test_a_corrupted_tag_from_the_server_ends_the_connection(void **state)
{
	(void)state;
	struct mock_pair mp;
	mock_pair_start(&mp);
	struct buf s2c = {0}, c2s = {0};
	struct mock_tls_conn *sc = mock_tls_conn_new(mp.mt, sink, &s2c);
	struct tls_conn *t = tls_conn_new(mp.cfg, "localhost", NULL);
	assert_non_null(t);
	handshake_in_memory(t, sc, &s2c, &c2s);
	assert_int_equal(mock_tls_conn_write(sc, "HTTP/1.1 200 OK\r\n", 17), 0);
	s2c.data[s2c.len - 1] ^= 0x40;
	assert_int_equal(mock_tls_conn_write(sc, "more", 4), 0);
	char msg[256] = "", *p;
	assert_int_equal(tls_conn_feed(t, s2c.data, s2c.len), 0);
	assert_int_equal(tls_conn_read(t, &p, msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "TLS error from localhost"));
	assert_non_null(strstr(msg, "bad record authentication tag"));
	msg[0] = '\0';
	assert_int_equal(tls_conn_read(t, &p, msg, sizeof(msg)), LR_EPROTO);
	assert_non_null(strstr(msg, "bad record authentication tag"));
	buf_clear(&s2c);
	assert_int_equal(mock_tls_conn_write(sc, "again", 5), 0);
	assert_int_equal(tls_conn_feed(t, s2c.data, s2c.len), LR_EPROTO);
	tls_conn_free(t);
	mock_tls_conn_free(sc);
	buf_free(&s2c), buf_free(&c2s);
	mock_pair_stop(&mp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_and_response_round_trip_on_every_cipher),
		cmocka_unit_test(test_a_sealed_record_is_the_rfc_aes_gcm_at_a_large_sequence_number),
		cmocka_unit_test(test_records_split_at_every_byte_boundary),
		cmocka_unit_test(test_coalesced_records_come_out_one_by_one),
		cmocka_unit_test(test_a_flipped_byte_fails_with_a_clear_error),
		cmocka_unit_test(test_a_replayed_record_fails),
		cmocka_unit_test(test_bad_headers_fail_before_the_body_arrives),
		cmocka_unit_test(test_hello_request_is_ignored_other_handshakes_fail),
		cmocka_unit_test(test_alerts),
		cmocka_unit_test(test_sequence_numbers_never_wrap),
		cmocka_unit_test(test_a_buffer_dropped_unread_is_an_error),
		cmocka_unit_test(test_data_after_finished_moves_over_and_close_notify_goes_out),
		cmocka_unit_test(test_suites_put_aes_gcm_first_when_the_cpu_has_it),
		cmocka_unit_test(test_many_records_each_way_against_mbedtls_after_the_handover),
		cmocka_unit_test(test_a_corrupted_tag_from_the_server_ends_the_connection),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

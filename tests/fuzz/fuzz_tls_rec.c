/* libFuzzer: the TLS 1.2 AEAD record parser (io/tls_rec.c), fed in two
 * received buffers cut anywhere. Byte 0 picks the cipher; byte 1 bit 0
 * feeds the rest raw (headers, lengths, garbage), else the rest is a list
 * of records (type, length, content) sealed with the peer's keys, with
 * one byte flipped when bit 1 is set. Application data that arrives
 * intact must come out unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/tls_rec.h"
#include "util/buf.h"

static struct tls_rec *make(enum tls_rec_cipher c, int server)
{
	struct tls_rec_keys k = {.cipher = c};
	for (int i = 0; i < 32; i++) {
		k.write_key[i] = (unsigned char)(server ? 200 + i : i);
		k.read_key[i] = (unsigned char)(server ? i : 200 + i);
	}
	for (int i = 0; i < 12; i++) {
		k.write_iv[i] = (unsigned char)(server ? 100 + i : 50 + i);
		k.read_iv[i] = (unsigned char)(server ? 50 + i : 100 + i);
	}
	struct tls_rec *r = tls_rec_new(&k);
	if (!r)
		abort();
	return r;
}

/* Feeds wire[0..n) as two private buffers cut at cut; plaintext onto got. */
static long feed(struct tls_rec *client, const char *wire, size_t n, size_t cut, struct buf *got)
{
	long rc = 0;
	for (int part = 0; part < 2 && rc >= 0; part++) {
		size_t off = part ? cut : 0, len = part ? n - cut : cut;
		char *copy = malloc(len ? len : 1);
		if (!copy)
			abort();
		memcpy(copy, wire + off, len);
		char msg[160];
		rc = tls_rec_feed(client, copy, len);
		while (rc == 0) {
			char *p;
			rc = tls_rec_open(client, &p, msg, sizeof(msg));
			if (rc <= 0)
				break;
			if (buf_append(got, p, (size_t)rc))
				abort();
			rc = 0;
		}
		if (rc == 0 && tls_rec_unread(client) != 0)
			abort(); /* 0 means the buffer was used up */
		memset(copy, 0x5A, len);
		free(copy);
		if (rc == TLS_REC_CLOSED)
			break;
	}
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	enum tls_rec_cipher c = (enum tls_rec_cipher)(data[0] % 3);
	unsigned mode = data[1];
	size_t pos = (size_t)data[2] << 8 | data[3];
	data += 4, size -= 4;
	struct tls_rec *client = make(c, 0), *server = make(c, 1);
	struct buf wire = {0}, want = {0}, got = {0};
	int intact = 1;
	if (mode & 1) {
		if (buf_append(&wire, data, size))
			abort();
		intact = 0;
	} else {
		/* type(1) length(1) content: types 20..23, app data mostly. */
		size_t i = 0;
		while (i + 2 <= size) {
			unsigned t = 20 + data[i] % 4;
			size_t len = data[i + 1];
			i += 2;
			if (len > size - i)
				len = size - i;
			if (len == 255)
				len = 20000; /* over 2^14: sealed as two records */
			char *content = calloc(1, len ? len : 1);
			if (!content)
				abort();
			memcpy(content, data + i, len < size - i ? len : size - i);
			if (tls_rec_seal(server, (enum tls_rec_type)t, content, len, &wire))
				abort();
			if (t == TLS_REC_APPLICATION_DATA && buf_append(&want, content, len))
				abort();
			if (t != TLS_REC_APPLICATION_DATA)
				intact = 0; /* an alert or handshake record may end the stream */
			free(content);
			i += len < size - i ? len : size - i;
		}
		if ((mode & 2) && wire.len) {
			wire.data[pos % wire.len] ^= (char)(1 + (mode >> 2));
			intact = 0;
		}
	}
	long rc = feed(client, wire.data, wire.len, wire.len ? pos % (wire.len + 1) : 0, &got);
	if (intact && (rc != 0 || got.len != want.len || memcmp(got.data, want.data, want.len)))
		abort();
	if (got.len > wire.len)
		abort();
	buf_free(&wire), buf_free(&want), buf_free(&got);
	tls_rec_free(client);
	tls_rec_free(server);
	return 0;
}

/*
 * TLS 1.2 AEAD records on libcrypto, through its TLS mode (the one
 * OpenSSL's own record layer uses): per record the TLS AAD parameter
 * (set_tls_aad) and one EVP_Cipher over the record body in place, against
 * four calls and a tag control otherwise (about 700 instructions a record
 * less). The key schedule is set once per direction, never per record.
 * libcrypto derives the nonce itself: for GCM the explicit part is its
 * counter, started at our write sequence number (checked on every
 * record); for ChaCha20-Poly1305 it XORs the AAD's sequence number in.
 * A record is
 *   type(1) 0x03 0x03 length(2) [explicit nonce(8), GCM only] ciphertext tag(16)
 * with additional data seq(8) type(1) 0x03 0x03 plaintext_length(2)
 * (RFC 5246 6.2.3.3). Nonces: GCM salt(4) || explicit(8), the explicit
 * part being our write sequence number (RFC 5288 3); ChaCha20-Poly1305
 * iv(12) XOR the sequence number padded to 12 bytes (RFC 7905 2).
 */
#include "io/tls_rec.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <mbedtls/platform_util.h>

#include "llmring.h"
#include "util/lazy_lib.h"

/* libcrypto, loaded by the first tls_rec_new (util/lazy_lib.h): a process
 * that never speaks TLS never maps it. */
#define EVP_FUNCTIONS(X)                                                                       \
	X(EVP_CIPHER_CTX_new) X(EVP_CIPHER_CTX_free) X(EVP_CIPHER_CTX_ctrl)                      \
	X(EVP_CIPHER_CTX_set_params) X(EVP_CIPHER_get_key_length) X(EVP_CipherInit_ex)           \
	X(EVP_Cipher) X(EVP_aes_128_gcm) X(EVP_aes_256_gcm) X(EVP_chacha20_poly1305)
#define EVP_FIELD(f) __typeof__(&f) f;
static struct {
	EVP_FUNCTIONS(EVP_FIELD)
} evp;

static const char *evp_bind(void *handle)
{
#define EVP_BIND(f)                                                                            \
	if (!(evp.f = (__typeof__(evp.f))lazy_lib_sym(handle, #f)))                                  \
		return #f;
	EVP_FUNCTIONS(EVP_BIND)
	return NULL;
}

static struct lazy_lib libcrypto = {
	.soname = LR_LIBCRYPTO_SONAME,
	.bind = evp_bind,
	.once = PTHREAD_ONCE_INIT,
};

bool tls_rec_available(char *why, size_t why_cap)
{
	if (lazy_lib_load(&libcrypto))
		return true;
	if (why)
		snprintf(why, why_cap, "%s", libcrypto.why);
	return false;
}

#define HEADER_LEN 5
#define TAG_LEN 16

/* What every record reads comes first, in one cache line (64 bytes): with
 * many pooled connections a request finds its connection's state out of
 * the cache, and each further line is a miss (docs/benchmarks.md, TLS). */
struct tls_rec {
	EVP_CIPHER_CTX *enc, *dec;  /* owner: this record layer; hold the keys */
	uint64_t write_seq, read_seq;
	char *lent;                 /* the buffer tls_rec_feed lent (not owned) */
	size_t lent_len, lent_off;
	unsigned char explicit_len; /* 8 for GCM, 0 for ChaCha20-Poly1305 */
	bool stage_done;            /* stage holds a record already handed out */
	bool enc_ready;             /* GCM: libcrypto's explicit nonce counter is set */
	int failed;                 /* sticky: the first error's code */
	/* The second line: a partial record, the keys' ivs, the message. */
	struct buf stage;           /* owner: this record layer; a partial record */
	enum tls_rec_cipher cipher;
	unsigned char write_iv[12], read_iv[12];
	char failed_msg[128];
};
_Static_assert(offsetof(struct tls_rec, stage) == 64, "tls_rec's per-record fields fill one line");

static const EVP_CIPHER *evp_cipher(enum tls_rec_cipher c)
{
	switch (c) {
	case TLS_REC_AES_128_GCM:
		return evp.EVP_aes_128_gcm();
	case TLS_REC_AES_256_GCM:
		return evp.EVP_aes_256_gcm();
	case TLS_REC_CHACHA20_POLY1305:
		return evp.EVP_chacha20_poly1305();
	}
	return NULL;
}

static size_t key_len(enum tls_rec_cipher c)
{
	return c == TLS_REC_AES_128_GCM ? 16 : 32;
}

struct tls_rec *tls_rec_new(const struct tls_rec_keys *k)
{
	if (!tls_rec_available(NULL, 0))
		return NULL; /* mbedTLS keeps the records */
	struct tls_rec *r = calloc(1, sizeof(*r)); /* owner: the caller (tls_rec_free) */
	if (!r)
		return NULL;
	r->cipher = k->cipher;
	r->explicit_len = k->cipher == TLS_REC_CHACHA20_POLY1305 ? 0 : 8;
	memcpy(r->write_iv, k->write_iv, sizeof(r->write_iv));
	memcpy(r->read_iv, k->read_iv, sizeof(r->read_iv));
	r->write_seq = k->write_seq;
	r->read_seq = k->read_seq;
	const EVP_CIPHER *c = evp_cipher(k->cipher);
	r->enc = evp.EVP_CIPHER_CTX_new();
	r->dec = evp.EVP_CIPHER_CTX_new();
	bool gcm = r->explicit_len != 0;
	/* The key schedule once per direction; for ChaCha20-Poly1305 the iv
	 * too, for GCM the salt (and on writes our first explicit nonce). */
	if (!c || !r->enc || !r->dec || evp.EVP_CIPHER_get_key_length(c) != (int)key_len(k->cipher) ||
	    evp.EVP_CipherInit_ex(r->enc, c, NULL, k->write_key, gcm ? NULL : k->write_iv, 1) != 1 ||
	    evp.EVP_CipherInit_ex(r->dec, c, NULL, k->read_key, gcm ? NULL : k->read_iv, 0) != 1 ||
	    (gcm && evp.EVP_CIPHER_CTX_ctrl(r->dec, EVP_CTRL_GCM_SET_IV_FIXED, 4, r->read_iv) != 1)) {
		tls_rec_free(r);
		return NULL;
	}
	tls_rec_set_seq(r, r->write_seq, r->read_seq);
	if (gcm && !r->enc_ready) {
		tls_rec_free(r);
		return NULL;
	}
	return r;
}

void tls_rec_free(struct tls_rec *r)
{
	if (!r)
		return;
	evp.EVP_CIPHER_CTX_free(r->enc); /* clears the key schedule */
	evp.EVP_CIPHER_CTX_free(r->dec);
	mbedtls_platform_zeroize(r->stage.data, r->stage.cap);
	buf_free(&r->stage);
	mbedtls_platform_zeroize(r, sizeof(*r));
	free(r);
}

static void put_be64(unsigned char *p, uint64_t v);

void tls_rec_set_seq(struct tls_rec *r, uint64_t write_seq, uint64_t read_seq)
{
	r->write_seq = write_seq;
	r->read_seq = read_seq;
	if (r->explicit_len) {
		/* The whole 12-byte IV: salt || first explicit nonce. */
		unsigned char iv[12];
		memcpy(iv, r->write_iv, 4);
		put_be64(iv + 4, write_seq);
		r->enc_ready = evp.EVP_CIPHER_CTX_ctrl(r->enc, EVP_CTRL_GCM_SET_IV_FIXED, -1, iv) == 1;
	}
}

static void put_be64(unsigned char *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v); /* one instruction, not a loop of eight stores */
#endif
	memcpy(p, &v, 8);
}

static void make_aad(unsigned char aad[13], uint64_t seq, unsigned type, size_t plain_len)
{
	put_be64(aad, seq);
	aad[8] = (unsigned char)type;
	aad[9] = 3, aad[10] = 3;
	aad[11] = (unsigned char)(plain_len >> 8), aad[12] = (unsigned char)plain_len;
}

/* EVP_CTRL_AEAD_TLS1_AAD straight as the parameter it becomes: the ctrl
 * would also read the padding back (a second parameter call, eight name
 * lookups by strcmp in the provider) to return what is always TAG_LEN
 * for these ciphers. 1, or 0 when the cipher refused the AAD. */
static int set_tls_aad(EVP_CIPHER_CTX *ctx, unsigned char aad[13])
{
	OSSL_PARAM p[2] = {OSSL_PARAM_octet_string(OSSL_CIPHER_PARAM_AEAD_TLS1_AAD, aad, 13),
	                   OSSL_PARAM_END};
	return evp.EVP_CIPHER_CTX_set_params(ctx, p) == 1;
}

/* ---- sealing ---- */

static int seal_one(struct tls_rec *r, unsigned type, const unsigned char *in, size_t len,
                    unsigned char *rec)
{
	/* RFC 5246 6.1: sequence numbers never wrap; the last one stays unused. */
	if (r->write_seq == UINT64_MAX)
		return LR_EPROTO;
	uint64_t seq = r->write_seq++;
	size_t body = r->explicit_len + len + TAG_LEN;
	rec[0] = (unsigned char)type, rec[1] = 3, rec[2] = 3;
	rec[3] = (unsigned char)(body >> 8), rec[4] = (unsigned char)body;
	unsigned char *p = rec + HEADER_LEN, aad[13];
	memcpy(p + r->explicit_len, in, len); /* the TLS mode works in place */
	/* TLS mode's AAD length: the plaintext and the explicit nonce. */
	make_aad(aad, seq, type, r->explicit_len + len);
	if ((r->explicit_len && !r->enc_ready) ||
	    !set_tls_aad(r->enc, aad) ||
	    evp.EVP_Cipher(r->enc, p, p, (unsigned)body) < 0)
		return LR_EPROTO;
	/* -1 is an error (provider ciphers return the output length, 0 for
	 * an empty record). RFC 5288 3: the explicit nonce is our sequence
	 * number. */
	unsigned char want[8];
	put_be64(want, seq);
	if (r->explicit_len && memcmp(p, want, 8) != 0)
		return LR_EPROTO;
	return 0;
}

int tls_rec_seal(struct tls_rec *r, enum tls_rec_type type, const char *data, size_t len,
                 struct buf *out)
{
	size_t off = 0;
	do {
		size_t n = len - off < TLS_REC_MAX_PLAINTEXT ? len - off : TLS_REC_MAX_PLAINTEXT;
		size_t rec_len = HEADER_LEN + r->explicit_len + n + TAG_LEN;
		if (buf_reserve(out, rec_len))
			return LR_ENOMEM;
		int rc = seal_one(r, type, (const unsigned char *)data + off, n,
		                  (unsigned char *)out->data + out->len);
		if (rc)
			return rc;
		out->len += rec_len;
		off += n;
	} while (off < len);
	return 0;
}

/* ---- opening ---- */

int tls_rec_feed(struct tls_rec *r, char *data, size_t len)
{
	if (r->lent_off < r->lent_len && !r->failed) {
		r->failed = LR_EPROTO;
		snprintf(r->failed_msg, sizeof(r->failed_msg),
		         "internal error: received TLS data was dropped unread");
	}
	r->lent = data;
	r->lent_len = len;
	r->lent_off = 0;
	return r->failed;
}

static long fail(struct tls_rec *r, int code, char *msg, size_t cap, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static long fail(struct tls_rec *r, int code, char *msg, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->failed_msg, sizeof(r->failed_msg), fmt, ap);
	va_end(ap);
	r->failed = code;
	r->lent_off = r->lent_len; /* nothing more is read from it */
	snprintf(msg, cap, "%s", r->failed_msg);
	return code;
}

/* RFC 5246 7.2 and RFC 8446 6 names, for the error message. */
static const char *alert_name(unsigned d)
{
	switch (d) {
	case 10: return "unexpected_message";
	case 20: return "bad_record_mac";
	case 21: return "decryption_failed";
	case 22: return "record_overflow";
	case 30: return "decompression_failure";
	case 40: return "handshake_failure";
	case 42: return "bad_certificate";
	case 43: return "unsupported_certificate";
	case 44: return "certificate_revoked";
	case 45: return "certificate_expired";
	case 46: return "certificate_unknown";
	case 47: return "illegal_parameter";
	case 48: return "unknown_ca";
	case 49: return "access_denied";
	case 50: return "decode_error";
	case 51: return "decrypt_error";
	case 70: return "protocol_version";
	case 71: return "insufficient_security";
	case 80: return "internal_error";
	case 86: return "inappropriate_fallback";
	case 90: return "user_canceled";
	case 100: return "no_renegotiation";
	case 109: return "missing_extension";
	case 110: return "unsupported_extension";
	case 112: return "unrecognized_name";
	case 120: return "no_application_protocol";
	}
	return "unknown alert";
}

/* Checks a record header: 0, or the error (already reported). */
static long check_header(struct tls_rec *r, const unsigned char *h, char *msg, size_t cap)
{
	if (h[0] < TLS_REC_CHANGE_CIPHER_SPEC || h[0] > TLS_REC_APPLICATION_DATA)
		return fail(r, LR_EPROTO, msg, cap, "record of unknown type %u", h[0]);
	if (h[1] != 3 || h[2] != 3)
		return fail(r, LR_EPROTO, msg, cap, "record of version 0x%02x%02x, not TLS 1.2 (0x0303)",
		            h[1], h[2]);
	size_t len = (size_t)h[3] << 8 | h[4];
	if (len > TLS_REC_MAX_CIPHERTEXT)
		return fail(r, LR_EPROTO, msg, cap, "record of %zu bytes, over the limit of %d", len,
		            TLS_REC_MAX_CIPHERTEXT);
	if (len < (size_t)r->explicit_len + TAG_LEN)
		return fail(r, LR_EPROTO, msg, cap, "record of %zu bytes, too short for its cipher", len);
	return 0;
}

/* Decrypts the whole record at rec in place. >0 or 0: that much
 * application data at *plain (0: a record with nothing for the caller);
 * TLS_REC_CLOSED, or an error. */
static long open_record(struct tls_rec *r, unsigned char *rec, char **plain, char *msg,
                        size_t cap)
{
	unsigned type = rec[0];
	size_t body = (size_t)rec[3] << 8 | rec[4];
	size_t len = body - r->explicit_len - TAG_LEN;
	if (r->read_seq == UINT64_MAX)
		return fail(r, LR_EPROTO, msg, cap, "record sequence numbers used up");
	uint64_t seq = r->read_seq++;
	unsigned char aad[13];
	/* TLS mode's AAD length on reads: the whole body (explicit nonce,
	 * ciphertext, tag); libcrypto takes the plaintext length from it. */
	make_aad(aad, seq, type, body);
	if (!set_tls_aad(r->dec, aad))
		return fail(r, LR_EPROTO, msg, cap, "decryption failed");
	if (evp.EVP_Cipher(r->dec, rec + HEADER_LEN, rec + HEADER_LEN, (unsigned)body) < 0)
		return fail(r, LR_EPROTO, msg, cap,
		            "bad record authentication tag (data corrupted or forged)");
	unsigned char *p = rec + HEADER_LEN + r->explicit_len;
	if (len > TLS_REC_MAX_PLAINTEXT)
		return fail(r, LR_EPROTO, msg, cap, "record of %zu plaintext bytes, over 2^14", len);
	switch (type) {
	case TLS_REC_APPLICATION_DATA:
		*plain = (char *)p;
		return (long)len;
	case TLS_REC_ALERT:
		if (len == 0 || len % 2)
			return fail(r, LR_EPROTO, msg, cap, "malformed alert record (%zu bytes)", len);
		for (size_t i = 0; i < len; i += 2) {
			if (p[i + 1] == 0)
				return TLS_REC_CLOSED; /* close_notify */
			if (p[i] != 1)
				return fail(r, LR_EPROTO, msg, cap, "the server sent a fatal alert: %s (%u)",
				            alert_name(p[i + 1]), p[i + 1]);
			/* Warnings (user_canceled, no_renegotiation) change nothing. */
		}
		return 0;
	case TLS_REC_HANDSHAKE:
		/* RFC 5246 7.4.1.1: a HelloRequest may be ignored; we do not
		 * renegotiate, and nothing else may come after the handshake. */
		for (size_t i = 0; i < len; i += 4)
			if (len - i < 4 || p[i] != 0 || p[i + 1] || p[i + 2] || p[i + 3])
				return fail(r, LR_EPROTO, msg, cap,
				            "unexpected handshake message (type %u) after the handshake",
				            p[i]);
		return 0;
	default:
		return fail(r, LR_EPROTO, msg, cap, "unexpected record of type %u after the handshake",
		            type);
	}
}

/* Moves the rest of the lent buffer into stage (it must fit). */
static long stash(struct tls_rec *r, size_t n, char *msg, size_t cap)
{
	if (buf_append(&r->stage, r->lent + r->lent_off, n))
		return fail(r, LR_ENOMEM, msg, cap, "out of memory buffering a TLS record");
	r->lent_off += n;
	return 0;
}

/* Completes the staged record from the lent buffer: 1 complete, 0 more
 * input needed (lent buffer used up), or an error. */
static long fill_stage(struct tls_rec *r, char *msg, size_t cap)
{
	size_t avail = r->lent_len - r->lent_off;
	if (r->stage.len < HEADER_LEN) {
		size_t n = HEADER_LEN - r->stage.len < avail ? HEADER_LEN - r->stage.len : avail;
		long rc = stash(r, n, msg, cap);
		if (rc)
			return rc;
		avail -= n;
		if (r->stage.len < HEADER_LEN)
			return 0;
		rc = check_header(r, (const unsigned char *)r->stage.data, msg, cap);
		if (rc)
			return rc;
	}
	const unsigned char *h = (const unsigned char *)r->stage.data;
	size_t total = HEADER_LEN + ((size_t)h[3] << 8 | h[4]);
	size_t n = total - r->stage.len < avail ? total - r->stage.len : avail;
	long rc = stash(r, n, msg, cap);
	if (rc)
		return rc;
	return r->stage.len == total;
}

long tls_rec_open(struct tls_rec *r, char **plain, char *msg, size_t cap)
{
	if (r->failed) {
		snprintf(msg, cap, "%s", r->failed_msg);
		return r->failed;
	}
	for (;;) {
		if (r->stage_done) {
			buf_clear(&r->stage);
			r->stage_done = false;
		}
		unsigned char *rec;
		if (r->stage.len > 0) {
			long rc = fill_stage(r, msg, cap);
			if (rc <= 0)
				return rc;
			rec = (unsigned char *)r->stage.data;
			r->stage_done = true;
		} else {
			size_t avail = r->lent_len - r->lent_off;
			if (avail == 0) {
				/* At a record boundary: an idle connection keeps no
				 * staging memory (up to 18 KiB after a large record). */
				if (r->stage.cap > 4096)
					buf_free(&r->stage);
				return 0;
			}
			rec = (unsigned char *)r->lent + r->lent_off;
			if (avail >= HEADER_LEN) {
				long rc = check_header(r, rec, msg, cap);
				if (rc)
					return rc;
			}
			size_t total = avail >= HEADER_LEN ? HEADER_LEN + ((size_t)rec[3] << 8 | rec[4]) : 0;
			if (avail < HEADER_LEN || avail < total) {
				/* A partial record at the end: keep it, release the buffer. */
				long rc = stash(r, avail, msg, cap);
				return rc;
			}
			r->lent_off += total;
		}
		long n = open_record(r, rec, plain, msg, cap);
		if (n != 0)
			return n;
	}
}

size_t tls_rec_unread(const struct tls_rec *r)
{
	return r->lent_len - r->lent_off;
}

size_t tls_rec_take_back(struct tls_rec *r)
{
	size_t left = r->lent_len - r->lent_off;
	r->lent = NULL;
	r->lent_len = r->lent_off = 0;
	return left;
}

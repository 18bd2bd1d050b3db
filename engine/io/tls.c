/*
 * mbedTLS 2.28 over memory buffers. The BIO callbacks never block: recv
 * takes from the ciphertext the ring delivered (WANT_READ when it is
 * used up), send appends to an output buffer the ring drains. So
 * mbedtls_ssl_write never reports WANT_WRITE, and every call runs as far
 * as the bytes at hand allow.
 *
 * After the handshake, a TLS 1.2 AEAD suite's records move to libcrypto
 * (tls_rec.c): mbedTLS 2.28's AES-GCM and ChaCha20-Poly1305 are portable
 * C (4.8 and 3.6 us per KiB here), several times OpenSSL's assembly, and
 * its record layer copies each buffer twice. The keys come from the
 * export callback, the sequence numbers from the context; CBC suites stay
 * with mbedTLS. Then mbedTLS's record buffers are freed (34 KiB a
 * connection), and with AES instructions on the CPU we list AES-GCM first
 * (libcrypto's is 1.7x faster than its ChaCha20-Poly1305 here).
 */
#include "io/tls.h"

#include <arpa/inet.h>
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pem.h>
#include <mbedtls/platform.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/ssl_internal.h>
#include <mbedtls/x509_crt.h>

#include "io/tls_rec.h"
#include "util/buf.h"
#include "util/test_hooks.h"
#include "llmring.h"

_Static_assert(TLS_CLOSED == TLS_REC_CLOSED, "one code for close_notify");

#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

struct tls_config {
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt ca;
	int *suites;        /* owner: this config; the list conf points at */
	bool insecure;
	struct tls_conn *handshaking; /* not owned: the conn inside mbedtls_ssl_handshake */
};

struct tls_session {
	mbedtls_ssl_session s;
};

struct tls_conn {
	/* What each request reads after the handshake comes first, in one
	 * cache line (the context behind it is cold then; see tls_rec.c). */
	struct tls_rec *rec;        /* owner: this conn; NULL: mbedTLS does the records */
	struct buf out;        /* owner: this conn; ciphertext not yet taken */
	bool in_lent;               /* in is lent to rec (the handshake's leftover) */
	bool got_bytes;
	unsigned char first_byte;   /* of the peer's data, to spot non-TLS peers */
	mbedtls_ssl_context ssl;
	struct tls_config *cfg;
	struct buf in;         /* owner: this conn; ciphertext not yet consumed */
	size_t in_off;
	bool offered_session;
	bool chain_verified;        /* a full handshake verified the chain */
	bool saw_untrusted;         /* a certificate of the chain had no trusted parent */
	bool verify_oom;            /* ... but a second look trusted it: memory ran out */
	bool ip_host;               /* host is an IP literal: no SNI, our own SAN check */
	unsigned char ip[16];
	size_t ip_len;
	bool handshake_done;
	/* The key block of the last handshake's export callback: client key,
	 * server key, client iv, server iv (ssl_populate_transform). */
	unsigned char keyblk[2 * 32 + 2 * 12];
	size_t key_len, iv_len;     /* 0: no keys exported (or not usable) */
	char host[256];
};

/* Whether an mbedTLS error says an allocation failed: 2.28 adds a
 * low-level code (ASN.1, bignum) to a high-level one (X.509, PK...). */
static bool mbed_oom(int ret)
{
	if (ret >= 0)
		return false;
	int high = -(-ret & 0xFF80), low = -(-ret & 0x7F);
	switch (high) {
	case MBEDTLS_ERR_SSL_ALLOC_FAILED:
	case MBEDTLS_ERR_X509_ALLOC_FAILED:
	case MBEDTLS_ERR_PEM_ALLOC_FAILED:
	case MBEDTLS_ERR_PK_ALLOC_FAILED:
	case MBEDTLS_ERR_ECP_ALLOC_FAILED:
	case MBEDTLS_ERR_DHM_ALLOC_FAILED:
	case MBEDTLS_ERR_CIPHER_ALLOC_FAILED:
	case MBEDTLS_ERR_MD_ALLOC_FAILED:
		return true;
	}
	return low == MBEDTLS_ERR_ASN1_ALLOC_FAILED || low == MBEDTLS_ERR_MPI_ALLOC_FAILED;
}

/* mbedTLS 2.28 passes the RFC 5246 key block: maclen bytes of MAC key
 * per side (0 for AEAD), then the client's and the server's write keys,
 * then their IVs of ivlen bytes each (4 for GCM, 12 for ChaCha20-Poly1305:
 * the fixed part). The callback belongs to the config, so the conn comes
 * from cfg->handshaking. */
static int export_keys(void *p, const unsigned char *ms, const unsigned char *kb, size_t maclen,
                       size_t keylen, size_t ivlen, const unsigned char client_random[32],
                       const unsigned char server_random[32], mbedtls_tls_prf_types prf)
{
	(void)ms, (void)client_random, (void)server_random, (void)prf;
	struct tls_config *c = p;
	struct tls_conn *t = c->handshaking;
	if (!t)
		return 0;
	t->key_len = t->iv_len = 0;
	if (maclen != 0 || keylen > 32 || ivlen > 12)
		return 0; /* not AEAD: mbedTLS keeps the records */
	memcpy(t->keyblk, kb, 2 * keylen + 2 * ivlen);
	t->key_len = keylen;
	t->iv_len = ivlen;
	return 0;
}

/* Whether this CPU has AES and carry-less multiply instructions, which
 * libcrypto's AES-GCM uses (without them ChaCha20-Poly1305 is faster). */
static bool cpu_has_aes_gcm(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
#elif defined(__aarch64__) && defined(__linux__)
	unsigned long hw = getauxval(AT_HWCAP);
	return (hw & HWCAP_AES) && (hw & HWCAP_PMULL);
#else
	return false;
#endif
}

/* 0 AES-128-GCM, 1 AES-256-GCM (both with the full tag), 2 the rest. */
static int suite_rank(int id)
{
	const mbedtls_ssl_ciphersuite_t *cs = mbedtls_ssl_ciphersuite_from_id(id);
	if (!cs || (cs->flags & MBEDTLS_CIPHERSUITE_SHORT_TAG))
		return 2;
	if (cs->cipher == MBEDTLS_CIPHER_AES_128_GCM)
		return 0;
	return cs->cipher == MBEDTLS_CIPHER_AES_256_GCM ? 1 : 2;
}

int *tls_suites_new(void)
{
	if (!cpu_has_aes_gcm())
		return NULL;
	const int *def = mbedtls_ssl_list_ciphersuites();
	size_t n = 0;
	while (def[n])
		n++;
	int *s = calloc(n + 1, sizeof(*s)); /* owner: the caller (free) */
	if (!s)
		return NULL;
	size_t k = 0;
	for (int rank = 0; rank <= 2; rank++)
		for (size_t i = 0; i < n; i++)
			if (suite_rank(def[i]) == rank)
				s[k++] = def[i];
	return s;
}

/* The ALPN list must outlive the config: mbedtls_ssl_conf_alpn_protocols
 * keeps the pointer, not a copy. */
static const char *alpn_list[] = {"http/1.1", NULL};

int tls_config_new(const struct tls_config_options *o, struct tls_config **out, char *err,
                   size_t err_cap)
{
	*out = NULL;
	struct tls_config *c = calloc(1, sizeof(*c)); /* owner: the caller (tls_config_free) */
	if (!c)
		return LR_ENOMEM;
	mbedtls_entropy_init(&c->entropy);
	mbedtls_ctr_drbg_init(&c->drbg);
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_x509_crt_init(&c->ca);
	c->insecure = o->insecure;
	static const unsigned char pers[] = "llmring";
	int ret = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, pers, sizeof(pers) - 1);
	if (!ret)
		ret = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
		                                  MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret) {
		snprintf(err, err_cap, "TLS setup failed (mbedTLS error -0x%04x%s)", (unsigned)-ret,
		         mbed_oom(ret) ? ", out of memory" : "");
		tls_config_free(c);
		return mbed_oom(ret) ? LR_ENOMEM : LR_ESYSTEM;
	}
	mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
	mbedtls_ssl_conf_alpn_protocols(&c->conf, alpn_list);
	mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
	mbedtls_ssl_conf_export_keys_ext_cb(&c->conf, export_keys, c);
	c->suites = tls_suites_new();
	if (c->suites)
		mbedtls_ssl_conf_ciphersuites(&c->conf, c->suites);
	if (o->insecure) {
		mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
	} else {
		/* The engine resolved SSL_CERT_FILE when it was made. */
		const char *path = o->ca_file;
		if (!path || !path[0])
			path = SYSTEM_CA_BUNDLE;
		/* A positive return counts certificates that did not parse:
		 * the rest are usable. */
		ret = mbedtls_x509_crt_parse_file(&c->ca, path);
		if (ret < 0 || c->ca.version == 0) {
			snprintf(err, err_cap, "cannot load CA certificates from %s%s", path,
			         mbed_oom(ret) ? ": out of memory" : "");
			tls_config_free(c);
			return mbed_oom(ret) ? LR_ENOMEM : LR_EINVAL;
		}
		mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
		mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
	}
	/* libcrypto loaded now (a few ms, once a process) rather than inside
	 * the first handshake; without it records stay with mbedTLS. */
	(void)tls_rec_available(NULL, 0);
	*out = c;
	return 0;
}

void tls_config_free(struct tls_config *c)
{
	if (!c)
		return;
	mbedtls_x509_crt_free(&c->ca);
	mbedtls_ssl_config_free(&c->conf);
	mbedtls_ctr_drbg_free(&c->drbg);
	mbedtls_entropy_free(&c->entropy);
	free(c->suites);
	free(c);
}

/* ---- BIO over memory ---- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
	struct tls_conn *t = ctx;
	if (buf_append(&t->out, buf, len))
		return MBEDTLS_ERR_SSL_ALLOC_FAILED;
	return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
	struct tls_conn *t = ctx;
	size_t avail = t->in.len - t->in_off;
	if (avail == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	size_t n = avail < len ? avail : len;
	memcpy(buf, t->in.data + t->in_off, n);
	t->in_off += n;
	if (t->in_off == t->in.len)
		t->in_off = 0, buf_clear(&t->in); /* keep the buffer, drop the bytes */
	return (int)n;
}

/* ---- iPAddress subjectAltName (2.28 lists only dNSName and otherName) ---- */

/* Walks the certificate's extensions for subjectAltName and looks for an
 * iPAddress entry equal to ip. */
static bool cert_has_ip_san(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t ip_len)
{
	unsigned char *p = crt->v3_ext.p;
	const unsigned char *end = p + crt->v3_ext.len;
	size_t len;
	if (!p || crt->v3_ext.len == 0)
		return false;
	/* v3_ext may start at the [3] wrapper or at the SEQUENCE inside. */
	if (*p == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 3)) {
		if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 3))
			return false;
		end = p + len;
	}
	if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
		return false;
	end = p + len;
	static const unsigned char san_oid[] = {0x55, 0x1d, 0x11}; /* 2.5.29.17 */
	while (p < end) {
		const unsigned char *ext_end;
		if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
			return false;
		ext_end = p + len;
		size_t oid_len;
		if (mbedtls_asn1_get_tag(&p, ext_end, &oid_len, MBEDTLS_ASN1_OID))
			return false;
		bool is_san = oid_len == sizeof(san_oid) && memcmp(p, san_oid, oid_len) == 0;
		p += oid_len;
		int critical;
		if (p < ext_end && *p == MBEDTLS_ASN1_BOOLEAN && mbedtls_asn1_get_bool(&p, ext_end, &critical))
			return false;
		size_t oct_len;
		if (mbedtls_asn1_get_tag(&p, ext_end, &oct_len, MBEDTLS_ASN1_OCTET_STRING))
			return false;
		if (is_san) {
			unsigned char *q = p;
			const unsigned char *oct_end = p + oct_len;
			size_t names_len;
			if (mbedtls_asn1_get_tag(&q, oct_end, &names_len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE))
				return false;
			const unsigned char *names_end = q + names_len;
			while (q < names_end) {
				unsigned char tag = *q++;
				size_t name_len;
				if (mbedtls_asn1_get_len(&q, names_end, &name_len))
					return false;
				if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && name_len == ip_len &&
				    memcmp(q, ip, ip_len) == 0)
					return true;
				q += name_len;
			}
		}
		p = (unsigned char *)ext_end;
	}
	return false;
}

static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
	struct tls_conn *t = ctx;
	t->chain_verified = true;
	/* Without mbedtls_ssl_set_hostname (IP literals) mbedTLS checks no
	 * name at all: the leaf must carry the address as an iPAddress SAN. */
	if (depth == 0 && t->ip_host && !cert_has_ip_san(crt, t->ip, t->ip_len))
		*flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
	if (*flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
		t->saw_untrusted = true;
	if (depth == 0 && t->saw_untrusted) {
		/* mbedTLS 2.28 takes a signature check that ran out of memory
		 * for a bad signature: a chain a second look trusts was not
		 * untrusted (the handshake still fails, as out of memory). */
		uint32_t again = 0;
		if (mbedtls_x509_crt_verify(crt, &t->cfg->ca, NULL, NULL, &again, NULL, NULL) == 0)
			t->verify_oom = true;
	}
	return 0;
}

/* ---- connections ---- */

__attribute__((weak)) void tls_offload_hook(int cipher)
{
	(void)cipher;
}

struct tls_conn *tls_conn_new(struct tls_config *cfg, const char *host,
                              const struct tls_session *resume)
{
	struct tls_conn *t = calloc(1, sizeof(*t)); /* owner: the caller (tls_conn_free) */
	if (!t)
		return NULL;
	t->cfg = cfg;
	snprintf(t->host, sizeof(t->host), "%s", host);
	mbedtls_ssl_init(&t->ssl);
	if (mbedtls_ssl_setup(&t->ssl, &cfg->conf) != 0) {
		tls_conn_free(t);
		return NULL;
	}
	mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
	if (inet_pton(AF_INET, host, t->ip) == 1) {
		t->ip_host = true;
		t->ip_len = 4;
	} else if (inet_pton(AF_INET6, host, t->ip) == 1) {
		t->ip_host = true;
		t->ip_len = 16;
	}
	/* Always a name check (2.28.3 skips it without a hostname:
	 * CVE-2025-27809); for an IP literal no SNI (RFC 6066) and the
	 * verify callback checks the address instead. */
	if (!t->ip_host && mbedtls_ssl_set_hostname(&t->ssl, host) != 0) {
		tls_conn_free(t);
		return NULL;
	}
	mbedtls_ssl_set_verify(&t->ssl, verify_cb, t);
	if (resume && mbedtls_ssl_set_session(&t->ssl, &resume->s) == 0)
		t->offered_session = true;
	return t;
}

void tls_conn_free(struct tls_conn *t)
{
	if (!t)
		return;
	mbedtls_ssl_free(&t->ssl);
	tls_rec_free(t->rec);
	mbedtls_platform_zeroize(t->keyblk, sizeof(t->keyblk));
	buf_free(&t->in);
	buf_free(&t->out);
	free(t);
}

int tls_conn_feed(struct tls_conn *t, char *data, size_t len)
{
	if (len && !t->got_bytes) {
		t->got_bytes = true;
		t->first_byte = (unsigned char)data[0];
	}
	if (!t->rec)
		return buf_append(&t->in, data, len);
	if (t->in_lent) {
		/* The handshake's leftover was not all read: keep the rest in front. */
		size_t left = tls_rec_take_back(t->rec);
		if (left) {
			memmove(t->in.data, t->in.data + t->in.len - left, left);
			t->in.len = left;
			if (buf_append(&t->in, data, len))
				return LR_ENOMEM;
			return tls_rec_feed(t->rec, t->in.data, t->in.len) ? LR_EPROTO : 0;
		}
		buf_free(&t->in);
		t->in_lent = false;
	}
	return tls_rec_feed(t->rec, data, len) ? LR_EPROTO : 0;
}

size_t tls_conn_take_output(struct tls_conn *t, struct buf *dst)
{
	struct buf tmp = *dst;
	*dst = t->out;
	t->out = tmp;
	buf_clear(&t->out);
	return dst->len;
}

static int handshake_error(struct tls_conn *t, int ret, char *msg, size_t cap)
{
	if (mbed_oom(ret)) {
		/* Ours (bio_send's buffer) or mbedTLS's own: not the peer's fault. */
		snprintf(msg, cap, "TLS handshake with %s: out of memory", t->host);
		return LR_ENOMEM;
	}
	if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && t->verify_oom) {
		snprintf(msg, cap, "TLS handshake with %s: out of memory verifying the certificate", t->host);
		return LR_ENOMEM;
	}
	if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
		uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
		if (flags & MBEDTLS_X509_BADCERT_EXPIRED) {
			snprintf(msg, cap, "TLS: the certificate of %s has expired", t->host);
			return LR_ETLS_EXPIRED;
		}
		if (flags & (MBEDTLS_X509_BADCERT_NOT_TRUSTED | MBEDTLS_X509_BADCERT_MISSING)) {
			snprintf(msg, cap, "TLS: the certificate of %s is not trusted (unknown issuer; "
			         "see --cacert)", t->host);
			return LR_ETLS_UNTRUSTED;
		}
		if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
			snprintf(msg, cap, "TLS: the certificate does not match the host name %s", t->host);
			return LR_ETLS_NAME;
		}
		if (flags & MBEDTLS_X509_BADCERT_FUTURE) {
			snprintf(msg, cap, "TLS: the certificate of %s is not valid yet", t->host);
			return LR_ETLS_EXPIRED;
		}
		char info[160];
		int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
		if (n > 0 && info[n - 1] == '\n')
			info[n - 1] = '\0';
		snprintf(msg, cap, "TLS: the certificate of %s failed verification (%s)", t->host,
		         n > 0 ? info : "unknown reason");
		return LR_ETLS_UNTRUSTED;
	}
	/* A TLS record starts with 20..24 (alert 21, handshake 22): anything
	 * else means the peer speaks another protocol, often plain HTTP. */
	if (t->got_bytes && (t->first_byte < 20 || t->first_byte > 24)) {
		snprintf(msg, cap, "TLS handshake with %s failed: the server does not speak TLS "
		         "(is it plain http?)", t->host);
		return LR_ETLS_HANDSHAKE;
	}
	char detail[128];
	mbedtls_strerror(ret, detail, sizeof(detail));
	snprintf(msg, cap, "TLS handshake with %s failed: %s", t->host, detail);
	return LR_ETLS_HANDSHAKE;
}

static uint64_t get_be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Once libcrypto has the records, mbedTLS's record buffers (16,717 bytes
 * each way) and its transform (its copy of the keys, cipher contexts)
 * serve no purpose: freed, an idle pooled connection holds some 34 KiB
 * less heap. mbedtls_ssl_free skips what is NULL; nothing else reads them
 * after the handshake (tls_session_save reads ssl->session, and
 * tls_conn_handshake returns first). mbedtls_ssl_transform_free is 2.28's
 * internal API (ssl_internal.h), exported by its shared library. */
static void release_mbed_records(mbedtls_ssl_context *s)
{
	if (s->in_buf) {
		mbedtls_platform_zeroize(s->in_buf, MBEDTLS_SSL_IN_BUFFER_LEN);
		mbedtls_free(s->in_buf);
	}
	if (s->out_buf) {
		mbedtls_platform_zeroize(s->out_buf, MBEDTLS_SSL_OUT_BUFFER_LEN);
		mbedtls_free(s->out_buf);
	}
	s->in_buf = s->in_ctr = s->in_hdr = s->in_len = s->in_iv = s->in_msg = s->in_offt = NULL;
	s->out_buf = s->out_ctr = s->out_hdr = s->out_len = s->out_iv = s->out_msg = NULL;
	if (s->transform) {
		mbedtls_ssl_transform_free(s->transform);
		mbedtls_free(s->transform);
	}
	s->transform = s->transform_in = s->transform_out = NULL;
}

/* Moves the records to libcrypto when the agreed suite is a TLS 1.2 AEAD
 * one with a full tag; otherwise, or when memory runs out, mbedTLS keeps
 * them (nothing is lost: its state is untouched until here). */
static void offload_start(struct tls_conn *t)
{
	const mbedtls_ssl_ciphersuite_t *cs = mbedtls_ssl_ciphersuite_from_id(t->ssl.session->ciphersuite);
	struct tls_rec_keys k = {0};
	size_t want_iv = 4;
	if (!cs || (cs->flags & MBEDTLS_CIPHERSUITE_SHORT_TAG) || t->ssl.minor_ver != MBEDTLS_SSL_MINOR_VERSION_3)
		return;
	if (cs->cipher == MBEDTLS_CIPHER_AES_128_GCM)
		k.cipher = TLS_REC_AES_128_GCM;
	else if (cs->cipher == MBEDTLS_CIPHER_AES_256_GCM)
		k.cipher = TLS_REC_AES_256_GCM;
	else if (cs->cipher == MBEDTLS_CIPHER_CHACHA20_POLY1305)
		k.cipher = TLS_REC_CHACHA20_POLY1305, want_iv = 12;
	else
		return;
	size_t kl = t->key_len, il = t->iv_len;
	if (kl != (k.cipher == TLS_REC_AES_128_GCM ? 16u : 32u) || il != want_iv)
		return;
	/* mbedTLS reads one record at a time (in_left is 0 between records);
	 * a handshake message after Finished in the same record, or
	 * application data it holds, stays with it. */
	if (t->ssl.in_left != 0 || t->ssl.in_offt != NULL || t->ssl.in_msglen != t->ssl.in_hslen ||
	    t->ssl.out_left != 0)
		return;
	memcpy(k.write_key, t->keyblk, kl);
	memcpy(k.read_key, t->keyblk + kl, kl);
	memcpy(k.write_iv, t->keyblk + 2 * kl, il);
	memcpy(k.read_iv, t->keyblk + 2 * kl + il, il);
	k.write_seq = get_be64(t->ssl.cur_out_ctr);
	k.read_seq = get_be64(t->ssl.in_ctr);
	t->rec = tls_rec_new(&k);
	enum tls_rec_cipher cipher = k.cipher;
	mbedtls_platform_zeroize(&k, sizeof(k));
	mbedtls_platform_zeroize(t->keyblk, sizeof(t->keyblk));
	if (!t->rec)
		return;
	/* Ciphertext after the Finished record: the record layer reads it
	 * from in, which stays until it has been read (tls_conn_feed). */
	if (t->in.len > t->in_off) {
		tls_rec_feed(t->rec, t->in.data + t->in_off, t->in.len - t->in_off);
		t->in_lent = true;
	} else {
		buf_free(&t->in);
	}
	release_mbed_records(&t->ssl);
	tls_offload_hook((int)cipher);
}

int tls_conn_handshake(struct tls_conn *t, char *msg, size_t cap)
{
	if (t->handshake_done)
		return 1; /* and mbedTLS's record buffers may be gone */
	t->cfg->handshaking = t;
	int ret = mbedtls_ssl_handshake(&t->ssl);
	t->cfg->handshaking = NULL;
	if (ret == 0) {
		if (!t->handshake_done) {
			t->handshake_done = true;
			offload_start(t);
		}
		return 1;
	}
	if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
		return 0;
	return handshake_error(t, ret, msg, cap);
}

bool tls_conn_resumed(const struct tls_conn *t)
{
	/* An abbreviated handshake carries no certificate to verify. */
	return t->offered_session && !t->chain_verified;
}

long tls_conn_read(struct tls_conn *t, char **plain, char *msg, size_t msg_cap)
{
	if (t->rec) {
		char detail[160];
		long n = tls_rec_open(t->rec, plain, detail, sizeof(detail));
		if (n >= 0 || n == TLS_CLOSED)
			return n;
		if (n == LR_ENOMEM)
			snprintf(msg, msg_cap, "TLS data from %s: out of memory", t->host);
		else
			snprintf(msg, msg_cap, "TLS error from %s: %s", t->host, detail);
		return n;
	}
	static __thread unsigned char buf[16384];
	*plain = (char *)buf;
	int ret = mbedtls_ssl_read(&t->ssl, buf, sizeof(buf));
	if (ret > 0)
		return ret;
	if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
		return 0;
	if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		return TLS_CLOSED;
	if (mbed_oom(ret)) {
		snprintf(msg, msg_cap, "TLS data from %s: out of memory", t->host);
		return LR_ENOMEM;
	}
	char detail[128];
	mbedtls_strerror(ret, detail, sizeof(detail));
	snprintf(msg, msg_cap, "TLS error from %s: %s", t->host, detail);
	return LR_EPROTO;
}

int tls_conn_write(struct tls_conn *t, const char *data, size_t len)
{
	if (t->rec)
		return len ? tls_rec_seal(t->rec, TLS_REC_APPLICATION_DATA, data, len, &t->out) : 0;
	size_t off = 0;
	while (off < len) {
		int ret = mbedtls_ssl_write(&t->ssl, (const unsigned char *)data + off, len - off);
		if (ret > 0) {
			off += (size_t)ret;
			continue;
		}
		if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue; /* our BIO never blocks writes: retry the same bytes */
		return mbed_oom(ret) ? LR_ENOMEM : LR_EPROTO;
	}
	return 0;
}

void tls_conn_close_notify(struct tls_conn *t)
{
	static const char close_notify[2] = {1, 0}; /* warning, close_notify */
	if (t->rec)
		tls_rec_seal(t->rec, TLS_REC_ALERT, close_notify, sizeof(close_notify), &t->out);
	else
		mbedtls_ssl_close_notify(&t->ssl);
}

void tls_session_save(struct tls_conn *t, struct tls_session **slot)
{
	struct tls_session *s = calloc(1, sizeof(*s)); /* owner: *slot's holder */
	if (!s)
		return;
	mbedtls_ssl_session_init(&s->s);
	if (mbedtls_ssl_get_session(&t->ssl, &s->s) != 0) {
		tls_session_free(s);
		return;
	}
	tls_session_free(*slot);
	*slot = s;
}

void tls_session_free(struct tls_session *s)
{
	if (!s)
		return;
	mbedtls_ssl_session_free(&s->s);
	free(s);
}


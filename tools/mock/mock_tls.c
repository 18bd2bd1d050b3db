/*
 * mbedTLS 2.28 server side for the mock, as a byte transformer: the BIO
 * callbacks read ciphertext from the connection's input buffer (filled by the
 * ring) and hand produced ciphertext to a sink (sent by the ring).
 *
 * Resumption is offered both ways a TLS 1.2 client may ask: session tickets
 * (RFC 5077, key from mbedtls_ssl_ticket) and session ids (mbedtls_ssl_cache).
 * Whether a handshake resumed is learnt by wrapping the ticket-parse and
 * cache-get callbacks: mbedTLS resumes exactly when one of them succeeds,
 * and 2.28 has no public "was this resumed" query.
 */
#include "mock_tls.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#include "io/tls.h"

#define TICKET_LIFETIME_S 86400

struct mock_tls {
	mbedtls_ssl_config conf;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt crt;
	mbedtls_pk_context key;
	mbedtls_ssl_ticket_context ticket;
	mbedtls_ssl_cache_context cache;
	int *suites;               /* owner: this server; the list conf points at */
	struct mock_tls_conn *cur; /* the connection handshaking right now; borrowed */
	_Atomic uint64_t resumptions;
};

struct mock_tls_conn {
	mbedtls_ssl_context ssl;
	struct mock_tls *t;     /* borrowed from the server */
	mock_tls_sink *sink;
	void *arg;
	unsigned char *in;      /* ciphertext mbedTLS has not taken yet; owned by the conn */
	size_t in_off, in_len, in_cap;
	bool hs_done;
	bool resumed;
};

/* The ALPN list must outlive the config. */
static const char *alpn_list[] = {"http/1.1", NULL};

/* ------------------------------------------------------------------ */
/* Memory BIO                                                          */

static int bio_send(void *arg, const unsigned char *p, size_t n)
{
	struct mock_tls_conn *c = arg;
	c->sink(c->arg, p, n);
	return (int)n; /* records are at most ~17 KB */
}

static int bio_recv(void *arg, unsigned char *p, size_t n)
{
	struct mock_tls_conn *c = arg;
	size_t have = c->in_len - c->in_off;
	if (have == 0)
		return MBEDTLS_ERR_SSL_WANT_READ; /* the ring will bring more */
	if (n > have)
		n = have;
	memcpy(p, c->in + c->in_off, n);
	c->in_off += n;
	return (int)n;
}

/* ------------------------------------------------------------------ */
/* Resumption callbacks that also note the resumption                  */

static int ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
	struct mock_tls *t = p;
	int r = mbedtls_ssl_ticket_parse(&t->ticket, session, buf, len);
	if (r == 0 && t->cur)
		t->cur->resumed = true;
	return r;
}

static int ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
			const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
	struct mock_tls *t = p;
	return mbedtls_ssl_ticket_write(&t->ticket, session, start, end, tlen, lifetime);
}

static int cache_get(void *p, mbedtls_ssl_session *session)
{
	struct mock_tls *t = p;
	int r = mbedtls_ssl_cache_get(&t->cache, session);
	if (r == 0 && t->cur)
		t->cur->resumed = true;
	return r;
}

static int cache_set(void *p, const mbedtls_ssl_session *session)
{
	struct mock_tls *t = p;
	return mbedtls_ssl_cache_set(&t->cache, session);
}

/* ------------------------------------------------------------------ */
/* Server-wide state                                                   */

static int fail(char *msg, size_t msgsz, int code, const char *what, const char *file,
		int mbed)
{
	if (msgsz) {
		char why[160];
		if (mbed)
			mbedtls_strerror(mbed, why, sizeof(why));
		else
			snprintf(why, sizeof(why), "%s", strerror(-code));
		if (file)
			snprintf(msg, msgsz, "%s %s: %s", what, file, why);
		else
			snprintf(msg, msgsz, "%s: %s", what, why);
	}
	return code;
}

/* mbedTLS reports a missing file as a generic I/O error: open it first for
 * the real errno. */
static int readable(const char *file)
{
	FILE *f = fopen(file, "rb");
	if (!f)
		return -errno;
	fclose(f);
	return 0;
}

int mock_tls_new(const char *cert_file, const char *key_file, struct mock_tls **out,
		 char *msg, size_t msgsz)
{
	*out = NULL;
	if (msgsz)
		msg[0] = '\0';
	if (!cert_file || !*cert_file || !key_file || !*key_file)
		return fail(msg, msgsz, -EINVAL, "TLS needs both a certificate and a key file",
			    NULL, 0);
	int r = readable(cert_file);
	if (r < 0)
		return fail(msg, msgsz, r, "TLS certificate", cert_file, 0);
	r = readable(key_file);
	if (r < 0)
		return fail(msg, msgsz, r, "TLS key", key_file, 0);

	struct mock_tls *t = calloc(1, sizeof(*t)); /* caller's, via mock_tls_free */
	if (!t)
		return fail(msg, msgsz, -ENOMEM, "TLS setup", NULL, 0);
	mbedtls_ssl_config_init(&t->conf);
	mbedtls_entropy_init(&t->entropy);
	mbedtls_ctr_drbg_init(&t->drbg);
	mbedtls_x509_crt_init(&t->crt);
	mbedtls_pk_init(&t->key);
	mbedtls_ssl_ticket_init(&t->ticket);
	mbedtls_ssl_cache_init(&t->cache);

	static const char pers[] = "llmring-mock-tls";
	int m = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy,
				      (const unsigned char *)pers, sizeof(pers) - 1);
	if (m) {
		r = fail(msg, msgsz, -EIO, "TLS random generator", NULL, m);
		goto out;
	}
	m = mbedtls_x509_crt_parse_file(&t->crt, cert_file);
	if (m < 0 || t->crt.version == 0) {
		r = fail(msg, msgsz, -EINVAL, "TLS certificate", cert_file, m < 0 ? m : 0);
		goto out;
	}
	m = mbedtls_pk_parse_keyfile(&t->key, key_file, NULL);
	if (m) {
		r = fail(msg, msgsz, -EINVAL, "TLS key", key_file, m);
		goto out;
	}
	if (mbedtls_pk_check_pair(&t->crt.pk, &t->key) != 0) {
		if (msgsz)
			snprintf(msg, msgsz, "TLS key %s does not match the certificate %s",
				 key_file, cert_file);
		r = -EINVAL;
		goto out;
	}

	m = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_SERVER,
					MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (!m)
		m = mbedtls_ssl_conf_own_cert(&t->conf, &t->crt, &t->key);
	if (!m)
		m = mbedtls_ssl_conf_alpn_protocols(&t->conf, alpn_list);
	if (!m)
		m = mbedtls_ssl_ticket_setup(&t->ticket, mbedtls_ctr_drbg_random, &t->drbg,
					     MBEDTLS_CIPHER_AES_256_GCM, TICKET_LIFETIME_S);
	if (m) {
		r = fail(msg, msgsz, -EINVAL, "TLS setup", NULL, m);
		goto out;
	}
	mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
				     MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
	mbedtls_ssl_conf_session_tickets_cb(&t->conf, ticket_write, ticket_parse, t);
	mbedtls_ssl_conf_session_cache(&t->conf, t, cache_get, cache_set);
	/* mbedTLS picks by the server's order (Debian builds it without
	 * MBEDTLS_SSL_SRV_RESPECT_CLIENT_PREFERENCE), and its default puts
	 * ChaCha20-Poly1305 first; nginx follows the client, which (llmring
	 * on a CPU with AES instructions, OpenSSL's clients) lists AES-GCM
	 * first. The same order here ends on the suite nginx would pick. */
	t->suites = tls_suites_new();
	if (t->suites)
		mbedtls_ssl_conf_ciphersuites(&t->conf, t->suites);
	*out = t;
	return 0;
out:
	mock_tls_free(t);
	return r;
}

void mock_tls_free(struct mock_tls *t)
{
	if (!t)
		return;
	mbedtls_ssl_config_free(&t->conf);
	mbedtls_ssl_cache_free(&t->cache);
	mbedtls_ssl_ticket_free(&t->ticket);
	mbedtls_pk_free(&t->key);
	mbedtls_x509_crt_free(&t->crt);
	mbedtls_ctr_drbg_free(&t->drbg);
	mbedtls_entropy_free(&t->entropy);
	free(t->suites);
	free(t);
}

uint64_t mock_tls_resumptions(const struct mock_tls *t)
{
	return atomic_load_explicit(&((struct mock_tls *)t)->resumptions, memory_order_relaxed);
}

/* ------------------------------------------------------------------ */
/* Connections                                                         */

struct mock_tls_conn *mock_tls_conn_new(struct mock_tls *t, mock_tls_sink *sink, void *arg)
{
	struct mock_tls_conn *c = calloc(1, sizeof(*c)); /* caller's, via mock_tls_conn_free */
	if (!c)
		return NULL;
	c->t = t;
	c->sink = sink;
	c->arg = arg;
	mbedtls_ssl_init(&c->ssl);
	if (mbedtls_ssl_setup(&c->ssl, &t->conf) != 0) {
		mbedtls_ssl_free(&c->ssl);
		free(c);
		return NULL;
	}
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	return c;
}

void mock_tls_conn_free(struct mock_tls_conn *c)
{
	if (!c)
		return;
	mbedtls_ssl_free(&c->ssl);
	free(c->in);
	free(c);
}

void mock_tls_conn_in_space(struct mock_tls_conn *c, size_t want, unsigned char **p,
			    size_t *n)
{
	if (c->in_off) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_cap - c->in_len < want) {
		size_t cap = c->in_cap ? c->in_cap : 4096;
		while (cap - c->in_len < want)
			cap *= 2;
		unsigned char *q = realloc(c->in, cap);
		if (!q)
			abort(); /* a test tool: out of memory is fatal */
		c->in = q;
		c->in_cap = cap;
	}
	*p = c->in + c->in_len;
	*n = c->in_cap - c->in_len;
}

void mock_tls_conn_in_commit(struct mock_tls_conn *c, size_t n)
{
	c->in_len += n;
}

int mock_tls_conn_handshake(struct mock_tls_conn *c)
{
	if (c->hs_done)
		return 1;
	c->t->cur = c;
	int m = mbedtls_ssl_handshake(&c->ssl);
	c->t->cur = NULL;
	if (m == MBEDTLS_ERR_SSL_WANT_READ || m == MBEDTLS_ERR_SSL_WANT_WRITE)
		return 0;
	if (m != 0)
		return -EPROTO;
	c->hs_done = true;
	if (c->resumed)
		atomic_fetch_add_explicit(&c->t->resumptions, 1, memory_order_relaxed);
	return 1;
}

bool mock_tls_conn_resumed(const struct mock_tls_conn *c)
{
	return c->hs_done && c->resumed;
}

int mock_tls_conn_read(struct mock_tls_conn *c, void *dst, size_t cap)
{
	int m = mbedtls_ssl_read(&c->ssl, dst, cap);
	if (m > 0)
		return m;
	if (m == MBEDTLS_ERR_SSL_WANT_READ || m == MBEDTLS_ERR_SSL_WANT_WRITE)
		return 0;
	if (m == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || m == 0)
		return -EPIPE;
	return -EPROTO;
}

int mock_tls_conn_write(struct mock_tls_conn *c, const void *p, size_t n)
{
	const unsigned char *b = p;
	unsigned retries = 0;
	/* mbedtls_ssl_write takes at most one record per call; the memory sink
	 * never pushes back, so WANT_* would only mean "call again with the same
	 * bytes" (bounded, so a surprise cannot spin forever). */
	while (n) {
		int m = mbedtls_ssl_write(&c->ssl, b, n);
		if ((m == MBEDTLS_ERR_SSL_WANT_READ || m == MBEDTLS_ERR_SSL_WANT_WRITE) &&
		    ++retries < 8)
			continue;
		if (m <= 0)
			return -EPROTO;
		b += m;
		n -= (size_t)m;
	}
	return 0;
}

int mock_tls_conn_close_notify(struct mock_tls_conn *c)
{
	int m = mbedtls_ssl_close_notify(&c->ssl);
	return m == 0 ? 0 : -EPROTO;
}

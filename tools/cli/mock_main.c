/*
 * `llmring mock`: runs the mock LLM server (OpenAI, Anthropic, Ollama and
 * Gemini wire dialects; tools/mock/mock_server.h) in the foreground
 * until SIGINT or SIGTERM. Prints one line, `listening on http://HOST:PORT`
 * (https:// with --tls-cert/--tls-key; the real port, also for --listen
 * HOST:0), so scripts can read the port. Exit status 2 for bad usage and for
 * TLS files that cannot be loaded, 1 when it cannot listen.
 */
#include "cli.h"
#include "mock_server.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: llmring mock [--listen HOST:PORT] [--ttft-ms N] [--itl-ms N] [--tokens N]\n"
	"                    [--ttft-spread-ms S] [--itl-spread-ms S] [--max-batch N]\n"
	"                    [--ignore-eos]\n"
	"                    [--fault KIND:RATE]... [--seed N] [--close-every N]\n"
	"                    [--tls-cert FILE --tls-key FILE]\n"
	"                    [--state-dir DIR] [--batch-phase-ms N] [--batch-fault KIND:RATE]...\n"
	"\n"
	"A mock LLM server speaking four providers' wire formats (all POST):\n"
	"  OpenAI     /v1/chat/completions, /v1/completions (legacy), /v1/embeddings\n"
	"  Anthropic  /v1/messages\n"
	"  Ollama     /api/chat, /api/embed\n"
	"  Gemini     /v1beta/models/MODEL:generateContent,\n"
	"             /v1beta/models/MODEL:streamGenerateContent?alt=sse\n"
	"Batch APIs (docs/guide.md): OpenAI /v1/files and /v1/batches, Anthropic\n"
	"  /v1/messages/batches; GET /mock/stats and /mock/submits count submissions.\n"
	"A chat request with \"tools\" (and no tool result yet) gets a tool call.\n"
	"  --listen HOST:PORT  address to listen on (127.0.0.1:8000; port 0 = any free port)\n"
	"  --ttft-ms N         delay before the first token, or before a whole reply (0);\n"
	"                      the mean when --ttft-spread-ms is given\n"
	"  --itl-ms N          delay between streamed tokens (0); the mean with a spread\n"
	"  --ttft-spread-ms S  draw each request's TTFT from a log-normal distribution\n"
	"                      with mean --ttft-ms and standard deviation S ms, seeded by\n"
	"                      --seed (the same seed gives request n the same TTFT);\n"
	"                      0 = exactly --ttft-ms (0)\n"
	"  --itl-spread-ms S   the same for each gap between two tokens (0)\n"
	"  --max-batch N       at most N generations (chat or completion requests) at\n"
	"                      once; the others wait in a FIFO queue before their TTFT\n"
	"                      starts, so TTFT grows with load. A stream holds its slot\n"
	"                      until its last event or its connection closes; a whole\n"
	"                      reply takes ttft + tokens * itl. 0 = unlimited (0)\n"
	"  --tokens N          completion tokens (words) per reply: where the mock's model\n"
	"                      stops on its own (16). A max-token field (max_tokens,\n"
	"                      max_completion_tokens, options.num_predict,\n"
	"                      generationConfig.maxOutputTokens) below it cuts the reply\n"
	"                      with finish reason \"length\"\n"
	"  --ignore-eos        a max-token field is the exact length, also above --tokens\n"
	"                      (at most 1,000,000; finish reason \"length\"), as vLLM's\n"
	"                      \"ignore_eos\":true does per request (which the mock honours\n"
	"                      without this flag too)\n"
	"  --fault KIND:RATE   inject a fault into that share (0..1) of requests; KIND is\n"
	"                      429, 500, 503, 529, stream-error, reset, truncate, malformed,\n"
	"                      slow-headers, close; or a refusal: 400, 401, 403, 404, 409,\n"
	"                      422, context (window exceeded), quota (spent).\n"
	"                      A request can also ask with the header `x-mock-fault: KIND`\n"
	"                      or the text `mock-fault:KIND` in its body.\n"
	"  --seed N            seed for the generated text, the fault choice and the\n"
	"                      latency draws (0)\n"
	"  --close-every N     answer every Nth request with Connection: close (0 = never)\n"
	"  --tls-cert FILE, --tls-key FILE\n"
	"                      serve HTTPS (TLS 1.2) with this certificate chain and key\n"
	"                      (PEM or DER); both are needed\n"
	"  --state-dir DIR     keep the batch APIs' files and batches in DIR, so a\n"
	"                      restarted mock still knows them (default: in memory)\n"
	"  --batch-phase-ms N  how long each batch phase lasts: validating, in progress,\n"
	"                      finalizing (1000)\n"
	"  --batch-fault KIND:RATE\n"
	"                      batch faults: invalid (that share of batches fail\n"
	"                      validation), expire (that share of lines expire), fail\n"
	"                      (batches fail in progress), cut (a file's first download\n"
	"                      is cut half way), 429 (batch creates refused). Per request:\n"
	"                      the header `x-mock-batch-fault: KIND`\n";

/* Why the flags were refused: printed for the command (in full), kept in
 * mf->error for a binding. 2. */
static int bad(struct mock_flags *mf, const char *fmt, const char *a, const char *b)
{
	if (mf->print_errors) {
		fprintf(stderr, "llmring mock: ");
		fprintf(stderr, fmt, a, b);
		fputc('\n', stderr);
	}
	snprintf(mf->error, sizeof(mf->error), fmt, a, b);
	return 2;
}

static int parse_ull(const char *s, unsigned long long max, unsigned long long *out)
{
	if (!s || !*s || *s == '-' || *s == '+')
		return -1;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

/* "HOST:PORT" or "[V6]:PORT"; the host is copied into host (hostsz bytes). */
static int parse_listen(const char *s, char *host, size_t hostsz, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon)
		return -1;
	const char *h = s, *he = colon;
	if (*h == '[') {
		if (he[-1] != ']')
			return -1;
		h++;
		he--;
	}
	size_t hl = (size_t)(he - h);
	if (hl == 0 || hl >= hostsz)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	unsigned long long p;
	if (parse_ull(colon + 1, 65535, &p) < 0)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

/* --fault KIND:RATE. 0, or 2 after printing why not. */
static int parse_fault(struct mock_flags *mf, const char *val)
{
	const char *colon = strrchr(val, ':');
	char kind[32];
	size_t kl = colon ? (size_t)(colon - val) : 0;
	if (!colon || kl == 0 || kl >= sizeof(kind))
		return bad(mf, "--fault wants KIND:RATE, got '%s'", val, "");
	memcpy(kind, val, kl);
	kind[kl] = '\0';
	int f = mock_fault_from_name(kind);
	if (f <= 0)
		return bad(mf, "unknown fault kind '%s' (429, 500, 503, 529, stream-error, reset, "
			   "truncate, malformed, slow-headers, close, 400, 401, 403, 404, 409, "
			   "422, context, quota)", kind, "");
	char *end;
	errno = 0;
	double r = strtod(colon + 1, &end);
	if (errno || end == colon + 1 || *end || !(r >= 0 && r <= 1))
		return bad(mf, "--fault rate must be between 0 and 1, got '%s'", colon + 1, "");
	mf->rate_sum += r - mf->o.fault_rate[f];
	mf->o.fault_rate[f] = r;
	return 0;
}

/* --batch-fault KIND:RATE. 0, or 2 after printing why not. */
static int parse_batch_fault(struct mock_flags *mf, const char *val)
{
	const char *colon = strrchr(val, ':');
	int f = colon ? mock_batch_fault_from_mem(val, (size_t)(colon - val)) : -1;
	if (!colon)
		return bad(mf, "--batch-fault wants KIND:RATE, got '%s'", val, "");
	if (f <= 0)
		return bad(mf, "unknown batch fault kind in '%s' (invalid, expire, fail, cut, 429)",
			   val, "");
	char *end;
	errno = 0;
	double r = strtod(colon + 1, &end);
	if (errno || end == colon + 1 || *end || !(r >= 0 && r <= 1))
		return bad(mf, "--batch-fault rate must be between 0 and 1, got '%s'", colon + 1, "");
	mf->o.batch_fault_rate[f] = r;
	return 0;
}

/* The field of an option whose value is a non-negative integer; NULL for
 * the others. */
static unsigned *uint_option(struct mock_options *o, const char *name)
{
	static const struct {
		const char *name;
		size_t offset;
	} fields[] = {
		{"--ttft-ms", offsetof(struct mock_options, ttft_ms)},
		{"--itl-ms", offsetof(struct mock_options, itl_ms)},
		{"--ttft-spread-ms", offsetof(struct mock_options, ttft_spread_ms)},
		{"--itl-spread-ms", offsetof(struct mock_options, itl_spread_ms)},
		{"--max-batch", offsetof(struct mock_options, max_batch)},
		{"--tokens", offsetof(struct mock_options, tokens)},
		{"--close-every", offsetof(struct mock_options, close_every)},
		{"--batch-phase-ms", offsetof(struct mock_options, batch_phase_ms)},
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strcmp(name, fields[i].name) == 0)
			return (unsigned *)(void *)((char *)o + fields[i].offset);
	return NULL;
}

/* The value of option `name` (one of the known ones). 0, or 2 after
 * printing why not. */
static int apply_option(struct mock_flags *mf, const char *name, const char *val)
{
	struct mock_options *o = &mf->o;
	unsigned long long v;
	if (strcmp(name, "--listen") == 0) {
		if (parse_listen(val, mf->host, sizeof(mf->host), &o->port) < 0)
			return bad(mf, "--listen wants HOST:PORT, got '%s'", val, "");
	} else if (uint_option(o, name)) {
		if (parse_ull(val, UINT_MAX / 2, &v) < 0)
			return bad(mf, "%s wants a non-negative integer, got '%s'", name, val);
		*uint_option(o, name) = (unsigned)v;
	} else if (strcmp(name, "--seed") == 0) {
		if (parse_ull(val, ULLONG_MAX, &v) < 0)
			return bad(mf, "--seed wants a non-negative integer, got '%s'", val, "");
		o->seed = v;
	} else if (strcmp(name, "--fault") == 0) {
		return parse_fault(mf, val);
	} else if (strcmp(name, "--batch-fault") == 0) {
		return parse_batch_fault(mf, val);
	} else if (strcmp(name, "--state-dir") == 0) {
		if (!*val)
			return bad(mf, "--state-dir needs a directory", "", "");
		o->state_dir = val;
	} else if (strcmp(name, "--tls-cert") == 0) {
		mf->tls_cert = val;
	} else if (strcmp(name, "--tls-key") == 0) {
		mf->tls_key = val;
	}
	return 0;
}

/* Reentrant (no state outside *mf). 0, 2 with why in mf->error (and on stderr when asked), or -1
 * when --help was shown (on stdout). */
int mock_parse_flags(int argc, char **argv, bool print_errors, struct mock_flags *mf)
{
	memset(mf, 0, sizeof(*mf));
	mf->print_errors = print_errors;
	mock_options_default(&mf->o);
	mf->o.port = 8000;
	snprintf(mf->host, sizeof(mf->host), "127.0.0.1");
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			fputs(usage, stdout);
			return -1;
		}
		if (strcmp(arg, "--ignore-eos") == 0) {
			mf->o.ignore_eos = 1;
			continue;
		}
		if (strncmp(arg, "--", 2) != 0)
			return bad(mf, "unexpected argument '%s' (see --help)", arg, "");
		/* --flag=value or --flag value */
		char name[32];
		const char *val = NULL;
		const char *eq = strchr(arg, '=');
		size_t nl = eq ? (size_t)(eq - arg) : strlen(arg);
		if (nl >= sizeof(name))
			return bad(mf, "unknown option '%s' (see --help)", arg, "");
		memcpy(name, arg, nl);
		name[nl] = '\0';
		static const char *const known[] = {"--listen", "--ttft-ms", "--itl-ms",
						    "--ttft-spread-ms", "--itl-spread-ms",
						    "--max-batch", "--tokens", "--fault", "--seed",
						    "--close-every", "--tls-cert", "--tls-key",
						    "--state-dir", "--batch-phase-ms",
						    "--batch-fault"};
		bool ok = false;
		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			ok |= strcmp(name, known[k]) == 0;
		if (!ok)
			return bad(mf, "unknown option '%s' (see --help)", name, "");
		if (eq) {
			val = eq + 1;
		} else {
			if (i + 1 >= argc)
				return bad(mf, "%s needs a value", name, "");
			val = argv[++i];
		}
		int rc = apply_option(mf, name, val);
		if (rc)
			return rc;
	}
	if (mf->o.ttft_spread_ms && !mf->o.ttft_ms)
		return bad(mf, "%s needs %s above 0 (the mean)", "--ttft-spread-ms", "--ttft-ms");
	if (mf->o.itl_spread_ms && !mf->o.itl_ms)
		return bad(mf, "%s needs %s above 0 (the mean)", "--itl-spread-ms", "--itl-ms");
	if (mf->rate_sum > 1.0 + 1e-9)
		return bad(mf, "fault rates add up to more than 1", "", "");
	if (!mf->tls_cert != !mf->tls_key)
		return bad(mf, "%s needs %s too", mf->tls_cert ? "--tls-cert" : "--tls-key",
			   mf->tls_cert ? "--tls-key" : "--tls-cert");
	mf->o.host = mf->host;
	mf->o.tls_cert_file = mf->tls_cert;
	mf->o.tls_key_file = mf->tls_key;
	return 0;
}

/* Serves until SIGINT or SIGTERM. The exit status. */
static int serve(struct mock_flags *mf)
{
	char tls_error[512];
	mf->o.error = tls_error;
	mf->o.error_size = sizeof(tls_error);

	/* Blocked before the server thread starts so that it inherits the mask
	 * and only sigwait below sees them. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, &old);

	struct mock_server *srv = NULL; /* owner: this function, stopped below */
	int r = mock_server_start(&mf->o, &srv);
	if (r < 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (tls_error[0] && mf->o.state_dir && strncmp(tls_error, "cannot use --state-dir", 22) == 0) {
			fprintf(stderr, "llmring mock: %s\n", tls_error);
			return 2;
		}
		if (tls_error[0]) {
			fprintf(stderr, "llmring mock: cannot serve HTTPS: %s\n", tls_error);
			return 2;
		}
		fprintf(stderr, "llmring mock: cannot listen on %s:%u: %s\n", mf->host,
			(unsigned)mf->o.port, strerror(-r));
		return 1;
	}
	const char *scheme = mf->tls_cert ? "https" : "http";
	if (strchr(mf->host, ':'))
		printf("listening on %s://[%s]:%u\n", scheme, mf->host,
		       (unsigned)mock_server_port(srv));
	else
		printf("listening on %s://%s:%u\n", scheme, mf->host, (unsigned)mock_server_port(srv));
	fflush(stdout);

	int sig = 0;
	while (sigwait(&set, &sig) != 0)
		;
	uint64_t nreq = mock_server_requests(srv);
	uint64_t nconn = mock_server_connections(srv);
	mock_server_stop(srv);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	fprintf(stderr, "llmring mock: %s, served %llu requests on %llu connections\n",
		sig == SIGINT ? "interrupted" : "terminated", (unsigned long long)nreq,
		(unsigned long long)nconn);
	return 0;
}

int mock_main(int argc, char **argv)
{
	struct mock_flags mf;
	int rc = mock_parse_flags(argc, argv, true, &mf);
	if (rc)
		return rc < 0 ? 0 : rc;
	return serve(&mf);
}

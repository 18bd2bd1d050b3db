/*
 * `llmring batch INPUT.jsonl -o OUTPUT.jsonl ...`: every line of an OpenAI
 * Batch API file becomes one request; every outcome becomes one output
 * line, appended in completion order with a single write() so that a crash
 * never leaves a torn or duplicated line.
 *
 * Memory stays bounded however long the input is: lines are read as the
 * window of outstanding requests (4 x concurrency) has room, and only the
 * set of custom_ids seen (needed to find duplicates) grows with the input.
 * A line longer than --max-line-bytes is never buffered whole: it gets an
 * invalid_input line and the rest of it is read and dropped in chunks.
 *
 * Resume: an existing output file is read first. Lines carrying
 * "input_line" (unusable input lines) are matched by line number and the
 * hash of the line's bytes ("input_hash"; a line edited or moved since
 * runs again), all others by custom_id; either way the input line is
 * skipped. A trailing
 * line without its newline (a crash mid-write) is cut off first. With
 * --retry-errors the error lines are not remembered but removed: the file
 * is rewritten without them beside itself and renamed over the original,
 * so those lines run again.
 *
 * Rate limits (--rpm, --tpm) are the engine's token buckets; cost comes
 * from each result's cost_usd (the engine's price table). On a terminal a
 * progress line is redrawn at most 10 times a second from counters kept
 * anyway; a summary ends every run unless --quiet.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "format/json.h"
#include "util/buf.h"
#include "llmring.h"
#include "mock_server.h"

#define BATCH_DEFAULT_CONCURRENCY 64
#define BATCH_MAX_CONCURRENCY 100000
#define BATCH_REAP_MAX 256
#define BATCH_PENDING_MAX (256 * 1024)
#define BATCH_PROGRESS_INTERVAL_NS 100000000ull /* redraw at most 10 times a second */
#define BATCH_MAX_MODEL_NAMES 256     /* distinct requested names remembered */
#define BATCH_SUMMARY_MODEL_NAMES 20  /* unpriced names the text summary lists */
#define BATCH_DEFAULT_MAX_LINE (16L * 1024 * 1024)
#define BATCH_MAX_MAX_LINE (4L * 1024 * 1024 * 1024)
#define BATCH_READ_CHUNK 65536
#define BATCH_FD_SLACK 32             /* files, eventfds, the ring, the mock's listener */

static const char batch_usage[] =
	"usage: llmring batch INPUT.jsonl -o OUTPUT.jsonl [--model M] [--base-url URL] [--mock]\n"
	"                     [--concurrency N] [--rpm N] [--tpm N] [--max-retries N]\n"
	"                     [--retry-errors] [--timeout S] [--connect-timeout S]\n"
	"                     [--idle-timeout S] [--cacert FILE] [--insecure] [--stats FILE]\n"
	"                     [--quiet] [--max-line-bytes N]\n"
	"\n"
	"Sends every request of INPUT (OpenAI Batch API JSONL: custom_id, method, url,\n"
	"body) and appends one outcome line per input line to OUTPUT, in completion\n"
	"order. Re-running with the same OUTPUT skips the lines already done.\n"
	"  -o FILE              output JSONL (appended to; resumed when it exists)\n"
	"  --model M            override every body's model\n"
	"                       Models are provider/model (openai/, anthropic/, ollama/,\n"
	"                       gemini/, mock/; no known prefix: openai): each line goes\n"
	"                       to its provider; output bodies are OpenAI-shaped\n"
	"  --base-url URL       send every line here instead of the provider's endpoint\n"
	"                       (default: OPENAI_BASE_URL / ANTHROPIC_BASE_URL /\n"
	"                       OLLAMA_HOST / GEMINI_BASE_URL, else the public endpoint\n"
	"                       with OPENAI_API_KEY / ANTHROPIC_API_KEY / GEMINI_API_KEY)\n"
	"  --mock               send everything to a built-in mock server (no key needed);\n"
	"                       it speaks every provider's dialect\n"
	"  --concurrency N      requests on the wire at once (64)\n"
	"  --rpm N              at most N requests a minute (bursts of at most one\n"
	"                       second's worth; rate-limit headers are honoured too)\n"
	"  --tpm N              at most N tokens a minute (prompt estimate plus\n"
	"                       max_tokens, corrected with the usage reported)\n"
	"  --max-retries N      tries after the first (2), as the official SDKs retry:\n"
	"                       connection errors, 408, 409, 429, 5xx and 529, honouring\n"
	"                       Retry-After; never other 4xx or insufficient_quota\n"
	"  --retry-errors       on resume, first remove the error lines of OUTPUT (the\n"
	"                       file is rewritten atomically), then send them again\n"
	"  --timeout S          total seconds per attempt, from when it goes out (600;\n"
	"                       fractions allowed; waiting for --concurrency, --rpm,\n"
	"                       --tpm or a free file descriptor does not count; every\n"
	"                       deadline is at least 0.001)\n"
	"  --connect-timeout S  seconds to connect (10)\n"
	"  --idle-timeout S     longest silence inside a response (60)\n"
	"  --cacert FILE        CA bundle (PEM) to verify the server with, replacing the\n"
	"                       system one (default: SSL_CERT_FILE, else the system\n"
	"                       bundle)\n"
	"  --insecure           do not verify TLS certificates at all (prints a warning)\n"
	"  --stats FILE         write a JSON summary (checked writable before the run)\n"
	"  --quiet              no progress or summary on stderr (errors still shown)\n"
	"  --max-line-bytes N   longest input line (16777216); a longer one gets an\n"
	"                       invalid_input line and is skipped without being held\n"
	"                       in memory\n"
	"On a terminal a progress line is shown; at the end a summary (requests, tokens,\n"
	"cost, time) goes to stderr.\n"
	"With --mock, --cacert and --insecure have no effect (the mock is plain HTTP).\n"
	"INPUT, OUTPUT and the stats file must be three different files.\n"
	"Exit status: 0 every line succeeded, 1 some line ended in an error (the output\n"
	"is complete), 2 nothing could be attempted or the run stopped early (the input\n"
	"or the output could not be read or written; run again to resume).\n";

void cli_usage_batch(FILE *out)
{
	fputs(batch_usage, out);
}

/* ---- options ---------------------------------------------------------- */

struct batch_options {
	const char *input_path, *output_path, *model, *base_url_flag, *stats_path;
	const char *cacert; /* borrowed: argv; NULL with --mock */
	bool mock, quiet, insecure, retry_errors;
	long concurrency;
	long max_retries;
	long rpm, tpm;        /* 0: no limit */
	long max_line;        /* longest input line kept, bytes */
	double timeout_s, connect_timeout_s, idle_timeout_s; /* 0: engine default */
};

static int parse_options(int argc, char **argv, struct batch_options *o)
{
	const char *cmd = "batch";
	const char *concurrency = NULL, *rpm = NULL, *tpm = NULL, *max_retries = NULL;
	const char *timeout = NULL, *connect_timeout = NULL, *idle_timeout = NULL, *cacert = NULL;
	const char *max_line = NULL;
	bool insecure = false, options_done = false;
	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *v = NULL;
		int m;
		if (options_done || arg[0] != '-' || arg[1] == '\0') {
			if (o->input_path) {
				fprintf(stderr, "llmring batch: unexpected argument '%s' (one INPUT only)\n",
				        arg);
				return CLI_EXIT_USAGE;
			}
			o->input_path = arg;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			options_done = true;
			continue;
		}
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			fputs(batch_usage, stdout);
			return -1;
		}
		CLI_OPTION("-o", true, o->output_path = v)
		CLI_OPTION("--model", true, o->model = v)
		CLI_OPTION("--base-url", true, o->base_url_flag = v)
		CLI_OPTION("--mock", false, o->mock = true)
		CLI_OPTION("--concurrency", true, concurrency = v)
		CLI_OPTION("--rpm", true, rpm = v)
		CLI_OPTION("--tpm", true, tpm = v)
		CLI_OPTION("--max-retries", true, max_retries = v)
		CLI_OPTION("--retry-errors", false, o->retry_errors = true)
		CLI_OPTION("--timeout", true, timeout = v)
		CLI_OPTION("--connect-timeout", true, connect_timeout = v)
		CLI_OPTION("--idle-timeout", true, idle_timeout = v)
		CLI_OPTION("--cacert", true, cacert = v)
		CLI_OPTION("--insecure", false, insecure = true)
		CLI_OPTION("--stats", true, o->stats_path = v)
		CLI_OPTION("--quiet", false, o->quiet = true)
		CLI_OPTION("--max-line-bytes", true, max_line = v)
		fprintf(stderr, "llmring batch: unknown option '%s'\n%s", arg, batch_usage);
		return CLI_EXIT_USAGE;
	}

	o->concurrency = BATCH_DEFAULT_CONCURRENCY;
	o->max_retries = 2;
	o->max_line = BATCH_DEFAULT_MAX_LINE;
	if ((max_line && cli_parse_count(cmd, "--max-line-bytes", max_line, 1, BATCH_MAX_MAX_LINE,
	                                 &o->max_line)) ||
	    (concurrency && cli_parse_count(cmd, "--concurrency", concurrency, 1,
	                                    BATCH_MAX_CONCURRENCY, &o->concurrency)) ||
	    (rpm && cli_parse_count(cmd, "--rpm", rpm, 1, 1000000000L, &o->rpm)) ||
	    (tpm && cli_parse_count(cmd, "--tpm", tpm, 1, 1000000000000L, &o->tpm)) ||
	    (max_retries && cli_parse_count(cmd, "--max-retries", max_retries, 0, 100, &o->max_retries)) ||
	    (timeout && cli_parse_seconds(cmd, "--timeout", timeout, &o->timeout_s)) ||
	    (connect_timeout &&
	     cli_parse_seconds(cmd, "--connect-timeout", connect_timeout, &o->connect_timeout_s)) ||
	    (idle_timeout && cli_parse_seconds(cmd, "--idle-timeout", idle_timeout, &o->idle_timeout_s)))
		return CLI_EXIT_USAGE;

	if (!o->input_path || !o->output_path) {
		fprintf(stderr, "llmring batch: %s is needed\n%s",
		        o->input_path ? "-o OUTPUT" : "an INPUT file", batch_usage);
		return CLI_EXIT_USAGE;
	}
	if (!o->input_path[0] || !o->output_path[0]) {
		fprintf(stderr, "llmring batch: empty file name\n");
		return CLI_EXIT_USAGE;
	}
	if (o->model && !o->model[0]) {
		fprintf(stderr, "llmring batch: --model may not be empty\n");
		return CLI_EXIT_USAGE;
	}
	if (o->mock && o->base_url_flag) {
		fprintf(stderr, "llmring batch: --mock and --base-url exclude each other\n");
		return CLI_EXIT_USAGE;
	}
	/* The mock is plain HTTP: there the TLS flags are accepted and
	 * change nothing (no check, no warning). */
	if (!o->mock) {
		o->cacert = cacert;
		o->insecure = insecure;
	}
	return 0;
}

/* ---- a set of custom_ids (open addressing, linear probing) ------------- */

enum id_state {
	ID_DONE_OK = 1,  /* has a success line in the output from an earlier run */
	ID_DONE_ERR = 2, /* has an error line in the output from an earlier run */
	ID_SEEN = 3,     /* met in the input during this run */
};

struct id_entry {
	uint64_t hash;   /* 0 marks an empty slot */
	const char *key; /* owner: the set's arena */
	uint32_t len;
	uint32_t state;  /* enum id_state */
};

struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	char data[];
};

struct id_set {
	struct id_entry *slots; /* owner: the set */
	size_t cap, count;      /* cap: a power of two */
	struct arena_block *arena; /* owner: the set; the keys, never freed one by one */
};

static uint64_t hash_bytes(const char *s, size_t n)
{
	/* FNV-1a, then a final mix so the low bits (the slot) spread well. */
	uint64_t h = 0xcbf29ce484222325u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3u;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	return h ? h : 1;
}

static const char *arena_copy(struct id_set *set, const char *s, size_t n)
{
	struct arena_block *b = set->arena;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->next = set->arena;
		b->used = 0;
		b->cap = cap;
		set->arena = b;
	}
	char *p = b->data + b->used;
	memcpy(p, s, n);
	b->used += n;
	return p;
}

static struct id_entry *id_set_find(struct id_set *set, const char *key, size_t len, uint64_t hash)
{
	if (!set->cap)
		return NULL;
	size_t mask = set->cap - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		struct id_entry *e = &set->slots[i];
		if (e->hash == 0)
			return NULL;
		if (e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0)
			return e;
	}
}

static int id_set_grow(struct id_set *set)
{
	size_t cap = set->cap ? set->cap * 2 : 1024;
	struct id_entry *slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -1;
	for (size_t k = 0; k < set->cap; k++) {
		struct id_entry *e = &set->slots[k];
		if (!e->hash)
			continue;
		size_t i = e->hash & (cap - 1);
		while (slots[i].hash)
			i = (i + 1) & (cap - 1);
		slots[i] = *e;
	}
	free(set->slots);
	set->slots = slots;
	set->cap = cap;
	return 0;
}

/* Adds a key known to be absent. NULL when out of memory. */
static struct id_entry *id_set_add(struct id_set *set, const char *key, size_t len, uint64_t hash,
                                   enum id_state state)
{
	if (len > UINT32_MAX)
		return NULL;
	if ((set->count + 1) * 4 > set->cap * 3 && id_set_grow(set))
		return NULL;
	const char *copy = arena_copy(set, key, len);
	if (!copy)
		return NULL;
	size_t mask = set->cap - 1;
	size_t i = hash & mask;
	while (set->slots[i].hash)
		i = (i + 1) & mask;
	set->slots[i] = (struct id_entry){hash, copy, (uint32_t)len, state};
	set->count++;
	return &set->slots[i];
}

static void id_set_free(struct id_set *set)
{
	free(set->slots);
	while (set->arena) {
		struct arena_block *next = set->arena->next;
		free(set->arena);
		set->arena = next;
	}
	memset(set, 0, sizeof(*set));
}

/* ---- the run ------------------------------------------------------------ */

/* One submitted request, found again through lr_future_user_data. */
struct line_rec {
	uint64_t input_line;
	const char *model; /* borrowed: options or the batch's model names */
	size_t id_len;
	char custom_id[];  /* id_len bytes plus a NUL */
};

struct model_names {
	char **names;  /* owner: this list, and each name */
	size_t count, cap;
	size_t limit;  /* most names kept (0: no limit) */
};

/* Lines of the input, read in chunks from a descriptor. */
struct line_reader {
	int fd;
	char *buf;          /* owner: the reader */
	size_t cap;
	size_t start, end;  /* unread bytes */
	size_t scanned;     /* [start, scanned) holds no newline */
	size_t max;         /* longest line returned whole */
	bool eof;
	bool discarding;    /* inside a line over max, dropping it */
};

/* One unusable input line done in an earlier run. */
struct done_line {
	uint64_t line;
	uint64_t hash;      /* of the line's bytes (input_hash) */
	bool has_hash;      /* false for lines written before input_hash existed */
};

/* Outcomes moved to the pending buffer but not yet written. */
struct tally {
	uint64_t succeeded, failed, invalid_lines;
};

struct batch {
	struct batch_options opt;
	struct line_reader in;      /* owner: the batch; the input */
	int read_err;               /* errno of a failed input read, 0 */
	int out_fd;                 /* owner: the batch */
	int stats_fd;               /* owner: the batch; opened before the run */
	lr_engine *eng;             /* owner: the batch */
	struct mock_server *mock;   /* owner: the batch */
	struct id_set ids;          /* owner: the batch */
	struct done_line *done_lines; /* owner: the batch; sorted by line, already done */
	size_t done_lines_count;
	struct json_doc doc;        /* owner: the batch; reused for every line */
	struct buf out;        /* owner: the batch; one output line at a time */
	struct buf pending;    /* owner: the batch; finished lines not yet written */
	char *scratch;              /* owner: the batch; unescaped strings */
	size_t scratch_cap;
	struct model_names requested; /* names asked for, so line records can point at them */
	struct model_names unpriced;  /* models of completed requests the price table lacks */
	uint64_t id_prefix, id_counter;
	uint64_t line_no;
	long outstanding, window;
	bool write_failed;
	/* counters; outcomes count once written (pend until then) */
	struct tally pend;
	uint64_t unwritten;         /* outcomes lost to a failed write */
	uint64_t requests, skipped, succeeded, failed, invalid_lines, retries;
	bool earlier_errors;        /* a skipped line had ended in an error */
	int64_t input_tokens, output_tokens;
	double cost_usd;            /* over the priced requests */
	bool priced;                /* some request with usage was priced */
	uint64_t start_ns, last_draw_ns;
	bool progress, progress_drawn;
	uint64_t total_lines;       /* input lines, for the progress line (0: unknown) */
	uint64_t engine_in_flight;  /* the engine's last progress report */
	bool have_engine_progress;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool ensure_scratch(struct batch *b, size_t need)
{
	if (need <= b->scratch_cap)
		return true;
	size_t cap = b->scratch_cap ? b->scratch_cap : 256;
	while (cap < need)
		cap *= 2;
	char *p = realloc(b->scratch, cap);
	if (!p)
		return false;
	b->scratch = p;
	b->scratch_cap = cap;
	return true;
}

/* Unescapes string token i into b->scratch; its length, or -1. */
static long scratch_string(struct batch *b, int i)
{
	const char *raw;
	size_t raw_len;
	json_span(&b->doc, i, &raw, &raw_len);
	/* Unescaping never lengthens a string. */
	if (!ensure_scratch(b, raw_len + 1))
		return -1;
	return json_get_string(&b->doc, i, b->scratch, b->scratch_cap);
}

static const char *model_names_find(struct model_names *list, const char *name, size_t len,
                                    bool add)
{
	for (size_t k = 0; k < list->count; k++)
		if (strlen(list->names[k]) == len && memcmp(list->names[k], name, len) == 0)
			return list->names[k];
	if (!add || (list->limit && list->count == list->limit) || memchr(name, '\0', len))
		return NULL;
	if (list->count == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 16;
		char **grown = realloc(list->names, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		list->names = grown;
		list->cap = cap;
	}
	char *copy = strndup(name, len);
	if (copy)
		list->names[list->count++] = copy;
	return copy;
}

static void model_names_free(struct model_names *list)
{
	for (size_t k = 0; k < list->count; k++)
		free(list->names[k]);
	free(list->names);
	list->names = NULL;
	list->count = list->cap = 0;
}

/* ---- output lines ---------------------------------------------------- */

/* The low `digits` hex digits of v, most significant first. */
static void put_hex(char *out, uint64_t v, int digits)
{
	static const char xdigits[] = "0123456789abcdef";
	for (int i = digits - 1; i >= 0; i--, v >>= 4)
		out[i] = xdigits[v & 15];
}

/*
 * Appends a JSON value that is known to be valid, on one line: bodies from
 * some servers (api.openai.com among them) are pretty-printed, and a raw
 * newline would break the JSONL. Inside valid JSON strings there are no
 * raw newlines, so only whitespace outside strings is dropped.
 */
static int append_json_one_line(struct buf *b, const char *s, size_t len)
{
	if (!memchr(s, '\n', len) && !memchr(s, '\r', len))
		return buf_append(b, s, len);
	if (buf_reserve(b, len))
		return LR_ENOMEM;
	bool in_string = false, escaped = false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			continue;
		}
		b->data[b->len++] = c;
	}
	return 0;
}

/* Starts b->out with the line's id; ids are unique across runs through a
 * random per-run prefix. */
static int start_line(struct batch *b)
{
	buf_clear(&b->out);
	b->id_counter++;
	/* Hand-formatted: this runs once per request (printf was 4 % of the
	 * batch thread's time). */
	static const char prefix[] = "{\"id\":\"batch_req_";
	static const char suffix[] = "\",\"custom_id\":";
	char hex[28];
	put_hex(hex, b->id_prefix, 16);
	put_hex(hex + 16, b->id_counter, 12);
	int rc = buf_append(&b->out, prefix, sizeof(prefix) - 1);
	if (!rc)
		rc = buf_append(&b->out, hex, 28);
	if (!rc)
		rc = buf_append(&b->out, suffix, sizeof(suffix) - 1);
	return rc;
}

static void write_pending(struct batch *b);

/* Moves the finished line in b->out (plus its newline) to b->pending;
 * the lines of one reap round go out together (write_pending). */
static void flush_line(struct batch *b)
{
	if (b->write_failed)
		return;
	if (buf_append(&b->pending, b->out.data, b->out.len) ||
	    buf_append(&b->pending, "\n", 1)) {
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
		return;
	}
	if (b->pending.len >= BATCH_PENDING_MAX)
		write_pending(b);
}

/* An input line that cannot be used: custom_id is NULL for an unusable
 * line, or the line's own id for a duplicate. */
static void write_input_error(struct batch *b, const char *custom_id, size_t id_len,
                              const char *code, const char *message, uint64_t line_hash)
{
	b->pend.invalid_lines++;
	int rc = start_line(b);
	if (!rc)
		rc = custom_id ? json_append_string(&b->out, custom_id, id_len) : buf_puts(&b->out, "null");
	if (!rc)
		rc = buf_puts(&b->out, ",\"response\":null,\"error\":{\"code\":");
	if (!rc)
		rc = json_append_string(&b->out, code, strlen(code));
	if (!rc)
		rc = buf_puts(&b->out, ",\"message\":");
	if (!rc)
		rc = json_append_string(&b->out, message, strlen(message));
	if (!rc)
		rc = buf_printf(&b->out, "},\"input_line\":%" PRIu64 ",\"input_hash\":\"%016" PRIx64 "\"}",
		                b->line_no, line_hash);
	if (rc) {
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
		return;
	}
	flush_line(b);
}

/*
 * Whether a whole response arrived (kept in the output line with its status
 * and body) rather than a transport failure (response null): no status, or
 * a status whose body was cut short by a reset, a deadline or a size cap.
 * The codes an HTTP status maps to, and protocol_error (a body that is not
 * JSON, or a truncated one), keep the response for diagnosis.
 */
static bool response_arrived(const lr_result *r)
{
	if (r->http_status == 0)
		return false;
	switch (r->error) {
	case LR_ECONNECT:
	case LR_ECONNRESET:
	case LR_ETOOLARGE:
	case LR_ECANCELLED:
	case LR_ENOMEM:
	case LR_ESYSTEM:
	case LR_EIO:
		return false;
	case LR_ETIMEOUT: /* 408 maps to timeout too, and then is an HTTP error */
		return r->http_status == 408;
	default:
		return true;
	}
}

static int append_response(struct batch *b, const lr_result *r)
{
	struct buf *o = &b->out;
	if (!response_arrived(r))
		return buf_puts(o, "null");
	char status[4] = {(char)('0' + r->http_status / 100 % 10), (char)('0' + r->http_status / 10 % 10),
	                  (char)('0' + r->http_status % 10), 0};
	int rc = buf_puts(o, "{\"status_code\":");
	if (!rc)
		rc = buf_puts(o, r->http_status >= 100 && r->http_status <= 999 ? status : "0");
	if (!rc)
		rc = buf_puts(o, ",\"request_id\":");
	if (!rc)
		rc = r->request_id ? json_append_string(o, r->request_id, strlen(r->request_id))
		                   : buf_puts(o, "null");
	if (!rc)
		rc = buf_puts(o, ",\"body\":");
	if (rc)
		return rc;
	if (!r->body || r->body_len == 0) {
		rc = buf_puts(o, "null");
	} else if (r->error == LR_OK || r->body_is_json ||
	           json_parse(&b->doc, r->body, r->body_len) == 0) {
		/* The engine has parsed success bodies and JSON-object error
		 * bodies already; only other error bodies are checked here. */
		rc = append_json_one_line(o, r->body, r->body_len);
	} else {
		rc = json_append_string(o, r->body, r->body_len);
	}
	if (!rc)
		rc = buf_puts(o, "}");
	return rc;
}

static void write_outcome(struct batch *b, const struct line_rec *rec, const lr_result *r)
{
	int rc = start_line(b);
	if (!rc)
		rc = json_append_string(&b->out, rec->custom_id, rec->id_len);
	if (!rc)
		rc = buf_puts(&b->out, ",\"response\":");
	if (!rc)
		rc = append_response(b, r);
	if (!rc)
		rc = buf_puts(&b->out, ",\"error\":");
	if (!rc && r->error == LR_OK) {
		rc = buf_puts(&b->out, "null}");
	} else if (!rc) {
		const char *code = lr_error_name(r->error);
		const char *msg = r->error_message ? r->error_message : lr_strerror(r->error);
		rc = buf_puts(&b->out, "{\"code\":");
		if (!rc)
			rc = json_append_string(&b->out, code, strlen(code));
		if (!rc)
			rc = buf_puts(&b->out, ",\"message\":");
		if (!rc)
			rc = json_append_string(&b->out, msg, strlen(msg));
		if (!rc)
			rc = buf_puts(&b->out, "}}");
	}
	if (rc) {
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
		return;
	}
	flush_line(b);
}

/*
 * Writes every complete line gathered since the last call with one
 * write(): never part of a line, so a crash at any moment leaves whole
 * lines (at worst a torn tail after a failed disk, which resume cuts off)
 * and loses only what was in flight. One syscall per reap round instead
 * of one per request.
 */
static void write_pending(struct batch *b)
{
	size_t off = 0;
	while (!b->write_failed && off < b->pending.len) {
		ssize_t n = write(b->out_fd, b->pending.data + off, b->pending.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "llmring batch: cannot write %s: %s\n", b->opt.output_path,
			        n < 0 ? strerror(errno) : "short write");
			b->write_failed = true;
			break;
		}
		off += (size_t)n;
	}
	/* Only what reached the file counts as done. */
	if (b->write_failed) {
		b->unwritten += b->pend.succeeded + b->pend.failed + b->pend.invalid_lines;
	} else {
		b->succeeded += b->pend.succeeded;
		b->failed += b->pend.failed;
		b->invalid_lines += b->pend.invalid_lines;
	}
	memset(&b->pend, 0, sizeof(b->pend));
	buf_clear(&b->pending);
}

/* ---- resume ------------------------------------------------------------ */

static int cmp_done_line(const void *a, const void *b)
{
	uint64_t x = ((const struct done_line *)a)->line, y = ((const struct done_line *)b)->line;
	return x < y ? -1 : x > y;
}

/* Whether an unusable line was done at this number: with the same bytes
 * (an outcome line without input_hash, from before it existed, matches
 * by number alone). */
static bool line_done(const struct batch *b, uint64_t line_no, const char *line, size_t len)
{
	size_t lo = 0, hi = b->done_lines_count;
	while (lo < hi) { /* the first entry >= line_no */
		size_t mid = lo + (hi - lo) / 2;
		if (b->done_lines[mid].line < line_no)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == b->done_lines_count || b->done_lines[lo].line != line_no)
		return false;
	uint64_t h = hash_bytes(line, len);
	for (size_t k = lo; k < b->done_lines_count && b->done_lines[k].line == line_no; k++)
		if (!b->done_lines[k].has_hash || b->done_lines[k].hash == h)
			return true;
	return false;
}

/* What one complete line of an earlier run's output says. */
enum outcome_kind {
	OUTCOME_UNREADABLE, /* not an outcome line: kept, ignored */
	OUTCOME_OK,         /* a success line of a custom_id */
	OUTCOME_ERROR,      /* an error line of a custom_id */
	OUTCOME_INPUT,      /* an unusable input line's error (matched by input_line) */
};

/* The 16 hex digits of an input_hash. */
static bool parse_hash(const char *s, size_t n, uint64_t *out)
{
	if (n != 16)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*out = v;
	return true;
}

/* Parses the line into b->doc; *tok is then the custom_id token
 * (OUTCOME_OK, OUTCOME_ERROR) and *done the line number and hash
 * (OUTCOME_INPUT). */
static enum outcome_kind classify_outcome(struct batch *b, const char *line, size_t len, int *tok,
                                          struct done_line *done)
{
	if (json_parse(&b->doc, line, len) != 0 || b->doc.tok[0].type != JSON_OBJECT)
		return OUTCOME_UNREADABLE;
	int in = json_object_get(&b->doc, 0, "input_line");
	if (in >= 0) {
		int64_t n;
		if (!json_get_int(&b->doc, in, &n) || n < 1)
			return OUTCOME_UNREADABLE;
		done->line = (uint64_t)n;
		int h = json_object_get(&b->doc, 0, "input_hash");
		done->has_hash = false;
		if (h >= 0) {
			const char *text;
			size_t text_len;
			json_span(&b->doc, h, &text, &text_len);
			/* A hash that cannot be read matches no line: run it again. */
			/* the span includes the string's quotes */
			if (b->doc.tok[h].type != JSON_STRING || text_len < 2 ||
			    !parse_hash(text + 1, text_len - 2, &done->hash))
				return OUTCOME_UNREADABLE;
			done->has_hash = true;
		}
		return OUTCOME_INPUT;
	}
	int id = json_object_get(&b->doc, 0, "custom_id");
	if (id < 0 || b->doc.tok[id].type != JSON_STRING)
		return OUTCOME_UNREADABLE;
	*tok = id;
	int error = json_object_get(&b->doc, 0, "error");
	const char *err_text;
	size_t err_len;
	json_span(&b->doc, error, &err_text, &err_len);
	return err_text && err_len == 4 && memcmp(err_text, "null", 4) == 0 ? OUTCOME_OK
	                                                                    : OUTCOME_ERROR;
}

/* Records an outcome classified just before (b->doc still holds it):
 * its input line is skipped this run. 0, or -1 when out of memory. */
static int remember_outcome(struct batch *b, enum outcome_kind kind, int tok,
                            const struct done_line *done, size_t *done_cap)
{
	if (kind == OUTCOME_INPUT) {
		if (b->done_lines_count == *done_cap) {
			size_t cap = *done_cap ? *done_cap * 2 : 64;
			struct done_line *grown = realloc(b->done_lines, cap * sizeof(*grown));
			if (!grown)
				return -1;
			b->done_lines = grown;
			*done_cap = cap;
		}
		b->done_lines[b->done_lines_count++] = *done;
		return 0;
	}
	bool ok = kind == OUTCOME_OK;
	long id_len = scratch_string(b, tok);
	if (id_len < 0)
		return 0; /* an id that cannot be unescaped matches no input line */
	uint64_t h = hash_bytes(b->scratch, (size_t)id_len);
	struct id_entry *e = id_set_find(&b->ids, b->scratch, (size_t)id_len, h);
	if (e) {
		if (!ok) /* an error outcome anywhere makes the exit status 1 */
			e->state = ID_DONE_ERR;
		return 0;
	}
	return id_set_add(&b->ids, b->scratch, (size_t)id_len, h, ok ? ID_DONE_OK : ID_DONE_ERR)
	       ? 0 : -1;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * --retry-errors: the output without its error lines, built in a
 * temporary file beside it (same directory, so the rename is atomic) and
 * renamed over it once complete and on disk. A crash before the rename
 * leaves the old file untouched; after it, the new one. Started lazily at
 * the first error line, with everything before it copied as it is.
 */
struct rewrite {
	char *target;  /* owner: the rewrite; the output, symbolic links resolved */
	char *path;    /* owner: the rewrite; the temporary file, NULL before the first drop */
	int fd;        /* owner: the rewrite */
	uint64_t dropped;
	int err;       /* first failure, -errno */
};

static void rewrite_fail(struct rewrite *rw, int err)
{
	if (!rw->err)
		rw->err = err ? err : -EIO;
}

/* Creates the temporary file and copies the first `prefix` bytes of the
 * output into it. */
static void rewrite_start(struct batch *b, struct rewrite *rw, const struct stat *st, off_t prefix)
{
	static const char suffix[] = ".retry-XXXXXX";
	/* Through a symbolic link the file it names is replaced, beside it. */
	rw->target = realpath(b->opt.output_path, NULL);
	if (!rw->target)
		rw->target = strdup(b->opt.output_path);
	size_t n = rw->target ? strlen(rw->target) : 0;
	rw->path = rw->target ? malloc(n + sizeof suffix) : NULL;
	if (!rw->path) {
		rewrite_fail(rw, -ENOMEM);
		return;
	}
	memcpy(rw->path, rw->target, n);
	memcpy(rw->path + n, suffix, sizeof suffix);
	/* O_APPEND: once renamed, this descriptor is the output's. */
	rw->fd = mkostemp(rw->path, O_CLOEXEC | O_APPEND);
	if (rw->fd < 0) {
		rewrite_fail(rw, -errno);
		free(rw->path);
		rw->path = NULL;
		return;
	}
	if (fchmod(rw->fd, st->st_mode & 07777) != 0) {
		rewrite_fail(rw, -errno);
		return;
	}
	char buf[65536];
	for (off_t at = 0; at < prefix;) {
		size_t want = prefix - at < (off_t)sizeof buf ? (size_t)(prefix - at) : sizeof buf;
		ssize_t got = pread(b->out_fd, buf, want, at);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			rewrite_fail(rw, got < 0 ? -errno : -EIO);
			return;
		}
		int rc = write_all(rw->fd, buf, (size_t)got);
		if (rc) {
			rewrite_fail(rw, rc);
			return;
		}
		at += got;
	}
}

/* Appends one kept line (with its newline), through b->pending. */
static void rewrite_keep(struct batch *b, struct rewrite *rw, const char *line, size_t n)
{
	if (rw->err)
		return;
	if (buf_append(&b->pending, line, n)) {
		rewrite_fail(rw, -ENOMEM);
		return;
	}
	if (b->pending.len >= BATCH_PENDING_MAX) {
		int rc = write_all(rw->fd, b->pending.data, b->pending.len);
		buf_clear(&b->pending);
		if (rc)
			rewrite_fail(rw, rc);
	}
}

static void fsync_parent_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (fd >= 0) {
		/* Some file systems refuse fsync on a directory: nothing to do then. */
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

/* Finishes the rewrite: the rest written, on disk, renamed over the
 * output, whose descriptor it becomes. 0, or -errno (the temporary file
 * is gone then, the output as it was). */
static int rewrite_finish(struct batch *b, struct rewrite *rw)
{
	if (!rw->err && b->pending.len) {
		int rc = write_all(rw->fd, b->pending.data, b->pending.len);
		if (rc)
			rewrite_fail(rw, rc);
	}
	buf_clear(&b->pending);
	if (!rw->err && fsync(rw->fd) != 0)
		rewrite_fail(rw, -errno);
	if (!rw->err && rename(rw->path, rw->target) != 0)
		rewrite_fail(rw, -errno);
	if (rw->err) {
		if (rw->fd >= 0)
			close(rw->fd);
		if (rw->path)
			unlink(rw->path);
	} else {
		fsync_parent_dir(rw->target);
		close(b->out_fd);
		b->out_fd = rw->fd;
	}
	rw->fd = -1;
	free(rw->path);
	rw->path = NULL;
	free(rw->target);
	rw->target = NULL;
	return rw->err;
}

/*
 * Reads an existing output file; cuts off a trailing partial line. With
 * --retry-errors the error lines (and unusable-input lines) are removed
 * instead of remembered, so those input lines run again.
 */
static int load_previous_output(struct batch *b)
{
	struct stat st;
	if (fstat(b->out_fd, &st) != 0 || st.st_size == 0)
		return 0;
	int fd = dup(b->out_fd);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL; /* owner: this function */
	if (!f) {
		if (fd >= 0)
			close(fd);
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b->opt.output_path,
		        strerror(errno));
		return -1;
	}
	/* The dup shares the O_APPEND file offset: start from the top. */
	if (fseeko(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b->opt.output_path,
		        strerror(errno));
		fclose(f);
		return -1;
	}
	char *line = NULL; /* owner: this function */
	size_t cap = 0, done_cap = 0;
	off_t complete_end = 0;
	uint64_t line_no = 0, unreadable = 0;
	struct rewrite rw = {.fd = -1};
	ssize_t n;
	int ret = 0;
	errno = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n')
			break; /* a partial last line, cut off below */
		line_no++;
		off_t line_start = complete_end;
		complete_end += n;
		size_t len = (size_t)n - 1;
		while (len > 0 && line[len - 1] == '\r')
			len--;
		enum outcome_kind kind = OUTCOME_UNREADABLE;
		int tok = -1;
		struct done_line done = {0};
		if (len > 0) {
			kind = classify_outcome(b, line, len, &tok, &done);
			if (kind == OUTCOME_UNREADABLE && unreadable++ == 0)
				fprintf(stderr, "llmring batch: %s line %" PRIu64 " is not an outcome line; "
				        "ignored\n", b->opt.output_path, line_no);
		}
		if (b->opt.retry_errors && (kind == OUTCOME_ERROR || kind == OUTCOME_INPUT)) {
			if (rw.dropped++ == 0)
				rewrite_start(b, &rw, &st, line_start);
			continue;
		}
		if (rw.dropped)
			rewrite_keep(b, &rw, line, (size_t)n);
		if (kind != OUTCOME_UNREADABLE && remember_outcome(b, kind, tok, &done, &done_cap)) {
			fprintf(stderr, "llmring batch: out of memory\n");
			ret = -1;
			break;
		}
	}
	/* getline fails with ENOMEM without setting the error flag: anything
	 * but a clean end of file is a failure, never a cut. */
	if (!ret && (ferror(f) || (n < 0 && !feof(f)))) {
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b->opt.output_path,
		        strerror(errno ? errno : EIO));
		ret = -1;
	}
	free(line);
	fclose(f);
	if (rw.dropped) {
		if (ret)
			rewrite_fail(&rw, -ENOMEM);
		int rc = rewrite_finish(b, &rw);
		if (rc && !ret) {
			fprintf(stderr, "llmring batch: cannot remove the error lines of %s: %s\n",
			        b->opt.output_path, strerror(-rc));
			ret = -1;
		}
	}
	if (ret)
		return ret;
	if (rw.dropped && !b->opt.quiet)
		fprintf(stderr, "llmring batch: removed %" PRIu64 " error line%s from %s to try again\n",
		        rw.dropped, rw.dropped == 1 ? "" : "s", b->opt.output_path);
	if (complete_end < st.st_size) {
		/* After a rewrite the partial line was simply not copied. */
		if (!rw.dropped && ftruncate(b->out_fd, complete_end) != 0) {
			fprintf(stderr, "llmring batch: cannot cut the partial last line of %s: %s\n",
			        b->opt.output_path, strerror(errno));
			return -1;
		}
		if (!b->opt.quiet)
			fprintf(stderr, "llmring batch: removed a partial last line from %s\n",
			        b->opt.output_path);
	}
	if (unreadable > 1)
		fprintf(stderr, "llmring batch: %" PRIu64 " lines of %s were not outcome lines\n",
		        unreadable, b->opt.output_path);
	if (b->done_lines_count > 1)
		qsort(b->done_lines, b->done_lines_count, sizeof(*b->done_lines), cmp_done_line);
	return 0;
}

/* ---- reading the input ------------------------------------------------- */

enum {
	READ_END = 0,  /* no more lines */
	READ_LINE = 1, /* a whole line (without its newline) */
	READ_LONG = 2, /* the first max + 1 bytes of a line over max; the rest is dropped */
};

static void reader_init(struct line_reader *r, int fd, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->max = max;
}

static void reader_free(struct line_reader *r)
{
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
}

/* The first newline in buf[from, to), or NULL. */
static char *find_newline(char *buf, size_t from, size_t to)
{
	return to > from ? memchr(buf + from, '\n', to - from) : NULL;
}

/* Reads more at the end of the buffer (the unread bytes moved to its
 * start first, the buffer grown to at most max + a chunk). 0, or -errno. */
static int reader_fill(struct line_reader *r)
{
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->scanned -= r->start;
		r->start = 0;
	}
	if (r->cap - r->end < BATCH_READ_CHUNK) {
		size_t limit = r->max + BATCH_READ_CHUNK + 1;
		size_t cap = r->cap ? r->cap * 2 : BATCH_READ_CHUNK;
		if (cap > limit)
			cap = limit;
		if (cap < r->end + BATCH_READ_CHUNK)
			cap = r->end + BATCH_READ_CHUNK;
		char *grown = realloc(r->buf, cap);
		if (!grown)
			return -ENOMEM;
		r->buf = grown;
		r->cap = cap;
	}
	for (;;) {
		ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			r->eof = true;
		r->end += (size_t)n;
		return 0;
	}
}

/*
 * The next line: READ_LINE or READ_LONG with *line (valid until the next
 * call) and *len, READ_END, or -errno. Never a silent end on a failed read
 * (getline's ENOMEM sets no error flag), and never more than max plus a
 * chunk in memory: a longer line is reported when it passes max, then
 * dropped chunk by chunk up to its newline (by the following call).
 */
static int reader_next(struct line_reader *r, const char **line, size_t *len)
{
	for (;;) {
		if (r->discarding) {
			char *nl = find_newline(r->buf, r->start, r->end);
			if (nl) {
				r->start = r->scanned = (size_t)(nl - r->buf) + 1;
				r->discarding = false;
				continue;
			}
			r->start = r->end = r->scanned = 0;
			if (r->eof)
				return READ_END;
			int rc = reader_fill(r);
			if (rc)
				return rc;
			continue;
		}
		char *nl = find_newline(r->buf, r->scanned, r->end);
		if (nl) {
			*line = r->buf + r->start;
			*len = (size_t)(nl - *line);
			r->start = r->scanned = (size_t)(nl - r->buf) + 1;
			/* Whole in the buffer but over the cap: refused the same
			 * as one that is still arriving. */
			if (*len > r->max) {
				*len = r->max + 1;
				return READ_LONG;
			}
			return READ_LINE;
		}
		r->scanned = r->end;
		if (r->end - r->start > r->max) {
			*line = r->buf + r->start;
			*len = r->max + 1;
			r->start += r->max + 1;
			r->discarding = true;
			return READ_LONG;
		}
		if (r->eof) {
			if (r->start == r->end)
				return READ_END;
			*line = r->buf + r->start; /* a last line without its newline */
			*len = r->end - r->start;
			r->start = r->scanned = r->end;
			if (*len > r->max) {
				*len = r->max + 1;
				return READ_LONG;
			}
			return READ_LINE;
		}
		int rc = reader_fill(r);
		if (rc)
			return rc;
	}
}

/* ---- input lines -------------------------------------------------------- */

/* The parts of a usable input line; spans point into the line. */
struct input_request {
	enum lr_endpoint endpoint;
	const char *body;
	size_t body_len;
	const char *model; /* borrowed: options or b->requested */
};

static bool blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

static bool endpoint_from_url(struct batch *b, int url, enum lr_endpoint *ep)
{
	static const struct {
		const char *url;
		enum lr_endpoint ep;
	} known[] = {
		{"/v1/chat/completions", LR_ENDPOINT_CHAT},
		{"/chat/completions", LR_ENDPOINT_CHAT},
		{"/v1/embeddings", LR_ENDPOINT_EMBEDDINGS},
		{"/embeddings", LR_ENDPOINT_EMBEDDINGS},
	};
	for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
		if (json_string_eq(&b->doc, url, known[k].url)) {
			*ep = known[k].ep;
			return true;
		}
	}
	return false;
}

/*
 * Whether the \u escapes of a raw JSON string pair their surrogates. A
 * lone one has no character: unescaped it would become U+FFFD, and ids
 * differing only there would collapse into one (and be written back as
 * another id), so such an id is refused instead.
 */
static bool escapes_valid(const char *s, size_t n)
{
	bool want_low = false; /* the last character was a high surrogate */
	for (size_t i = 0; i < n; i++) {
		bool u = s[i] == '\\' && i + 5 < n && s[i + 1] == 'u';
		unsigned v = 0;
		for (size_t k = 2; u && k < 6; k++) {
			char c = s[i + k];
			v = v << 4 | (unsigned)(c >= '0' && c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
		}
		bool low = u && v >= 0xdc00 && v <= 0xdfff;
		if (want_low != low)
			return false;
		want_low = u && v >= 0xd800 && v <= 0xdbff;
		if (s[i] == '\\')
			i += u ? 5 : 1; /* the parser has checked the escape's form */
	}
	return !want_low;
}

/*
 * Checks one input line (already parsed into b->doc). NULL when usable:
 * the custom_id is then in b->scratch (length *id_len) and rq is filled.
 * Otherwise a message saying what is wrong.
 */
static const char *check_input(struct batch *b, long *id_len, struct input_request *rq)
{
	const struct json_doc *d = &b->doc;
	if (d->tok[0].type != JSON_OBJECT)
		return "the line is not a JSON object";
	int method = json_object_get(d, 0, "method");
	if (method >= 0 && !json_string_eq(d, method, "POST"))
		return "\"method\" must be \"POST\"";
	int url = json_object_get(d, 0, "url");
	if (url < 0)
		return "missing \"url\" (\"/v1/chat/completions\" or \"/v1/embeddings\")";
	if (!endpoint_from_url(b, url, &rq->endpoint))
		return "unsupported \"url\": expected \"/v1/chat/completions\" or \"/v1/embeddings\"";
	int body = json_object_get(d, 0, "body");
	if (body < 0 || d->tok[body].type != JSON_OBJECT)
		return "\"body\" must be a JSON object";
	json_span(d, body, &rq->body, &rq->body_len);
	if (b->opt.model) {
		rq->model = b->opt.model;
	} else {
		int model = json_object_get(d, body, "model");
		if (model < 0 || d->tok[model].type != JSON_STRING || d->tok[model].end == d->tok[model].start)
			return "\"body\" has no \"model\" string (give one, or --model)";
		long len = scratch_string(b, model);
		if (len < 0)
			return "out of memory";
		rq->model = model_names_find(&b->requested, b->scratch, (size_t)len, true);
	}
	/* Last, since it leaves the id in the scratch buffer. */
	int id = json_object_get(d, 0, "custom_id");
	if (id < 0)
		return "missing \"custom_id\"";
	if (d->tok[id].type != JSON_STRING || d->tok[id].end == d->tok[id].start)
		return "\"custom_id\" must be a non-empty string";
	const char *raw;
	size_t raw_len;
	json_span(d, id, &raw, &raw_len);
	if (!escapes_valid(raw, raw_len))
		return "\"custom_id\" has a \\u escape of a lone surrogate (no character)";
	*id_len = scratch_string(b, id);
	if (*id_len < 0)
		return "out of memory";
	return NULL;
}

static void submit(struct batch *b, const char *custom_id, size_t id_len,
                   const struct input_request *in)
{
	struct line_rec *rec = malloc(sizeof(*rec) + id_len + 1); /* owner: the request, freed when reaped */
	if (!rec) {
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
		return;
	}
	rec->input_line = b->line_no;
	rec->model = in->model;
	rec->id_len = id_len;
	memcpy(rec->custom_id, custom_id, id_len);
	rec->custom_id[id_len] = '\0';
	b->requests++;

	lr_request *rq = lr_request_new(b->opt.model); /* owner: here until lr_submit */
	int rc = rq ? 0 : LR_ENOMEM;
	if (!rc)
		rc = lr_request_set_endpoint(rq, in->endpoint);
	if (!rc)
		rc = lr_request_set_body(rq, in->body, in->body_len);
	lr_future *f = NULL;
	if (!rc) {
		lr_request_set_user_data(rq, rec);
		f = lr_submit(b->eng, rq); /* takes rq over, also when it fails */
		if (!f)
			rc = LR_ENOMEM;
	} else {
		lr_request_free(rq);
	}
	if (rc) {
		/* Nothing reached the engine: that is this line's outcome. */
		lr_result r = {.error = rc, .error_message = "the request could not be submitted",
		               .retry_after_s = -1};
		b->pend.failed++;
		write_outcome(b, rec, &r);
		free(rec);
		return;
	}
	/* The reaped handle is the one used later; this one is not needed. */
	lr_future_release(f);
	b->outstanding++;
}

/* Reads and handles one input line. False at the end of the input. */
/* What the fast path of a line's parse picks up (raw spans into the line). */
struct line_fields {
	const char *id, *method, *url, *body, *model;
	size_t id_len, method_len, url_len, body_len, model_len;
	enum json_type id_type, method_type, url_type, model_type, body_type;
	bool top_object;
};

static bool span_is(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n == l && memcmp(s, lit, l) == 0;
}

static void line_field(void *ctx, const struct json_scan_path *p, enum json_type type,
                       const char *v, size_t len)
{
	struct line_fields *lf = ctx;
	if (p->depth == 0) {
		lf->top_object = type == JSON_OBJECT;
		return;
	}
	const char *k = p->key[0];
	size_t kl = p->key_len[0];
	if (p->depth == 1) {
		/* The first occurrence of a key counts, as with json_object_get. */
		if (span_is(k, kl, "custom_id") && !lf->id_type) {
			lf->id = v, lf->id_len = len, lf->id_type = type;
		} else if (span_is(k, kl, "method") && !lf->method_type) {
			lf->method = v, lf->method_len = len, lf->method_type = type;
		} else if (span_is(k, kl, "url") && !lf->url_type) {
			lf->url = v, lf->url_len = len, lf->url_type = type;
		} else if (span_is(k, kl, "body") && !lf->body_type) {
			lf->body = v, lf->body_len = len, lf->body_type = type;
		}
	} else if (p->depth == 2 && span_is(k, kl, "body") && p->key[1] &&
	           span_is(p->key[1], p->key_len[1], "model") && !lf->model_type && !lf->body_type) {
		lf->model = v, lf->model_len = len, lf->model_type = type;
	}
}

/*
 * The common line in one validating pass with no tokens: every field
 * present, of the right type, and no escapes in the id or model (so the
 * raw text is the value). Anything else takes the full path (json_parse
 * and check_input), which also words the errors. True when rq and the id
 * are filled in.
 */
static bool fast_input(struct batch *b, const char *line, size_t len, struct input_request *rq,
                       const char **id, size_t *id_len)
{
	struct line_fields lf = {0};
	if (!json_scan(line, len, line_field, &lf) || !lf.top_object)
		return false;
	if (lf.id_type != JSON_STRING || lf.id_len == 0 || memchr(lf.id, '\\', lf.id_len))
		return false;
	if (lf.method_type && (lf.method_type != JSON_STRING || !span_is(lf.method, lf.method_len, "POST")))
		return false;
	if (lf.url_type != JSON_STRING || lf.body_type != JSON_OBJECT)
		return false;
	if (span_is(lf.url, lf.url_len, "/v1/chat/completions") || span_is(lf.url, lf.url_len, "/chat/completions"))
		rq->endpoint = LR_ENDPOINT_CHAT;
	else if (span_is(lf.url, lf.url_len, "/v1/embeddings") || span_is(lf.url, lf.url_len, "/embeddings"))
		rq->endpoint = LR_ENDPOINT_EMBEDDINGS;
	else
		return false;
	if (b->opt.model) {
		rq->model = b->opt.model;
	} else {
		if (lf.model_type != JSON_STRING || lf.model_len == 0 || memchr(lf.model, '\\', lf.model_len))
			return false;
		rq->model = model_names_find(&b->requested, lf.model, lf.model_len, true);
		if (!rq->model)
			return false;
	}
	rq->body = lf.body;
	rq->body_len = lf.body_len;
	*id = lf.id;
	*id_len = lf.id_len;
	return true;
}

/*
 * Handles input line b->line_no (its bytes without the newline): a
 * request submitted, an error line written, or nothing (blank, or done
 * in an earlier run). False only when the run cannot go on (out of
 * memory).
 */
static bool handle_input_line(struct batch *b, const char *line, size_t len)
{
	while (len > 0 && line[len - 1] == '\r')
		len--;
	if (blank(line, len))
		return true;
	if (line_done(b, b->line_no, line, len)) {
		b->skipped++;
		b->earlier_errors = true; /* such lines are always error lines */
		return true;
	}
	struct input_request rq = {0};
	const char *id;
	size_t id_len;
	if (!fast_input(b, line, len, &rq, &id, &id_len)) {
		memset(&rq, 0, sizeof(rq));
		if (json_parse(&b->doc, line, len) != 0) {
			write_input_error(b, NULL, 0, "invalid_input", "the line is not valid JSON",
			                  hash_bytes(line, len));
			return true;
		}
		long scratch_len = -1;
		const char *why = check_input(b, &scratch_len, &rq);
		if (why) {
			write_input_error(b, NULL, 0, "invalid_input", why, hash_bytes(line, len));
			return true;
		}
		id = b->scratch;
		id_len = (size_t)scratch_len;
	}
	uint64_t h = hash_bytes(id, id_len);
	struct id_entry *e = id_set_find(&b->ids, id, id_len, h);
	if (e && e->state == ID_SEEN) {
		write_input_error(b, id, id_len, "duplicate_custom_id",
		                  "this custom_id appeared on an earlier line; only the first is sent",
		                  hash_bytes(line, len));
		return true;
	}
	if (e) { /* done in an earlier run */
		if (e->state == ID_DONE_ERR)
			b->earlier_errors = true;
		e->state = ID_SEEN;
		b->skipped++;
		return true;
	}
	if (!id_set_add(&b->ids, id, id_len, h, ID_SEEN)) {
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
		return false;
	}
	submit(b, id, id_len, &rq);
	return true;
}

/* Reads and handles one input line. False at the end of the input, on a
 * read error (b->read_err) or when the run cannot go on. */
static bool take_input_line(struct batch *b)
{
	const char *line;
	size_t len;
	int rc = reader_next(&b->in, &line, &len);
	if (rc == READ_END)
		return false;
	if (rc < 0) {
		b->read_err = -rc;
		return false;
	}
	b->line_no++;
	if (rc == READ_LINE)
		return handle_input_line(b, line, len);
	/* Too long: the hash covers the bytes that were read (max + 1). */
	uint64_t h = hash_bytes(line, len);
	if (line_done(b, b->line_no, line, len)) {
		b->skipped++;
		b->earlier_errors = true;
		return true;
	}
	char why[160];
	snprintf(why, sizeof why, "the line is longer than %zu bytes (the --max-line-bytes limit; "
	         "raise it with --max-line-bytes N)", b->in.max);
	write_input_error(b, NULL, 0, "invalid_input", why, h);
	/* Written now: the rest of the line may take long to read (or never
	 * end, as /dev/zero). */
	write_pending(b);
	return true;
}

/* The name an unpriced model is reported by: the one asked for (as the
 * user wrote it, "mock/any") when the response names that same model,
 * else the response's ("gpt-x-2025-01-01" for "gpt-x"). */
static const char *unpriced_name(const lr_result *r, const struct line_rec *rec)
{
	if (!r->model || !r->model[0])
		return rec->model;
	if (rec->model) {
		const char *sent = rec->model;
		lr_model_provider(rec->model, &sent);
		if (sent && strcmp(sent, r->model) == 0)
			return rec->model;
	}
	return r->model;
}

static void handle_completion(struct batch *b, lr_future *f)
{
	const lr_result *r = lr_future_result(f);
	struct line_rec *rec = lr_future_user_data(f);
	b->outstanding--;
	if (!r || !rec) { /* cannot happen for a reaped future of ours */
		lr_future_release(f);
		free(rec);
		return;
	}
	if (r->error == LR_OK)
		b->pend.succeeded++;
	else
		b->pend.failed++;
	if (r->attempts > 1)
		b->retries += (uint64_t)(r->attempts - 1);
	b->input_tokens += r->usage.input_tokens;
	b->output_tokens += r->usage.output_tokens;
	/* Cost counts what was used: a failure without usage is neither
	 * priced nor unpriced. Prices are looked up by the model the response
	 * names, else the one requested; so are the unpriced names. */
	if (r->error == LR_OK || r->usage.input_tokens > 0 || r->usage.output_tokens > 0) {
		if (r->cost_usd >= 0) {
			b->cost_usd += r->cost_usd;
			b->priced = true;
		} else {
			const char *name = unpriced_name(r, rec);
			if (name)
				model_names_find(&b->unpriced, name, strlen(name), true);
		}
	}
	write_outcome(b, rec, r);
	free(rec);
	lr_future_release(f);
}

/* ---- progress and summary ---------------------------------------------- */

static double seconds_since(uint64_t start_ns)
{
	return (double)(now_ns() - start_ns) / 1e9;
}

/* The input's lines, for the progress line: counted only for a regular
 * file (one read at memory speed before the run), 0 otherwise. A last
 * line without its newline counts too. */
static uint64_t count_lines(int fd)
{
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	static char buf[1 << 16];
	uint64_t lines = 0;
	off_t at = 0;
	char last = '\n';
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof buf, at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return 0;
		if (n == 0)
			break;
		for (const char *p = buf, *end = buf + n; (p = memchr(p, '\n', (size_t)(end - p))); p++)
			lines++;
		last = buf[n - 1];
		at += n;
	}
	return lines + (last != '\n');
}

/* Called by the engine (on this thread: the engine is driven from it)
 * at most every progress_interval_ms: what is on the wire. */
static void on_engine_progress(void *user, const lr_progress *p)
{
	struct batch *b = user;
	b->engine_in_flight = p->in_flight;
	b->have_engine_progress = true;
}

static int terminal_width(void)
{
	struct winsize ws;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col < 20)
		return 0;
	return ws.ws_col;
}

/*
 * One line, redrawn in place (carriage return, then erase to the end of
 * the line), at most 10 times a second; cut to the terminal's width so it
 * never wraps. Only the counters kept anyway are read here: drawing is
 * the only cost.
 */
static void draw_progress(struct batch *b, bool force)
{
	if (!b->progress)
		return;
	uint64_t now = now_ns();
	if (!force && now - b->last_draw_ns < BATCH_PROGRESS_INTERVAL_NS)
		return;
	b->last_draw_ns = now;
	double wall = (double)(now - b->start_ns) / 1e9;
	uint64_t completed = b->succeeded + b->failed;
	/* Lines finished: read, and not waiting for a response. */
	uint64_t done = b->line_no - (uint64_t)b->outstanding;
	double rate = wall > 0 ? (double)completed / wall : 0.0;
	double tok_rate = wall > 0 ? (double)(b->input_tokens + b->output_tokens) / wall : 0.0;
	char line[320];
	int n = 0;
	if (b->total_lines)
		n = snprintf(line, sizeof line, "\r%" PRIu64 "/%" PRIu64 " lines", done, b->total_lines);
	else
		n = snprintf(line, sizeof line, "\r%" PRIu64 " lines", done);
	/* Outstanding requests are on the wire or wait in the engine (for a
	 * slot, the rate limits, a retry); the engine's split may be a few
	 * milliseconds old, so it is fitted to what is outstanding now. */
	uint64_t outstanding = (uint64_t)b->outstanding;
	uint64_t in_flight = outstanding;
	if (b->have_engine_progress && b->engine_in_flight < in_flight)
		in_flight = b->engine_in_flight;
	n += snprintf(line + n, sizeof line - (size_t)n, ", %" PRIu64 " failed, %" PRIu64 " in flight",
	              b->failed + b->invalid_lines, in_flight);
	if (outstanding > in_flight)
		n += snprintf(line + n, sizeof line - (size_t)n, ", %" PRIu64 " queued",
		              outstanding - in_flight);
	n += snprintf(line + n, sizeof line - (size_t)n, ", %.1f req/s, %.0f tok/s", rate, tok_rate);
	if (b->priced)
		n += snprintf(line + n, sizeof line - (size_t)n, b->cost_usd < 1 ? ", $%.6f" : ", $%.2f",
		              b->cost_usd);
	if (b->total_lines && done <= b->total_lines) {
		if (rate > 0) {
			double eta = (double)(b->total_lines - done) / rate;
			if (eta > 359999)
				eta = 359999;
			unsigned s = (unsigned)(eta + 0.5);
			if (s >= 3600)
				n += snprintf(line + n, sizeof line - (size_t)n, ", ETA %u:%02u:%02u", s / 3600,
				              s / 60 % 60, s % 60);
			else
				n += snprintf(line + n, sizeof line - (size_t)n, ", ETA %u:%02u", s / 60, s % 60);
		} else {
			n += snprintf(line + n, sizeof line - (size_t)n, ", ETA --");
		}
	}
	if (n < 0 || (size_t)n >= sizeof line)
		n = (int)sizeof line - 1;
	int width = terminal_width();
	if (width && n > width) /* the \r takes no column: width - 1 characters */
		n = width;
	memcpy(line + n, "\033[K", 3);
	/* One write: never half a line on the screen. Nothing to do on
	 * failure (stderr is the terminal it went to). */
	(void)!write(STDERR_FILENO, line, (size_t)n + 3);
	b->progress_drawn = true;
}

static void clear_progress(struct batch *b)
{
	if (b->progress_drawn)
		(void)!write(STDERR_FILENO, "\r\033[K", 4);
	b->progress_drawn = false;
}

/* The unpriced model names, all of them (max 0) or the first max and
 * how many more. */
static int append_unpriced(struct buf *s, const struct batch *b, const char *sep, bool json,
                           size_t max)
{
	int rc = 0;
	size_t count = b->unpriced.count, shown = max && count > max ? max : count;
	for (size_t k = 0; !rc && k < shown; k++) {
		const char *name = b->unpriced.names[k];
		if (k)
			rc = buf_puts(s, sep);
		if (!rc)
			rc = json ? json_append_string(s, name, strlen(name)) : buf_puts(s, name);
	}
	if (!rc && shown < count)
		rc = buf_printf(s, " and %zu more", count - shown);
	return rc;
}

static int write_stats_file(struct batch *b, double wall)
{
	struct buf s = {0}; /* owner: this function */
	double rate = wall > 0 ? (double)b->requests / wall : 0.0;
	int rc = buf_printf(&s, "{\"requests\":%" PRIu64 ",\"skipped\":%" PRIu64, b->requests, b->skipped);
	if (!rc)
		rc = buf_printf(&s, ",\"succeeded\":%" PRIu64 ",\"failed\":%" PRIu64, b->succeeded, b->failed);
	if (!rc)
		rc = buf_printf(&s, ",\"invalid_lines\":%" PRIu64 ",\"retries\":%" PRIu64, b->invalid_lines,
		                b->retries);
	if (!rc)
		rc = buf_printf(&s, ",\"input_tokens\":%" PRId64 ",\"output_tokens\":%" PRId64,
		                b->input_tokens, b->output_tokens);
	/* null only when nothing was priced (so "free" and "unknown" differ). */
	if (!rc)
		rc = b->priced ? buf_printf(&s, ",\"cost_usd\":%.10g", b->cost_usd)
		               : buf_puts(&s, ",\"cost_usd\":null");
	if (!rc)
		rc = buf_puts(&s, ",\"unpriced_models\":[");
	if (!rc)
		rc = append_unpriced(&s, b, ",", true, 0);
	if (!rc)
		rc = buf_printf(&s, "],\"wall_s\":%.3f,\"requests_per_s\":%.1f}\n", wall, rate);
	/* Opened (and so checked) before the run; replaced in place. A
	 * device or pipe cannot be truncated, and need not be. */
	int err = rc ? ENOMEM : 0;
	if (!err && ftruncate(b->stats_fd, 0) != 0 && errno != EINVAL)
		err = errno;
	if (!err && lseek(b->stats_fd, 0, SEEK_SET) < 0 && errno != ESPIPE)
		err = errno;
	if (!err) {
		int w = write_all(b->stats_fd, s.data, s.len);
		err = w ? -w : 0;
	}
	if (err)
		fprintf(stderr, "llmring batch: cannot write the stats file %s: %s\n", b->opt.stats_path,
		        strerror(err));
	buf_free(&s);
	return err ? -1 : 0;
}

static void print_summary(struct batch *b, double wall)
{
	struct buf unpriced = {0}; /* owner: this function */
	if (append_unpriced(&unpriced, b, ", ", false, BATCH_SUMMARY_MODEL_NAMES) ||
	    buf_append(&unpriced, "", 1))
		buf_clear(&unpriced);
	const char *names = unpriced.len ? unpriced.data : "";
	fprintf(stderr, "llmring batch: %" PRIu64 " requests: %" PRIu64 " succeeded, %" PRIu64
	        " failed, %" PRIu64 " skipped (already done), %" PRIu64 " retries",
	        b->requests, b->succeeded, b->failed, b->skipped, b->retries);
	if (b->invalid_lines)
		fprintf(stderr, "; %" PRIu64 " unusable input lines", b->invalid_lines);
	if (b->unwritten)
		fprintf(stderr, "; %" PRIu64 " outcomes not written", b->unwritten);
	fprintf(stderr, "\n  tokens: %" PRId64 " input, %" PRId64 " output; ", b->input_tokens,
	        b->output_tokens);
	if (b->priced && b->unpriced.count)
		fprintf(stderr, "cost: $%.6f (unpriced: %s)", b->cost_usd, names);
	else if (b->priced)
		fprintf(stderr, "cost: $%.6f", b->cost_usd);
	else if (b->unpriced.count)
		fprintf(stderr, "cost: unknown (unpriced: %s)", names);
	else
		fputs("cost: none", stderr);
	fprintf(stderr, "\n  %.2f s, %.1f requests/s\n", wall,
	        wall > 0 ? (double)b->requests / wall : 0.0);
	buf_free(&unpriced);
}

/* ---- main ------------------------------------------------------------ */

static uint64_t random_id_prefix(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
		v = now_ns() ^ ((uint64_t)getpid() << 32);
	return v;
}

/* Starts the mock (with --mock) and the engine; base_url and api_key come
 * from cli_resolve_endpoint otherwise. */
static int start_endpoint(struct batch *b, const char *base_url, const char *api_key)
{
	char mock_url[64];
	if (b->opt.mock) {
		struct mock_options mo;
		mock_options_default(&mo);
		mo.host = "127.0.0.1";
		mo.port = 0;
		int rc = mock_server_start(&mo, &b->mock);
		if (rc) {
			fprintf(stderr, "llmring batch: cannot start the mock server: %s\n", strerror(-rc));
			return -1;
		}
		/* No path: each dialect adds its own (/v1/messages, /api/chat). */
		snprintf(mock_url, sizeof mock_url, "http://127.0.0.1:%u",
		         (unsigned)mock_server_port(b->mock));
		base_url = mock_url;
		api_key = NULL;
	}
	lr_config cfg = lr_config_default();
	cfg.on_log = cli_log;
	cfg.base_url = base_url;
	cfg.api_key = api_key;
	cfg.ca_file = b->opt.cacert;
	cfg.insecure = b->opt.insecure;
	cfg.max_in_flight = (unsigned)b->opt.concurrency;
	cfg.reap_completions = 1;
	/* The window keeps up to 3 x concurrency lines in the engine's queue:
	 * --timeout is per attempt on the wire, not per wait for a slot, for
	 * --rpm / --tpm, or for a socket under a low open-file limit. */
	cfg.queue_wait_untimed = 1;
	/* One thread does everything: reading, the ring, writing. No
	 * hand-offs between threads, no wake-ups (docs/benchmarks.md). */
	cfg.drive_from_caller = 1;
	cfg.max_retries = (int)b->opt.max_retries;
	cfg.requests_per_minute = (double)b->opt.rpm;
	cfg.tokens_per_minute = (double)b->opt.tpm;
	if (b->progress) {
		/* Fresh enough for a redraw every 100 ms; only on a terminal. */
		cfg.on_progress = on_engine_progress;
		cfg.progress_user = b;
		cfg.progress_interval_ms = 25;
	}
	if (b->opt.timeout_s > 0)
		cfg.total_timeout_s = b->opt.timeout_s;
	if (b->opt.connect_timeout_s > 0)
		cfg.connect_timeout_s = b->opt.connect_timeout_s;
	if (b->opt.idle_timeout_s > 0)
		cfg.idle_timeout_s = b->opt.idle_timeout_s;
	errno = 0;
	int rc = lr_engine_new(&cfg, &b->eng);
	if (rc) {
		cli_engine_error("batch", rc, errno);
		return -1;
	}
	return 0;
}

static void batch_free(struct batch *b)
{
	/* The engine first: it may still hold line records of ours. */
	if (b->eng)
		lr_engine_destroy(b->eng);
	if (b->mock)
		mock_server_stop(b->mock);
	if (b->out_fd >= 0)
		close(b->out_fd);
	if (b->stats_fd >= 0)
		close(b->stats_fd);
	reader_free(&b->in);
	id_set_free(&b->ids);
	free(b->done_lines);
	json_doc_free(&b->doc);
	buf_free(&b->out);
	buf_free(&b->pending);
	free(b->scratch);
	model_names_free(&b->requested);
	model_names_free(&b->unpriced);
}

/*
 * The body model of the first line that has one (of the first 16), or
 * NULL; the input is read through its own bounded reader and put back
 * where it was (input that cannot seek is not peeked at). 0, or -1 after
 * printing a read error.
 */
static int peek_first_model(int fd, size_t max_line, char *out, size_t cap, const char **model)
{
	*model = NULL;
	off_t at = lseek(fd, 0, SEEK_CUR);
	if (at < 0)
		return 0;
	struct line_reader r; /* owner: this function */
	reader_init(&r, fd, max_line);
	struct json_doc doc = {0}; /* owner: this function */
	int rc = 0;
	for (int tries = 0; !*model && tries < 16; tries++) {
		const char *line;
		size_t len;
		rc = reader_next(&r, &line, &len);
		if (rc != READ_LINE) /* the end, an error, or a line too long to look at */
			break;
		if (json_parse(&doc, line, len) != 0 || doc.count == 0 || doc.tok[0].type != JSON_OBJECT)
			continue;
		int m = json_path(&doc, 0, "body.model");
		if (m >= 0 && json_get_string(&doc, m, out, cap) >= 0)
			*model = out;
	}
	json_doc_free(&doc);
	reader_free(&r);
	if (rc < 0)
		return -rc;
	if (lseek(fd, at, SEEK_SET) < 0)
		return errno;
	return 0;
}

/* Whether a and b name one file: the same device and inode, or (when
 * either does not exist yet) the same name in the same directory. */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	bool ha = stat(a, &sa) == 0, hb = stat(b, &sb) == 0;
	if (ha && hb)
		return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
	if (ha != hb)
		return false;
	const char *na = strrchr(a, '/'), *nb = strrchr(b, '/');
	na = na ? na + 1 : a;
	nb = nb ? nb + 1 : b;
	if (strcmp(na, nb) != 0)
		return false;
	char *da = na == a ? strdup(".") : strndup(a, (size_t)(na - a)); /* owner: this function */
	char *db = nb == b ? strdup(".") : strndup(b, (size_t)(nb - b)); /* owner: this function */
	bool same = da && db && stat(da, &sa) == 0 && stat(db, &sb) == 0 && sa.st_dev == sb.st_dev &&
	            sa.st_ino == sb.st_ino;
	free(da);
	free(db);
	return same;
}

/* Refuses INPUT, OUTPUT and the stats file naming one file: output as
 * input would skip every line as done (or, with --retry-errors, replace
 * the input), and the stats file would overwrite either. */
static int check_distinct_files(const struct batch_options *o, const struct stat *in_st)
{
	struct stat st;
	const char *clash = NULL;
	if (stat(o->output_path, &st) == 0 && st.st_dev == in_st->st_dev && st.st_ino == in_st->st_ino)
		clash = "the output (-o) is the input file";
	else if (o->stats_path && stat(o->stats_path, &st) == 0 && st.st_dev == in_st->st_dev &&
	         st.st_ino == in_st->st_ino)
		clash = "the stats file (--stats) is the input file";
	else if (o->stats_path && same_file(o->stats_path, o->output_path))
		clash = "the stats file (--stats) is the output file (-o)";
	/* /dev/null or a terminal may well be named twice. */
	if (clash && S_ISCHR(st.st_mode))
		clash = NULL;
	if (clash) {
		fprintf(stderr, "llmring batch: %s; name a different file\n", clash);
		return -1;
	}
	return 0;
}

/* "NAME.retry-XXXXXX": a temporary file of rewrite_start for NAME. */
static bool is_retry_temp(const char *entry, const char *name)
{
	static const char suffix[] = ".retry-";
	size_t n = strlen(name);
	if (strncmp(entry, name, n) != 0 || strncmp(entry + n, suffix, sizeof suffix - 1) != 0)
		return false;
	const char *x = entry + n + sizeof suffix - 1;
	if (strlen(x) != 6)
		return false;
	for (int i = 0; i < 6; i++) /* mkstemp's letters */
		if (!((x[i] >= 'a' && x[i] <= 'z') || (x[i] >= 'A' && x[i] <= 'Z') ||
		      (x[i] >= '0' && x[i] <= '9')))
			return false;
	return true;
}

/*
 * Removes the temporary files a --retry-errors rewrite of this output
 * left when it was killed before its rename (each up to the output's
 * size). Only regular files named exactly OUTPUT.retry-XXXXXX beside the
 * output (symbolic links resolved, as rewrite_start does) are touched.
 */
static void remove_stale_rewrites(const struct batch *b)
{
	char *target = realpath(b->opt.output_path, NULL); /* owner: this function */
	if (!target)
		return;
	char *slash = strrchr(target, '/');
	const char *name = slash + 1;
	*slash = '\0';
	const char *dir = target[0] ? target : "/";
	DIR *d = opendir(dir); /* owner: this function */
	if (!d) {
		free(target);
		return;
	}
	int dfd = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (!is_retry_temp(e->d_name, name) ||
		    fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (unlinkat(dfd, e->d_name, 0) == 0 && !b->opt.quiet)
			fprintf(stderr, "llmring batch: removed %s/%s, left by an interrupted "
			        "--retry-errors\n", strcmp(dir, "/") ? dir : "", e->d_name);
	}
	closedir(d);
	free(target);
}

/*
 * Opens path for writing, creating it if needed. *created is then the
 * file to remove if the run is refused later (malloc'd, owner: the
 * caller), NULL when the file was there before. A dangling symbolic link
 * creates the file it names, which is also what gets removed.
 */
static int open_created(const char *path, int flags, char **created)
{
	*created = NULL;
	int fd = open(path, flags | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return fd;
	fd = open(path, flags | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd >= 0) {
		*created = strdup(path);
	} else if (errno == EEXIST) {
		/* Made meanwhile, or a link whose target is missing (O_EXCL
		 * never follows one). */
		fd = open(path, flags | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT) {
			fd = open(path, flags | O_CREAT | O_CLOEXEC, 0644);
			if (fd >= 0)
				*created = realpath(path, NULL);
		}
	}
	return fd;
}

int batch_main(int argc, char **argv)
{
	struct batch b = {0};
	b.out_fd = b.stats_fd = -1;
	b.requested.limit = BATCH_MAX_MODEL_NAMES;
	int status = parse_options(argc, argv, &b.opt);
	if (status)
		return status < 0 ? CLI_EXIT_OK : status; /* -1: --help was shown */

	/*
	 * Every check comes before the output (and the stats file) is
	 * created: a refused run leaves nothing behind.
	 */
	status = CLI_EXIT_USAGE;
	char *out_created = NULL, *stats_created = NULL; /* owner: this function */
	int in_fd = open(b.opt.input_path, O_RDONLY | O_CLOEXEC); /* owner: b.in */
	struct stat in_st;
	if (in_fd < 0 || fstat(in_fd, &in_st) != 0) {
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b.opt.input_path, strerror(errno));
		if (in_fd >= 0)
			close(in_fd);
		return CLI_EXIT_USAGE;
	}
	reader_init(&b.in, in_fd, (size_t)b.opt.max_line);
	if (S_ISDIR(in_st.st_mode)) {
		fprintf(stderr, "llmring batch: cannot read %s: it is a directory (give a JSONL file)\n",
		        b.opt.input_path);
		goto out;
	}
	if (check_distinct_files(&b.opt, &in_st))
		goto out;
	/* Endpoint checks: the first line's model stands for the file's. */
	const char *base_url = NULL, *api_key = NULL; /* borrowed: argv or the environment */
	char first_model[256];
	const char *model = b.opt.model;
	if (!b.opt.mock && !model) {
		int err = peek_first_model(in_fd, b.in.max, first_model, sizeof first_model, &model);
		if (err) {
			fprintf(stderr, "llmring batch: cannot read %s: %s\n", b.opt.input_path,
			        strerror(err));
			goto out;
		}
	}
	if (!b.opt.mock && (cli_resolve_endpoint("batch", b.opt.base_url_flag, model, &base_url, &api_key) ||
	                    cli_check_tls_flags("batch", b.opt.cacert, b.opt.insecure)))
		goto out;
	/* The first read, so that an input that cannot be read at all is
	 * refused before anything is created. */
	int rc = reader_fill(&b.in);
	if (rc) {
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b.opt.input_path, strerror(-rc));
		goto out;
	}
	/* A socket per request on the wire, and with --mock its server side. */
	unsigned long fds = (unsigned long)b.opt.concurrency * (b.opt.mock ? 2 : 1) + BATCH_FD_SLACK;
	long fd_room = cli_ensure_fds("batch", fds, "--concurrency");
	if (fd_room < 0)
		goto out;
	/* The pool keeps its own sockets below the limit, but the built-in
	 * mock's accepted ends count against it too: fewer connections then,
	 * or both ends would wait on each other for descriptors. */
	if (b.opt.mock && (unsigned long)fd_room < fds) {
		long fit = (fd_room - BATCH_FD_SLACK / 2) / 2;
		b.opt.concurrency = fit > 1 ? fit : 1;
	}
	b.progress = !b.opt.quiet && isatty(STDERR_FILENO);
	if (start_endpoint(&b, base_url, api_key))
		goto out;
	if (b.opt.stats_path) {
		b.stats_fd = open_created(b.opt.stats_path, O_WRONLY, &stats_created);
		if (b.stats_fd < 0) {
			fprintf(stderr, "llmring batch: cannot write the stats file %s: %s\n",
			        b.opt.stats_path, strerror(errno));
			goto out;
		}
	}
	b.out_fd = open_created(b.opt.output_path, O_RDWR | O_APPEND, &out_created);
	if (b.out_fd < 0) {
		fprintf(stderr, "llmring batch: cannot open %s: %s\n", b.opt.output_path,
		        strerror(errno));
		goto out;
	}
	struct stat out_st;
	if (fstat(b.out_fd, &out_st) == 0 && S_ISREG(out_st.st_mode))
		remove_stale_rewrites(&b);
	if (load_previous_output(&b))
		goto out;
	/* From here on the run has started: its files stay. */
	free(out_created);
	free(stats_created);
	out_created = stats_created = NULL;

	b.id_prefix = random_id_prefix();
	/* Four times the concurrency outstanding: the engine keeps the wire
	 * full from its queue while this thread sleeps until a whole
	 * concurrency's worth of results is ready (one wake-up per round). */
	b.window = 4 * b.opt.concurrency;
	if (b.progress)
		b.total_lines = count_lines(in_fd);
	b.start_ns = now_ns();
	draw_progress(&b, true);
	bool more_input = true;
	bool reap_failed = false;
	lr_future *reaped[BATCH_REAP_MAX];
	while (!b.write_failed && (more_input || b.outstanding > 0)) {
		while (more_input && b.outstanding < b.window && !b.write_failed)
			more_input = take_input_line(&b);
		if (b.read_err)
			break; /* what is in flight is lost either way: stop now */
		if (b.outstanding == 0)
			continue;
		long min_ready = b.outstanding < b.opt.concurrency ? b.outstanding : b.opt.concurrency;
		if (min_ready > BATCH_REAP_MAX)
			min_ready = BATCH_REAP_MAX;
		/* Never longer than a quarter second: a finished (and paid for)
		 * request reaches the output soon, so a kill loses little. */
		int n = lr_engine_reap_batch(b.eng, reaped, BATCH_REAP_MAX, (int)min_ready,
		                             b.progress ? 100 : 250);
		if (n < 0) {
			fprintf(stderr, "llmring batch: waiting for completions failed: %s\n",
			        lr_strerror(n));
			reap_failed = true;
			break;
		}
		for (int k = 0; k < n; k++)
			handle_completion(&b, reaped[k]);
		write_pending(&b);
		draw_progress(&b, false);
	}
	write_pending(&b); /* input-line errors after the last completion */
	clear_progress(&b);
	if (b.read_err)
		fprintf(stderr, "llmring batch: cannot read %s after line %" PRIu64 ": %s\n",
		        b.opt.input_path, b.line_no, strerror(b.read_err));

	double wall = seconds_since(b.start_ns);
	bool incomplete = b.write_failed || b.read_err || reap_failed || b.outstanding > 0;
	bool stats_failed = b.opt.stats_path && write_stats_file(&b, wall);
	if (!b.opt.quiet)
		print_summary(&b, wall);
	if (b.unwritten)
		fprintf(stderr, "llmring batch: %" PRIu64 " finished line%s could not be written to %s "
		        "and will run again on resume\n", b.unwritten, b.unwritten == 1 ? "" : "s",
		        b.opt.output_path);
	if (incomplete)
		fprintf(stderr, "llmring batch: stopped early; the output is incomplete (run again to "
		        "resume)\n");
	if (incomplete || stats_failed)
		status = CLI_EXIT_USAGE;
	else
		status = b.failed || b.invalid_lines || b.earlier_errors ? CLI_EXIT_FAILED : CLI_EXIT_OK;
out:
	batch_free(&b);
	/* A refused run leaves no file it made. */
	if (out_created)
		unlink(out_created);
	if (stats_created)
		unlink(stats_created);
	free(out_created);
	free(stats_created);
	close(in_fd);
	return status;
}

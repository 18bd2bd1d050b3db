/*
 * The pieces of `llmring batch` (cli_batch.c runs them) and what they
 * share: the options, the custom_id set, the input reader, the run's
 * state (struct batch). Private to the CLI (its
 * library, which a binding links too: batch_run.h).
 *
 *   batch_options.c   flags, their checks, the usage text
 *   batch_idset.c     the set of custom_ids seen and done
 *   batch_input.c     reading input lines, checking them, handing them on
 *   batch_output.c    outcome lines, writing them, --stats, the summary
 *   batch_resume.c    reading an earlier output, --retry-errors rewrites
 *   batch_progress.c  the clock and the progress line
 *   cli_batch.c       batch_run (batch_run.h) and batch_main: setting up,
 *                     the run loop, completions
 *   pbatch*.c         --via provider-batch (pbatch.h): the plan goes
 *                     through line_sink, the rest through the providers'
 *                     batch APIs
 */
#ifndef LR_CLI_BATCH_H
#define LR_CLI_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "batch_idset.h"
#include "format/json.h"
#include "llmring.h"
#include "util/buf.h"

struct batch_hooks;
struct pbatch;
struct pb_lookup;
struct input_request;

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

/* ---- options (batch_options.c) ------------------------------------------ */

struct batch_options {
	const char *input_path, *output_path, *model, *base_url_flag, *stats_path;
	const char *cacert; /* borrowed: argv; NULL with --mock */
	const char *cache_path; /* borrowed: argv; NULL: no response cache */
	int cache_mode;         /* enum lr_cache_mode */
	bool mock, quiet, insecure, retry_errors;
	long concurrency;
	long max_retries;
	long rpm, tpm;        /* 0: no limit */
	long max_line;        /* longest input line kept, bytes */
	double timeout_s, connect_timeout_s, idle_timeout_s; /* 0: engine default */
	bool via_batch;       /* --via provider-batch (pbatch.h) */
	bool cancel;          /* --cancel */
	double poll_s;        /* --poll; 0: the default */
};

/* 0, CLI_EXIT_USAGE after printing why, or -1 when --help was shown. */
int parse_options(int argc, char **argv, struct batch_options *o);
/* Refuses INPUT, OUTPUT and the stats file naming one file. 0, or -1
 * after printing which two clash. */
int check_distinct_files(const struct batch_options *o, const struct stat *in_st);

/* ---- the run's state ---------------------------------------------------- */

/* One submitted request, found again through lr_future_user_data; owner:
 * the batch (its list of records outstanding) until reaped. */
struct line_rec {
	struct line_rec *prev, *next; /* on the batch's list of outstanding records */
	struct pb_lookup *lookup; /* borrowed: its cache lookup (pbatch.h), which owns it; NULL: sent */
	uint64_t input_line;
	const char *model; /* borrowed: options or the batch's model names */
	size_t id_len;
	size_t id_room;    /* custom_id's capacity less the NUL (a reused record's may be more) */
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
	uint64_t line;      /* DONE_LINE_HASHED set: hash holds input_hash */
	uint64_t hash;      /* of the line's bytes (input_hash) */
};
/* Lines written before input_hash existed match by number alone. */
#define DONE_LINE_HASHED (UINT64_C(1) << 63)

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
	char *spool_dir;            /* owner: the batch; the output's directory, for ids.spool_dir */
	struct done_line *done_lines; /* owner: the batch; sorted by line, already done */
	size_t done_lines_count;
	struct json_doc doc;        /* owner: the batch; reused for every line */
	struct buf pending;         /* owner: the batch; finished lines not yet written, then the one being built */
	size_t line_start;          /* where in pending the line being built begins */
	char *scratch;              /* owner: the batch; unescaped strings */
	size_t scratch_cap;
	struct model_names requested; /* names asked for, so line records can point at them */
	struct model_names unpriced;  /* models of completed requests the price table lacks */
	uint64_t id_prefix, id_counter;
	uint64_t line_no;
	long outstanding, window;
	long held;                  /* lookups reaped, waiting for an earlier line's (pbatch_cache.c) */
	bool write_failed;
	/* counters; outcomes count once written (pend until then) */
	struct tally pend;
	uint64_t unwritten;         /* outcomes lost to a failed write */
	uint64_t requests, skipped, succeeded, failed, invalid_lines, retries;
	bool earlier_errors;        /* a skipped line had ended in an error */
	int64_t input_tokens, output_tokens;
	double cost_usd;            /* over the priced requests */
	uint64_t cache_hits;        /* answered from --cache (no tokens or cost counted) */
	double cost_saved_usd;      /* what those would have cost, priced ones */
	bool priced;                /* some request with usage was priced */
	uint64_t start_ns, last_draw_ns;
	bool progress, progress_drawn;
	uint64_t total_lines;       /* input lines, for the progress line (0: unknown) */
	uint64_t engine_in_flight;  /* the engine's last progress report */
	bool have_engine_progress;
	const struct batch_hooks *hooks; /* borrowed: batch_run's caller; NULL for the command */
	bool stopped;               /* the hooks' stop flag was seen */
	struct line_rec *recs;      /* owner: the batch; records not yet reaped */
	/* owner: the batch; reaped records kept for the next lines (through
	 * next), at most a window's worth: no allocation per line. */
	struct line_rec *spare_recs;
	long spare_count;
	/* --via provider-batch: usable lines go here instead of submit_line
	 * (line: the input line's bytes, for its hash); NULL: sent directly. */
	void (*line_sink)(struct batch *b, const char *custom_id, size_t id_len,
	                  const struct input_request *in, const char *line, size_t len);
	struct pbatch *pb;          /* borrowed: pbatch_run's, with line_sink */
};

/* ---- the run (cli_batch.c) ---------------------------------------------- */

/* The name `name` (len bytes) in list, added when absent and add is set;
 * NULL when absent, the list is full, or out of memory. */
const char *model_names_find(struct model_names *list, const char *name, size_t len, bool add);
void model_names_free(struct model_names *list);

/* The parts of a usable input line; spans point into the line. */
struct input_request {
	enum lr_endpoint endpoint;
	const char *body;
	size_t body_len;
	const char *model; /* borrowed: options or b->requested */
};

/* The run loop: input lines read while the window has room, completions
 * written, until every line is done. False when waiting failed. */
bool batch_run_requests(struct batch *b);
/* Calls the batch_run hooks' on_progress (if any) with the run's counts. */
void batch_report_progress(struct batch *b);

/* A completed request's outcome counted (tokens, cost, cache hits) and
 * its line written. */
void batch_record_outcome(struct batch *b, const struct line_rec *rec, const lr_result *r);
/* Sends input line b->line_no; a request that cannot be submitted gets
 * its error line at once. */
void submit_line(struct batch *b, const char *custom_id, size_t id_len,
                 const struct input_request *in);

/* ---- input (batch_input.c) ---------------------------------------------- */

void reader_init(struct line_reader *r, int fd, size_t max);
void reader_free(struct line_reader *r);
/* Reads more into the buffer. 0, or -errno. */
int reader_fill(struct line_reader *r);

/* Unescapes string token i of b->doc into b->scratch; its length, or -1. */
long scratch_string(struct batch *b, int i);

/* Whether a line holds only whitespace (it is skipped). */
bool line_is_blank(const char *s, size_t len);
/* A line's fields, two ways: fast_input in one pass over the raw line
 * (false: take the full path), check_input from the line parsed into
 * b->doc (NULL when usable, else what is wrong).
 * tests/fuzz/fuzz_batch_input.c checks that they agree. */
bool fast_input(struct batch *b, const char *line, size_t len, struct input_request *rq,
                const char **id, size_t *id_len);
const char *check_input(struct batch *b, long *id_len, struct input_request *rq);

/* Reads and handles one input line. False at the end of the input, on a
 * read error (b->read_err) or when the run cannot go on. */
bool take_input_line(struct batch *b);
/* The body model of one of the first lines, for the endpoint checks.
 * 0, or an errno. */
int peek_first_model(int fd, size_t max_line, char *out, size_t cap, const char **model);

/* ---- output (batch_output.c) -------------------------------------------- */

/* An input line that cannot be used: custom_id is NULL for an unusable
 * line, or the line's own id for a duplicate. */
void write_input_error(struct batch *b, const char *custom_id, size_t id_len, const char *code,
                       const char *message, uint64_t line_hash);
void write_outcome(struct batch *b, const struct line_rec *rec, const lr_result *r);
/* Writes the lines gathered in b->pending with one write(). */
void write_pending(struct batch *b);
/* All of p to fd, through EINTR and short writes. 0, or -errno. */
int write_all(int fd, const char *p, size_t len);
/* 0, or -1 after printing why the stats file could not be written. */
int write_stats_file(struct batch *b, double wall);
void print_summary(struct batch *b, double wall);

/* ---- resume (batch_resume.c) -------------------------------------------- */

/* Whether this unusable input line was done in an earlier run. */
bool line_done(const struct batch *b, uint64_t line_no, const char *line, size_t len);
/* Reads an existing output file: what it holds is skipped this run.
 * 0, or -1 after printing why the run cannot start. */
int load_previous_output(struct batch *b);
void remove_stale_rewrites(const struct batch *b);

/* ---- progress (batch_progress.c) ---------------------------------------- */

uint64_t now_ns(void); /* CLOCK_MONOTONIC */
double seconds_since(uint64_t start_ns);
uint64_t count_lines(int fd);
void on_engine_progress(void *user, const lr_progress *p);
void draw_progress(struct batch *b, bool force);
void clear_progress(struct batch *b);

#endif

/*
 * `llmring batch --via provider-batch`: the input handed to the providers'
 * own batch APIs (OpenAI Files + Batches, Anthropic Message Batches) at
 * about half price, merged into the same output as the direct batch.
 * Private to the CLI.
 *
 *   pbatch_state.c     OUTPUT.state.json: the run's parts, loaded, checked
 *                      against the input's fingerprint, saved atomically
 *   pbatch_plan.c      the input's usable lines grouped by provider, model
 *                      and endpoint into part files under OUTPUT.state.d/
 *   pbatch_http.c      one plain HTTP call at a time through the batch's
 *                      engine, with our own retries for creates
 *   pbatch_openai.c    upload, create, adopt, poll, cancel, download
 *   pbatch_anthropic.c create, adopt, poll, cancel, download
 *   pbatch_steps.c     the steps both take alike (create's answer, poll,
 *                      cancel, another look for a part left creating)
 *   pbatch_merge.c     results into output lines (Anthropic's translated),
 *                      and the lines a part left without a result
 *   pbatch_cache.c     --cache: each line looked up before it is planned
 *                      (hits written at once, never batched), each
 *                      part's keys, and its results stored under them
 *   pbatch_run.c       the whole flow (pbatch_run)
 *
 * Never a line submitted twice: every part and its lines are on disk
 * (state saved, part files synced) before the first create; a part is
 * "creating" (saved) before its create POST, and a re-run adopts the
 * batch that POST made (OpenAI: by metadata; Anthropic: by creation time
 * and request count) before it would create another.
 */
#ifndef LR_CLI_PBATCH_H
#define LR_CLI_PBATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"

#define PB_OPENAI_MAX_LINES 50000u
#define PB_OPENAI_MAX_BYTES (200ull * 1000 * 1000)
#define PB_ANTHROPIC_MAX_LINES 100000u
#define PB_ANTHROPIC_MAX_BYTES (256ull * 1000 * 1000)
#define PB_MAX_PARTS 10000
#define PB_STALL_ROUNDS 12          /* rounds in a row where every call failed, then the run stops */
#define PB_STATE_MAX (256u << 20)   /* a state file larger than this is refused as corrupt */

enum pb_api { PB_OPENAI = 0, PB_ANTHROPIC = 1 };

/* A part's life; only forward. */
enum pb_status {
	PS_PLANNED = 0, /* its file is written; nothing sent */
	PS_CREATING,    /* a create may have reached the provider */
	PS_SUBMITTED,   /* the provider's batch id is known */
	PS_ENDED,       /* the provider's batch ended; results to fetch and merge */
	PS_MERGED,      /* every line of it has an outcome in OUTPUT */
};

struct pb_range {
	uint64_t first, last; /* input line numbers, 1-based, inclusive */
};

struct pb_part {
	unsigned n;                 /* part-N.jsonl */
	uint8_t api;                /* enum pb_api */
	uint8_t status;             /* enum pb_status */
	enum lr_endpoint ep;
	char model[128];            /* as sent (prefix stripped) */
	uint64_t lines, bytes;      /* requests and bytes of its file */
	struct pb_range *ranges;    /* owner: the part */
	size_t nranges, ranges_cap;
	char file_id[96];           /* OpenAI's input file, "" before the upload */
	char batch_id[96];          /* "" before the create answered */
	uint64_t creating_ms;       /* epoch ms when the create was first attempted */
	char remote[24];            /* the provider's status word */
	uint64_t total, done, failed; /* the provider's request counts */
	char output_file_id[96], error_file_id[96];
	char *results_url;          /* owner: the part; Anthropic's, NULL before the end */
	char *fail_msg;             /* owner: the part; why a failed batch failed, or NULL */
	bool out_done, err_done;    /* downloads complete on disk */
	bool cancel_sent;           /* --cancel asked the provider already */
	/* planning only */
	int fd;                     /* owner: the part while planning; -1 */
	struct buf wbuf;            /* owner: the part; bytes not yet written to fd */
	struct buf keys;            /* owner: the part; its keys file's lines (--cache that stores) */
};

struct pb_state {
	char *path;                 /* owner: the state; OUTPUT.state.json */
	char *dir;                  /* owner: the state; OUTPUT.state.d */
	uint64_t in_size;
	char in_sha[65];            /* hex SHA-256 of the input's bytes */
	char run_id[33];
	struct pb_part *parts;      /* owner: the state */
	size_t nparts, cap;
	bool existed;               /* loaded from disk */
};

/* The options of this mode (batch_options.c fills them). */
struct pb_limits {
	uint64_t openai_lines, openai_bytes, anthropic_lines, anthropic_bytes;
};

/* The run: the direct batch's (b) plus the parts. */
struct pbatch {
	struct batch *b;            /* borrowed: batch_run's */
	struct pb_state st;         /* owner: the run */
	struct pb_limits lim;
	bool direct[2];             /* this provider has no batch API here: lines go direct */
	struct id_set written;      /* owner: the run; custom_ids with an outcome in OUTPUT */
	struct json_doc doc;        /* owner: the run; results, state */
	struct buf scratch;         /* owner: the run; built bodies, translated lines */
	struct buf line;            /* owner: the run; one output line */
	unsigned planned_parts;     /* parts made this run */
	uint64_t planned_lines;
	uint64_t poll_ms, backoff_ms;
	uint64_t batched_input_tokens, batched_output_tokens; /* of merged successes */
	uint64_t merged_lines;      /* outcome lines merged from parts this run */
	double batch_cost_usd, direct_cost_usd; /* of the merged successes, priced both ways */
	bool priced;
	bool fatal;                 /* the run cannot go on: status 2 */
	const char *missing_code, *missing_msg; /* pb_merge's, for lines without a result */
	uint64_t unplanned;         /* --cancel: lines in no part, left alone */
	struct id_set part_ids;     /* owner: the run; the custom_ids of the part being merged */
	/* --cache (pbatch_cache.c): lines are looked up before they are
	 * planned, and results stored under their lines' keys. */
	bool cache_reads, cache_writes;
	struct pb_lookup *look_head, *look_tail; /* owner: the run; lookups in input order */
	lr_cache_key *keys;         /* owner: the run; the keys of the part being merged, by line */
	size_t nkeys;
	uint64_t cache_stored;      /* results stored this run */
	size_t cache_queued_bytes;  /* of stores since the last flush: bounds the cache's queue */
	struct pb_range *pending;   /* owner: the run; pb_pending_init's */
	size_t npending, pending_at;
	uint64_t strangers;         /* result lines of that part naming ids not in it */
	const char *noticed[8];     /* borrowed: providers whose lines went direct, said once */
	struct model_names no_batch_rate; /* owner: the run; priced models the table has no batch rates for */
};

/* ---- pbatch_state.c ---- */

uint64_t pb_now_ms(void); /* CLOCK_REALTIME */
/* Size and SHA-256 of the input fd (read from offset 0; the offset is put
 * back). 0, or -errno. */
int pb_fingerprint(int fd, uint64_t *size, char hex[65]);
/* Loads path when it exists (st->existed) and checks it belongs to this
 * input; else a new state with a fresh run id. 0, or -1 after printing
 * why (status 2). */
int pb_state_open(struct pb_state *st, const char *output_path, uint64_t in_size,
                  const char *in_sha, struct json_doc *doc);
/* Writes the state atomically (temp, fsync, rename, fsync dir). 0, or -1
 * after printing why. */
int pb_state_save(const struct pb_state *st);
void pb_state_free(struct pb_state *st);
struct pb_part *pb_part_add(struct pb_state *st);
/* Records input line `line` in part p (ranges grow in order). 0 or -1. */
int pb_part_add_line(struct pb_part *p, uint64_t line);
/* The ranges of the parts not yet merged, sorted, for pb_line_pending
 * (the input is read in order: a cursor walks them). 0 or -1. */
int pb_pending_init(struct pbatch *pb);
/* Whether input line `line` (ascending from call to call) belongs to a
 * part not yet merged when the run started. */
bool pb_line_pending(struct pbatch *pb, uint64_t line);
/* Whether path names a state file with parts not yet merged (a direct
 * run must not send their lines again). False when absent or unreadable. */
bool pb_state_running(const char *output_path);
/* The path of part p's file with suffix ("jsonl", "out.jsonl", ...);
 * malloc'd (owner: the caller) or NULL. */
char *pb_part_path(const struct pb_state *st, const struct pb_part *p, const char *suffix);
const char *pb_status_name(int status);
int pb_fsync_dir(const char *dir);

/* ---- pbatch_plan.c ---- */

/* The batch's sink for a usable line (batch.h): into a part, or (its
 * provider lacks a batch API) sent directly by submit_line. */
void pb_plan_line(struct batch *b, const char *custom_id, size_t id_len,
                  const struct input_request *in, const char *line, size_t len);
/* Writes out every part planned this run and syncs them. 0 or -1. */
int pb_plan_finish(struct pbatch *pb);
/* Input line b->line_no (checked: its api has a batch API, its id fits)
 * into a part; key (NULL: none) to its keys with --cache. An error line
 * when it cannot be built, whose input_hash is line's (len bytes) hash,
 * or line_hash when line is NULL. */
void pb_plan_request(struct pbatch *pb, const char *custom_id, size_t id_len,
                     const struct input_request *in, const char *line, size_t len,
                     uint64_t line_hash, const lr_cache_key *key);

/* ---- pbatch_cache.c ---- */

/* A usable line looked up in the cache before it is planned: a hit is
 * its outcome, anything else is planned, in input order either way. */
struct pb_lookup {
	struct pb_lookup *next;     /* the run's queue */
	struct line_rec *rec;       /* owner: the lookup; id, line number (rec->lookup is this) */
	lr_future *f;               /* owner: the lookup once reaped; NULL while the engine has it */
	bool back;                  /* reaped (or never submitted): it may be drained */
	uint64_t line_hash;
	enum lr_endpoint endpoint;
	const char *model;          /* borrowed: as input_request's */
	size_t body_len;
	char body[];
};
/* Sets pb->cache_reads and cache_writes from b's --cache and --cache-mode. */
void pb_cache_init(struct pbatch *pb);
/* Looks input line b->line_no up without sending it (the window counts it). */
void pb_lookup_submit(struct pbatch *pb, const char *custom_id, size_t id_len,
                      const struct input_request *in, uint64_t line_hash);
/* A reaped lookup (handle_completion): it, and the lookups after it that
 * came back already, written (a hit) or planned, in input order. */
void pb_lookup_reaped(struct batch *b, struct pb_lookup *l, lr_future *f);
void pb_lookups_free(struct pbatch *pb);
/* Part p's keys file line for its next line. */
void pb_keys_add(struct pb_part *p, const lr_cache_key *key);
/* Writes p's keys (when it has any) beside its file, synced. 0 or -1. */
int pb_keys_write(const struct pb_state *st, struct pb_part *p);
/* The keys of p (by its lines' order) into pb->keys when the run stores;
 * none when its keys file is absent (planned without --cache). 0 or -1
 * (out of memory). */
int pb_keys_load(struct pbatch *pb, const struct pb_part *p);
void pb_keys_free(struct pbatch *pb);
/* Stores a success of p's line number no (its order in the part) under
 * its key, when it has one. */
void pb_store(struct pbatch *pb, long no, const char *body, size_t len, const char *request_id);

/* ---- pbatch_http.c ---- */

struct pb_call {
	lr_future *f;               /* owner: the call; NULL before */
	const lr_result *r;         /* borrowed: f's */
};
/* Sends rq (taken over) through the batch's engine and waits for it.
 * 0 with c->r set (any status), or -1 when it could not run. */
int pb_http(struct pbatch *pb, lr_request *rq, struct pb_call *c);
void pb_call_done(struct pb_call *c);
/* A new plain HTTP call for api ("openai" / "anthropic"), or NULL. */
lr_request *pb_request(int api, enum lr_method m, const char *target);
/* Whether a failed call may be tried again later (429, 5xx, transport). */
bool pb_transient(const lr_result *r);
/* Milliseconds to wait before retry k (1-based) of a refused create:
 * Retry-After when given, else backoff from 1 s to 60 s. */
uint64_t pb_retry_ms(const lr_result *r, unsigned k);
void pb_sleep_ms(uint64_t ms);
/* A string member (unescaped) of the JSON object at token obj into out
 * (cap bytes); false when absent, not a string or too long. */
bool pb_json_str(const struct json_doc *d, int obj, const char *path, char *out, size_t cap);
int64_t pb_json_int(const struct json_doc *d, int obj, const char *path);
/* Whether token t is the literal lit (true, false, null). */
bool pb_json_lit(const struct json_doc *d, int t, const char *lit);
/* Downloads target into path, resuming from the bytes on disk (Range);
 * 0 when complete, 1 when to try again later, -1 on a lasting failure
 * (printed). */
int pb_download(struct pbatch *pb, int api, const char *target, const char *path);
/* Prints what a failed call said (never the key). */
void pb_print_failure(const char *what, const lr_result *r);

/* ---- pbatch_steps.c ---- */

/* Reads a provider's batch object (token o of pb->doc) into p (PS_ENDED
 * when it ended); true when its status or counts changed. */
typedef bool (*pb_read_batch_fn)(struct pbatch *pb, struct pb_part *p, int o);
/* What one batch API calls things, for the steps below. */
struct pb_api_desc {
	int api;                    /* enum pb_api */
	const char *batches;        /* the collection: "/v1/batches" */
	const char *after;          /* the list's cursor parameter: "&after=" */
	const char *one, *many;     /* for messages: "a batch", "batches" */
	pb_read_batch_fn read_batch;
};
/* The body of r parsed into pb->doc; false when it is not an object. */
bool pb_parse_body(struct pbatch *pb, const lr_result *r);
/* For a part left "creating": looks for the batch its create made
 * (pb_*_adopt). 0 with *adopted set when p was adopted (said, saved) or
 * clear when no batch was made (or p is not "creating"); 1 cannot tell
 * now; -2 stop (ambiguous, or the state could not be saved; printed). */
int pb_readopt(struct pbatch *pb, struct pb_part *p, bool *adopted);
/* Part p's file opened for reading (owner: the caller), or -1 after
 * printing why. */
int pb_open_part(struct pbatch *pb, const struct pb_part *p);
/* A planned part becomes "creating" (saved, with the time) before its
 * create is sent; other parts stay as they are. 0 or -2. */
int pb_mark_creating(struct pbatch *pb, struct pb_part *p);
/* Sends rq (taken over; NULL counts as a failed call), p's create, never
 * retried by the engine, and reads the batch it answers: PS_SUBMITTED
 * (or ended), saved. Returns as pb_*_submit. */
int pb_create(struct pbatch *pb, struct pb_part *p, lr_request *rq, const struct pb_api_desc *a);
/* GET batches/ID (p's batch) and read it; a 404 ends p as failed. 0, 1
 * or -2. */
int pb_poll(struct pbatch *pb, struct pb_part *p, const struct pb_api_desc *a);
/* POST batches/ID/cancel; a 409 (ended meanwhile) counts as sent. 0, 1
 * or -2. */
int pb_cancel(struct pbatch *pb, struct pb_part *p, const struct pb_api_desc *a);
/* What visit says of a listed batch object. */
enum pb_visit {
	PB_LIST_NEXT,      /* go on */
	PB_LIST_LAST_PAGE, /* the rest of this page, then no more pages */
	PB_LIST_STOP,      /* no more objects */
};
/* Lists the API's batches, newest first, page by page (at most 1,000),
 * calling visit for each object (token t of pb->doc) until it says stop
 * or the list ends. 0, or -1 when a call failed (printed). */
int pb_list_batches(struct pbatch *pb, const struct pb_api_desc *a,
                    enum pb_visit (*visit)(struct pbatch *pb, int t, void *ctx), void *ctx);

/* ---- pbatch_openai.c / pbatch_anthropic.c ---- */

/* Creates (or adopts) part p's batch: PS_SUBMITTED on success. 0, 1 (try
 * again later), -1 (the part cannot be submitted: its lines get error
 * lines by the caller; p->fail_msg says why), -2 (the run cannot go on:
 * the state could not be saved, or printed why). The other calls return
 * 0, 1 or -2 alike. */
int pb_openai_submit(struct pbatch *pb, struct pb_part *p);
int pb_anthropic_submit(struct pbatch *pb, struct pb_part *p);
/* A part left "creating": 1 its batch was found (p submitted), 0 none
 * was made, -1 cannot tell now, -2 ambiguous (printed). */
int pb_openai_adopt(struct pbatch *pb, struct pb_part *p);
int pb_anthropic_adopt(struct pbatch *pb, struct pb_part *p);
/* Polls p; on its end PS_ENDED. */
int pb_openai_poll(struct pbatch *pb, struct pb_part *p);
int pb_anthropic_poll(struct pbatch *pb, struct pb_part *p);
int pb_openai_cancel(struct pbatch *pb, struct pb_part *p);
int pb_anthropic_cancel(struct pbatch *pb, struct pb_part *p);
/* Downloads p's results. 0 complete, 1 later, -1 lasting failure. */
int pb_openai_fetch(struct pbatch *pb, struct pb_part *p);
int pb_anthropic_fetch(struct pbatch *pb, struct pb_part *p);
/* Whether the provider has a batch API at the engine's endpoint: 1, 0 (a
 * 404 or 405 on its list route), -1 the server cannot be reached
 * (printed). */
int pb_has_batch_api(struct pbatch *pb, int api);

/* ---- pbatch_merge.c ---- */

/* Reads OUTPUT's custom_ids into pb->written. 0 or -1. */
int pb_load_written(struct pbatch *pb);
/* Appends p's results to OUTPUT, then an error line for each of its lines
 * still without an outcome (code, message). 0, or -1 when the output
 * could not be written. */
int pb_merge(struct pbatch *pb, struct pb_part *p, const char *code, const char *message);

/* ---- pbatch_run.c ---- */

/* The state of b's output loaded and checked against the input (in_fd),
 * before any file is made; b's line_sink set. NULL after printing why
 * (status 2). */
struct pbatch *pbatch_new(struct batch *b, int in_fd);
void pbatch_free(struct pbatch *pb);
/* The run, once b's engine, output and resume are ready. False when it
 * stopped early (printed why; a re-run resumes). */
bool pbatch_run(struct pbatch *pb);
/* --stats fields of this mode (appended to s, each after a comma) and
 * the summary's line of it (stderr, after the cost, no newline at the
 * end). Batched tokens are priced at the price table's batch rates
 * (lr_engine_batch_price), at the direct ones for a model without. */
void pb_stats_fields(const struct pbatch *pb, struct buf *s);
void pb_summary(const struct pbatch *pb);

#endif

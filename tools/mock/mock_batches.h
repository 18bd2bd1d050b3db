/*
 * The batch store and lifecycle shared by mock_batch_store.c,
 * mock_batch_run.c and mock_batch_api.c (mock_batch.h lists them).
 *
 * Ownership: the store (struct mock_server.bs, owned by the server) owns
 * every file and batch. A file's bytes are a heap copy (no state dir) or a
 * read-only mmap of DIR/files/ID.data; a download in progress holds a
 * reference (mock_bfile_ref), so a DELETE during it frees the file after it.
 */
#ifndef LR_MOCK_BATCHES_H
#define LR_MOCK_BATCHES_H

#include "mock_batch.h"
#include "mock_internal.h"

#define OPENAI_MAX_LINES 50000u
#define OPENAI_MAX_BYTES (200ull * 1000 * 1000)
#define ANTHROPIC_MAX_REQUESTS 100000u
#define ANTHROPIC_MAX_BYTES (256ull * 1000 * 1000)
#define BATCH_ERRORS_MAX 100 /* validation errors reported in "errors" */

enum bpurpose { BP_BATCH = 0, BP_BATCH_OUTPUT, BP_ANTHROPIC_INPUT, BP_ANTHROPIC_RESULTS };
enum bapi { API_OPENAI = 0, API_ANTHROPIC };
enum bstatus {
	BS_VALIDATING = 0, BS_IN_PROGRESS, BS_FINALIZING, BS_COMPLETED, BS_FAILED, BS_EXPIRED,
	BS_CANCELLING, BS_CANCELLED
};
enum bendpoint { EP_CHAT = 0, EP_EMBED, EP_COMPLETIONS };

struct mock_bfile {
	char id[40];
	char filename[256];  /* JSON-escaped */
	uint8_t purpose;     /* enum bpurpose */
	uint64_t created;    /* epoch seconds */
	uint64_t seq;
	char *data;          /* owner: this file (heap, or the mmap when mapped) */
	size_t len;
	bool mapped;
	bool deleted;        /* no longer in the store: freed when refs reach 0 */
	bool cut_done;       /* the cut-download fault struck this file once */
	unsigned refs;       /* the store's one + downloads in progress */
};

/* One line of a batch: where it is in the input. */
struct mock_bitem {
	uint64_t off;
	uint32_t len;
};

struct mock_batch {
	char id[48];
	uint64_t seq;
	uint8_t api;         /* enum bapi */
	uint8_t status;      /* enum bstatus */
	uint8_t ep;          /* enum bendpoint */
	bool fault_fail, fault_invalid;
	bool counted;        /* its custom_ids are in the submit counter */
	double expire_rate;  /* share of lines that expire */
	char input_file_id[40], output_file_id[40], error_file_id[40];
	char completion_window[16];
	uint64_t created_ms, in_progress_ms, finalizing_ms, completed_ms, failed_ms, expired_ms,
		cancelling_ms, cancelled_ms; /* epoch milliseconds, 0: not yet */
	unsigned total, completed, failed, canceled, expired; /* failed: Anthropic's errored */
	char *metadata;      /* owner: the batch; compact JSON object or NULL */
	char *errors;        /* owner: the batch; the "data" array's JSON or NULL */

	/* Work (not persisted: redone after a restart). */
	bool prepared;       /* items[] built and checked */
	struct mock_bitem *items; /* owner: the batch */
	size_t nitems, items_cap;
	uint32_t *order;     /* owner: the batch; the answer order (shuffled) */
	size_t next;         /* answers done, in order[] */
	size_t scan;         /* OpenAI validation: bytes of the input checked */
	size_t lines;        /* OpenAI validation: lines seen (for "line") */
	struct mock_idmap seen; /* custom_ids during validation; owner: the batch */
	char model[MODEL_MAX];  /* the first line's model, for "one model per file" */
	size_t model_len;
	struct mock_bfile *input; /* a reference while working */
	struct mock_buf out, err; /* answer lines so far; owned by the batch */
};

struct mock_bstore {
	char *dir;           /* owner: the store; NULL: in memory only */
	unsigned phase_ms;
	struct mock_bfile **files; /* owner: the store (each holds one ref) */
	size_t nfiles, files_cap;
	struct mock_batch **batches; /* owner: the store; in creation order */
	size_t nbatches, batches_cap;
	uint64_t seq;        /* the last id number given */
	struct mock_idmap submits; /* custom_id -> times submitted in a batch */
	uint64_t submitted;  /* lines submitted in all */
	bool timer_armed;
	struct __kernel_timespec ts;
};

/* ---- mock_batch_store.c ---- */

/* Creates the store (loading dir when given). 0 or -errno with why in err. */
int mock_bstore_new(const struct mock_options *o, struct mock_bstore **out, char *err,
		    size_t errsz);
void mock_bstore_free(struct mock_bstore *st);
uint64_t mock_now_ms(void);
struct mock_bfile *mock_bfile_find(struct mock_bstore *st, const char *id, size_t n);
struct mock_batch *mock_batch_find(struct mock_bstore *st, uint8_t api, const char *id,
				   size_t n);
/* A new file holding a copy of data (or taking *heap, a malloc'd buffer, when
 * heap is not NULL), written to the state dir when there is one. */
struct mock_bfile *mock_bfile_add(struct mock_bstore *st, uint8_t purpose, const char *name,
				  size_t nlen, const char *data, size_t len, char **heap);
void mock_bfile_ref(struct mock_bfile *f);
void mock_bfile_unref(struct mock_bfile *f);
/* Removes the file from the store (its state files too). */
void mock_bfile_delete(struct mock_bstore *st, struct mock_bfile *f);
struct mock_batch *mock_batch_add(struct mock_bstore *st, uint8_t api);
/* Removes an ended batch, its results and its state files. */
void mock_batch_delete(struct mock_bstore *st, struct mock_batch *b);
/* Writes the batch's state file (no-op in memory). */
void mock_batch_save(struct mock_bstore *st, struct mock_batch *b);
void mock_batch_free_work(struct mock_batch *b);
/* Counts one submission of each custom_id in ids (NUL-free strings joined
 * by '\n'); persisted in the state dir. */
void mock_bstore_count_submits(struct mock_bstore *st, const char *ids, size_t len);

/* ---- mock_batch_run.c ---- */

/* Advances every batch: state changes due by now, then answers in slices of
 * about 2 ms. True when work is left for the next loop turn now. */
bool mock_batches_tick(struct mock_server *s);
/* Builds items[] for an Anthropic body (synchronous: its errors are the
 * create call's 400). True, or false with why in msg (JSON-escaped). The
 * ids go to *ids ('\n' after each) when ids is not NULL. */
bool mock_anthropic_prepare(struct mock_batch *b, const char *body, size_t len, char *msg,
			    size_t cap, struct mock_buf *ids);
/* The server's batch timer fired (TAG_BATCH). */
void mock_batch_timer_fired(struct mock_server *s);
/* Asks for the end of the work: stopping the server. */
void mock_batch_timer_cancel(struct mock_server *s);

/* ---- mock_batch_api.c ---- */

/* A complete request on a batch route: its reply as c->job. */
void mock_batch_dispatch(struct mock_server *s, struct conn *c, uint64_t n, const char *body,
			 const char *end, bool close);

#endif

/*
 * `llmring batch` as a call, for a binding that runs the job inside its
 * own process (tools/python/pyllmring/_batch.c): the command's arguments,
 * its messages on stderr, its output file and its exit status, plus two
 * hooks. batch_run installs no signal handler, never exits and keeps no
 * state between calls, so it can run again, or on several threads at
 * once (each with its own files).
 */
#ifndef LR_CLI_BATCH_RUN_H
#define LR_CLI_BATCH_RUN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "llmring.h"

/* Where a run is, in the shape of the engine's lr_progress but counted by
 * the run: submitted = requests sent, succeeded / failed = outcome lines
 * written (what a resume would skip), queued / in_flight = what is
 * outstanding split as the engine last said, retried, tokens and cost of
 * what completed. */
struct batch_progress {
	lr_progress run;
	uint64_t lines_read;    /* input lines read so far */
	uint64_t lines_done;    /* read and not waiting for a response */
	uint64_t lines_total;   /* lines of the input (0: not a regular file) */
	uint64_t skipped;       /* done in an earlier run: skipped */
	uint64_t invalid_lines; /* lines that could not be used (error lines written) */
};

struct batch_hooks {
	/* Called on the run's thread after every round of completions and
	 * once at the end, with counts that only grow: copy and return, never
	 * block. NULL: none. */
	void (*on_progress)(void *user, const struct batch_progress *p);
	void *user;
	/* Set (to nonzero) by any thread to stop the run: no more lines are
	 * read, what is in flight is cancelled and not written (a re-run
	 * sends it again), what was written stays, the summary says "stopped
	 * early" and the status is 2. Seen within about 100 ms. NULL:
	 * the run goes to its end. */
	const atomic_int *stop;
	/* Draw the command's progress line when stderr is a terminal (the
	 * command always does; a binding usually has on_progress instead). */
	bool draw_progress;
};

/* Runs `llmring batch` with argv[0] "batch" and the command's flags;
 * hooks may be NULL (as the command). Returns the exit status: 0, 1 (some
 * line ended in an error), 2 (usage, fatal, or stopped early). */
int batch_run(int argc, char **argv, const struct batch_hooks *hooks);

#endif

/*
 * `llmring batch INPUT.jsonl -o OUTPUT.jsonl ...`: every line of an OpenAI
 * Batch API file becomes one request; every outcome becomes one output
 * line, appended in completion order with a single write() so that a crash
 * never leaves a torn or duplicated line. This file sets the run up, runs
 * it and takes the completions; batch.h lists the other parts.
 *
 * Memory stays bounded however long the input is: lines are read as the
 * window of outstanding requests (4 x concurrency) has room, and only the
 * set of custom_ids seen (needed to find duplicates) grows with the input,
 * by 8-byte slots (batch_idset.c: the ids themselves go to a file).
 *
 * Rate limits (--rpm, --tpm) are the engine's token buckets; cost comes
 * from each result's cost_usd (the engine's price table). A summary ends
 * every run unless --quiet.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "batch_run.h"
#include "cli.h"
#include "mock_server.h"
#include "pbatch.h"
#include "util/list.h"

/* The records of requests not yet reaped: the batch frees what is left
 * when a run ends early (the engine drops unreaped futures, not their
 * user data). */
HEAD_LIST_FUNCTIONS(recs, struct batch, struct line_rec, recs, prev, next)

/* ---- requests and completions ------------------------------------------ */

const char *model_names_find(struct model_names *list, const char *name, size_t len, bool add)
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

void model_names_free(struct model_names *list)
{
	for (size_t k = 0; k < list->count; k++)
		free(list->names[k]);
	free(list->names);
	list->names = NULL;
	list->count = list->cap = 0;
}

/* Room for ids up to this long in every new record, so reaped records
 * fit the next line's id (custom_ids are mostly short). */
#define REC_MIN_ID_ROOM 47

/* A record for an id of id_len bytes: a reaped one when it has room. */
static struct line_rec *rec_take(struct batch *b, size_t id_len)
{
	struct line_rec *rec = b->spare_recs;
	if (rec && rec->id_room >= id_len) {
		b->spare_recs = rec->next;
		b->spare_count--;
		return rec;
	}
	size_t room = id_len < REC_MIN_ID_ROOM ? REC_MIN_ID_ROOM : id_len;
	rec = malloc(sizeof(*rec) + room + 1); /* owner: the request, then the spares */
	if (rec)
		rec->id_room = room;
	return rec;
}

/* A record done with: kept for a later line, or freed. */
static void rec_give(struct batch *b, struct line_rec *rec)
{
	if (rec && b->spare_count < b->window) {
		rec->next = b->spare_recs;
		b->spare_recs = rec;
		b->spare_count++;
		return;
	}
	free(rec);
}

void submit_line(struct batch *b, const char *custom_id, size_t id_len,
                 const struct input_request *in)
{
	struct line_rec *rec = rec_take(b, id_len); /* owner: the request, given back when reaped */
	if (!rec) {
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
		return;
	}
	rec->prev = rec->next = NULL;
	rec->lookup = NULL;
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
		rec_give(b, rec);
		return;
	}
	/* The reaped handle is the one used later; this one is not needed. */
	lr_future_release(f);
	recs_push_front(b, rec);
	b->outstanding++;
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

void batch_record_outcome(struct batch *b, const struct line_rec *rec, const lr_result *r)
{
	if (r->error == LR_OK)
		b->pend.succeeded++;
	else
		b->pend.failed++;
	if (r->attempts > 1)
		b->retries += (uint64_t)(r->attempts - 1);
	if (r->cached) {
		/* Answered from --cache: nothing used, nothing paid. */
		b->cache_hits++;
		if (r->cost_saved_usd >= 0) {
			b->cost_saved_usd += r->cost_saved_usd;
			b->priced = true; /* priced, at nothing */
		}
		write_outcome(b, rec, r);
		return;
	}
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
}

static void handle_completion(struct batch *b, lr_future *f)
{
	const lr_result *r = lr_future_result(f);
	struct line_rec *rec = lr_future_user_data(f);
	b->outstanding--;
	if (rec && rec->lookup) {
		/* --via provider-batch --cache: a lookup, taken in input order. */
		pb_lookup_reaped(b, rec->lookup, f);
		return;
	}
	if (rec)
		recs_unlink(b, rec);
	if (r && rec) /* always, for a reaped future of ours */
		batch_record_outcome(b, rec, r);
	rec_give(b, rec);
	lr_future_release(f);
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
		/* The cache's keys hold the origin, and this one is new each run. */
		if (b->opt.cache_path && !b->opt.quiet)
			fprintf(stderr, "llmring batch: note: --mock listens on a new port each run and "
			        "cache keys include the server's origin, so this run's entries will not "
			        "answer a later --mock run (use `llmring mock --listen HOST:PORT` and "
			        "--base-url for that)\n");
	}
	lr_config cfg = lr_config_default();
	cfg.on_log = cli_log;
	cfg.base_url = base_url;
	cfg.api_key = api_key;
	cfg.ca_file = b->opt.cacert;
	cfg.insecure = b->opt.insecure;
	cfg.max_in_flight = (unsigned)b->opt.concurrency;
	cfg.reap_completions = 1;
	cfg.cache_path = b->opt.cache_path;
	cfg.cache_mode = b->opt.cache_mode;
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
	if (b->progress || (b->hooks && b->hooks->on_progress)) {
		/* Fresh enough for a redraw every 100 ms; only on a terminal
		 * (or for a binding's progress hook). */
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
	lr_error_info why;
	int rc = lr_engine_create(&cfg, &b->eng, &why);
	if (rc) {
		cli_engine_error("batch", &why);
		return -1;
	}
	return 0;
}

static void batch_free(struct batch *b)
{
	/* The engine first: it may still hold line records of ours. */
	if (b->eng)
		lr_engine_destroy(b->eng);
	while (b->recs) { /* a run that ended early */
		struct line_rec *rec = b->recs;
		recs_unlink(b, rec);
		free(rec);
	}
	while (b->spare_recs) {
		struct line_rec *next = b->spare_recs->next;
		free(b->spare_recs);
		b->spare_recs = next;
	}
	if (b->mock)
		mock_server_stop(b->mock);
	if (b->out_fd >= 0)
		close(b->out_fd);
	if (b->stats_fd >= 0)
		close(b->stats_fd);
	reader_free(&b->in);
	id_set_free(&b->ids);
	free(b->spool_dir);
	free(b->done_lines);
	json_doc_free(&b->doc);
	buf_free(&b->pending);
	free(b->scratch);
	model_names_free(&b->requested);
	model_names_free(&b->unpriced);
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

/*
 * Every check that creates nothing: the input not a directory nor one of
 * the other files, the endpoint and TLS flags (the first line's model
 * stands for the file's), a first read, descriptors to spare. Then the
 * engine (and with --mock the mock) starts. 0, or -1 after printing why.
 */
static int prepare_run(struct batch *b, const struct stat *in_st)
{
	if (S_ISDIR(in_st->st_mode)) {
		fprintf(stderr, "llmring batch: cannot read %s: it is a directory (give a JSONL file)\n",
		        b->opt.input_path);
		return -1;
	}
	if (check_distinct_files(&b->opt, in_st))
		return -1;
	/* Lines in provider batches still running would be sent twice. */
	if (!b->opt.via_batch && pb_state_running(b->opt.output_path)) {
		fprintf(stderr, "llmring batch: %s.state.json holds provider batches still running; "
		        "run with --via provider-batch (add --cancel to give up on them) before "
		        "sending directly\n", b->opt.output_path);
		return -1;
	}
	const char *base_url = NULL, *api_key = NULL; /* borrowed: argv or the environment */
	char first_model[256];
	const char *model = b->opt.model;
	if (!b->opt.mock && !model) {
		int err = peek_first_model(b->in.fd, b->in.max, first_model, sizeof first_model, &model);
		if (err) {
			fprintf(stderr, "llmring batch: cannot read %s: %s\n", b->opt.input_path,
			        strerror(err));
			return -1;
		}
	}
	if (!b->opt.mock &&
	    (cli_resolve_endpoint("batch", b->opt.base_url_flag, model, &base_url, &api_key) ||
	     cli_check_tls_flags("batch", b->opt.cacert, b->opt.insecure)))
		return -1;
	/* The first read, so that an input that cannot be read at all is
	 * refused before anything is created. */
	int rc = reader_fill(&b->in);
	if (rc) {
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b->opt.input_path, strerror(-rc));
		return -1;
	}
	/* A socket per request on the wire, and with --mock its server side. */
	unsigned long fds = (unsigned long)b->opt.concurrency * (b->opt.mock ? 2 : 1) + BATCH_FD_SLACK;
	long fd_room = cli_ensure_fds("batch", fds, "--concurrency");
	if (fd_room < 0)
		return -1;
	/* The pool keeps its own sockets below the limit, but the built-in
	 * mock's accepted ends count against it too: fewer connections then,
	 * or both ends would wait on each other for descriptors. */
	if (b->opt.mock && (unsigned long)fd_room < fds) {
		long fit = (fd_room - BATCH_FD_SLACK / 2) / 2;
		b->opt.concurrency = fit > 1 ? fit : 1;
	}
	b->progress = !b->opt.quiet && (!b->hooks || b->hooks->draw_progress) &&
	              isatty(STDERR_FILENO);
	return start_endpoint(b, base_url, api_key);
}

/*
 * Opens the stats file and the output, creating them when needed
 * (*stats_created and *out_created, owner: the caller, then name what to
 * remove if the run is refused after all), and reads what an earlier run
 * wrote there. 0, or -1 after printing why.
 */
static int open_outputs(struct batch *b, char **out_created, char **stats_created)
{
	if (b->opt.stats_path) {
		b->stats_fd = open_created(b->opt.stats_path, O_WRONLY, stats_created);
		if (b->stats_fd < 0) {
			fprintf(stderr, "llmring batch: cannot write the stats file %s: %s\n",
			        b->opt.stats_path, strerror(errno));
			return -1;
		}
	}
	b->out_fd = open_created(b->opt.output_path, O_RDWR | O_APPEND, out_created);
	if (b->out_fd < 0) {
		fprintf(stderr, "llmring batch: cannot open %s: %s\n", b->opt.output_path,
		        strerror(errno));
		return -1;
	}
	struct stat out_st;
	if (fstat(b->out_fd, &out_st) == 0 && S_ISREG(out_st.st_mode))
		remove_stale_rewrites(b);
	else /* -o /dev/stdout: no spool in /dev */
		b->ids.spool_dir = NULL;
	return load_previous_output(b);
}

/* The directory of path (malloc'd, owner: the caller), where the id set
 * spools the custom_ids: beside the output, which already takes far more
 * room. NULL when out of memory (the set then uses $TMPDIR or /tmp). */
static char *output_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	return strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

/* Whether the hooks' stop flag is set; remembered, so that the run counts
 * as stopped early. */
static bool stop_asked(struct batch *b)
{
	if (!b->stopped && b->hooks && b->hooks->stop &&
	    atomic_load_explicit(b->hooks->stop, memory_order_relaxed))
		b->stopped = true;
	return b->stopped;
}

/* The hooks' progress report: counters the run keeps anyway. */
void batch_report_progress(struct batch *b)
{
	if (!b->hooks || !b->hooks->on_progress)
		return;
	uint64_t outstanding = (uint64_t)b->outstanding;
	uint64_t in_flight = outstanding;
	if (b->have_engine_progress && b->engine_in_flight < in_flight)
		in_flight = b->engine_in_flight;
	struct batch_progress p = {
		.run = {
			.submitted = b->requests,
			.queued = outstanding - in_flight,
			.in_flight = in_flight,
			.succeeded = b->succeeded,
			.failed = b->failed,
			.retried = b->retries,
			.input_tokens = b->input_tokens,
			.output_tokens = b->output_tokens,
			.cost_usd = b->cost_usd,
		},
		.lines_read = b->line_no,
		.lines_done = b->line_no - outstanding,
		.lines_total = b->total_lines,
		.skipped = b->skipped,
		.invalid_lines = b->invalid_lines,
	};
	b->hooks->on_progress(b->hooks->user, &p);
}

/*
 * The run: input lines are read while the window has room, completions
 * are reaped and written, until every line is done or the run cannot go
 * on. False when waiting for completions failed. With --via
 * provider-batch, pbatch_run calls it to plan (b->line_sink).
 */
bool batch_run_requests(struct batch *b)
{
	bool more_input = true;
	bool reap_failed = false;
	lr_future *reaped[BATCH_REAP_MAX];
	while (!b->write_failed && (more_input || b->outstanding > 0)) {
		if (stop_asked(b))
			break; /* what is in flight is cancelled with the engine */
		while (more_input && b->outstanding + b->held < b->window && !b->write_failed &&
		       !stop_asked(b))
			more_input = take_input_line(b);
		if (b->read_err)
			break; /* what is in flight is lost either way: stop now */
		if (b->outstanding == 0)
			continue;
		long min_ready = b->outstanding < b->opt.concurrency ? b->outstanding : b->opt.concurrency;
		if (min_ready > BATCH_REAP_MAX)
			min_ready = BATCH_REAP_MAX;
		/* Never longer than a quarter second: a finished (and paid for)
		 * request reaches the output soon, so a kill loses little. */
		int n = lr_engine_reap_batch(b->eng, reaped, BATCH_REAP_MAX, (int)min_ready,
		                             b->progress || (b->hooks && b->hooks->stop) ? 100 : 250);
		if (n < 0) {
			fprintf(stderr, "llmring batch: waiting for completions failed: %s\n",
			        lr_strerror(n));
			reap_failed = true;
			break;
		}
		for (int k = 0; k < n; k++)
			handle_completion(b, reaped[k]);
		write_pending(b);
		draw_progress(b, false);
		batch_report_progress(b);
	}
	write_pending(b); /* input-line errors after the last completion */
	clear_progress(b);
	batch_report_progress(b);
	return !reap_failed;
}

/* After the run: the stats file, the summary, what went wrong. The exit
 * status. */
static int finish_run(struct batch *b, bool reap_failed)
{
	if (b->read_err)
		fprintf(stderr, "llmring batch: cannot read %s after line %" PRIu64 ": %s\n",
		        b->opt.input_path, b->line_no, strerror(b->read_err));
	double wall = seconds_since(b->start_ns);
	bool incomplete = b->write_failed || b->read_err || reap_failed || b->outstanding > 0 ||
	                  b->stopped;
	bool stats_failed = b->opt.stats_path && write_stats_file(b, wall);
	if (!b->opt.quiet)
		print_summary(b, wall);
	if (b->unwritten)
		fprintf(stderr, "llmring batch: %" PRIu64 " finished line%s could not be written to %s "
		        "and will run again on resume\n", b->unwritten, b->unwritten == 1 ? "" : "s",
		        b->opt.output_path);
	if (incomplete)
		fprintf(stderr, "llmring batch: stopped early; the output is incomplete (run again to "
		        "resume)\n");
	if (incomplete || stats_failed)
		return CLI_EXIT_USAGE;
	return b->failed || b->invalid_lines || b->earlier_errors ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int batch_main(int argc, char **argv)
{
	return batch_run(argc, argv, NULL);
}

int batch_run(int argc, char **argv, const struct batch_hooks *hooks)
{
	struct batch b = {0};
	b.hooks = hooks;
	b.out_fd = b.stats_fd = -1;
	b.requested.limit = BATCH_MAX_MODEL_NAMES;
	int status = parse_options(argc, argv, &b.opt);
	if (status)
		return status < 0 ? CLI_EXIT_OK : status; /* -1: --help was shown */

	/* Every check comes before the output (and the stats file) is
	 * created: a refused run leaves nothing behind. */
	status = CLI_EXIT_USAGE;
	char *out_created = NULL, *stats_created = NULL; /* owner: this function */
	int in_fd = open(b.opt.input_path, O_RDONLY | O_CLOEXEC); /* owner: this function */
	struct stat in_st;
	if (in_fd < 0 || fstat(in_fd, &in_st) != 0) {
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b.opt.input_path, strerror(errno));
		if (in_fd >= 0)
			close(in_fd);
		return CLI_EXIT_USAGE;
	}
	reader_init(&b.in, in_fd, (size_t)b.opt.max_line);
	b.spool_dir = output_dir(b.opt.output_path);
	b.ids.spool_dir = b.spool_dir;
	/* Tests only: collisions in the id set, which must change nothing. */
	const char *bits = getenv("LLMRING_TEST_ID_HASH_BITS");
	if (bits && *bits)
		b.ids.hash_bits = (unsigned)strtoul(bits, NULL, 10);
	struct pbatch *pb = NULL; /* owner: this function */
	if (prepare_run(&b, &in_st) || (b.opt.via_batch && !(pb = pbatch_new(&b, in_fd))) ||
	    open_outputs(&b, &out_created, &stats_created))
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
	if (b.progress || (hooks && hooks->on_progress))
		b.total_lines = count_lines(in_fd);
	b.start_ns = now_ns();
	draw_progress(&b, true);
	bool reap_failed = pb ? !pbatch_run(pb) : !batch_run_requests(&b);
	status = finish_run(&b, reap_failed);
out:
	batch_free(&b);
	pbatch_free(pb);
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

/*
 * The flow of `llmring batch --via provider-batch` (pbatch.h):
 *   1. the state: loaded and checked against the input (pbatch_new, before
 *      any file is made), or new;
 *   2. the plan: the direct batch's run loop reads the input with its
 *      checks and resume, usable lines go to part files (lines of
 *      providers without a batch API are sent directly, as usual); the
 *      parts are synced and the state saved before anything is submitted;
 *   3. rounds until every part is merged: create what is planned, poll
 *      what runs (every --poll S, longer when the provider asks), fetch
 *      and merge what ended. The state is saved at every step that
 *      matters, so a kill -9 anywhere resumes from there.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch_run.h"
#include "pbatch.h"

#define PB_DEFAULT_POLL_S 30.0
#define PB_MOCK_POLL_S 1.0

static uint64_t env_limit(const char *name, uint64_t dflt)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return dflt;
	char *end;
	unsigned long long n = strtoull(v, &end, 10);
	return *end || n == 0 || n > dflt ? dflt : (uint64_t)n;
}

struct pbatch *pbatch_new(struct batch *b, int in_fd)
{
	struct pbatch *pb = calloc(1, sizeof(*pb)); /* owner: the caller (pbatch_free) */
	if (!pb) {
		fprintf(stderr, "llmring batch: out of memory\n");
		return NULL;
	}
	pb->b = b;
	pb->no_batch_rate.limit = BATCH_MAX_MODEL_NAMES;
	pb->written.spool_dir = b->spool_dir;
	/* Smaller parts for tests and trials (docs/guide.md). */
	uint64_t lines = env_limit("LLMRING_BATCH_MAX_LINES", PB_ANTHROPIC_MAX_LINES);
	uint64_t bytes = env_limit("LLMRING_BATCH_MAX_BYTES", PB_ANTHROPIC_MAX_BYTES);
	pb->lim.openai_lines = lines < PB_OPENAI_MAX_LINES ? lines : PB_OPENAI_MAX_LINES;
	pb->lim.openai_bytes = bytes < PB_OPENAI_MAX_BYTES ? bytes : PB_OPENAI_MAX_BYTES;
	pb->lim.anthropic_lines = lines;
	pb->lim.anthropic_bytes = bytes;
	double poll = b->opt.poll_s > 0 ? b->opt.poll_s : b->opt.mock ? PB_MOCK_POLL_S : PB_DEFAULT_POLL_S;
	pb->poll_ms = (uint64_t)(poll * 1000);
	if (pb->poll_ms == 0)
		pb->poll_ms = 1;
	uint64_t size;
	char sha[65];
	int rc = pb_fingerprint(in_fd, &size, sha);
	if (rc) {
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b->opt.input_path, strerror(-rc));
		pbatch_free(pb);
		return NULL;
	}
	if (pb_state_open(&pb->st, b->opt.output_path, size, sha, &pb->doc)) {
		pbatch_free(pb);
		return NULL;
	}
	pb_cache_init(pb);
	b->pb = pb;
	b->line_sink = pb_plan_line;
	return pb;
}

void pbatch_free(struct pbatch *pb)
{
	if (!pb)
		return;
	pb_lookups_free(pb);
	pb_keys_free(pb);
	pb_state_free(&pb->st);
	id_set_free(&pb->written);
	id_set_free(&pb->part_ids);
	model_names_free(&pb->no_batch_rate);
	free(pb->pending);
	json_doc_free(&pb->doc);
	buf_free(&pb->scratch);
	buf_free(&pb->line);
	free(pb);
}

static int submit(struct pbatch *pb, struct pb_part *p)
{
	return p->api == PB_ANTHROPIC ? pb_anthropic_submit(pb, p) : pb_openai_submit(pb, p);
}

static int poll_part(struct pbatch *pb, struct pb_part *p)
{
	return p->api == PB_ANTHROPIC ? pb_anthropic_poll(pb, p) : pb_openai_poll(pb, p);
}

static int cancel_part(struct pbatch *pb, struct pb_part *p)
{
	return p->api == PB_ANTHROPIC ? pb_anthropic_cancel(pb, p) : pb_openai_cancel(pb, p);
}

static int fetch(struct pbatch *pb, struct pb_part *p)
{
	return p->api == PB_ANTHROPIC ? pb_anthropic_fetch(pb, p) : pb_openai_fetch(pb, p);
}

/* Every line of p still without an outcome gets code; p is merged. */
static int merge(struct pbatch *pb, struct pb_part *p, const char *code, const char *msg)
{
	uint64_t stored = pb->cache_stored;
	if (pb_merge(pb, p, code, msg))
		return -2;
	/* Its results are in the cache's file before its own files go: a
	 * kill from here on loses none (until here, a re-run merges and
	 * stores them again). */
	if (pb->cache_stored != stored && lr_engine_cache_flush(pb->b->eng, 60000) != 1)
		fprintf(stderr, "llmring batch: the cache did not write part %u's results within 60 s; "
		        "they are in %s either way\n", p->n, pb->b->opt.output_path);
	p->status = PS_MERGED;
	if (pb_state_save(&pb->st))
		return -2;
	/* Its files are not needed any more (every line has its outcome):
	 * disk is freed as parts end. A kill before this leaves them. */
	static const char *const suffix[] = {"jsonl", "out.jsonl", "err.jsonl", "keys"};
	for (int k = 0; k < 4; k++) {
		char *path = pb_part_path(&pb->st, p, suffix[k]); /* owner: here */
		if (path)
			unlink(path);
		free(path);
	}
	return 0;
}

/* The code for lines an ended part left without a result. */
static int merge_ended(struct pbatch *pb, struct pb_part *p)
{
	char msg[600];
	const char *r = p->remote;
	if (!strcmp(r, "cancelled") || p->cancel_sent)
		return merge(pb, p, "batch_cancelled", "the batch was cancelled before this request ran");
	if (!strcmp(r, "failed")) {
		snprintf(msg, sizeof msg, "the provider's batch failed: %s",
		         p->fail_msg ? p->fail_msg : "no reason given");
		return merge(pb, p, "batch_failed", msg);
	}
	return merge(pb, p, "batch_expired",
	             "the batch ended without running this request (expired; --retry-errors sends "
	             "it again)");
}

static void show(const struct pbatch *pb, const struct pb_part *p)
{
	if (pb->b->opt.quiet)
		return;
	fprintf(stderr, "llmring batch: part %u (%s %s, %" PRIu64 " lines): %s%s%s", p->n,
	        p->api == PB_ANTHROPIC ? "anthropic" : "openai", p->model, p->lines,
	        pb_status_name(p->status), p->remote[0] ? " / " : "", p->remote);
	if (p->status >= PS_SUBMITTED)
		fprintf(stderr, ", %" PRIu64 " done, %" PRIu64 " failed of %" PRIu64, p->done,
		        p->failed, p->total);
	fputc('\n', stderr);
}

/* A part not yet submitted under --cancel: adopted if it was made, else
 * its lines are cancelled. */
static int cancel_unsubmitted(struct pbatch *pb, struct pb_part *p)
{
	bool adopted;
	int rc = pb_readopt(pb, p, &adopted);
	if (rc || adopted)
		return rc;
	return merge(pb, p, "batch_cancelled", "--cancel: this request was never submitted");
}

/* One part's step in a round. 0, 1 (wait: something failed for now), -2
 * (stop). */
static int step(struct pbatch *pb, struct pb_part *p)
{
	struct batch *b = pb->b;
	int rc = 0;
	if (p->status <= PS_CREATING) {
		if (b->opt.cancel) {
			rc = cancel_unsubmitted(pb, p);
		} else {
			rc = submit(pb, p);
			if (rc == 0) {
				b->requests += p->lines;
			} else if (rc == -1) {
				char msg[600];
				snprintf(msg, sizeof msg, "the provider refused the batch: %s",
				         p->fail_msg ? p->fail_msg : "no reason given");
				rc = merge(pb, p, "batch_failed", msg);
			}
		}
	}
	if (rc == 0 && p->status == PS_SUBMITTED) {
		if (b->opt.cancel && !p->cancel_sent)
			rc = cancel_part(pb, p);
		if (rc == 0)
			rc = poll_part(pb, p);
	}
	if (rc == 0 && p->status == PS_ENDED) {
		rc = fetch(pb, p);
		if (rc == -1)
			rc = -2; /* a result that cannot be fetched: stop, run again */
		if (rc == 0)
			rc = merge_ended(pb, p);
	}
	return rc;
}

/* The batch_run hooks' stop flag (batch_run.h), remembered as the direct
 * run remembers it. */
static bool stop_asked(struct batch *b)
{
	if (!b->stopped && b->hooks && b->hooks->stop &&
	    atomic_load_explicit(b->hooks->stop, memory_order_relaxed))
		b->stopped = true;
	return b->stopped;
}

/* The rounds, until every part is merged. False when the run stopped. */
static bool run_parts(struct pbatch *pb)
{
	struct pb_state *st = &pb->st;
	unsigned stalls = 0; /* rounds in a row where every step failed */
	char *seen = calloc(st->nparts + 1, 64); /* owner: here; what was last shown of each part */
	if (!seen)
		return false;
	bool ok = true;
	for (;;) {
		bool pending = false, moved = false, failed = false;
		for (size_t i = 0; i < st->nparts && ok; i++) {
			struct pb_part *p = &st->parts[i];
			if (p->status == PS_MERGED)
				continue;
			int rc = step(pb, p);
			if (rc == -2)
				ok = false;
			moved |= rc == 0;
			failed |= rc == 1;
			char now[64];
			snprintf(now, sizeof now, "%d %s %" PRIu64 " %" PRIu64, p->status, p->remote,
			         p->done, p->failed);
			if (strcmp(now, seen + 64 * i) != 0) {
				show(pb, p);
				memcpy(seen + 64 * i, now, 64);
			}
			if (p->status != PS_MERGED)
				pending = true;
		}
		batch_report_progress(pb->b); /* a binding's progress: merged lines count */
		if (!ok || !pending)
			break;
		stalls = moved || !failed ? 0 : stalls + 1;
		if (stalls > PB_STALL_ROUNDS) {
			fprintf(stderr, "llmring batch: the provider kept failing for %u rounds in a row; "
			        "stopping (run again later to resume)\n", stalls);
			ok = false;
			break;
		}
		if (stalls && pb->backoff_ms == 0)
			pb->backoff_ms = pb_retry_ms(NULL, stalls);
		uint64_t wait = pb->backoff_ms > pb->poll_ms ? pb->backoff_ms : pb->poll_ms;
		pb->backoff_ms = 0;
		/* In slices, so that a binding's stop flag is seen soon. */
		for (uint64_t slept = 0; slept < wait && !stop_asked(pb->b); slept += 100)
			pb_sleep_ms(wait - slept < 100 ? wait - slept : 100);
		if (stop_asked(pb->b)) {
			ok = false; /* the state is saved: a re-run resumes polling */
			break;
		}
	}
	free(seen);
	return ok;
}

void pb_stats_fields(const struct pbatch *pb, struct buf *s)
{
	buf_printf(s, ",\"via\":\"provider-batch\",\"batch_parts\":%zu,\"batch_lines_merged\":%" PRIu64
	           ",\"batch_input_tokens\":%" PRIu64 ",\"batch_output_tokens\":%" PRIu64,
	           pb->st.nparts, pb->merged_lines, pb->batched_input_tokens,
	           pb->batched_output_tokens);
	if (pb->priced)
		buf_printf(s, ",\"batch_cost_usd\":%.10g,\"batch_direct_cost_usd\":%.10g,"
		           "\"batch_saving_usd\":%.10g", pb->batch_cost_usd, pb->direct_cost_usd,
		           pb->direct_cost_usd - pb->batch_cost_usd);
	else
		buf_puts(s, ",\"batch_cost_usd\":null,\"batch_direct_cost_usd\":null,"
		         "\"batch_saving_usd\":null");
	buf_printf(s, ",\"batch_cache_stores\":%" PRIu64, pb->cache_stored);
	buf_puts(s, ",\"batch_rate_missing\":[");
	for (size_t k = 0; k < pb->no_batch_rate.count; k++) {
		const char *name = pb->no_batch_rate.names[k];
		if (k)
			buf_puts(s, ",");
		json_append_string(s, name, strlen(name));
	}
	buf_puts(s, "]");
}

void pb_summary(const struct pbatch *pb)
{
	fprintf(stderr, "\n  provider batches: %zu part%s, %" PRIu64 " line%s merged this run", pb->st.nparts,
	        pb->st.nparts == 1 ? "" : "s", pb->merged_lines, pb->merged_lines == 1 ? "" : "s");
	if (pb->priced)
		fprintf(stderr, "; at batch rates $%.6f (direct: $%.6f, saved $%.6f)", pb->batch_cost_usd,
		        pb->direct_cost_usd, pb->direct_cost_usd - pb->batch_cost_usd);
	if (pb->cache_stored)
		fprintf(stderr, "; %" PRIu64 " result%s stored in the cache", pb->cache_stored,
		        pb->cache_stored == 1 ? "" : "s");
	if (pb->no_batch_rate.count)
		fprintf(stderr, "; %zu model%s at the standard rate (no batch rate in the price table)",
		        pb->no_batch_rate.count, pb->no_batch_rate.count == 1 ? "" : "s");
}

bool pbatch_run(struct pbatch *pb)
{
	struct batch *b = pb->b;
	/* Without --base-url (or a provider's *_BASE_URL) the providers' own
	 * endpoints have their batch APIs; a server of one's own may not. */
	bool custom[2] = {b->opt.base_url_flag || getenv("OPENAI_BASE_URL"),
	                  b->opt.base_url_flag || getenv("ANTHROPIC_BASE_URL")};
	for (int api = 0; api < 2 && !b->opt.mock; api++) {
		int has = custom[api] ? pb_has_batch_api(pb, api) : 1;
		if (has < 0)
			return false; /* nothing planned: a re-run starts here */
		pb->direct[api] = has == 0;
	}
	if (pb_pending_init(pb)) {
		fprintf(stderr, "llmring batch: out of memory\n");
		return false;
	}
	if (!batch_run_requests(b) || b->write_failed || b->read_err)
		return false; /* nothing saved: the next run plans again */
	if (pb_plan_finish(pb))
		return false;
	if (pb->planned_parts && pb_state_save(&pb->st))
		return false;
	if (pb->planned_parts && !b->opt.quiet)
		fprintf(stderr, "llmring batch: %" PRIu64 " line%s planned in %u part%s (state: %s)\n",
		        pb->planned_lines, pb->planned_lines == 1 ? "" : "s", pb->planned_parts,
		        pb->planned_parts == 1 ? "" : "s", pb->st.path);
	if (pb->unplanned && !b->opt.quiet)
		fprintf(stderr, "llmring batch: --cancel: %" PRIu64 " line%s in no batch yet were left "
		        "alone (run without --cancel to send them)\n", pb->unplanned,
		        pb->unplanned == 1 ? "" : "s");
	if (pb_load_written(pb))
		return false;
	return run_parts(pb);
}

/*
 * --via provider-batch with --cache FILE (pbatch.h), the way a response
 * cache is meant to work in front of a paid request:
 *   - before anything is planned, each line that would go into a part is
 *     looked up without being sent (lr_request_set_cache_only, through the
 *     engine's cache thread like any lookup, the window bounding how many
 *     are out); a hit is its outcome at once, written as the direct batch
 *     writes hits ("cached": true) and never batched; anything else is
 *     planned. Both in input order (lookups come back in any order; those
 *     after an unanswered one wait in the queue), so a part's line ranges
 *     still grow and a resume's cursor still walks them;
 *   - a planned line's key (lr_future_cache_key, the key a direct request
 *     for it has) goes into part-N.keys, one line per line of the part,
 *     synced before the state names the part: a merge in a later process
 *     stores each success under its own line's key (lr_engine_cache_store),
 *     and a later direct or provider-batch run finds it.
 * What a kill -9 leaves: a hit is done once its line is in OUTPUT (the
 * record a resume reads; a hit not yet written is looked up again), a
 * planned line once its part is in the state (a resume skips it before
 * any lookup). Stores are the cache's own (queued, committed within about
 * 50 ms); a part merged again after a kill stores its results again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pbatch.h"

/* Bytes of results queued for the cache before a merge waits for its
 * writer (pb_store). */
#define PB_CACHE_QUEUE_MAX ((size_t)8 << 20)

void pb_cache_init(struct pbatch *pb)
{
	const struct batch_options *o = &pb->b->opt;
	bool on = o->cache_path && o->cache_mode != LR_CACHE_OFF;
	pb->cache_reads = on && o->cache_mode != LR_CACHE_WRITE;
	pb->cache_writes = on && o->cache_mode != LR_CACHE_READ;
}

static void lookup_free(struct pb_lookup *l)
{
	if (l->f)
		lr_future_release(l->f);
	free(l->rec);
	free(l);
}

void pb_lookups_free(struct pbatch *pb)
{
	while (pb->look_head) {
		struct pb_lookup *l = pb->look_head;
		pb->look_head = l->next;
		lookup_free(l);
	}
	pb->look_tail = NULL;
}

/* The lookups at the queue's head that are back: each a hit's outcome or
 * planned, then freed. */
static void drain(struct pbatch *pb)
{
	struct batch *b = pb->b;
	while (pb->look_head && pb->look_head->back) {
		struct pb_lookup *l = pb->look_head;
		pb->look_head = l->next;
		if (!pb->look_head)
			pb->look_tail = NULL;
		b->held--;
		const lr_result *r = l->f ? lr_future_result(l->f) : NULL;
		if (r && r->error == LR_OK && r->cached) {
			b->requests++; /* as a direct run counts its hits */
			batch_record_outcome(b, l->rec, r);
		} else if (!b->write_failed) {
			/* A miss, or a lookup that failed (then planned as without
			 * --cache: the plan refuses what cannot be built). */
			lr_cache_key key;
			bool keyed = l->f && lr_future_cache_key(l->f, &key) == 0;
			struct input_request in = {.endpoint = l->endpoint, .body = l->body,
			                           .body_len = l->body_len, .model = l->model};
			/* The part's range and an error line name the line's own
			 * number, not the line read last. */
			uint64_t reading = b->line_no;
			b->line_no = l->rec->input_line;
			pb_plan_request(pb, l->rec->custom_id, l->rec->id_len, &in, NULL, 0, l->line_hash,
			                keyed ? &key : NULL);
			b->line_no = reading;
		}
		lookup_free(l);
	}
}

void pb_lookup_submit(struct pbatch *pb, const char *custom_id, size_t id_len,
                      const struct input_request *in, uint64_t line_hash)
{
	struct batch *b = pb->b;
	struct pb_lookup *l = malloc(sizeof(*l) + in->body_len + 1); /* owner: the run's queue */
	struct line_rec *rec = malloc(sizeof(*rec) + id_len + 1);   /* owner: l */
	if (!l || !rec) {
		free(l);
		free(rec);
		fprintf(stderr, "llmring batch: out of memory\n");
		b->write_failed = true;
		return;
	}
	*rec = (struct line_rec){.lookup = l, .input_line = b->line_no, .model = in->model,
	                         .id_len = id_len, .id_room = id_len};
	memcpy(rec->custom_id, custom_id, id_len);
	rec->custom_id[id_len] = '\0';
	*l = (struct pb_lookup){.rec = rec, .line_hash = line_hash, .endpoint = in->endpoint,
	                        .model = in->model, .body_len = in->body_len};
	memcpy(l->body, in->body, in->body_len);
	l->body[in->body_len] = '\0';
	if (pb->look_tail)
		pb->look_tail->next = l;
	else
		pb->look_head = l;
	pb->look_tail = l;
	b->held++; /* until drained; outstanding too while the engine has it */

	/* Built as submit_line builds a request: the key is a direct run's. */
	lr_request *rq = lr_request_new(b->opt.model); /* owner: here until lr_submit */
	int rc = rq ? lr_request_set_endpoint(rq, in->endpoint) : LR_ENOMEM;
	if (!rc)
		rc = lr_request_set_body(rq, in->body, in->body_len);
	if (!rc)
		rc = lr_request_set_cache_only(rq, 1);
	if (rc) {
		lr_request_free(rq);
		l->back = true; /* with nothing: planned in its turn */
		drain(pb);
		return;
	}
	lr_request_set_user_data(rq, rec);
	lr_future *f = lr_submit(b->eng, rq); /* takes rq over */
	if (!f) {
		l->back = true;
		drain(pb);
		return;
	}
	lr_future_release(f); /* the reaped handle is the one kept */
	b->outstanding++;
}

void pb_lookup_reaped(struct batch *b, struct pb_lookup *l, lr_future *f)
{
	l->f = f; /* owner: l */
	l->back = true;
	drain(b->pb);
}

/* ---- keys: part-N.keys, a line per line of the part --------------------- */

void pb_keys_add(struct pb_part *p, const lr_cache_key *key)
{
	if (!key) {
		buf_puts(&p->keys, "-\n"); /* not keyed: never stored */
		return;
	}
	static const char hex[] = "0123456789abcdef";
	char line[64 + 1 + sizeof(key->provider) + 1];
	size_t n = 0;
	for (int i = 0; i < 32; i++) {
		line[n++] = hex[key->sha256[i] >> 4];
		line[n++] = hex[key->sha256[i] & 15];
	}
	line[n++] = ' ';
	size_t pl = strnlen(key->provider, sizeof(key->provider) - 1);
	memcpy(line + n, key->provider, pl);
	n += pl;
	line[n++] = '\n';
	buf_append(&p->keys, line, n);
}

int pb_keys_write(const struct pb_state *st, struct pb_part *p)
{
	if (!p->keys.len)
		return 0;
	char *path = pb_part_path(st, p, "keys"); /* owner: here */
	int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
	int rc = fd < 0 ? -1 : write_all(fd, p->keys.data, p->keys.len);
	if (!rc && fsync(fd) != 0)
		rc = -1;
	if (fd >= 0)
		close(fd);
	if (rc)
		fprintf(stderr, "llmring batch: cannot write %s: %s\n", path ? path : st->dir,
		        strerror(errno));
	free(path);
	buf_free(&p->keys);
	return rc ? -1 : 0;
}

static int unhex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* One line of a keys file into *k; false when it is not one ("-" is one,
 * with no provider: not stored). */
static bool parse_key(const char *s, size_t len, enum lr_endpoint ep, lr_cache_key *k)
{
	memset(k, 0, sizeof(*k));
	if (len == 1 && s[0] == '-')
		return true;
	if (len < 66 || len > 65 + sizeof(k->provider) - 1 || s[64] != ' ')
		return false;
	for (int i = 0; i < 32; i++) {
		int hi = unhex(s[2 * i]), lo = unhex(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		k->sha256[i] = (unsigned char)(hi << 4 | lo);
	}
	memcpy(k->provider, s + 65, len - 65);
	k->endpoint = (int)ep;
	return true;
}

void pb_keys_free(struct pbatch *pb)
{
	free(pb->keys);
	pb->keys = NULL;
	pb->nkeys = 0;
}

int pb_keys_load(struct pbatch *pb, const struct pb_part *p)
{
	pb_keys_free(pb);
	if (!pb->cache_writes)
		return 0;
	char *path = pb_part_path(&pb->st, p, "keys"); /* owner: here */
	if (!path)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0 || sb.st_size <= 0 ||
	    (uint64_t)sb.st_size > p->lines * (uint64_t)(66 + sizeof(pb->keys->provider))) {
		if (fd >= 0)
			close(fd);
		return 0; /* planned without --cache (or not ours): nothing to store */
	}
	char *text = malloc((size_t)sb.st_size);                   /* owner: here */
	pb->keys = calloc(p->lines ? p->lines : 1, sizeof(*pb->keys)); /* owner: the run */
	bool ok = text && pb->keys && pread(fd, text, (size_t)sb.st_size, 0) == sb.st_size;
	close(fd);
	if (!text || !pb->keys) {
		free(text);
		pb_keys_free(pb);
		return -1;
	}
	size_t n = 0;
	for (const char *s = text, *end = text + sb.st_size; ok && s < end; n++) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		ok = nl && n < p->lines && parse_key(s, (size_t)(nl - s), p->ep, &pb->keys[n]);
		s = nl ? nl + 1 : end;
	}
	free(text);
	if (!ok || n != p->lines) {
		if (!pb->b->opt.quiet)
			fprintf(stderr, "llmring batch: part %u's keys file does not match the part; its "
			        "results are not stored in the cache\n", p->n);
		pb_keys_free(pb);
		return 0;
	}
	pb->nkeys = n;
	return 0;
}

void pb_store(struct pbatch *pb, long no, const char *body, size_t len, const char *request_id)
{
	if (no < 0 || (size_t)no >= pb->nkeys || !pb->keys[no].provider[0])
		return;
	/* A body the cache could not read back is refused there (LR_EINVAL):
	 * its line is written all the same, it only goes unstored. */
	if (lr_engine_cache_store(pb->b->eng, &pb->keys[no], request_id, body, len) != 1)
		return;
	pb->cache_stored++;
	/* A merge reads results faster than SQLite stores them: without a
	 * wait the queue would hold a whole part's bodies (50 MB for 100,000
	 * lines). Waiting for the writer every PB_CACHE_QUEUE_MAX bytes keeps
	 * the memory flat at any part size; the merge's end flushes the rest. */
	pb->cache_queued_bytes += len;
	if (pb->cache_queued_bytes >= PB_CACHE_QUEUE_MAX) {
		pb->cache_queued_bytes = 0;
		(void)lr_engine_cache_flush(pb->b->eng, 60000); /* late: merge()'s flush says so */
	}
}

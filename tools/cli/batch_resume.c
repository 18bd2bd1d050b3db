/*
 * Resume: an existing output file is read first. Lines carrying
 * "input_line" (unusable input lines) are matched by line number and the
 * hash of the line's bytes ("input_hash"; a line edited or moved since
 * runs again), all others by custom_id; either way the input line is
 * skipped. A trailing line without its newline (a crash mid-write) is cut
 * off first. With --retry-errors the error lines are not remembered but
 * removed: the file is rewritten without them beside itself and renamed
 * over the original, so those lines run again.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"

static int cmp_done_line(const void *a, const void *b)
{
	uint64_t x = ((const struct done_line *)a)->line & ~DONE_LINE_HASHED;
	uint64_t y = ((const struct done_line *)b)->line & ~DONE_LINE_HASHED;
	return x < y ? -1 : x > y;
}

/* Whether an unusable line was done at this number: with the same bytes
 * (an outcome line without input_hash, from before it existed, matches
 * by number alone). */
bool line_done(const struct batch *b, uint64_t line_no, const char *line, size_t len)
{
	size_t lo = 0, hi = b->done_lines_count;
	while (lo < hi) { /* the first entry >= line_no */
		size_t mid = lo + (hi - lo) / 2;
		if ((b->done_lines[mid].line & ~DONE_LINE_HASHED) < line_no)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == b->done_lines_count || (b->done_lines[lo].line & ~DONE_LINE_HASHED) != line_no)
		return false; /* the common case: no hash of the line needed */
	uint64_t h = hash_bytes(line, len);
	for (size_t k = lo; k < b->done_lines_count; k++) {
		const struct done_line *d = &b->done_lines[k];
		if ((d->line & ~DONE_LINE_HASHED) != line_no)
			break;
		if (!(d->line & DONE_LINE_HASHED) || d->hash == h)
			return true;
	}
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
		if ((uint64_t)n >= DONE_LINE_HASHED)
			return OUTCOME_UNREADABLE;
		done->line = (uint64_t)n;
		int h = json_object_get(&b->doc, 0, "input_hash");
		if (h >= 0) {
			const char *text;
			size_t text_len;
			json_span(&b->doc, h, &text, &text_len);
			/* A hash that cannot be read matches no line: run it
			 * again. The span includes the string's quotes. */
			if (b->doc.tok[h].type != JSON_STRING || text_len < 2 ||
			    !parse_hash(text + 1, text_len - 2, &done->hash))
				return OUTCOME_UNREADABLE;
			done->line |= DONE_LINE_HASHED;
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
 * its input line is skipped this run. 0, or -1 when out of memory (or
 * the id set's spool failed: b->ids.err). */
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
	long no = id_set_find(&b->ids, b->scratch, (size_t)id_len);
	if (no == ID_FAILED)
		return -1;
	if (no >= 0) {
		if (!ok) /* an error outcome anywhere makes the exit status 1 */
			id_set_set_state(&b->ids, no, ID_DONE_ERR);
		return 0;
	}
	return id_set_add(&b->ids, b->scratch, (size_t)id_len, ok ? ID_DONE_OK : ID_DONE_ERR);
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

/* The output, read from its start through a descriptor of its own (owner:
 * the caller), or NULL after printing why not. */
static FILE *open_output_for_reading(const struct batch *b)
{
	int fd = dup(b->out_fd);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b->opt.output_path,
		        strerror(errno));
		return NULL;
	}
	/* The dup shares the O_APPEND file offset: start from the top. */
	if (fseeko(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "llmring batch: cannot read %s: %s\n", b->opt.output_path,
		        strerror(errno));
		fclose(f);
		return NULL;
	}
	return f;
}

/* After a successful read: reports what was removed, cuts off a partial
 * last line (complete_end < the file's size) and sorts the done lines. 0,
 * or -1 after printing why the cut failed. */
static int finish_previous_output(struct batch *b, const struct stat *st, off_t complete_end,
                                  uint64_t dropped, uint64_t unreadable)
{
	if (dropped && !b->opt.quiet)
		fprintf(stderr, "llmring batch: removed %" PRIu64 " error line%s from %s to try again\n",
		        dropped, dropped == 1 ? "" : "s", b->opt.output_path);
	if (complete_end < st->st_size) {
		/* After a rewrite the partial line was simply not copied. */
		if (!dropped && ftruncate(b->out_fd, complete_end) != 0) {
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

/* Cuts off a trailing partial line; with --retry-errors removes the error
 * lines (and unusable-input lines) instead of remembering them. */
int load_previous_output(struct batch *b)
{
	struct stat st;
	if (fstat(b->out_fd, &st) != 0 || st.st_size == 0)
		return 0;
	FILE *f = open_output_for_reading(b); /* owner: this function */
	if (!f)
		return -1;
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
			fprintf(stderr, "llmring batch: cannot keep the custom_ids of %s: %s\n",
			        b->opt.output_path, strerror(b->ids.err ? b->ids.err : ENOMEM));
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
	return finish_previous_output(b, &st, complete_end, rw.dropped, unreadable);
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
void remove_stale_rewrites(const struct batch *b)
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

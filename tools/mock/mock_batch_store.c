/*
 * The batch APIs' store (mock_batches.h): files, batches and the submit
 * counter, in memory, and with a state dir (`llmring mock --state-dir`) on
 * disk so a restarted mock still knows them:
 *   DIR/files/ID.data     a file's bytes (mmapped when served)
 *   DIR/files/ID.meta     its fields, "key value" lines
 *   DIR/batches/ID.meta   a batch's fields, the same way
 *   DIR/submits.log       every custom_id submitted in a batch, one a line
 * Each .data and .meta file is written to a temporary name and renamed, so
 * a kill at any moment leaves the old or the new version (no fsync: the
 * mock survives a crashed process, not a crashed machine). The log is
 * appended with one write per batch; a torn last line is ignored at load.
 * A batch's work (its answers so far) is not stored: a batch that was still
 * running starts its current phase's work again after a restart.
 */
#include "mock_batches.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t mock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- files on disk ---- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* DIR/sub/name, written whole under a temporary name, then renamed. */
static void write_atomic(const struct mock_bstore *st, const char *sub, const char *name,
			 const char *data, size_t len)
{
	char path[4096], tmp[4200];
	snprintf(path, sizeof(path), "%s/%s/%s", st->dir, sub, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, data, len) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		fprintf(stderr, "llmring mock: cannot write %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			unlink(tmp);
	}
}

static void remove_state(const struct mock_bstore *st, const char *sub, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s/%s", st->dir, sub, name);
	unlink(path);
}

/* ---- files ---- */

void mock_bfile_ref(struct mock_bfile *f)
{
	f->refs++;
}

static void bfile_free(struct mock_bfile *f)
{
	if (f->mapped)
		munmap(f->data, f->len);
	else
		free(f->data);
	free(f);
}

void mock_bfile_unref(struct mock_bfile *f)
{
	if (f && --f->refs == 0)
		bfile_free(f);
}

struct mock_bfile *mock_bfile_find(struct mock_bstore *st, const char *id, size_t n)
{
	for (size_t i = 0; i < st->nfiles; i++)
		if (strlen(st->files[i]->id) == n && memcmp(st->files[i]->id, id, n) == 0)
			return st->files[i];
	return NULL;
}

static void files_push(struct mock_bstore *st, struct mock_bfile *f)
{
	if (st->nfiles == st->files_cap) {
		st->files_cap = st->files_cap ? st->files_cap * 2 : 16;
		st->files = realloc(st->files, st->files_cap * sizeof(*st->files));
		if (!st->files)
			abort();
	}
	st->files[st->nfiles++] = f;
}

static void file_meta(const struct mock_bfile *f, struct mock_buf *m)
{
	PUTL(m, "id ");
	put(m, f->id, strlen(f->id));
	PUTL(m, "\npurpose ");
	put_u64(m, f->purpose);
	PUTL(m, "\ncreated ");
	put_u64(m, f->created);
	PUTL(m, "\nseq ");
	put_u64(m, f->seq);
	PUTL(m, "\nlen ");
	put_u64(m, f->len);
	PUTL(m, "\nfilename ");
	put(m, f->filename, strlen(f->filename));
	PUTL(m, "\n");
}

/* Maps DIR/files/ID.data in place of the heap copy (which is freed). */
static void map_data(const struct mock_bstore *st, struct mock_bfile *f)
{
	if (!f->len)
		return;
	char path[4096];
	snprintf(path, sizeof(path), "%s/files/%s.data", st->dir, f->id);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat sb;
	void *p = fstat(fd, &sb) == 0 && (size_t)sb.st_size == f->len
			  ? mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0)
			  : MAP_FAILED;
	close(fd);
	if (p == MAP_FAILED)
		return;
	free(f->data);
	f->data = p;
	f->mapped = true;
}

struct mock_bfile *mock_bfile_add(struct mock_bstore *st, uint8_t purpose, const char *name,
				  size_t nlen, const char *data, size_t len, char **heap)
{
	struct mock_bfile *f = calloc(1, sizeof(*f)); /* owner: the store */
	if (!f)
		abort();
	f->seq = ++st->seq;
	snprintf(f->id, sizeof(f->id), "file-mock%llu", (unsigned long long)f->seq);
	f->purpose = purpose;
	f->created = mock_now_ms() / 1000;
	f->refs = 1;
	struct mock_buf fn = {0}; /* owner: here */
	mock_put_json_escaped(&fn, name, nlen);
	size_t fl = fn.len < sizeof(f->filename) - 1 ? fn.len : sizeof(f->filename) - 1;
	while (fl && fl < fn.len && (fn.p[fl] & 0xc0) == 0x80)
		fl--; /* never half a UTF-8 sequence */
	while (fl && fn.p[fl - 1] == '\\')
		fl--; /* never half an escape */
	if (fl)
		memcpy(f->filename, fn.p, fl);
	mock_buf_free(&fn);
	if (heap) {
		f->data = *heap;
		*heap = NULL;
	} else {
		f->data = malloc(len ? len : 1);
		if (!f->data)
			abort();
		memcpy(f->data, data, len);
	}
	f->len = len;
	if (st->dir) {
		char nm[64];
		snprintf(nm, sizeof(nm), "%s.data", f->id);
		write_atomic(st, "files", nm, f->data, len);
		struct mock_buf m = {0}; /* owner: here */
		file_meta(f, &m);
		snprintf(nm, sizeof(nm), "%s.meta", f->id);
		write_atomic(st, "files", nm, m.p, m.len);
		mock_buf_free(&m);
		map_data(st, f); /* no heap copy kept */
	}
	files_push(st, f);
	return f;
}

void mock_bfile_delete(struct mock_bstore *st, struct mock_bfile *f)
{
	for (size_t i = 0; i < st->nfiles; i++)
		if (st->files[i] == f) {
			memmove(st->files + i, st->files + i + 1, (st->nfiles - i - 1) * sizeof(f));
			st->nfiles--;
			break;
		}
	if (st->dir) {
		char nm[64];
		snprintf(nm, sizeof(nm), "%s.meta", f->id);
		remove_state(st, "files", nm);
		snprintf(nm, sizeof(nm), "%s.data", f->id);
		remove_state(st, "files", nm); /* a mapping stays valid */
	}
	f->deleted = true;
	mock_bfile_unref(f);
}

/* ---- batches ---- */

struct mock_batch *mock_batch_find(struct mock_bstore *st, uint8_t api, const char *id,
				   size_t n)
{
	for (size_t i = 0; i < st->nbatches; i++) {
		struct mock_batch *b = st->batches[i];
		if (b->api == api && strlen(b->id) == n && memcmp(b->id, id, n) == 0)
			return b;
	}
	return NULL;
}

static void batches_push(struct mock_bstore *st, struct mock_batch *b)
{
	if (st->nbatches == st->batches_cap) {
		st->batches_cap = st->batches_cap ? st->batches_cap * 2 : 16;
		st->batches = realloc(st->batches, st->batches_cap * sizeof(*st->batches));
		if (!st->batches)
			abort();
	}
	st->batches[st->nbatches++] = b;
}

struct mock_batch *mock_batch_add(struct mock_bstore *st, uint8_t api)
{
	struct mock_batch *b = calloc(1, sizeof(*b)); /* owner: the store */
	if (!b)
		abort();
	b->seq = ++st->seq;
	b->api = api;
	snprintf(b->id, sizeof(b->id), api == API_OPENAI ? "batch_mock%llu" : "msgbatch_mock%llu",
		 (unsigned long long)b->seq);
	b->created_ms = mock_now_ms();
	snprintf(b->completion_window, sizeof(b->completion_window), "24h");
	batches_push(st, b);
	return b;
}

void mock_batch_free_work(struct mock_batch *b)
{
	free(b->items);
	free(b->order);
	b->items = NULL;
	b->order = NULL;
	b->nitems = b->items_cap = 0;
	mock_idmap_free(&b->seen);
	mock_buf_free(&b->out);
	mock_buf_free(&b->err);
	mock_bfile_unref(b->input);
	b->input = NULL;
	b->prepared = false;
	b->next = b->scan = 0;
}

static void batch_free(struct mock_batch *b)
{
	mock_batch_free_work(b);
	free(b->metadata);
	free(b->errors);
	free(b);
}

static void batch_free(struct mock_batch *b);

void mock_batch_delete(struct mock_bstore *st, struct mock_batch *b)
{
	for (size_t i = 0; i < st->nbatches; i++)
		if (st->batches[i] == b) {
			memmove(st->batches + i, st->batches + i + 1,
				(st->nbatches - i - 1) * sizeof(b));
			st->nbatches--;
			break;
		}
	const char *fids[] = {b->input_file_id, b->output_file_id};
	for (int i = 0; i < 2; i++) {
		struct mock_bfile *f = mock_bfile_find(st, fids[i], strlen(fids[i]));
		if (f && f->purpose > BP_BATCH_OUTPUT)
			mock_bfile_delete(st, f);
	}
	if (st->dir) {
		char nm[80];
		snprintf(nm, sizeof(nm), "%s.meta", b->id);
		remove_state(st, "batches", nm);
	}
	batch_free(b);
}

/* The batch's fields as "key value" lines, in the order load_batch reads. */
#define BATCH_U64_FIELDS(X)                                                              \
	X(seq) X(api) X(status) X(ep) X(fault_fail) X(fault_invalid) X(counted)        \
	X(created_ms)     \
	X(in_progress_ms) X(finalizing_ms) X(completed_ms) X(failed_ms) X(expired_ms)    \
	X(cancelling_ms) X(cancelled_ms) X(total) X(completed) X(failed) X(canceled)     \
	X(expired)
#define BATCH_STR_FIELDS(X) X(id) X(input_file_id) X(output_file_id) X(error_file_id) \
	X(completion_window)

void mock_batch_save(struct mock_bstore *st, struct mock_batch *b)
{
	if (!st->dir)
		return;
	struct mock_buf m = {0}; /* owner: here */
#define PUT_U(f) PUTL(&m, #f " "); put_u64(&m, (uint64_t)b->f); PUTL(&m, "\n");
#define PUT_S(f) PUTL(&m, #f " "); put(&m, b->f, strlen(b->f)); PUTL(&m, "\n");
	BATCH_U64_FIELDS(PUT_U)
	BATCH_STR_FIELDS(PUT_S)
#undef PUT_U
#undef PUT_S
	PUTL(&m, "expire_ppm ");
	put_u64(&m, (uint64_t)(b->expire_rate * 1e6 + 0.5));
	PUTL(&m, "\n");
	if (b->metadata) {
		PUTL(&m, "metadata ");
		put(&m, b->metadata, strlen(b->metadata));
		PUTL(&m, "\n");
	}
	if (b->errors) {
		PUTL(&m, "errors ");
		put(&m, b->errors, strlen(b->errors));
		PUTL(&m, "\n");
	}
	char nm[80];
	snprintf(nm, sizeof(nm), "%s.meta", b->id);
	write_atomic(st, "batches", nm, m.p, m.len);
	mock_buf_free(&m);
}

/* ---- the submit counter ---- */

void mock_bstore_count_submits(struct mock_bstore *st, const char *ids, size_t len)
{
	for (const char *p = ids, *e = ids + len; p < e;) {
		const char *nl = memchr(p, '\n', (size_t)(e - p));
		if (!nl)
			break;
		mock_idmap_add(&st->submits, p, (size_t)(nl - p), 1);
		st->submitted++;
		p = nl + 1;
	}
	if (!st->dir || !len)
		return;
	char path[4096];
	snprintf(path, sizeof(path), "%s/submits.log", st->dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0 || write_all(fd, ids, len) < 0)
		fprintf(stderr, "llmring mock: cannot append to %s: %s\n", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* ---- loading the state dir ---- */

/* The whole of path into a heap buffer (NUL-terminated); NULL on error. */
static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat sb;
	char *p = NULL; /* owner: the caller */
	if (fstat(fd, &sb) == 0 && (p = malloc((size_t)sb.st_size + 1))) {
		size_t got = 0;
		while (got < (size_t)sb.st_size) {
			ssize_t r = read(fd, p + got, (size_t)sb.st_size - got);
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		p[got] = '\0';
		*len = got;
	}
	close(fd);
	return p;
}

/* The value of "key " in meta text m, as a NUL-terminated copy in out. */
static bool meta_str(const char *m, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	for (const char *p = m; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, kl) != 0 || p[kl] != ' ')
			continue;
		const char *v = p + kl + 1, *ve = strchr(v, '\n');
		size_t n = ve ? (size_t)(ve - v) : strlen(v);
		if (n >= cap)
			return false;
		memcpy(out, v, n);
		out[n] = '\0';
		return true;
	}
	return false;
}

static uint64_t meta_u64(const char *m, const char *key)
{
	char v[32];
	return meta_str(m, key, v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
}

static char *meta_dup(const char *m, const char *key)
{
	char *v = malloc(1 << 20); /* owner: the caller (shrunk below) */
	if (!v)
		abort();
	if (!meta_str(m, key, v, 1 << 20)) {
		free(v);
		return NULL;
	}
	char *s = realloc(v, strlen(v) + 1);
	return s ? s : v;
}

static void load_file(struct mock_bstore *st, const char *m)
{
	struct mock_bfile *f = calloc(1, sizeof(*f)); /* owner: the store */
	if (!f)
		abort();
	if (!meta_str(m, "id", f->id, sizeof(f->id))) {
		free(f);
		return;
	}
	meta_str(m, "filename", f->filename, sizeof(f->filename));
	f->purpose = (uint8_t)meta_u64(m, "purpose");
	f->created = meta_u64(m, "created");
	f->seq = meta_u64(m, "seq");
	f->len = (size_t)meta_u64(m, "len");
	f->refs = 1;
	map_data(st, f);
	if (f->len && !f->mapped) {
		fprintf(stderr, "llmring mock: %s/files/%s.data is missing or cut: dropped\n",
			st->dir, f->id);
		free(f);
		return;
	}
	if (f->seq > st->seq)
		st->seq = f->seq;
	files_push(st, f);
}

static void load_batch(struct mock_bstore *st, const char *m)
{
	struct mock_batch *b = calloc(1, sizeof(*b)); /* owner: the store */
	if (!b)
		abort();
#define GET_U(f) b->f = (__typeof__(b->f))meta_u64(m, #f);
#define GET_S(f) meta_str(m, #f, b->f, sizeof(b->f));
	BATCH_U64_FIELDS(GET_U)
	BATCH_STR_FIELDS(GET_S)
#undef GET_U
#undef GET_S
	b->expire_rate = (double)meta_u64(m, "expire_ppm") / 1e6;
	b->metadata = meta_dup(m, "metadata");
	b->errors = meta_dup(m, "errors");
	if (!b->id[0] || b->status > BS_CANCELLED) {
		batch_free(b);
		return;
	}
	if (b->seq > st->seq)
		st->seq = b->seq;
	batches_push(st, b);
}

static int by_seq(const void *a, const void *b)
{
	const struct mock_batch *x = *(struct mock_batch *const *)a;
	const struct mock_batch *y = *(struct mock_batch *const *)b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void load_dir(struct mock_bstore *st, const char *sub, bool files)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", st->dir, sub);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 6 || strcmp(e->d_name + n - 5, ".meta") != 0)
			continue;
		char fp[4400];
		snprintf(fp, sizeof(fp), "%s/%s", path, e->d_name);
		size_t len;
		char *m = slurp(fp, &len); /* owner: here */
		if (!m)
			continue;
		if (files)
			load_file(st, m);
		else
			load_batch(st, m);
		free(m);
	}
	closedir(d);
}

static void load_submits(struct mock_bstore *st)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/submits.log", st->dir);
	size_t len = 0;
	char *p = slurp(path, &len); /* owner: here */
	if (!p)
		return;
	for (const char *s = p, *e = p + len; s < e;) {
		const char *nl = memchr(s, '\n', (size_t)(e - s));
		if (!nl)
			break; /* a torn last line */
		mock_idmap_add(&st->submits, s, (size_t)(nl - s), 1);
		st->submitted++;
		s = nl + 1;
	}
	free(p);
}

static int make_dir(const char *path, char *err, size_t errsz)
{
	if (mkdir(path, 0755) == 0 || errno == EEXIST) {
		struct stat sb;
		if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode) && access(path, W_OK) == 0)
			return 0;
		if (errno == EEXIST || errno == 0)
			errno = ENOTDIR;
	}
	int e = errno;
	if (err && errsz)
		snprintf(err, errsz, "cannot use --state-dir: %s: %s", path, strerror(e));
	return -e;
}

int mock_bstore_new(const struct mock_options *o, struct mock_bstore **out, char *err,
		    size_t errsz)
{
	*out = NULL;
	struct mock_bstore *st = calloc(1, sizeof(*st)); /* owner: the caller */
	if (!st)
		return -ENOMEM;
	st->phase_ms = o->batch_phase_ms ? o->batch_phase_ms : 1000;
	if (o->state_dir && *o->state_dir) {
		st->dir = strdup(o->state_dir);
		if (!st->dir)
			abort();
		char path[4096];
		int r = make_dir(st->dir, err, errsz);
		snprintf(path, sizeof(path), "%s/files", st->dir);
		if (!r)
			r = make_dir(path, err, errsz);
		snprintf(path, sizeof(path), "%s/batches", st->dir);
		if (!r)
			r = make_dir(path, err, errsz);
		if (r) {
			free(st->dir);
			free(st);
			return r;
		}
		load_dir(st, "files", true);
		load_dir(st, "batches", false);
		qsort(st->batches, st->nbatches, sizeof(*st->batches), by_seq);
		load_submits(st);
	}
	*out = st;
	return 0;
}

void mock_bstore_free(struct mock_bstore *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->nbatches; i++)
		batch_free(st->batches[i]);
	free(st->batches);
	for (size_t i = 0; i < st->nfiles; i++)
		bfile_free(st->files[i]); /* the server's thread is gone: no downloads */
	free(st->files);
	mock_idmap_free(&st->submits);
	free(st->dir);
	free(st);
}

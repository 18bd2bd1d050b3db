/*
 * OUTPUT.state.json: the run id, the input's fingerprint and every part
 * (its lines as ranges of input line numbers, its provider ids and
 * status). Saved whole and atomically after every change that matters (a
 * temp file beside it, fsync, rename, fsync of the directory), so a kill
 * at any moment leaves the old state or the new one, never a mix.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#include "pbatch.h"

static const char *const status_names[] = {"planned", "creating", "submitted", "ended", "merged"};

const char *pb_status_name(int status)
{
	return status >= 0 && status <= PS_MERGED ? status_names[status] : "?";
}

uint64_t pb_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int pb_fingerprint(int fd, uint64_t *size, char hex[65])
{
	off_t at = lseek(fd, 0, SEEK_CUR);
	mbedtls_sha256_context ctx; /* owner: this function */
	mbedtls_sha256_init(&ctx);
	mbedtls_sha256_starts_ret(&ctx, 0);
	char *chunk = malloc(1 << 20); /* owner: this function */
	int rc = chunk ? 0 : -ENOMEM;
	uint64_t total = 0;
	for (off_t off = 0; !rc;) {
		ssize_t n = pread(fd, chunk, 1 << 20, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		if (n <= 0)
			break;
		mbedtls_sha256_update_ret(&ctx, (const unsigned char *)chunk, (size_t)n);
		off += n;
		total += (uint64_t)n;
	}
	unsigned char sum[32];
	mbedtls_sha256_finish_ret(&ctx, sum);
	mbedtls_sha256_free(&ctx);
	free(chunk);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", sum[i]);
	*size = total;
	if (at >= 0)
		lseek(fd, at, SEEK_SET);
	return rc;
}

int pb_fsync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup("."); /* owner: here */
	if (!dir)
		return -1;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

struct pb_part *pb_part_add(struct pb_state *st)
{
	if (st->nparts == PB_MAX_PARTS)
		return NULL;
	if (st->nparts == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 8;
		struct pb_part *grown = realloc(st->parts, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		st->parts = grown;
		st->cap = cap;
	}
	struct pb_part *p = &st->parts[st->nparts];
	memset(p, 0, sizeof(*p));
	p->fd = -1;
	p->n = st->nparts ? st->parts[st->nparts - 1].n + 1 : 1;
	st->nparts++;
	return p;
}

int pb_part_add_line(struct pb_part *p, uint64_t line)
{
	if (p->nranges && p->ranges[p->nranges - 1].last + 1 == line) {
		p->ranges[p->nranges - 1].last = line;
		return 0;
	}
	if (p->nranges == p->ranges_cap) {
		size_t cap = p->ranges_cap ? p->ranges_cap * 2 : 4;
		struct pb_range *grown = realloc(p->ranges, cap * sizeof(*grown));
		if (!grown)
			return -1;
		p->ranges = grown;
		p->ranges_cap = cap;
	}
	p->ranges[p->nranges++] = (struct pb_range){line, line};
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct pb_range *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

int pb_pending_init(struct pbatch *pb)
{
	const struct pb_state *st = &pb->st;
	size_t n = 0;
	for (size_t i = 0; i < st->nparts; i++)
		if (st->parts[i].status != PS_MERGED)
			n += st->parts[i].nranges;
	free(pb->pending);
	pb->pending = n ? malloc(n * sizeof(*pb->pending)) : NULL;
	if (n && !pb->pending)
		return -1;
	pb->npending = pb->pending_at = 0;
	for (size_t i = 0; i < st->nparts; i++)
		if (st->parts[i].status != PS_MERGED)
			for (size_t k = 0; k < st->parts[i].nranges; k++)
				pb->pending[pb->npending++] = st->parts[i].ranges[k];
	if (pb->npending > 1) /* qsort's base may not be NULL, even for none */
		qsort(pb->pending, pb->npending, sizeof(*pb->pending), cmp_range);
	return 0;
}

bool pb_line_pending(struct pbatch *pb, uint64_t line)
{
	while (pb->pending_at < pb->npending && pb->pending[pb->pending_at].last < line)
		pb->pending_at++;
	return pb->pending_at < pb->npending && pb->pending[pb->pending_at].first <= line;
}

bool pb_state_running(const char *output_path)
{
	struct json_doc d = {0}; /* owner: here */
	size_t n = strlen(output_path) + 16;
	char *path = malloc(n);  /* owner: here */
	bool running = false;
	int fd = -1;
	if (path) {
		snprintf(path, n, "%s.state.json", output_path);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	struct stat sb;
	char *text = NULL; /* owner: here */
	if (fd >= 0 && fstat(fd, &sb) == 0 && sb.st_size > 0 && (uint64_t)sb.st_size <= PB_STATE_MAX &&
	    (text = malloc((size_t)sb.st_size)) && pread(fd, text, (size_t)sb.st_size, 0) == sb.st_size &&
	    json_parse(&d, text, (size_t)sb.st_size) == 0 && d.tok[0].type == JSON_OBJECT) {
		int parts = json_object_get(&d, 0, "parts");
		int t = parts >= 0 && d.tok[parts].type == JSON_ARRAY ? parts + 1 : -1;
		for (int i = 0; t >= 0 && i < d.tok[parts].size; i++, t = json_skip(&d, t)) {
			int s = json_object_get(&d, t, "status");
			if (s >= 0 && !json_string_eq(&d, s, "merged"))
				running = true;
		}
	}
	if (fd >= 0)
		close(fd);
	free(text);
	json_doc_free(&d);
	free(path);
	return running;
}

char *pb_part_path(const struct pb_state *st, const struct pb_part *p, const char *suffix)
{
	size_t n = strlen(st->dir) + strlen(suffix) + 32;
	char *s = malloc(n); /* owner: the caller */
	if (s)
		snprintf(s, n, "%s/part-%u.%s", st->dir, p->n, suffix);
	return s;
}

static void part_free(struct pb_part *p)
{
	free(p->ranges);
	free(p->results_url);
	free(p->fail_msg);
	buf_free(&p->wbuf);
	buf_free(&p->keys);
	if (p->fd >= 0)
		close(p->fd);
}

void pb_state_free(struct pb_state *st)
{
	for (size_t i = 0; i < st->nparts; i++)
		part_free(&st->parts[i]);
	free(st->parts);
	free(st->path);
	free(st->dir);
	memset(st, 0, sizeof(*st));
}

/* ---- saving ---- */

static void put_str(struct buf *b, const char *key, const char *v)
{
	buf_printf(b, ",\"%s\":", key);
	if (v)
		json_append_string(b, v, strlen(v));
	else
		buf_puts(b, "null");
}

static void put_part(struct buf *b, const struct pb_part *p)
{
	buf_printf(b, "{\"n\":%u,\"api\":\"%s\",\"endpoint\":\"%s\"", p->n,
	           p->api == PB_ANTHROPIC ? "anthropic" : "openai",
	           p->ep == LR_ENDPOINT_EMBEDDINGS ? "embeddings" : "chat");
	put_str(b, "model", p->model);
	buf_printf(b, ",\"status\":\"%s\",\"lines\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"ranges\":[",
	           pb_status_name(p->status), p->lines, p->bytes);
	for (size_t i = 0; i < p->nranges; i++)
		buf_printf(b, "%s[%" PRIu64 ",%" PRIu64 "]", i ? "," : "", p->ranges[i].first,
		           p->ranges[i].last);
	buf_puts(b, "]");
	put_str(b, "file_id", p->file_id);
	put_str(b, "batch_id", p->batch_id);
	buf_printf(b, ",\"creating_ms\":%" PRIu64, p->creating_ms);
	put_str(b, "remote", p->remote);
	buf_printf(b, ",\"total\":%" PRIu64 ",\"done\":%" PRIu64 ",\"failed\":%" PRIu64, p->total,
	           p->done, p->failed);
	put_str(b, "output_file_id", p->output_file_id);
	put_str(b, "error_file_id", p->error_file_id);
	put_str(b, "results_url", p->results_url);
	put_str(b, "fail_msg", p->fail_msg);
	buf_printf(b, ",\"out_done\":%s,\"err_done\":%s,\"cancel_sent\":%s}",
	           p->out_done ? "true" : "false", p->err_done ? "true" : "false",
	           p->cancel_sent ? "true" : "false");
}

int pb_state_save(const struct pb_state *st)
{
	struct buf b = {0}; /* owner: this function */
	buf_printf(&b, "{\"llmring_state\":1,\"run_id\":\"%s\",\"input_bytes\":%" PRIu64
	           ",\"input_sha256\":\"%s\",\"parts\":[", st->run_id, st->in_size, st->in_sha);
	for (size_t i = 0; i < st->nparts; i++) {
		buf_puts(&b, i ? ",\n" : "\n");
		put_part(&b, &st->parts[i]);
	}
	buf_puts(&b, "]}\n");
	size_t n = strlen(st->path) + 8;
	char *tmp = malloc(n); /* owner: this function */
	int rc = buf_error(&b) || !tmp ? -ENOMEM : 0;
	int fd = -1;
	if (!rc) {
		snprintf(tmp, n, "%s.tmp", st->path);
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		rc = fd < 0 ? -errno : write_all(fd, b.data, b.len);
	}
	if (!rc && fsync(fd) != 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	if (!rc && rename(tmp, st->path) != 0)
		rc = -errno;
	if (!rc)
		pb_fsync_dir(st->path);
	if (rc)
		fprintf(stderr, "llmring batch: cannot write the state file %s: %s\n", st->path,
		        strerror(-rc));
	free(tmp);
	buf_free(&b);
	return rc ? -1 : 0;
}

/* ---- loading ---- */

static bool get_str(const struct json_doc *d, int obj, const char *key, char *out, size_t cap)
{
	int t = json_object_get(d, obj, key);
	if (t < 0)
		return false;
	if (d->tok[t].type == JSON_PRIMITIVE && pb_json_lit(d, t, "null")) {
		out[0] = '\0';
		return true;
	}
	if (d->tok[t].type != JSON_STRING)
		return false;
	long n = json_get_string(d, t, out, cap);
	return n >= 0 && (size_t)n < cap;
}

static bool get_dup(const struct json_doc *d, int obj, const char *key, char **out)
{
	int t = json_object_get(d, obj, key);
	*out = NULL;
	if (t < 0 || d->tok[t].type == JSON_PRIMITIVE)
		return true; /* absent or null */
	if (d->tok[t].type != JSON_STRING)
		return false;
	*out = json_dup_string(d, t);
	return *out != NULL;
}

static bool get_u64(const struct json_doc *d, int obj, const char *key, uint64_t *out)
{
	int t = json_object_get(d, obj, key);
	int64_t v;
	if (t < 0 || !json_get_int(d, t, &v) || v < 0)
		return false;
	*out = (uint64_t)v;
	return true;
}

static bool get_bool(const struct json_doc *d, int obj, const char *key, bool *out)
{
	int t = json_object_get(d, obj, key);
	if (t < 0)
		return false;
	*out = pb_json_lit(d, t, "true");
	return *out || pb_json_lit(d, t, "false");
}

/* One part from object token o; false when anything is missing or odd. */
static bool load_part(struct pb_state *st, const struct json_doc *d, int o)
{
	struct pb_part *p = pb_part_add(st);
	if (!p || d->tok[o].type != JSON_OBJECT)
		return false;
	uint64_t n = 0;
	char word[32];
	if (!get_u64(d, o, "n", &n) || n == 0 || n > 1000000000u ||
	    (st->nparts > 1 && n <= st->parts[st->nparts - 2].n))
		return false;
	p->n = (unsigned)n;
	if (!get_str(d, o, "api", word, sizeof word))
		return false;
	if (strcmp(word, "openai") == 0)
		p->api = PB_OPENAI;
	else if (strcmp(word, "anthropic") == 0)
		p->api = PB_ANTHROPIC;
	else
		return false;
	if (!get_str(d, o, "endpoint", word, sizeof word))
		return false;
	p->ep = strcmp(word, "embeddings") == 0 ? LR_ENDPOINT_EMBEDDINGS : LR_ENDPOINT_CHAT;
	if (!get_str(d, o, "status", word, sizeof word))
		return false;
	int s = -1;
	for (int k = 0; k <= PS_MERGED; k++)
		if (strcmp(word, status_names[k]) == 0)
			s = k;
	if (s < 0)
		return false;
	p->status = (uint8_t)s;
	if (!get_str(d, o, "model", p->model, sizeof p->model) ||
	    !get_u64(d, o, "lines", &p->lines) || !get_u64(d, o, "bytes", &p->bytes) ||
	    !get_str(d, o, "file_id", p->file_id, sizeof p->file_id) ||
	    !get_str(d, o, "batch_id", p->batch_id, sizeof p->batch_id) ||
	    !get_u64(d, o, "creating_ms", &p->creating_ms) ||
	    !get_str(d, o, "remote", p->remote, sizeof p->remote) ||
	    !get_u64(d, o, "total", &p->total) || !get_u64(d, o, "done", &p->done) ||
	    !get_u64(d, o, "failed", &p->failed) ||
	    !get_str(d, o, "output_file_id", p->output_file_id, sizeof p->output_file_id) ||
	    !get_str(d, o, "error_file_id", p->error_file_id, sizeof p->error_file_id) ||
	    !get_dup(d, o, "results_url", &p->results_url) ||
	    !get_dup(d, o, "fail_msg", &p->fail_msg) || !get_bool(d, o, "out_done", &p->out_done) ||
	    !get_bool(d, o, "err_done", &p->err_done) ||
	    !get_bool(d, o, "cancel_sent", &p->cancel_sent))
		return false;
	int r = json_object_get(d, o, "ranges");
	if (r < 0 || d->tok[r].type != JSON_ARRAY)
		return false;
	uint64_t count = 0, prev = 0;
	int t = r + 1;
	for (int i = 0; i < d->tok[r].size; i++, t = json_skip(d, t)) {
		int64_t a, z;
		if (d->tok[t].type != JSON_ARRAY || d->tok[t].size != 2 ||
		    !json_get_int(d, t + 1, &a) || !json_get_int(d, t + 2, &z) || a < 1 || z < a ||
		    (uint64_t)a <= prev)
			return false;
		if (pb_part_add_line(p, (uint64_t)a))
			return false;
		p->ranges[p->nranges - 1].last = (uint64_t)z;
		count += (uint64_t)(z - a + 1);
		prev = (uint64_t)z;
	}
	return count == p->lines;
}

/* Reads and checks path; 0, or -1 after printing why. */
static int load_state(struct pb_state *st, int fd, const char *in_sha, uint64_t in_size,
                      struct json_doc *d)
{
	struct stat sb;
	const char *why = NULL;
	char *text = NULL; /* owner: this function */
	if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || (uint64_t)sb.st_size > PB_STATE_MAX) {
		why = "it is empty or too large";
	} else if (!(text = malloc((size_t)sb.st_size))) {
		why = "out of memory";
	} else if (pread(fd, text, (size_t)sb.st_size, 0) != sb.st_size) {
		why = "it could not be read";
	} else if (json_parse(d, text, (size_t)sb.st_size) != 0 || d->tok[0].type != JSON_OBJECT) {
		why = "it is not valid JSON (corrupt)";
	} else {
		uint64_t version = 0, size = 0;
		char sha[72];
		int parts = json_object_get(d, 0, "parts");
		if (!get_u64(d, 0, "llmring_state", &version) || version != 1 ||
		    !get_str(d, 0, "run_id", st->run_id, sizeof st->run_id) || !st->run_id[0] ||
		    !get_u64(d, 0, "input_bytes", &size) ||
		    !get_str(d, 0, "input_sha256", sha, sizeof sha) || parts < 0 ||
		    d->tok[parts].type != JSON_ARRAY) {
			why = "it is not an llmring state file, or it is corrupt";
		} else if (size != in_size || strcmp(sha, in_sha) != 0) {
			why = "it belongs to another input (its size and SHA-256 differ from this "
			      "input's); give another -o, or remove the state file and the output to "
			      "start over";
		} else {
			int t = parts + 1;
			for (int i = 0; i < d->tok[parts].size && !why; i++, t = json_skip(d, t))
				if (!load_part(st, d, t))
					why = "a part in it is corrupt";
		}
	}
	if (why)
		fprintf(stderr, "llmring batch: refusing the state file %s: %s\n", st->path, why);
	free(text);
	return why ? -1 : 0;
}

int pb_state_open(struct pb_state *st, const char *output_path, uint64_t in_size,
                  const char *in_sha, struct json_doc *doc)
{
	size_t n = strlen(output_path) + 16;
	st->path = malloc(n);
	st->dir = malloc(n);
	if (!st->path || !st->dir) {
		fprintf(stderr, "llmring batch: out of memory\n");
		return -1;
	}
	snprintf(st->path, n, "%s.state.json", output_path);
	snprintf(st->dir, n, "%s.state.d", output_path);
	st->in_size = in_size;
	snprintf(st->in_sha, sizeof st->in_sha, "%s", in_sha);
	int fd = open(st->path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		st->existed = true;
		int rc = load_state(st, fd, in_sha, in_size, doc);
		close(fd);
		if (rc)
			return -1;
	} else if (errno != ENOENT) {
		fprintf(stderr, "llmring batch: cannot read the state file %s: %s\n", st->path,
		        strerror(errno));
		return -1;
	} else {
		uint8_t r[16];
		if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
			uint64_t v = pb_now_ms() ^ ((uint64_t)getpid() << 40);
			memcpy(r, &v, 8);
			memcpy(r + 8, &v, 8);
		}
		for (int i = 0; i < 16; i++)
			snprintf(st->run_id + 2 * i, 3, "%02x", r[i]);
	}
	if (mkdir(st->dir, 0755) != 0 && errno != EEXIST) {
		fprintf(stderr, "llmring batch: cannot make %s: %s\n", st->dir, strerror(errno));
		return -1;
	}
	return 0;
}

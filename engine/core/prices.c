/*
 * prices.c: the price table, loaded from JSON (the compiled-in bytes of
 * engine/core/prices.json or a file named by LLMRING_PRICES) into one
 * allocation: a header, the entries sorted by name, then the names.
 * Lookups binary-search that array with the name cut down step by step
 * (prefixes, then dated and versioned suffixes), so they never allocate
 * and every candidate is a substring of the caller's name.
 */
#include "core/prices.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/json.h"
#include "llmring.h"

/* tools/gen-prices.py writes these from engine/core/prices.json. */
extern const char prices_builtin_json[];
extern const size_t prices_builtin_json_len;

#define PRICES_ENV "LLMRING_PRICES"
#define PRICES_MAX_FILE (16u << 20)
/* Longest model name quoted in an error message. */
#define WHY_NAME_MAX 80

struct price_entry {
	const char *name; /* into the table's name bytes, NUL-terminated */
	size_t len;
	struct price price;
	struct price batch; /* the batch APIs' rates, when has_batch */
	bool has_batch;
};

struct price_table {
	size_t count;
	struct price_entry entry[]; /* sorted by entry_cmp; the names follow */
};

__attribute__((format(printf, 3, 4)))
static int fail(struct error_info *why, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_vset(why, code, 0, fmt, ap);
	va_end(ap);
	return code;
}

/* Byte order, a prefix before its extensions. */
static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct price_entry *x = a, *y = b;
	return name_cmp(x->name, x->len, y->name, y->len);
}

/* ---- reading ----------------------------------------------------------- */

/* The whole file in malloc'd memory (owner: the caller). */
static int read_file(const char *path, char **text, size_t *len, struct error_info *why)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(why, LR_EIO, "prices file %s: cannot open: %s", path,
		            strerror(errno));
	struct stat st;
	size_t cap = 4096;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
	    (uint64_t)st.st_size < PRICES_MAX_FILE)
		cap = (size_t)st.st_size + 1;
	char *buf = malloc(cap);
	size_t n = 0;
	int rc = 0;
	if (!buf)
		rc = fail(why, LR_ENOMEM, "prices file %s: out of memory", path);
	while (rc == 0) {
		if (n == cap) {
			char *bigger = cap < PRICES_MAX_FILE ? realloc(buf, cap * 2) : NULL;
			if (!bigger) {
				rc = cap < PRICES_MAX_FILE
				     ? fail(why, LR_ENOMEM, "prices file %s: out of memory", path)
				     : fail(why, LR_EINVAL, "prices file %s: larger than %u MiB",
				            path, PRICES_MAX_FILE >> 20);
				break;
			}
			buf = bigger;
			cap *= 2;
		}
		ssize_t got = read(fd, buf + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			rc = fail(why, LR_EIO, "prices file %s: cannot read: %s", path,
			          strerror(errno));
		else if (got == 0)
			break;
		else
			n += (size_t)got;
	}
	close(fd);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*text = buf;
	*len = n;
	return 0;
}

/* ---- parsing ----------------------------------------------------------- */

struct loader {
	const struct json_doc *doc;
	const char *src; /* "prices file PATH" or "built-in prices" */
	locale_t c_locale;
	struct error_info *why; /* borrowed; may be NULL */
};

/*
 * The number at token i: 1 when set, 0 when the field is absent, <0 (with
 * why set) when it is present but not a non-negative finite number. JSON
 * numbers are read in the C locale whatever the host set.
 */
static int get_price(const struct loader *l, int obj, int key_tok, const char *field,
                     double *out)
{
	const struct json_doc *d = l->doc;
	int i = json_object_get(d, obj, field);
	if (i < 0)
		return 0;
	const struct json_token *t = &d->tok[i];
	const char *s = d->text + t->start;
	int klen = d->tok[key_tok].end - d->tok[key_tok].start;
	const char *kname = d->text + d->tok[key_tok].start;
	if (klen > WHY_NAME_MAX)
		klen = WHY_NAME_MAX;
	if (t->type != JSON_PRIMITIVE || !(*s == '-' || (*s >= '0' && *s <= '9')))
		return fail(l->why, LR_EINVAL, "%s: model \"%.*s\": \"%s\" is not a number",
		            l->src, klen, kname, field);
	/* A number inside an object is followed by at least the closing '}',
	 * so strtod stops inside the text; json_parse checked the syntax. */
	char *end;
	double v = strtod_l(s, &end, l->c_locale);
	if (end != d->text + t->end || !isfinite(v) || v < 0)
		return fail(l->why, LR_EINVAL,
		            "%s: model \"%.*s\": \"%s\" must be a non-negative finite number (got %.*s)",
		            l->src, klen, kname, field, t->end - t->start > 32 ? 32 : t->end - t->start, s);
	*out = v + 0.0; /* -0 becomes 0 */
	return 1;
}

/*
 * The optional batch rates: batch_input and batch_output together or not
 * at all (half a rate would price half the tokens at nothing), and
 * batch_cached_input (absent: batch_input) only beside them.
 */
static int load_batch(const struct loader *l, int key, int val, struct price_entry *e,
                      int shown, const char *kname)
{
	static const char *const fields[] = {"batch_input", "batch_output", "batch_cached_input"};
	double *dst[] = {&e->batch.input, &e->batch.output, &e->batch.cached_input};
	int got[3];
	e->has_batch = false;
	e->batch = (struct price){0};
	for (int k = 0; k < 3; k++) {
		got[k] = get_price(l, val, key, fields[k], dst[k]);
		if (got[k] < 0)
			return got[k];
	}
	if (!got[0] && !got[1] && !got[2])
		return 0;
	for (int k = 0; k < 2; k++) {
		if (!got[k])
			return fail(l->why, LR_EINVAL, "%s: model \"%.*s\": \"%s\" without \"%s\" "
			            "(batch rates need both)", l->src, shown, kname,
			            fields[got[1 - k] ? 1 - k : 2], fields[k]);
	}
	if (!got[2])
		e->batch.cached_input = e->batch.input;
	e->has_batch = true;
	return 0;
}

static int load_entry(const struct loader *l, int key, int val, struct price_entry *e,
                      char *names, size_t *used)
{
	const struct json_doc *d = l->doc;
	int klen = d->tok[key].end - d->tok[key].start;
	const char *kname = d->text + d->tok[key].start;
	int shown = klen > WHY_NAME_MAX ? WHY_NAME_MAX : klen;

	/* Unescaped names are never longer than their raw text. */
	long n = json_get_string(d, key, names + *used, (size_t)klen + 1);
	if (n < 0 || n > klen)
		return fail(l->why, LR_EINVAL, "%s: model name \"%.*s\" is not a valid string",
		            l->src, shown, kname);
	if (n == 0)
		return fail(l->why, LR_EINVAL, "%s: empty model name", l->src);
	if (d->tok[val].type != JSON_OBJECT)
		return fail(l->why, LR_EINVAL, "%s: model \"%.*s\": not an object", l->src,
		            shown, kname);
	e->name = names + *used;
	e->len = (size_t)n;
	*used += (size_t)n + 1;

	static const char *const required[] = {"input", "output"};
	double *dst[] = {&e->price.input, &e->price.output};
	for (int k = 0; k < 2; k++) {
		int rc = get_price(l, val, key, required[k], dst[k]);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return fail(l->why, LR_EINVAL, "%s: model \"%.*s\": missing \"%s\"",
			            l->src, shown, kname, required[k]);
	}
	int rc = get_price(l, val, key, "cached_input", &e->price.cached_input);
	if (rc < 0)
		return rc;
	if (rc == 0)
		e->price.cached_input = e->price.input;
	return load_batch(l, key, val, e, shown, kname);
}

static int load_doc(struct price_table **out, const struct json_doc *d, struct loader *l)
{
	if (d->tok[0].type != JSON_OBJECT)
		return fail(l->why, LR_EINVAL, "%s: not a JSON object", l->src);
	int v = json_object_get(d, 0, "version");
	int64_t version;
	if (v >= 0 && (!json_get_int(d, v, &version) || version != 1))
		return fail(l->why, LR_EINVAL, "%s: unsupported \"version\" (1 is known)",
		            l->src);
	int p = json_object_get(d, 0, "prices");
	if (p < 0)
		return fail(l->why, LR_EINVAL, "%s: no \"prices\" object", l->src);
	if (d->tok[p].type != JSON_OBJECT)
		return fail(l->why, LR_EINVAL, "%s: \"prices\" is not an object", l->src);

	size_t count = (size_t)d->tok[p].size;
	size_t name_bytes = 0;
	for (int i = p + 1, k = 0; k < d->tok[p].size; k++, i = json_skip(d, i + 1))
		name_bytes += (size_t)(d->tok[i].end - d->tok[i].start) + 1;

	struct price_table *t =
		malloc(sizeof *t + count * sizeof t->entry[0] + name_bytes);
	if (!t)
		return fail(l->why, LR_ENOMEM, "%s: out of memory", l->src);
	t->count = count;
	char *names = (char *)&t->entry[count];
	size_t used = 0;
	size_t k = 0;
	for (int i = p + 1; k < count; k++, i = json_skip(d, i + 1)) {
		int rc = load_entry(l, i, i + 1, &t->entry[k], names, &used);
		if (rc < 0) {
			free(t);
			return rc;
		}
	}
	qsort(t->entry, count, sizeof t->entry[0], entry_cmp);
	for (k = 1; k < count; k++) {
		if (entry_cmp(&t->entry[k - 1], &t->entry[k]) == 0) {
			int rc = fail(l->why, LR_EINVAL, "%s: model \"%.*s\" appears twice",
			              l->src, (int)(t->entry[k].len > WHY_NAME_MAX ? WHY_NAME_MAX
			                                                           : t->entry[k].len),
			              t->entry[k].name);
			free(t);
			return rc;
		}
	}
	*out = t;
	return 0;
}

static int load_text(struct price_table **out, const char *text, size_t len, const char *src,
                     struct error_info *why)
{
	struct loader l = {.src = src, .why = why};
	struct json_doc d = {0};
	int rc = json_parse(&d, text, len);
	if (rc < 0) {
		json_doc_free(&d);
		return rc == LR_ENOMEM ? fail(why, rc, "%s: out of memory", src)
		                       : fail(why, LR_EINVAL, "%s: not valid JSON", src);
	}
	l.doc = &d;
	l.c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
	if (l.c_locale == (locale_t)0)
		rc = fail(why, LR_ENOMEM, "%s: out of memory", src);
	else
		rc = load_doc(out, &d, &l);
	if (l.c_locale != (locale_t)0)
		freelocale(l.c_locale);
	json_doc_free(&d);
	return rc;
}

int price_table_load(struct price_table **out, const char *path, struct error_info *why)
{
	*out = NULL;
	if (why)
		error_clear(why);
	if (!path) {
		const char *env = getenv(PRICES_ENV);
		if (env && *env)
			path = env;
	}
	if (!path)
		return load_text(out, prices_builtin_json, prices_builtin_json_len, "built-in prices",
		                 why);

	char *text = NULL;
	size_t len = 0;
	int rc = read_file(path, &text, &len, why);
	if (rc < 0)
		return rc;
	size_t src_len = strlen(path) + sizeof "prices file ";
	char *src = malloc(src_len);
	if (!src)
		rc = fail(why, LR_ENOMEM, "prices file %s: out of memory", path);
	else {
		snprintf(src, src_len, "prices file %s", path);
		rc = load_text(out, text, len, src, why);
	}
	free(src);
	free(text);
	return rc;
}

void price_table_free(struct price_table *t)
{
	free(t);
}

size_t price_table_count(const struct price_table *t)
{
	return t ? t->count : 0;
}

/* ---- lookup ------------------------------------------------------------ */

static const struct price_entry *find(const struct price_table *t, const char *s, size_t len)
{
	size_t lo = 0, hi = t->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct price_entry *e = &t->entry[mid];
		int c = name_cmp(s, len, e->name, e->len);
		if (c == 0)
			return e;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static bool all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
	}
	return true;
}

/* Removes one leading "provider/" or "models/"; false when none is there. */
static bool strip_prefix(const char **s, size_t *len)
{
	static const struct {
		const char *text;
		size_t len;
	} prefixes[] = {
		{"openai/", 7}, {"anthropic/", 10}, {"gemini/", 7},
		{"ollama/", 7}, {"mock/", 5},       {"models/", 7},
	};
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
		if (*len >= prefixes[i].len && memcmp(*s, prefixes[i].text, prefixes[i].len) == 0) {
			*s += prefixes[i].len;
			*len -= prefixes[i].len;
			return true;
		}
	}
	return false;
}

/*
 * Removes one trailing "-latest", "-YYYY-MM-DD", "-YYYYMMDD" or "-NNN";
 * false when none is there (or nothing would be left).
 */
static bool strip_suffix(const char *s, size_t *len)
{
	size_t n = *len;
	if (n > 7 && memcmp(s + n - 7, "-latest", 7) == 0) {
		*len = n - 7;
		return true;
	}
	if (n > 11 && s[n - 11] == '-' && all_digits(s + n - 10, 4) && s[n - 6] == '-' &&
	    all_digits(s + n - 5, 2) && s[n - 3] == '-' && all_digits(s + n - 2, 2)) {
		*len = n - 11;
		return true;
	}
	if (n > 9 && s[n - 9] == '-' && all_digits(s + n - 8, 8)) {
		*len = n - 9;
		return true;
	}
	if (n > 4 && s[n - 4] == '-' && all_digits(s + n - 3, 3)) {
		*len = n - 4;
		return true;
	}
	return false;
}

static const struct price_entry *lookup(const struct price_table *t, const char *model,
                                        size_t len)
{
	if (!t || !model)
		return NULL;
	const struct price_entry *e = find(t, model, len);
	while (!e && strip_prefix(&model, &len))
		e = find(t, model, len);
	while (!e && strip_suffix(model, &len))
		e = find(t, model, len);
	return e;
}

bool price_lookup(const struct price_table *t, const char *model, size_t len,
                  struct price *out)
{
	const struct price_entry *e = lookup(t, model, len);
	if (!e)
		return false;
	*out = e->price;
	return true;
}

bool price_lookup_batch(const struct price_table *t, const char *model, size_t len,
                        struct price *out)
{
	const struct price_entry *e = lookup(t, model, len);
	if (!e || !e->has_batch)
		return false;
	*out = e->batch;
	return true;
}

double price_cost(const struct price *p, int64_t input_tokens, int64_t cached_input_tokens,
                  int64_t output_tokens)
{
	int64_t in = input_tokens > 0 ? input_tokens : 0;
	int64_t cached = cached_input_tokens > 0 ? cached_input_tokens : 0;
	int64_t outp = output_tokens > 0 ? output_tokens : 0;
	if (cached > in)
		cached = in;
	return ((double)(in - cached) * p->input + (double)cached * p->cached_input +
	        (double)outp * p->output) / 1e6;
}

/*
 * The custom_ids of a batch (batch_idset.h). Only this set grows with the
 * input: the duplicates and the lines done in an earlier run are found
 * through it, so it keeps no strings in memory. A slot holds 24 bits of
 * the id's hash and the id's number, which finds its bytes in the spool
 * file; a fingerprint match is confirmed by comparing those bytes, so two
 * different ids are never taken for one, whatever their hashes
 * (tests/test_batch_idset.c forces the collisions).
 *
 * Growing: mremap extends the mapping in place (no copy, no second
 * table), it is cleared and every id is put back reading the spool from
 * its start, in order, through the read window. A lookup reads the spool
 * through that window too: resumed ids are looked up in about the order
 * they were written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "batch.h"

/* A slot: fingerprint << 40 | (the key's number + 1); 0 is empty. */
#define SLOT_NO_BITS 40
#define SLOT_NO_MASK ((UINT64_C(1) << SLOT_NO_BITS) - 1)
#define SLOT_FP_MASK ((UINT64_C(1) << (64 - SLOT_NO_BITS)) - 1)
#define SET_MIN_CAP 4096 /* slots: 32 KiB */
#define ID_SPOOL_PAGE 4096 /* a read of the spool away from the window */

uint64_t hash_bytes(const char *s, size_t n)
{
	/* FNV-1a, then a final mix so that every bit (the slot, the
	 * fingerprint) spreads well. */
	uint64_t h = 0xcbf29ce484222325u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3u;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	return h ? h : 1;
}

uint64_t id_set_hash(const struct id_set *set, const char *s, size_t n)
{
	uint64_t h = hash_bytes(s, n);
	if (set->hash_bits == 0 || set->hash_bits >= 64)
		return h;
	/* Few values, each spread over all 64 bits again: ids with the same
	 * value collide in everything a slot holds. */
	uint64_t t = h & ((UINT64_C(1) << set->hash_bits) - 1);
	return hash_bytes((const char *)&t, sizeof t);
}

/* The home slot: the hash's high bits scaled to cap (no power of two
 * needed, so the table can grow by 1.5). */
static size_t home_of(uint64_t h, size_t cap)
{
#ifdef __SIZEOF_INT128__
	return (size_t)(((unsigned __int128)h * cap) >> 64);
#else
	return (size_t)(h % cap);
#endif
}

static uint64_t fp_of(uint64_t h)
{
	return h & SLOT_FP_MASK;
}

/* ---- the spool ----------------------------------------------------------- */

static int spool_open(struct id_spool *sp, const char *dir)
{
	const char *tmp = getenv("TMPDIR");
	const char *dirs[3] = {dir, tmp && *tmp ? tmp : NULL, "/tmp"};
	for (int k = 0; k < 3; k++) {
		if (!dirs[k])
			continue;
		sp->fd = open(dirs[k], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (sp->fd >= 0)
			break;
		/* A file system without O_TMPFILE: a named file, unlinked at once. */
		char path[4096];
		if (snprintf(path, sizeof path, "%s/.llmring-ids-XXXXXX", dirs[k]) >= (int)sizeof path)
			continue;
		sp->fd = mkostemp(path, O_CLOEXEC);
		if (sp->fd >= 0) {
			unlink(path);
			break;
		}
	}
	if (sp->fd < 0)
		return errno ? errno : EIO;
	sp->is_open = true;
	return 0;
}

static int spool_flush(struct id_spool *sp, const char *dir)
{
	if (!sp->wlen)
		return 0;
	if (!sp->is_open) {
		int err = spool_open(sp, dir);
		if (err)
			return err;
	}
	int rc = write_all(sp->fd, sp->wbuf, sp->wlen);
	if (rc)
		return -rc;
	sp->flushed += sp->wlen;
	sp->wlen = 0;
	return 0;
}

/* Appends the record of key number set->count. 0, or an errno. */
static int spool_append(struct id_set *set, const char *key, size_t len)
{
	struct id_spool *sp = &set->spool;
	if (!sp->wbuf && !(sp->wbuf = malloc(ID_SPOOL_BUF)))
		return ENOMEM;
	size_t need = 4 + len;
	if (set->count % ID_INDEX_EVERY == 0) {
		size_t k = set->count / ID_INDEX_EVERY;
		if (k == sp->index_cap) {
			/* By 1.5, as the slots: never far above what is used. */
			size_t cap = sp->index_cap ? sp->index_cap + sp->index_cap / 2 : 64;
			uint64_t *grown = realloc(sp->index, cap * sizeof(*grown));
			if (!grown)
				return ENOMEM;
			sp->index = grown;
			sp->index_cap = cap;
		}
		sp->index[k] = sp->flushed + sp->wlen;
	}
	if (sp->wlen + need > ID_SPOOL_BUF) {
		int err = spool_flush(sp, set->spool_dir);
		if (err)
			return err;
	}
	uint32_t n32 = (uint32_t)len;
	if (need > ID_SPOOL_BUF) { /* a huge id goes straight to the file */
		memcpy(sp->wbuf, &n32, 4);
		sp->wlen = 4;
		int err = spool_flush(sp, set->spool_dir);
		if (!err && (err = -write_all(sp->fd, key, len)) == 0)
			sp->flushed += len;
		return err;
	}
	memcpy(sp->wbuf + sp->wlen, &n32, 4);
	memcpy(sp->wbuf + sp->wlen + 4, key, len);
	sp->wlen += need;
	return 0;
}

static int pread_full(int fd, char *p, size_t n, uint64_t off, size_t *got)
{
	*got = 0;
	while (*got < n) {
		ssize_t r = pread(fd, p + *got, n - *got, (off_t)(off + *got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return errno;
		if (r == 0)
			break;
		*got += (size_t)r;
	}
	return 0;
}

/* The bytes [off, off + n) of the spool, n <= ID_SPOOL_BUF: in the write
 * buffer, the read window, or read into the window; *avail (>= n) bytes
 * follow contiguously there. NULL on failure (*err). */
static const char *spool_span(struct id_spool *sp, uint64_t off, size_t n, size_t *avail,
                              int *err)
{
	if (off >= sp->flushed) {
		*avail = sp->wlen - (size_t)(off - sp->flushed);
		return sp->wbuf + (off - sp->flushed);
	}
	if (sp->rbuf && off >= sp->roff && off + n <= sp->roff + sp->rlen) {
		*avail = sp->rlen - (size_t)(off - sp->roff);
		return sp->rbuf + (off - sp->roff);
	}
	if (!sp->rbuf && !(sp->rbuf = malloc(ID_SPOOL_BUF))) {
		*err = ENOMEM;
		return NULL;
	}
	/* Reading on from the window (growing, a resume in about the order
	 * written) takes a whole window; a jump elsewhere (ids looked up in
	 * another order) a page, not 64 KiB a lookup. */
	bool onward = sp->rlen && off >= sp->roff && off - sp->roff <= sp->rlen + ID_SPOOL_BUF;
	size_t want = onward || n > ID_SPOOL_PAGE ? ID_SPOOL_BUF : ID_SPOOL_PAGE;
	*err = pread_full(sp->fd, sp->rbuf, want, off, &sp->rlen);
	sp->roff = off;
	if (!*err && sp->rlen < n)
		*err = EIO; /* the file is shorter than what was written */
	if (*err) {
		sp->rlen = 0;
		return NULL;
	}
	*avail = sp->rlen;
	return sp->rbuf;
}

static const char *spool_bytes(struct id_spool *sp, uint64_t off, size_t n, int *err)
{
	size_t avail;
	return spool_span(sp, off, n, &avail, err);
}

/* Records read one after another: where the next one starts, and the
 * bytes of the spool in memory from there. */
struct spool_cursor {
	uint64_t off;
	const char *p; /* borrowed: the spool's buffers; avail bytes */
	size_t avail;
};

/* The length of the record at the cursor, whose header is then at c->p
 * (NULL on failure: *err). */
static const char *cursor_record(struct id_spool *sp, struct spool_cursor *c, uint32_t *n32,
                                 int *err)
{
	if (c->avail < 4 && !(c->p = spool_span(sp, c->off, 4, &c->avail, err)))
		return NULL;
	memcpy(n32, c->p, 4);
	return c->p;
}

static void cursor_skip(struct spool_cursor *c, uint32_t n32)
{
	uint64_t step = 4 + (uint64_t)n32;
	c->off += step;
	if (step <= c->avail) {
		c->p += step;
		c->avail -= (size_t)step;
	} else {
		c->avail = 0;
	}
}

/* 1 when the record at off holds key, 0 when not, -errno. */
static int spool_equals(struct id_spool *sp, uint64_t off, const char *key, size_t len)
{
	int err = 0;
	const char *p = spool_bytes(sp, off, 4, &err);
	if (!p)
		return -err;
	uint32_t n32;
	memcpy(&n32, p, 4);
	if (n32 != len)
		return 0;
	off += 4;
	while (len) { /* a window at a time: a huge id is compared in pieces */
		size_t piece = len < ID_SPOOL_BUF ? len : ID_SPOOL_BUF;
		if (!(p = spool_bytes(sp, off, piece, &err)))
			return -err;
		if (memcmp(p, key, piece) != 0)
			return 0;
		key += piece;
		len -= piece;
		off += piece;
	}
	return 1;
}

static void spool_free(struct id_spool *sp)
{
	if (sp->is_open)
		close(sp->fd);
	free(sp->wbuf);
	free(sp->rbuf);
	free(sp->index);
	memset(sp, 0, sizeof(*sp));
}

/* Where the record of key number no starts: from the index, then the
 * records before it in its group skipped. UINT64_MAX on failure (*err). */
static uint64_t record_offset(struct id_spool *sp, uint64_t no, int *err)
{
	struct spool_cursor c = {.off = sp->index[no / ID_INDEX_EVERY]};
	for (uint64_t k = no % ID_INDEX_EVERY; k > 0; k--) {
		uint32_t n32;
		if (!cursor_record(sp, &c, &n32, err))
			return UINT64_MAX;
		cursor_skip(&c, n32);
	}
	return c.off;
}

/* ---- the slots ------------------------------------------------------------ */

static void place(struct id_set *set, uint64_t h, uint64_t no)
{
	size_t i = home_of(h, set->cap);
	while (set->slots[i])
		i = i + 1 == set->cap ? 0 : i + 1;
	set->slots[i] = fp_of(h) << SLOT_NO_BITS | (no + 1);
}

/* The hash of the record at the cursor, which then moves past it; *key
 * (owner: the caller, *cap bytes) holds an id too long for one window. 0,
 * or an errno. */
static int rehash_record(struct id_set *set, struct spool_cursor *c, char **key, size_t *cap,
                         uint64_t *h)
{
	struct id_spool *sp = &set->spool;
	int err = 0;
	uint32_t n32;
	const char *p = cursor_record(sp, c, &n32, &err);
	if (!p)
		return err;
	size_t need = 4 + (size_t)n32;
	if (need <= ID_SPOOL_BUF) {
		if (c->avail < need && !(c->p = p = spool_span(sp, c->off, need, &c->avail, &err)))
			return err;
		*h = id_set_hash(set, p + 4, n32);
		cursor_skip(c, n32);
		return 0;
	}
	if (n32 > *cap) {
		char *grown = realloc(*key, n32);
		if (!grown)
			return ENOMEM;
		*key = grown;
		*cap = n32;
	}
	for (size_t at = 0; at < n32;) {
		size_t piece = n32 - at < ID_SPOOL_BUF ? n32 - at : ID_SPOOL_BUF;
		if (!(p = spool_bytes(sp, c->off + 4 + at, piece, &err)))
			return err;
		memcpy(*key + at, p, piece);
		at += piece;
	}
	*h = id_set_hash(set, *key, n32);
	c->avail = 0; /* the window moved */
	cursor_skip(c, n32);
	return 0;
}

static int id_set_grow(struct id_set *set)
{
	size_t cap = set->cap ? set->cap + set->cap / 2 : SET_MIN_CAP;
	cap = (cap + 511) & ~(size_t)511; /* whole pages */
	uint64_t *slots;
	if (!set->slots)
		slots = mmap(NULL, cap * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	else /* the new pages of an anonymous mapping read as zero */
		slots = mremap(set->slots, set->cap * 8, cap * 8, MREMAP_MAYMOVE);
	if (slots == MAP_FAILED) {
		set->err = ENOMEM;
		return -1;
	}
	memset(slots, 0, set->cap * 8);
	set->slots = slots;
	set->cap = cap;
	char *key = NULL; /* owner: here; only for ids longer than a window */
	size_t key_cap = 0;
	struct spool_cursor c = {0};
	int err = 0;
	for (size_t no = 0; no < set->count && !err; no++) {
		uint64_t h = 0;
		if (!(err = rehash_record(set, &c, &key, &key_cap, &h)))
			place(set, h, no);
	}
	free(key);
	if (err) { /* the spool cannot be read back: the set is lost */
		set->err = err;
		set->count = 0;
		memset(slots, 0, cap * 8);
		return -1;
	}
	return 0;
}

long id_set_find(struct id_set *set, const char *key, size_t len)
{
	return id_set_find_hashed(set, key, len, id_set_hash(set, key, len));
}

long id_set_find_hashed(struct id_set *set, const char *key, size_t len, uint64_t h)
{
	if (!set->cap)
		return ID_ABSENT;
	uint64_t fp = fp_of(h);
	for (size_t i = home_of(h, set->cap);; i = i + 1 == set->cap ? 0 : i + 1) {
		uint64_t s = set->slots[i];
		if (!s)
			return ID_ABSENT;
		if (s >> SLOT_NO_BITS != fp)
			continue;
		set->rereads++;
		uint64_t no = (s & SLOT_NO_MASK) - 1;
		int err = 0;
		uint64_t off = record_offset(&set->spool, no, &err);
		int eq = off == UINT64_MAX ? -err : spool_equals(&set->spool, off, key, len);
		if (eq < 0) {
			set->err = -eq;
			return ID_FAILED;
		}
		if (eq)
			return (long)no;
	}
}

int id_set_add(struct id_set *set, const char *key, size_t len, enum id_state state)
{
	return id_set_add_hashed(set, key, len, id_set_hash(set, key, len), state);
}

int id_set_add_hashed(struct id_set *set, const char *key, size_t len, uint64_t h,
                      enum id_state state)
{
	if (len > UINT32_MAX || set->count >= SLOT_NO_MASK - 1) {
		set->err = EOVERFLOW;
		return -1;
	}
	if ((set->count + 1) * 20 > set->cap * 17 && id_set_grow(set))
		return -1;
	if (set->count / 4 >= set->states_cap) {
		size_t cap = set->states_cap ? set->states_cap + set->states_cap / 2 : 1024;
		uint8_t *grown = realloc(set->states, cap);
		if (!grown) {
			set->err = ENOMEM;
			return -1;
		}
		set->states = grown;
		set->states_cap = cap;
	}
	int err = spool_append(set, key, len);
	if (err) {
		set->err = err;
		return -1;
	}
	size_t no = set->count++;
	set->states[no / 4] &= (uint8_t)~(3u << (no % 4 * 2));
	id_set_set_state(set, (long)no, state);
	place(set, h, no);
	return 0;
}

enum id_state id_set_state(const struct id_set *set, long key_no)
{
	size_t no = (size_t)key_no;
	return (enum id_state)(set->states[no / 4] >> (no % 4 * 2) & 3u);
}

void id_set_set_state(struct id_set *set, long key_no, enum id_state state)
{
	size_t no = (size_t)key_no;
	uint8_t *b = &set->states[no / 4];
	*b = (uint8_t)((*b & ~(3u << (no % 4 * 2))) | ((unsigned)state << (no % 4 * 2)));
}

size_t id_set_memory(const struct id_set *set)
{
	const struct id_spool *sp = &set->spool;
	return set->cap * 8 + set->states_cap + sp->index_cap * sizeof(*sp->index) +
	       (sp->wbuf ? ID_SPOOL_BUF : 0) + (sp->rbuf ? ID_SPOOL_BUF : 0);
}

void id_set_free(struct id_set *set)
{
	if (set->slots)
		munmap(set->slots, set->cap * 8);
	set->slots = NULL;
	set->cap = set->count = 0;
	free(set->states);
	set->states = NULL;
	set->states_cap = 0;
	set->rereads = 0;
	set->err = 0;
	spool_free(&set->spool);
}

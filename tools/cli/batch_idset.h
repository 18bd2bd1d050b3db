/*
 * The set of custom_ids of a batch (batch_idset.c): 8 bytes a slot in
 * memory, the ids themselves in a spool file. Private to the CLI.
 */
#ifndef LR_CLI_BATCH_IDSET_H
#define LR_CLI_BATCH_IDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum id_state {
	ID_DONE_OK = 1,  /* has a success line in the output from an earlier run */
	ID_DONE_ERR = 2, /* has an error line in the output from an earlier run */
	ID_SEEN = 3,     /* met in the input during this run */
};

/* What id_set_find returns besides a key's number. */
#define ID_ABSENT (-1L)
#define ID_FAILED (-2L) /* the spool could not be read: set->err */

#define ID_SPOOL_BUF 65536
#define ID_INDEX_EVERY 32 /* records per entry of the spool's offset index */

/* The ids, appended as records (4-byte length, then the bytes) to an
 * unlinked temporary file; a fingerprint match reads one back, growing
 * reads them all in order. */
struct id_spool {
	int fd;             /* owner: the spool, when is_open */
	bool is_open;
	char *wbuf;         /* owner: the spool; records not yet written */
	size_t wlen;
	uint64_t flushed;   /* bytes in the file */
	char *rbuf;         /* owner: the spool; a window of the file, read back */
	uint64_t roff;
	size_t rlen;
	uint64_t *index;    /* owner: the spool; offset of record k * ID_INDEX_EVERY */
	size_t index_cap;
};

/*
 * Open addressing with linear probing over 64-bit slots, each 24 bits of
 * the id's hash and its number (the order it was added in, which finds
 * its record and its state). The slots are an anonymous mapping grown in
 * place by 1.5 when 85% full (mremap, then refilled from the spool, no
 * second table): 9.4 to 14.1 bytes a key, plus 2 bits of state and 1/8
 * byte of index.
 */
struct id_set {
	uint64_t *slots;        /* owner: the set (mmap); cap slots */
	size_t cap, count;
	uint8_t *states;        /* owner: the set; 2 bits a key, by number */
	size_t states_cap;      /* bytes */
	struct id_spool spool;  /* owner: the set */
	/* Configuration, kept by id_set_free: */
	const char *spool_dir;  /* borrowed; NULL: $TMPDIR, else /tmp (tried after it too) */
	unsigned hash_bits;     /* 0: all 64; 1..63, for tests: every hash one of 2^bits
	                         * values (equal in home and fingerprint), forcing collisions */
	/* What happened: */
	uint64_t rereads;       /* fingerprint matches checked against the spool */
	int err;                /* errno of the last failure */
};

/* Never 0. */
uint64_t hash_bytes(const char *s, size_t n);

/* The number of key (0 for the first added), ID_ABSENT, or ID_FAILED. An id is found only when
 * its bytes are equal: a hash collision is never taken for a match. */
long id_set_find(struct id_set *set, const char *key, size_t len);
/* Adds a key known to be absent. 0, or -1 (set->err: ENOMEM, or the
 * spool's errno). */
int id_set_add(struct id_set *set, const char *key, size_t len, enum id_state state);
/* The same in two steps for a find then an add of one key: the hash is
 * computed once (id_set_hash: what the set's slots are built from). */
uint64_t id_set_hash(const struct id_set *set, const char *key, size_t len);
long id_set_find_hashed(struct id_set *set, const char *key, size_t len, uint64_t hash);
int id_set_add_hashed(struct id_set *set, const char *key, size_t len, uint64_t hash,
                      enum id_state state);
enum id_state id_set_state(const struct id_set *set, long key_no);
void id_set_set_state(struct id_set *set, long key_no, enum id_state state);
/* Bytes the set holds in memory (slots, states, index, buffers). */
size_t id_set_memory(const struct id_set *set);
/* Frees the contents; the configuration stays for the next use. */
void id_set_free(struct id_set *set);

#endif

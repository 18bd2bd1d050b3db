/*
 * Token and cost accounting per model for one engine. The engine thread
 * is the only writer and never waits; readers on any thread get a
 * consistent snapshot through a sequence counter (they retry while a
 * write is in progress). Rows are never moved: a model's row, once
 * published, keeps its place.
 */
#ifndef LR_USAGE_H
#define LR_USAGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "llmring.h"
#include "core/prices.h"

#define USAGE_MAX_ROWS 256   /* distinct models; later ones share the last row */
#define USAGE_INDEX_SLOTS 512

struct usage_row {
	/* Written before the row is published, constant after. */
	char model[128];
	char provider[16];
	bool priced;
	struct price price;
	/* Updated under the sequence counter. */
	_Atomic uint64_t requests;
	_Atomic int64_t input, output, cached;
	_Atomic double cost;
};

struct usage_table {
	_Atomic uint32_t seq;          /* odd while the writer is updating */
	_Atomic int count;             /* published rows */
	_Atomic uint64_t requests, succeeded, failed, retries;
	_Atomic int64_t input, output, cached;
	_Atomic double cost;
	struct usage_row *rows;        /* owner: the table; USAGE_MAX_ROWS of them */
	short index[USAGE_INDEX_SLOTS]; /* writer only: model hash -> row + 1 */
	struct usage_row *last;        /* writer only: the row found last (a job has one model or few) */
	const struct price_table *prices; /* borrowed: the engine's */
};

int usage_init(struct usage_table *t, const struct price_table *prices);
void usage_free(struct usage_table *t);
/* One completed request. Returns its cost in USD, or -1 when the model
 * is unpriced. Engine thread only. */
double usage_record(struct usage_table *t, const char *model, const char *provider, const lr_usage *u,
                    bool succeeded, int retries);
/* A request answered from the response cache: counted as a success
 * without tokens or cost. Returns what u would have cost, or -1 when the
 * model is unpriced. Engine thread only. */
double usage_record_cached(struct usage_table *t, const char *model, const char *provider,
                           const lr_usage *u);
/* Any thread. Returns the number of rows. */
int usage_read(struct usage_table *t, lr_usage_report *total, lr_model_usage *models, int max_models);

#endif

#include "core/usage.h"

#include <stdlib.h>
#include <string.h>

int usage_init(struct usage_table *t, const struct price_table *prices)
{
	memset(t, 0, sizeof(*t));
	t->rows = calloc(USAGE_MAX_ROWS, sizeof(*t->rows));
	t->prices = prices;
	return t->rows ? 0 : LR_ENOMEM;
}

void usage_free(struct usage_table *t)
{
	free(t->rows);
	t->rows = NULL;
}

static uint32_t hash_name(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}

/* The row of model, created (and published) when new. Writer only. */
static struct usage_row *row_for(struct usage_table *t, const char *model, const char *provider);

/* row_for, asked first of the row it found last: most jobs have one
 * model, and the compare is cheaper than the hash. */
static struct usage_row *row_for_cached(struct usage_table *t, const char *model, const char *provider)
{
	struct usage_row *r = t->last;
	if (r && strncmp(r->model, model, sizeof(r->model) - 1) == 0)
		return r;
	/* The catch-all row of a full table is cached too: a hit is only
	 * ever its own name. */
	return t->last = row_for(t, model, provider);
}

static struct usage_row *row_for(struct usage_table *t, const char *model, const char *provider)
{
	uint32_t h = hash_name(model);
	int count = atomic_load_explicit(&t->count, memory_order_relaxed);
	for (uint32_t i = 0; i < USAGE_INDEX_SLOTS; i++) {
		short *slot = &t->index[(h + i) % USAGE_INDEX_SLOTS];
		if (*slot == 0) {
			if (count >= USAGE_MAX_ROWS)
				break;
			struct usage_row *r = &t->rows[count];
			size_t n = strlen(model);
			if (n >= sizeof(r->model))
				n = sizeof(r->model) - 1;
			memcpy(r->model, model, n);
			r->model[n] = '\0';
			strncpy(r->provider, provider ? provider : "", sizeof(r->provider) - 1);
			r->priced = t->prices && price_lookup(t->prices, model, strlen(model), &r->price);
			*slot = (short)(count + 1);
			/* Readers that see the new count see the row's constants. */
			atomic_store_explicit(&t->count, count + 1, memory_order_release);
			return r;
		}
		struct usage_row *r = &t->rows[*slot - 1];
		if (strncmp(r->model, model, sizeof(r->model) - 1) == 0)
			return r;
	}
	/* Full: the last row takes the rest (named so in reports). */
	struct usage_row *last = &t->rows[USAGE_MAX_ROWS - 1];
	return count >= USAGE_MAX_ROWS ? last : NULL;
}

static void add_u64(_Atomic uint64_t *a, uint64_t v)
{
	atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v, memory_order_relaxed);
}

static void add_i64(_Atomic int64_t *a, int64_t v)
{
	atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v, memory_order_relaxed);
}

static void add_f64(_Atomic double *a, double v)
{
	atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + v, memory_order_relaxed);
}

double usage_record(struct usage_table *t, const char *model, const char *provider, const lr_usage *u,
                    bool succeeded, int retries)
{
	struct usage_row *r = row_for_cached(t, model && model[0] ? model : "(unknown)", provider);
	double cost = -1;
	if (r && r->priced)
		cost = price_cost(&r->price, u->input_tokens, u->cached_input_tokens, u->output_tokens);
	/* Writer side of the sequence counter: odd while updating. */
	uint32_t seq = atomic_load_explicit(&t->seq, memory_order_relaxed);
	atomic_store_explicit(&t->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	add_u64(&t->requests, 1);
	add_u64(succeeded ? &t->succeeded : &t->failed, 1);
	add_u64(&t->retries, (uint64_t)(retries > 0 ? retries : 0));
	add_i64(&t->input, u->input_tokens);
	add_i64(&t->output, u->output_tokens);
	add_i64(&t->cached, u->cached_input_tokens);
	if (cost > 0)
		add_f64(&t->cost, cost);
	if (r) {
		add_u64(&r->requests, 1);
		add_i64(&r->input, u->input_tokens);
		add_i64(&r->output, u->output_tokens);
		add_i64(&r->cached, u->cached_input_tokens);
		if (cost > 0)
			add_f64(&r->cost, cost);
	}
	atomic_store_explicit(&t->seq, seq + 2, memory_order_release);
	return cost;
}

double usage_record_cached(struct usage_table *t, const char *model, const char *provider,
                           const lr_usage *u)
{
	struct usage_row *r = row_for_cached(t, model && model[0] ? model : "(unknown)", provider);
	double would = -1;
	if (r && r->priced)
		would = price_cost(&r->price, u->input_tokens, u->cached_input_tokens, u->output_tokens);
	lr_usage none = {0};
	usage_record(t, model, provider, &none, true, 0);
	return would;
}

int usage_read(struct usage_table *t, lr_usage_report *total, lr_model_usage *models, int max_models)
{
	lr_usage_report rep;
	int count;
	for (;;) {
		uint32_t s1 = atomic_load_explicit(&t->seq, memory_order_acquire);
		if (s1 & 1)
			continue; /* a write is in progress: it is a few stores long */
		count = atomic_load_explicit(&t->count, memory_order_acquire);
		memset(&rep, 0, sizeof(rep));
		rep.requests = atomic_load_explicit(&t->requests, memory_order_relaxed);
		rep.succeeded = atomic_load_explicit(&t->succeeded, memory_order_relaxed);
		rep.failed = atomic_load_explicit(&t->failed, memory_order_relaxed);
		rep.retries = atomic_load_explicit(&t->retries, memory_order_relaxed);
		rep.input_tokens = atomic_load_explicit(&t->input, memory_order_relaxed);
		rep.output_tokens = atomic_load_explicit(&t->output, memory_order_relaxed);
		rep.cached_input_tokens = atomic_load_explicit(&t->cached, memory_order_relaxed);
		rep.cost_usd = atomic_load_explicit(&t->cost, memory_order_relaxed);
		rep.models = count;
		for (int i = 0; i < count; i++) {
			const struct usage_row *r = &t->rows[i];
			if (!r->priced)
				rep.unpriced_models++;
			if (i >= max_models || !models)
				continue;
			lr_model_usage *m = &models[i];
			memcpy(m->model, r->model, sizeof(m->model));
			memcpy(m->provider, r->provider, sizeof(m->provider));
			if (count >= USAGE_MAX_ROWS && i == USAGE_MAX_ROWS - 1)
				strcpy(m->model, "(other models)");
			m->priced = r->priced;
			m->requests = atomic_load_explicit(&r->requests, memory_order_relaxed);
			m->input_tokens = atomic_load_explicit(&r->input, memory_order_relaxed);
			m->output_tokens = atomic_load_explicit(&r->output, memory_order_relaxed);
			m->cached_input_tokens = atomic_load_explicit(&r->cached, memory_order_relaxed);
			m->cost_usd = atomic_load_explicit(&r->cost, memory_order_relaxed);
		}
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&t->seq, memory_order_relaxed) == s1)
			break;
	}
	if (total)
		*total = rep;
	return count;
}

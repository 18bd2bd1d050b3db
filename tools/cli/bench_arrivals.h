/*
 * When `llmring bench` means to send each request (the open loop of
 * --rate and --burstiness), as offsets from the start of the run. Pure
 * computation: no clock, no allocation, our own seeded generator (libc's
 * rand is neither portable nor good), so one seed gives one schedule on
 * every machine.
 *
 * The gaps follow vLLM's get_request (vllm/benchmarks/serve.py at commit
 * 009e6d4a1cd6ba3fb2a9fc00f4ec06f5297232a1; older benchmark_serving.py
 * drew the same gamma gaps but did not rescale):
 *   rate = inf          every gap is 0 (all requests at once);
 *   burstiness = inf    every gap is 1 / rate;
 *   otherwise           gap ~ Gamma(shape = burstiness,
 *                                   scale = 1 / (rate * burstiness)),
 *                       mean 1 / rate whatever the shape; shape 1 is the
 *                       exponential gap of a Poisson process, below 1
 *                       burstier, above 1 more even.
 * Request i is sent at the sum of gaps 0..i (so the first waits one gap
 * too). With a known count (--requests), vLLM then rescales every time so
 * that the last one is exactly count / rate: arrival_schedule_fill does
 * the same. With --duration the count is open, and arrival_schedule_next
 * gives the unscaled times one by one.
 *
 * vLLM draws from numpy's global Mersenne Twister; we do not, so a seed
 * gives the same distribution as vLLM's, never the same gaps.
 */
#ifndef LR_CLI_BENCH_ARRIVALS_H
#define LR_CLI_BENCH_ARRIVALS_H

#include <stddef.h>
#include <stdint.h>

/* ---- the generator: xoshiro256** seeded through splitmix64 -------------- */

struct bench_rng {
	uint64_t state[4];
	double spare_normal; /* Box-Muller makes two normals; the second waits here */
	int has_spare_normal;
};

void bench_rng_seed(struct bench_rng *rng, uint64_t seed);
uint64_t bench_rng_next(struct bench_rng *rng);
/* Uniform in the open interval (0, 1): never 0, so log() is always finite. */
double bench_rng_uniform(struct bench_rng *rng);
/* Standard normal (mean 0, variance 1). */
double bench_rng_normal(struct bench_rng *rng);
/* Gamma(shape, scale) by Marsaglia and Tsang (2000), with the
 * U^(1/shape) boost for shape < 1; shape 1 draws an exponential directly.
 * shape and scale must be finite and > 0. */
double bench_rng_gamma(struct bench_rng *rng, double shape, double scale);

/* ---- the schedule ------------------------------------------------------- */

struct arrival_schedule {
	struct bench_rng rng;
	double rate;       /* requests per second, > 0; INFINITY: all at 0 */
	double burstiness; /* gamma shape, > 0; INFINITY: even gaps */
	double elapsed_s;  /* sum of the gaps drawn so far */
};

/* 0, or LR_EINVAL when rate or burstiness is not > 0 (or is NaN). */
int arrival_schedule_init(struct arrival_schedule *s, double rate, double burstiness, uint64_t seed);
/* The next request's intended send time, ns after the start of the run
 * (never decreasing). */
uint64_t arrival_schedule_next_ns(struct arrival_schedule *s);

/*
 * vLLM's whole schedule for `count` requests into offsets_ns[0..count):
 * the times of arrival_schedule_next_ns with the same seed, rescaled so
 * the last is count / rate seconds (unless every time is 0). 0, or
 * LR_EINVAL as arrival_schedule_init.
 */
int arrival_schedule_fill(uint64_t *offsets_ns, size_t count, double rate, double burstiness,
                          uint64_t seed);

#endif

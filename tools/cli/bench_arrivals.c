/*
 * The open-loop schedule of `llmring bench` (bench_arrivals.h): a small
 * seeded generator, the gamma sampler, and vLLM's gaps and rescaling.
 */
#include "bench_arrivals.h"

#include <math.h>

#include "llmring.h"

/* ---- xoshiro256** (Blackman and Vigna), seeded by splitmix64 ------------ */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void bench_rng_seed(struct bench_rng *rng, uint64_t seed)
{
	/* splitmix64 never yields four zero words, the one bad xoshiro state. */
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		rng->state[i] = splitmix64(&x);
	rng->spare_normal = 0;
	rng->has_spare_normal = 0;
}

uint64_t bench_rng_next(struct bench_rng *rng)
{
	uint64_t *s = rng->state;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

double bench_rng_uniform(struct bench_rng *rng)
{
	/* The top 53 bits, centred in their cell: (k + 0.5) / 2^53. */
	return ((double)(bench_rng_next(rng) >> 11) + 0.5) * 0x1.0p-53;
}

double bench_rng_normal(struct bench_rng *rng)
{
	if (rng->has_spare_normal) {
		rng->has_spare_normal = 0;
		return rng->spare_normal;
	}
	/* Box-Muller: two uniforms make two independent normals. */
	double radius = sqrt(-2.0 * log(bench_rng_uniform(rng)));
	double angle = 2.0 * M_PI * bench_rng_uniform(rng);
	rng->spare_normal = radius * sin(angle);
	rng->has_spare_normal = 1;
	return radius * cos(angle);
}

/* Marsaglia and Tsang, "A simple method for generating gamma variables"
 * (ACM TOMS 26(3), 2000), for shape >= 1, scale 1. */
static double gamma_shape_at_least_one(struct bench_rng *rng, double shape)
{
	double d = shape - 1.0 / 3.0;
	double c = 1.0 / sqrt(9.0 * d);
	for (;;) {
		double x, v;
		do {
			x = bench_rng_normal(rng);
			v = 1.0 + c * x;
		} while (v <= 0);
		v = v * v * v;
		double u = bench_rng_uniform(rng);
		double x2 = x * x;
		if (u < 1.0 - 0.0331 * x2 * x2)
			return d * v;
		if (log(u) < 0.5 * x2 + d * (1.0 - v + log(v)))
			return d * v;
	}
}

double bench_rng_gamma(struct bench_rng *rng, double shape, double scale)
{
	if (shape == 1.0)
		return -log(bench_rng_uniform(rng)) * scale;
	if (shape < 1.0) {
		/* If G ~ Gamma(shape + 1) and U ~ U(0,1), G * U^(1/shape) ~ Gamma(shape). */
		double g = gamma_shape_at_least_one(rng, shape + 1.0);
		return g * pow(bench_rng_uniform(rng), 1.0 / shape) * scale;
	}
	return gamma_shape_at_least_one(rng, shape) * scale;
}

/* ---- the schedule ------------------------------------------------------- */

int arrival_schedule_init(struct arrival_schedule *s, double rate, double burstiness, uint64_t seed)
{
	/* `!(x > 0)` also refuses NaN. */
	if (!(rate > 0) || !(burstiness > 0))
		return LR_EINVAL;
	bench_rng_seed(&s->rng, seed);
	s->rate = rate;
	s->burstiness = burstiness;
	s->elapsed_s = 0;
	return 0;
}

static double next_gap_s(struct arrival_schedule *s)
{
	if (isinf(s->rate))
		return 0;
	if (isinf(s->burstiness))
		return 1.0 / s->rate;
	return bench_rng_gamma(&s->rng, s->burstiness, 1.0 / (s->rate * s->burstiness));
}

static uint64_t seconds_to_ns(double seconds)
{
	double ns = seconds * 1e9;
	if (ns >= 0x1.0p64)
		return UINT64_MAX;
	return (uint64_t)llround(ns);
}

uint64_t arrival_schedule_next_ns(struct arrival_schedule *s)
{
	s->elapsed_s += next_gap_s(s);
	return seconds_to_ns(s->elapsed_s);
}

int arrival_schedule_fill(uint64_t *offsets_ns, size_t count, double rate, double burstiness,
                          uint64_t seed)
{
	struct arrival_schedule s;
	int err = arrival_schedule_init(&s, rate, burstiness, seed);
	if (err)
		return err;
	if (count == 0)
		return 0;
	/* Two passes draw the same gaps: the first finds the total, the
	 * second writes the rescaled times, so no buffer of doubles is
	 * needed. vLLM: normalize_factor = (count / rate) / delay_ts[-1]. */
	double total_s = 0;
	for (size_t i = 0; i < count; i++)
		total_s += next_gap_s(&s);
	double factor = total_s > 0 ? ((double)count / rate) / total_s : 1.0;
	arrival_schedule_init(&s, rate, burstiness, seed);
	for (size_t i = 0; i < count; i++) {
		s.elapsed_s += next_gap_s(&s);
		offsets_ns[i] = seconds_to_ns(s.elapsed_s * factor);
	}
	return 0;
}

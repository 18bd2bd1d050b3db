/*
 * The mock's latency draws: each delay (a request's TTFT, the gap before
 * one of its tokens) is log-normal with the asked-for mean and standard
 * deviation, or exactly the mean when the spread is 0.
 *
 * Why log-normal: it is never negative, it is right-skewed like the
 * latencies real inference servers show, and its mean and standard
 * deviation are exactly the ones asked for (a normal truncated at 0 would
 * move the mean up when the spread is large).
 *
 * Why counter-based: a draw is a pure function of (seed, request number,
 * draw index), hashed with splitmix64 (mix64) and turned into a normal
 * deviate by Box-Muller. So the delays are the same for the same seed and
 * request numbers whatever order the requests' timers fire in, nothing is
 * shared between threads (no state, no locks), and libc's rand is never
 * involved.
 */
#include "mock_internal.h"

#include <math.h>

#define DELAY_MAX_US (3600ull * 1000 * 1000) /* an hour: a bound for wild draws */

/* Domain separation: the two uniforms of one draw, apart from the text's
 * and the faults' hashes of the same seed. */
#define DRAW_U1 0x6c6174656e637931ull /* "latency1" */
#define DRAW_U2 0x6c6174656e637932ull /* "latency2" */

/* A uniform in (0, 1], never 0 (log(0) is -inf). */
static double draw_uniform(uint64_t seed, uint64_t domain, uint64_t request, uint64_t index)
{
	uint64_t x = mix64(seed ^ mix64(domain ^ mix64(request * 0x9e3779b97f4a7c15ull + index)));
	return (double)((x >> 11) + 1) * (1.0 / 9007199254740992.0);
}

uint64_t mock_draw_delay_us(uint64_t seed, unsigned mean_ms, unsigned spread_ms,
			    uint64_t request, uint64_t index)
{
	if (spread_ms == 0 || mean_ms == 0)
		return (uint64_t)mean_ms * 1000;
	double u1 = draw_uniform(seed, DRAW_U1, request, index);
	double u2 = draw_uniform(seed, DRAW_U2, request, index);
	double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
	/* Log-normal parameters for mean m and standard deviation s:
	 * sigma^2 = ln(1 + s^2/m^2), mu = ln(m) - sigma^2/2. */
	double m = (double)mean_ms * 1000.0, sd = (double)spread_ms * 1000.0;
	double sigma2 = log1p((sd / m) * (sd / m));
	double us = exp(log(m) - sigma2 / 2.0 + sqrt(sigma2) * z);
	if (!(us < (double)DELAY_MAX_US))
		return DELAY_MAX_US;
	return (uint64_t)llround(us);
}

uint64_t mock_ttft_us(const struct mock_server *s, uint64_t request)
{
	return mock_draw_delay_us(s->o.seed, s->o.ttft_ms, s->o.ttft_spread_ms, request, 0);
}

uint64_t mock_itl_us(const struct mock_server *s, uint64_t request, unsigned token)
{
	return mock_draw_delay_us(s->o.seed, s->o.itl_ms, s->o.itl_spread_ms, request, token);
}

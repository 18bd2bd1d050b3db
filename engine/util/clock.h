/* Monotonic time in nanoseconds; the loop caches one reading per turn. */
#ifndef LR_CLOCK_H
#define LR_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t clock_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Seconds (fractions allowed) to nanoseconds, saturating; <= 0 gives 0. */
uint64_t clock_seconds_to_ns(double s);

#endif

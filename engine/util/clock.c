#include "util/clock.h"

uint64_t clock_seconds_to_ns(double s)
{
	if (!(s > 0))
		return 0;
	if (s > 1e9) /* about 31 years: treat as "never" without overflowing */
		return UINT64_MAX / 2;
	return (uint64_t)(s * 1e9);
}

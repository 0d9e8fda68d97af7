"""The fixed latency histogram of the rollups, and percentiles estimated from it.

Bucket ``i`` holds the latencies in ``[BOUNDS[i], BOUNDS[i + 1])`` (the last one is open-ended
up to the integer column's maximum). Bounds are exact below 10 ms and then as wide as possible
while one integer inside each bucket lies within ``RELATIVE_ERROR`` of every latency in it: so a
percentile read from the histogram is within 10 % of the exact ``percentile_disc``. The counts
are exact, hence the bucket holding the exact percentile is known; only its position inside
the bucket is estimated. The rollup trigger's migration freezes the same bounds in SQL; a test
keeps the two equal.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate

from cim_monitoring.vocabulary import INT32_MAX

RELATIVE_ERROR = 0.1


def _error(low: int, high: int, estimate: int) -> float:
    """The worst relative error of ``estimate`` for any latency in ``[low, high]``."""
    if low == 0:
        return 0.0 if high == 0 else math.inf
    return max((estimate - low) / low, (high - estimate) / high)


# Asked for the same few bucket ends over and over: thousands of services, three percentiles.
@lru_cache(maxsize=4096)
def best_estimate(low: int, high: int) -> int:
    """The integer in ``[low, high]`` with the smallest worst-case relative error: the
    harmonic mean of the ends, rounded whichever way errs less."""
    if low == high:
        return low
    mean = 2 * low * high / (low + high)
    return min((math.floor(mean), math.ceil(mean)), key=lambda e: _error(low, high, e))


def _widest(low: int) -> int:
    """The largest ``high`` such that ``[low, high]`` keeps every latency within the bound."""
    good, bad = low, 2 * low + 2
    while bad - good > 1:
        middle = (good + bad) // 2
        if _error(low, middle, best_estimate(low, middle)) <= RELATIVE_ERROR:
            good = middle
        else:
            bad = middle
    return min(good, INT32_MAX)


def _bounds() -> tuple[int, ...]:
    bounds = [0]
    while (high := _widest(bounds[-1])) < INT32_MAX:
        bounds.append(high + 1)
    return tuple(bounds)


BOUNDS = _bounds()
# The largest latency of each bucket.
_LAST = (*(bound - 1 for bound in BOUNDS[1:]), INT32_MAX)


def percentiles(
    cells: Sequence[int], fractions: Sequence[float], *, minimum: int, maximum: int
) -> list[int | None]:
    """The nearest-rank percentile (as ``percentile_disc``) at each of ``fractions``,
    estimated from the counts of buckets 0, 1, ... (trailing empty ones optional).

    ``minimum`` and ``maximum`` are the exact extremes of the same latencies: they narrow the
    first and last buckets, and keep the estimate inside the observed range. A dashboard asks
    for three of each of thousands of services: a running sum searched by bisection does that
    at C speed."""
    running = list(accumulate(cells))
    total = running[-1] if running else 0
    if total == 0:
        return [None] * len(fractions)
    found: list[int | None] = []
    for fraction in fractions:
        # The rank is at least 1 (fraction 0 is the minimum).
        index = bisect_left(running, math.ceil(fraction * total) or 1)
        low, high = BOUNDS[index], _LAST[index]
        found.append(
            best_estimate(low if low > minimum else minimum, high if high < maximum else maximum)
        )
    return found

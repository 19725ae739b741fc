"""The one percentile every report here uses (the load tests and the benches): nearest rank.

The p-th percentile of n values is the smallest value with at least p·n of the values at or
below it: the ceil(p·n)-th smallest. So p99 of 100 values is the 99th smallest (not the
largest), p50 of 4 values the 2nd. With weights (a latency histogram, or runs pooled
together), "values" counts weight instead. `statistics.quantiles` interpolates between
values, so it is not this.
"""

from __future__ import annotations

from collections.abc import Sequence

# p·n in floating point can land a hair above a whole number (0.07 * 100 = 7.000000000000001),
# which would push the rank one too far: a relative slack far below one value's weight.
_SLACK = 1e-9


def percentile(
    values: Sequence[float], fraction: float, weights: Sequence[float] | None = None
) -> float:
    """Nearest-rank percentile of `values` (`fraction` in 0..1); 0.0 for no values."""
    if not values:
        return 0.0
    weights = weights if weights is not None else [1.0] * len(values)
    pairs = sorted(zip(values, weights, strict=True))
    total = sum(weight for _, weight in pairs)
    wanted = fraction * total - _SLACK * total
    seen = 0.0
    for value, weight in pairs:
        seen += weight
        if seen >= wanted:
            return value
    return pairs[-1][0]

"""Small statistics the scenarios share: percentiles, summaries, rates over time windows."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), interpolated between the closest ranks; None if empty."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, min, mean, p50, p95, p99 and max of a sample (latencies in ms, usually)."""
    return {
        "count": len(values),
        "min": min(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def rate_between(times: Iterable[float], start: float, end: float) -> float:
    """Events per second with start < t <= end."""
    if end <= start:
        return 0.0
    return sum(1 for t in times if start < t <= end) / (end - start)


@dataclass(frozen=True, slots=True)
class Sustained:
    """A worker's throughput over the steady part of a drain, whole payment periods only."""

    per_period: list[float]
    """Orders/s finished in each counted period, in order."""
    first_at: float | None
    """When the first counted period starts (one period after the first finished payment)."""

    @property
    def per_s(self) -> float | None:
        """The mean over the counted periods; None when no whole period was steady."""
        if not self.per_period:
            return None
        return sum(self.per_period) / len(self.per_period)


def sustained_rate(
    finished: Sequence[float], period: float, *, until: float | None = None
) -> Sustained:
    """Orders/s of a worker draining a backlog, counted per whole payment period.

    The grid of periods starts at the first finished payment. The first period is left out
    (slots are still filling), and so is every period not over by `until`: the moment the
    backlog ran out or the run was stopped, after which slots idle for want of work rather
    than for want of speed. Every period in between counts, so a worker whose slots idle
    between payments scores the share of time they pay, not the share of waves it finished.
    """
    if not finished or period <= 0:
        return Sustained([], None)
    ordered = sorted(finished)
    first = ordered[0]
    end = ordered[-1] if until is None else until
    periods = math.floor((end - first) / period)
    rates = []
    for k in range(1, periods):
        start = first + k * period
        rates.append(count_between(ordered, start, start + period) / period)
    return Sustained(rates, first + period if rates else None)


def count_between(ordered: Sequence[float], start: float, end: float) -> int:
    """How many of the sorted times fall in [start, end)."""
    return bisect.bisect_left(ordered, end) - bisect.bisect_left(ordered, start)

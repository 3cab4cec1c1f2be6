"""Small statistics the scenarios share: percentiles, summaries, rates over time windows."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


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


def sustained_rate(finished: Sequence[float], slots: int, period: float) -> tuple[float, int]:
    """Throughput of a worker draining a backlog, with how many whole waves it was measured on.

    Every slot pays one order per `period` seconds, so full slots finish `slots` orders per
    period. Counting from the first finish over whole periods makes the ideal worker score
    exactly slots / period, and keeps start-up and the half-empty last wave out of the figure.
    Needs a backlog of at least (waves + 1) x slots orders.
    """
    if not finished or period <= 0:
        return 0.0, 0
    ordered = sorted(finished)
    first = ordered[0]
    waves = math.floor((ordered[-1] - first) / period)
    waves = min(waves, len(ordered) // slots - 1) if slots else waves
    if waves < 1:
        return 0.0, 0
    return rate_between(ordered, first, first + waves * period), waves

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
    """A worker's throughput per whole payment period of a drain: the per-period view."""

    per_period: list[float]
    """Orders/s paid in each counted period, in order (payment time inside the period /
    the payment time, per second)."""
    first_at: float | None
    """When the first counted period starts (one period after the grid's origin)."""

    @property
    def per_s(self) -> float | None:
        """The mean over the counted periods; None when no whole period was steady."""
        if not self.per_period:
            return None
        return sum(self.per_period) / len(self.per_period)


def sustained_rate(
    finished: Sequence[float],
    period: float,
    *,
    until: float | None = None,
    started: Sequence[float] | None = None,
    since: float | None = None,
) -> Sustained:
    """Orders/s of a worker draining a backlog, per whole payment period.

    Each period is credited with the payment time spent inside it (each payment runs from
    its start to its finish; without `started`, for `period` seconds), divided by the
    payment time: so a slot that loses 0.3 s between 3 s payments scores 91 % in every
    period, where counting finished payments per period would find one whole wave in each
    and score 100 %. The grid starts at `since` (the drain's start; default the first
    payment's start). The first period is left out (slots still filling: the whole-drain
    figure, drain_rate(), counts it), and so is every period not over by `until` (default:
    the last payment's start), when the backlog ran out or the run stopped and slots idle
    for want of work rather than for want of speed.
    """
    if not finished or period <= 0:
        return Sustained([], None)
    starts = [f - period for f in finished] if started is None else list(started)
    origin = min(starts) if since is None else since
    end = max(starts) if until is None else until
    periods = math.floor((end - origin) / period)
    rates = []
    for k in range(1, periods):
        low, high = origin + k * period, origin + (k + 1) * period
        busy = sum(
            max(0.0, min(f, high) - max(s, low)) for s, f in zip(starts, finished, strict=True)
        )
        rates.append(busy / period / period)
    return Sustained(rates, origin + period if rates else None)


@dataclass(frozen=True, slots=True)
class Drain:
    """A backlog's whole drain, ramp and tail included: the figure a customer waits for."""

    orders: int
    seconds: float
    """From the first message sent (the worker's start) to the last payment."""
    ideal_seconds: float
    """ceil(backlog / slots) payment times: every slot busy from start to end."""

    @property
    def per_s(self) -> float | None:
        return self.orders / self.seconds if self.seconds > 0 else None

    @property
    def of_ideal_pct(self) -> float | None:
        return 100 * self.ideal_seconds / self.seconds if self.seconds > 0 else None


def drain_rate(
    started_at: float, last_paid_at: float, orders: int, slots: int, period: float
) -> Drain:
    """orders / (last payment - first message sent) against ceil(orders / slots) x period."""
    return Drain(orders, last_paid_at - started_at, math.ceil(orders / slots) * period)


def count_between(ordered: Sequence[float], start: float, end: float) -> int:
    """How many of the sorted times fall in [start, end)."""
    return bisect.bisect_left(ordered, end) - bisect.bisect_left(ordered, start)

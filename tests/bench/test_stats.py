"""Percentiles, summaries, rates, the open-loop schedule and the queue-depth series."""

from __future__ import annotations

import itertools

import pytest

from bench.harness.load import schedule
from bench.harness.queue import DepthSeries
from bench.harness.stack import require_loopback
from bench.harness.stats import percentile, rate_between, summarize, sustained_rate


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_none_and_bad_q_is_refused() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_is_order_free() -> None:
    got = summarize([3.0, 1.0, 2.0])
    assert (got["count"], got["min"], got["mean"], got["p50"], got["max"]) == (
        3,
        1.0,
        2.0,
        2.0,
        3.0,
    )
    assert got["p99"] == pytest.approx(2.98)
    assert summarize([])["p50"] is None


def test_rate_between_counts_the_half_open_window() -> None:
    assert rate_between([0.0, 1.0, 2.0, 3.0], 0.0, 2.0) == 1.0
    assert rate_between([1.0], 2.0, 2.0) == 0.0


def _finishes(slots: int, pay: float, idle: float, backlog: int) -> tuple[list[float], float]:
    """Slots starting spread over the first second, each paying `pay` s then idling `idle` s,
    until `backlog` orders are taken; the finish times and when the last order started."""
    starts = [slot / slots for slot in range(slots)]
    finished: list[float] = []
    last_start = 0.0
    while len(finished) < backlog:
        for slot in range(slots):
            if len(finished) == backlog:
                break
            finished.append(starts[slot] + pay)
            last_start = max(last_start, starts[slot])
            starts[slot] += pay + idle
    return finished, last_start


def test_an_ideal_worker_sustains_exactly_slots_per_period() -> None:
    finished, backlog_out = _finishes(1000, 3.0, 0.0, 10_000)
    got = sustained_rate(finished, 3.0, until=backlog_out)
    assert len(got.per_period) >= 6
    assert got.per_period == [pytest.approx(1000 / 3.0)] * len(got.per_period)


def test_slots_idling_between_payments_score_what_they_really_do() -> None:
    # 3 s payments with 2 s idle in between: busy 60 % of the time, whatever whole waves it
    # completes (the old count, payments within N periods of the first, gave 99.95 %).
    finished, backlog_out = _finishes(1000, 3.0, 2.0, 10_000)
    got = sustained_rate(finished, 3.0, until=backlog_out)
    assert got.per_s is not None
    assert 100 * got.per_s / (1000 / 3.0) == pytest.approx(60, abs=2)


def test_the_tail_after_the_backlog_runs_out_is_not_counted() -> None:
    finished, backlog_out = _finishes(1000, 3.0, 0.0, 10_500)
    assert sustained_rate(finished, 3.0, until=backlog_out).per_s == pytest.approx(1000 / 3.0)
    # Counting to the last finish instead takes in the half-empty last wave.
    assert sustained_rate(finished, 3.0).per_s == pytest.approx(1000 / 3.0)
    to_last = sustained_rate(finished, 3.0, until=finished[-1] + 3.0).per_s
    assert to_last is not None and to_last < 1000 / 3.0


def test_too_small_a_backlog_gives_no_rate() -> None:
    assert sustained_rate([2.0, 2.0], 2.0).per_s is None
    assert sustained_rate([], 2.0).per_s is None


@pytest.mark.parametrize(
    ("rate", "duration", "count"), [(60, 10, 600), (5.7, 60, 342), (3, 0.1, 0)]
)
def test_open_loop_schedule_sends_rate_times_duration_evenly(
    rate: float, duration: float, count: int
) -> None:
    offsets = schedule(rate, duration)
    assert len(offsets) == count
    assert all(b - a == pytest.approx(1 / rate) for a, b in itertools.pairwise(offsets))
    assert all(0 <= t < duration for t in offsets)


def test_no_schedule_without_a_rate() -> None:
    assert schedule(0, 10) == []


def test_only_loopback_is_a_load_target() -> None:
    assert require_loopback("http://127.0.0.1:8080/orders/async")
    for url in ("http://example.com/orders", "http://10.0.0.1:80/", "http://localhost:8080/"):
        with pytest.raises(ValueError):
            require_loopback(url)


def test_depth_series_answers_at_max_and_when_empty() -> None:
    series = DepthSeries(t=[0.0, 1.0, 2.0, 3.0], visible=[0, 5, 0, 0], in_flight=[0, 2, 1, 0])
    assert series.at(1.5) == (5, 2)
    assert series.at(-1.0) is None
    assert series.max_visible(0.5, 3.0) == 5
    assert series.empty_after(1.0) == 3.0
    assert series.empty_after(3.5) is None
    assert series.as_dict(origin=1.0)["t"] == [-1.0, 0.0, 1.0, 2.0]

"""The scan's shortcuts change no answer: the needles (substrings a leading filter's matches
must contain, checked before any JSON is parsed) and the slices it scans in (the cancel flag
is read once per slice)."""

from __future__ import annotations

import dataclasses
import json
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localaws.insights import engine
from localaws.insights.compiler import Plan, StatsOp
from localaws.insights.engine import Cancelled, Statistics, Stream, compile_text, render_rows, run
from localaws.insights.records import Record, Source
from localaws.insights.values import Timestamp

WORDS = ["order_paid", "order_claimed", "async", "sync", "x y", "7"]
CONJUNCTS = [
    'event = "order_paid"',
    'mode = "async"',
    'mode = "sync"',
    '@message like "order"',
    "ispresent(n)",
    "n > 3",
    'tag = "x y"',
    'kind in ["a", "b"]',
]

event_docs = st.fixed_dictionaries(
    {},
    optional={
        "event": st.sampled_from(WORDS),
        "mode": st.sampled_from(WORDS),
        "tag": st.sampled_from(WORDS),
        "kind": st.sampled_from(["a", "b", "c"]),
        "n": st.integers(0, 9),
        "note": st.sampled_from(WORDS),
    },
)
messages = st.one_of(
    event_docs.map(json.dumps),
    st.sampled_from(["order_paid async plain text", '"order_paid" "async"', "[1]", "{bad"]),
)


def _streams(texts: list[str]) -> list[Stream]:
    events = [
        SimpleNamespace(timestamp=1_000 + i, message=m, ingestion_time=2_000 + i, event_id=i)
        for i, m in enumerate(texts)
    ]
    half = len(events) // 2
    return [
        Stream(Source("/g", "a", "123456789012"), events[:half]),
        Stream(Source("/g", "b", "123456789012"), events[half:]),
    ]


def _answer(plan: Plan, streams: list[Stream]) -> tuple[Any, ...]:
    statistics = Statistics()
    rows = render_rows(plan, run(plan, streams, 1_002, 10**12, statistics))
    return rows, statistics


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(messages, max_size=40),
    st.lists(st.sampled_from(CONJUNCTS), min_size=1, max_size=4),
    st.booleans(),
)
def test_needles_and_slices_change_no_answer(
    monkeypatch: pytest.MonkeyPatch, texts: list[str], conjuncts: list[str], stats: bool
) -> None:
    monkeypatch.setattr(engine, "_CHECK_EVERY", 3)  # many slice boundaries in a few events
    text = "filter " + " and ".join(conjuncts)
    if stats:
        text += " | stats count(*) as c, pct(n, 50) as p by event"
    plan = compile_text(text)
    streams = _streams(texts)
    plain = dataclasses.replace(plan, needles=())
    assert _answer(plan, streams) == _answer(plain, streams)


def test_each_needle_rejects_before_the_filter_runs() -> None:
    """The scan checks the first needle, the second and the rest in separate branches: an
    event missing any one of them never reaches the filter (its JSON is never parsed)."""
    plan = compile_text('filter a = "x" and b = "y" and c = "z" and d = "w"')
    assert plan.needles == ('"x"', '"y"', '"z"', '"w"')
    docs = [
        {"a": "x", "b": "y", "c": "z", "d": "w"},
        {"a": "x", "b": "y", "c": "z", "d": "v"},
        {"a": "x", "b": "y", "c": "q", "d": "w"},
        {"a": "x", "b": "q", "c": "z", "d": "w"},
        {"a": "q", "b": "y", "c": "z", "d": "w"},
    ]
    reached: list[int] = []
    keep = plan.head[0]

    def counting(record: Any) -> bool:
        reached.append(record.event.event_id)
        return keep(record)

    counted = dataclasses.replace(plan, head=[counting])
    rows, statistics = _answer(counted, _streams([""] * 2 + [json.dumps(d) for d in docs]))
    assert (statistics.records_scanned, statistics.records_matched, len(rows)) == (5, 1, 1)
    assert reached == [2]


def test_cancel_is_seen_within_one_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_CHECK_EVERY", 4)
    streams = _streams([json.dumps({"n": i}) for i in range(40)])
    cancel = threading.Event()
    plan = compile_text("filter n >= 0")
    seen: list[int] = []
    keep = plan.head[0]

    def counting(record: Any) -> bool:
        seen.append(record.event.event_id)
        if len(seen) == 6:
            cancel.set()  # StopQuery arrives while the second slice is scanned
        return keep(record)

    statistics = Statistics()
    with pytest.raises(Cancelled):
        run(dataclasses.replace(plan, head=[counting]), streams, 0, 10**12, statistics, cancel)
    assert len(seen) == 8  # the rest of that slice, then no more
    assert statistics.records_scanned == 8
    already = threading.Event()
    already.set()
    with pytest.raises(Cancelled):
        run(plan, streams, 0, 10**12, Statistics(), already)


@given(st.lists(st.integers(-(10**13), 10**13) | st.floats(-1e12, 1e12), max_size=30))
def test_bin_reuses_its_last_bin_only_for_the_times_it_covers(times: list[float]) -> None:
    """`bin()` keeps the last bin it made: events in any order get the bin of their own time."""
    plan = compile_text("stats count(*) by bin(5s)")
    stats = plan.tail[0]
    assert isinstance(stats, StatsOp)
    bin_of = stats.groups[0][1]
    for ts in times:
        event = SimpleNamespace(timestamp=ts, message="", ingestion_time=0, event_id=0)
        got = bin_of(Record(event, None))
        assert (type(got), got) == (Timestamp, int(ts // 5_000 * 5_000))

"""The dashboard's figures from log lines: per-second rates, window percentiles, failures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson

from devstack.dashboard.aggregator import Aggregator, percentile
from devstack.dashboard.sampler import sample_queues
from devstack.topology import Topology
from services.common.settings import AwsSettings

T0 = 1_800_000_000.0
"""A whole second: lines are binned by the second of their own timestamp."""


def line(event: str, at: float, **fields: Any) -> bytes:
    """A log line as the services write it (structlog's ISO UTC timestamp)."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"event": event, "level": "info", "timestamp": stamp} | fields)


def fed(*lines: bytes, received_at: float = T0) -> Aggregator:
    aggregator = Aggregator()
    for raw in lines:
        aggregator.feed_line(raw, received_at)
    return aggregator


def at_second(snapshot: dict[str, Any], name: str, second: float) -> Any:
    series = snapshot["series"]
    return series[name][series["t"].index(int(second))]


def test_accepted_and_paid_are_counted_per_second_of_their_own_timestamp() -> None:
    aggregator = fed(
        line("order_accepted", T0 + 0.1, service="api"),
        line("order_accepted", T0 + 0.9, service="api"),
        line("order_accepted", T0 + 1.5, service="api"),
        line("order_paid", T0 + 1.2, service="worker", mode="async", payment_ms=3000, queue_ms=5),
        line("order_paid", T0 + 1.3, service="api", mode="sync", payment_ms=3000, queue_ms=0),
        # Arrived late, counted where it was written.
        received_at=T0 + 60,
    )
    snap = aggregator.snapshot(now=T0 + 2.5)
    assert snap["series"]["t"][-1] == T0 + 1, "the running second is not shown half-counted"
    assert len(snap["series"]["t"]) == 300
    assert [at_second(snap, "accepted", T0 + s) for s in (0, 1)] == [2, 1]
    assert [at_second(snap, "paid", T0 + s) for s in (0, 1)] == [0, 2]
    assert snap["totals"]["accepted"] == 3
    assert snap["totals"]["paid"] == 2
    assert snap["totals"]["accepted_per_s"] == 0.3, "the mean of the last 10 complete seconds"


def test_api_latency_percentiles_use_the_metered_lines_only() -> None:
    metered = [
        line("http_request", T0 + 0.5, service="api", path="/orders/async", duration_ms=ms, _aws={})
        for ms in range(1, 101)
    ]
    probe = line("http_request", T0 + 0.5, service="api", path="/health", duration_ms=10_000)
    later = line(
        "http_request", T0 + 1.5, service="api", path="/orders/sync", duration_ms=500, _aws={}
    )
    snap = fed(*metered, probe, later).snapshot(now=T0 + 2)
    assert at_second(snap, "api_p50", T0) == 50
    assert at_second(snap, "api_p99", T0) == 99
    assert at_second(snap, "api_p99", T0 + 1) == 500
    # Over the window: 101 samples, the /health probe (no EMF fields) left out as CloudWatch does.
    assert snap["totals"]["api_p50"] == 51
    assert snap["totals"]["api_p99"] == 100
    assert at_second(snap, "api_p50", T0 - 1) is None, "no requests: no percentile, not zero"


def test_queue_time_is_async_only_and_busy_slots_are_payment_seconds_per_second() -> None:
    paid = [
        line("order_paid", T0 + 0.5, service="worker", mode="async", payment_ms=3000, queue_ms=q)
        for q in (10, 20, 30, 40)
    ]
    sync = line("order_paid", T0 + 0.5, service="api", mode="sync", payment_ms=3000, queue_ms=0)
    snap = fed(*paid, sync).snapshot(now=T0 + 1)
    assert at_second(snap, "queue_p50", T0) == 20
    assert at_second(snap, "queue_p99", T0) == 40
    # Four 3 s payments from T0 - 2.5 to T0 + 0.5: each second holds the part they ran in.
    assert at_second(snap, "busy", T0 - 3) == 2.0
    assert at_second(snap, "busy", T0 - 2) == 4.0
    assert at_second(snap, "busy", T0 - 1) == 4.0
    assert at_second(snap, "busy", T0) == 2.0
    assert at_second(snap, "busy", T0 - 4) == 0.0
    # The counter reads the 10 s ending one payment (3 s) ago: T0 - 12 .. T0 - 3.
    assert snap["totals"]["busy"] == 0.2
    later = fed(*paid, sync).snapshot(now=T0 + 4)
    # Now T0 - 9 .. T0: all 12 slot-seconds, over 10 s.
    assert later["totals"]["busy"] == 1.2


def test_busy_slots_never_exceed_the_slots_when_payments_end_in_waves() -> None:
    # 100 slots, 3 s payments back to back: waves ending every 3 s, 100 at a time, the
    # last one just before now.
    waves = [
        line("order_paid", T0 - 30 + 3 * w + 0.2, service="worker", mode="async", payment_ms=3000)
        for w in range(11)
        for _ in range(100)
    ]
    snap = fed(*waves).snapshot(now=T0 + 1)
    busy = [b for b in snap["series"]["busy"] if b]
    assert max(busy) <= 100.0 + 1e-6
    assert snap["totals"]["busy"] == 100.0


def test_the_window_forgets_what_is_older_than_five_minutes() -> None:
    aggregator = fed(
        line("order_accepted", T0, service="api"),
        line("order_failed", T0, service="worker", reason="card declined"),
    )
    assert aggregator.snapshot(now=T0 + 300)["totals"]["accepted"] == 1
    old = aggregator.snapshot(now=T0 + 302)
    assert old["totals"]["accepted"] == 0
    assert old["totals"]["failures"] == 0
    assert old["failures"]["latest"] == []


def test_failures_carry_their_reasons_newest_first_and_are_counted_by_event() -> None:
    aggregator = fed(
        line("payment_charged", T0, service="worker", order_id="o0"),
        line("order_failed", T0 + 0.1, service="worker", order_id="o1", reason="card declined"),
        line(
            "message_dead_lettered",
            T0 + 0.2,
            service="worker",
            order_id="o1",
            message_id="m1",
            reason="card declined",
        ),
        line(
            "message_undecodable",
            T0 + 0.3,
            service="worker",
            level="warning",
            message_id="m2",
            code="invalid_json",
            reason="not JSON",
        ),
        line(
            "publish_failed",
            T0 + 0.4,
            service="api",
            level="error",
            error="Throttling",
            detail="rate exceeded",
        ),
        line("order_failed", T0 + 0.5, service="worker", order_id="o3", reason="card declined"),
    )
    snap = aggregator.snapshot(now=T0 + 1)
    latest = snap["failures"]["latest"]
    assert [(f["event"], f["order_id"], f["reason"]) for f in latest] == [
        ("order_failed", "o3", "card declined"),
        ("publish_failed", None, "rate exceeded"),
        ("message_undecodable", "m2", "not JSON"),
        ("message_dead_lettered", "o1", "card declined"),
        ("order_failed", "o1", "card declined"),
    ]
    by_event = {(f["event"], f["code"]): f["count"] for f in snap["failures"]["by_event"]}
    assert by_event == {
        ("order_failed", ""): 2,
        ("message_dead_lettered", ""): 1,
        ("message_undecodable", "invalid_json"): 1,
        ("publish_failed", "Throttling"): 1,
    }
    assert snap["totals"]["failures"] == 5


def test_lines_that_are_not_json_objects_are_skipped_and_untimed_ones_use_arrival() -> None:
    aggregator = fed(
        b"Traceback (most recent call last):\n",
        b"[1, 2]\n",
        orjson.dumps({"event": "order_accepted", "service": "api"}),
        received_at=T0 + 0.5,
    )
    snap = aggregator.snapshot(now=T0 + 1)
    assert snap["totals"]["accepted"] == 1
    assert at_second(snap, "accepted", T0) == 1


def test_queue_samples_are_shown_per_second_with_gaps_where_none_was_taken() -> None:
    aggregator = Aggregator()
    aggregator.add_queue_sample(T0 + 0.2, visible=40, in_flight=100, dlq=0)
    aggregator.add_queue_sample(T0 + 2.2, visible=5, in_flight=90, dlq=1)
    snap = aggregator.snapshot(now=T0 + 3)
    assert [at_second(snap, "visible", T0 + s) for s in (0, 1, 2)] == [40, None, 5]
    assert (snap["totals"]["visible"], snap["totals"]["in_flight"], snap["totals"]["dlq"]) == (
        5,
        90,
        1,
    )
    worker = line("worker_started", T0, service="worker", num_workers=100)
    aggregator.feed_line(worker, T0)
    assert aggregator.snapshot(now=T0 + 3)["totals"]["slots"] == 100


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([float(v) for v in range(1, 201)], 99) == 198.0


async def test_the_sampler_reads_the_queue_and_the_dlq_from_the_local_aws(
    aws: AwsSettings, topology: Topology, sqs: Any
) -> None:
    for _ in range(3):
        await sqs.send_message(QueueUrl=topology.queue_url, MessageBody="{}")
    await sqs.send_message(QueueUrl=topology.dlq_url, MessageBody="{}")
    await sqs.receive_message(QueueUrl=topology.queue_url, MaxNumberOfMessages=1)
    samples: list[tuple[float, int, int, int]] = []
    stop = asyncio.Event()

    def sink(at: float, visible: int, in_flight: int, dlq: int) -> None:
        samples.append((at, visible, in_flight, dlq))
        stop.set()

    await asyncio.wait_for(sample_queues(aws, topology.queue_url, topology.dlq_url, sink, stop), 30)
    [(_, visible, in_flight, dlq)] = samples
    assert (visible, in_flight, dlq) == (2, 1, 1)


def test_the_queries_vocabulary_latency_by_route_failures_by_kind_ledger_and_pending() -> None:
    def request(route: str, mode: str, ms: float) -> bytes:
        return line(
            "http_request", T0 + 0.5, service="api", route=route, mode=mode, duration_ms=ms, _aws={}
        )

    a, b, c, late = "a" * 8, "b" * 8, "c" * 8, "d" * 8
    aggregator = fed(
        *[request("/orders/sync", "sync", ms) for ms in (3000.0, 3100.0)],
        request("/orders/async", "async", 4.0),
        line("http_request", T0 + 0.5, service="api", route="/health", mode="none", duration_ms=1),
        line("order_accepted", T0 + 0.1, service="api", order_id=a),
        line("order_accepted", T0 + 0.2, service="api", order_id=b),
        line("order_accepted", T0 + 0.3, service="api", order_id=c),
        line("payment_charged", T0 + 0.4, service="worker", order_id=a, amount=1.0),
        line("payment_charged", T0 + 0.5, service="worker", order_id=a, amount=1.0),
        line("order_paid", T0 + 0.6, service="worker", order_id=a, mode="async"),
        line("payment_retry", T0 + 0.6, service="worker", order_id=b, level="warning"),
        line("order_failed", T0 + 0.7, service="worker", order_id=b, reason="card declined"),
        line("message_dead_lettered", T0 + 0.7, service="worker", order_id=b, reason="x"),
        line("order_rejected", T0 + 0.8, service="api", code="invalid_order", status=422),
        line("order_rejected", T0 + 0.8, service="api", code="payment_declined", status=402),
        line("publish_failed", T0 + 0.8, service="api", level="error", error="InternalError"),
        # A worker line read before the API's order_accepted: the order is not pending.
        line("order_paid", T0 + 0.8, service="worker", order_id=late, mode="async"),
        line("order_accepted", T0 + 0.9, service="api", order_id=late),
    )
    snap = aggregator.snapshot(now=T0 + 30)
    routes = [tuple(r.values()) for r in snap["routes"]]
    assert routes == [
        ("/orders/async", "async", 1, 4.0, 4.0, 4.0),
        ("/orders/sync", "sync", 2, 3000.0, 3100.0, 3100.0),
    ]
    t = snap["totals"]
    kinds = ("failures_final", "failures_retried", "failures_client", "failures_error")
    # One final failure: the declined order's dead-lettering is not counted twice.
    assert [t[k] for k in kinds] == [1, 1, 1, 1]
    assert snap["ledger"] == {"charged": 2, "paid": 2, "charged_twice": [a]}
    assert snap["pending"] == {"count": 1, "oldest_order_id": c, "oldest_age_s": 29.7}

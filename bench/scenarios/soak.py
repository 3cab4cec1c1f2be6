"""soak: sustained load with payment failures and a worker restart midway; nothing lost.

Open-loop arrivals on /orders/async with order state on (DynamoDB), a payment processor that
fails transiently and declines at configured rates, and the worker stopped with SIGTERM and
replaced halfway through. Afterwards every accepted order must be paid (charged, in the
payment processor's ledger lines over the API and both workers) or failed (in the DLQ), not
both, none charged twice, and worker memory flat. Always with order state: its invariants
need it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, TypeVar

import orjson

from devstack.topology import Topology, queue_counts
from services.common.settings import AwsSettings

from ..harness.capacity import plan
from ..harness.ledger import Ledger, ledger_verdicts
from ..harness.load import OpenLoopRun, open_loop
from ..harness.procstat import rss_mb
from ..harness.results import Earlier, Result
from ..harness.stack import (
    ApiRun,
    LocalStack,
    WorkerRun,
    local_stack,
    sqs_client,
)
from ..harness.stats import summarize
from ..harness.targets import target
from ..report.markdown import table

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

T = TypeVar("T")


class SoakSettings(TypedDict):
    rate: float
    duration_s: float
    payment_seconds: float
    slots: int
    """Planned for arrivals plus the retries transient failures add."""
    failure_rate: float
    decline_rate: float
    order_state: bool


class Memory(TypedDict):
    """A worker's RSS; only `samples` when it ran too short to tell warm from end."""

    samples: int
    warm_mb: NotRequired[float]
    """Median over the second quarter of its run (after warm-up)."""
    end_mb: NotRequired[float]
    """Median over the last quarter."""
    max_mb: NotRequired[float]
    growth_pct: NotRequired[float]


class Generation(TypedDict):
    """One worker process of the soak (the first is replaced halfway)."""

    stopped: dict[str, Any] | None
    """Its `worker_stopped` counters; None if it never logged them."""
    memory: Memory
    paid: int


class SoakResult(Result):
    settings: SoakSettings
    sent: int
    accepted: int
    rejected: int
    paid: int
    """Accepted orders the processor's ledger shows charged."""
    failed: int
    """Accepted orders in the DLQ."""
    unsettled: int
    """Accepted but neither charged nor dead-lettered: lost."""
    dlq: int
    """Messages in the DLQ."""
    queue_drained: bool
    api_latency_ms: dict[str, float | int | None]
    workers: list[Generation]
    charged_twice: int
    """Over the processor's ledger lines of the API and both workers."""
    charged_and_dead_lettered: int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=20.0, help="orders per second")
    parser.add_argument("--duration", type=float, help="seconds of arrivals (quick 30, full 300)")
    parser.add_argument("--payment-seconds", type=float, help="quick 0.5, full 3")
    parser.add_argument("--failure-rate", type=float, default=0.1, help="transient failures")
    parser.add_argument("--decline-rate", type=float, default=0.02, help="declined payments")


async def _sample_rss(
    run: WorkerRun, samples: list[tuple[float, float]], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        value = rss_mb(run.pid)
        if value is not None:
            samples.append((time.time(), value))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _memory(samples: list[tuple[float, float]]) -> Memory:
    """RSS after warm-up (the first quarter) against RSS at the end of the worker's run."""
    values = [v for _, v in samples]
    if len(values) < 4:
        return {"samples": len(values)}
    warm = statistics.median(values[len(values) // 4 : len(values) // 2])
    end = statistics.median(values[-max(1, len(values) // 4) :])
    return {
        "samples": len(values),
        "warm_mb": round(warm, 1),
        "end_mb": round(end, 1),
        "max_mb": round(max(values), 1),
        "growth_pct": round(100 * (end - warm) / warm, 1),
    }


@dataclass
class _Generation:
    """One worker process of the soak, and its memory samples (time, MB)."""

    run: WorkerRun
    samples: list[tuple[float, float]] = field(default_factory=list)


async def _worker_until(
    start: Callable[[], AbstractContextManager[WorkerRun]], until: Awaitable[T]
) -> tuple[_Generation, T]:
    """Run a worker process, its memory sampled, until `until` is done; then stop it."""
    stop_sampling = asyncio.Event()
    with ExitStack() as stack:
        # The worker's context manager blocks (start, SIGTERM and wait): in a thread.
        generation = _Generation(await asyncio.to_thread(stack.enter_context, start()))
        sampler = asyncio.create_task(
            _sample_rss(generation.run, generation.samples, stop_sampling)
        )
        try:
            outcome = await until
        finally:
            # ECS's way: SIGTERM, payments in flight finish, the rest go back to the queue.
            await asyncio.to_thread(stack.close)
            stop_sampling.set()
            await sampler
    return generation, outcome


async def _sleep_until(wall_time: float) -> None:
    await asyncio.sleep(max(0.0, wall_time - time.time()))


async def _drained(
    aws: AwsSettings, topology: Topology, limit: float
) -> tuple[bool, int, set[str]]:
    """Wait until the queue is empty (or `limit` s); whether it is, and the DLQ's messages
    and the order ids they carry."""
    async with sqs_client(aws) as sqs:

        async def settled() -> bool:
            return await queue_counts(sqs, topology.queue_url) == (0, 0)

        deadline = time.monotonic() + limit
        # A remote queue has no event to wait on: poll it.
        while not await settled() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        drained = await settled()
        return drained, *await _dead_letters(sqs, topology.dlq_url)


def _order_id(body: str) -> str | None:
    """The order id in a dead-lettered message body (raw, or in SNS's envelope)."""
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("Message"), str):
            doc = orjson.loads(doc["Message"])
    except orjson.JSONDecodeError:
        return None
    found = doc.get("order_id") if isinstance(doc, dict) else None
    return None if found is None else str(found)


async def _dead_letters(sqs: SQSClient, dlq_url: str) -> tuple[int, set[str]]:
    """Every message in the DLQ (each received once, hidden for the rest of the run) and the
    order ids they carry."""
    count, ids = 0, set[str]()
    while True:
        got = await sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=300, WaitTimeSeconds=0
        )
        messages = got.get("Messages", [])
        if not messages:
            return count, ids
        count += len(messages)
        ids |= {i for m in messages if (i := _order_id(m.get("Body", ""))) is not None}


async def _two_workers(
    stack: LocalStack, api: ApiRun, spec: SoakSettings
) -> tuple[OpenLoopRun, _Generation, _Generation, tuple[bool, int, set[str]]]:
    """Arrivals throughout; the first worker until halfway, the second until the queue drains."""
    pay = spec["payment_seconds"]
    worker_env = {
        "PAYMENT_FAILURE_RATE": str(spec["failure_rate"]),
        "PAYMENT_DECLINE_RATE": str(spec["decline_rate"]),
        "RETRY_BACKOFF_SECONDS": "1",
        "PAYMENT_TIMEOUT_SECONDS": str(max(1.0, 3 * pay)),
    }

    def start_worker() -> AbstractContextManager[WorkerRun]:
        return stack.worker(
            slots=spec["slots"], payment_seconds=pay, grace_seconds=2 * pay, extra=worker_env
        )

    load_task = asyncio.create_task(
        open_loop(
            api.url + "/orders/async",
            rate=spec["rate"],
            duration=spec["duration_s"],
            request_timeout=10,
            desc="soak /orders/async",
        )
    )
    restart_at = time.time() + spec["duration_s"] / 2
    first, _ = await _worker_until(start_worker, _sleep_until(restart_at))

    async def arrivals_then_drain() -> tuple[bool, int, set[str]]:
        await load_task
        # Transient failures come back after backoff; declines go round to the DLQ.
        return await _drained(stack.aws, stack.topology, limit=60 + 10 * pay)

    second, drained = await _worker_until(start_worker, arrivals_then_drain())
    return load_task.result(), first, second, drained


async def _soak(
    stack: LocalStack, api: ApiRun, spec: SoakSettings
) -> tuple[SoakResult, list[WorkerRun], set[str], set[str]]:
    """The soak's figures; its workers, the accepted orders and the dead-lettered ones."""
    load, first, second, (drained, dlq, dead) = await _two_workers(stack, api, spec)
    accepted = [o.order_id for o in load.outcomes if o.status == 202]
    answered = [o.latency_ms for o in load.outcomes if o.status == 202 and o.latency_ms]
    return (
        {
            "settings": spec,
            "sent": len(load.outcomes),
            "accepted": len(accepted),
            "rejected": len(load.outcomes) - len(accepted),
            # Paid, failed and unsettled come from the ledger once both workers stopped.
            "paid": 0,
            "failed": len(dead & set(accepted)),
            "unsettled": 0,
            "dlq": dlq,
            "queue_drained": drained,
            "api_latency_ms": summarize(answered),
            "workers": [
                {"stopped": g.run.stopped, "memory": _memory(g.samples), "paid": len(g.run.paid)}
                for g in (first, second)
            ],
            "charged_twice": 0,
            "charged_and_dead_lettered": 0,
        },
        [first.run, second.run],
        set(accepted),
        dead,
    )


def _settle(result: SoakResult, ledger: Ledger, accepted: set[str], dead: set[str]) -> None:
    """Paid from the processor's ledger, failed from the DLQ; what is in neither is lost."""
    paid = ledger.charged(accepted)
    result["paid"] = len(paid)
    result["charged_and_dead_lettered"] = len(paid & dead)
    result["unsettled"] = len(accepted - paid - dead)
    result["charged_twice"] = len(ledger.twice())


def run(args: argparse.Namespace, earlier: Earlier) -> SoakResult:
    pay = args.payment_seconds or (0.5 if args.quick else 3.0)
    spec: SoakSettings = {
        "rate": args.rate,
        "duration_s": float(args.duration or (30 if args.quick else 300)),
        "payment_seconds": pay,
        # Retries add load on top of arrivals: plan for the rate they make together.
        "slots": plan(args.rate * (1 + 2 * args.failure_rate), pay, 0.1).slots,
        "failure_rate": args.failure_rate,
        "decline_rate": args.decline_rate,
        "order_state": True,
    }
    with local_stack("soak", order_state=True) as stack, stack.api(pay) as api:
        result, workers, accepted, dead = asyncio.run(_soak(stack, api, spec))
    # Charges from the processor's ledger lines, over every process that could pay.
    ledger = Ledger.of(api.charges, *(w.charges for w in workers))
    _settle(result, ledger, accepted, dead)
    growth = [w["memory"].get("growth_pct") for w in result["workers"]]
    result["targets"] = [
        target(
            "soak: accepted = paid (ledger) + failed (DLQ)",
            result["unsettled"],
            "==",
            0,
            note="unsettled: accepted, neither charged nor dead-lettered",
        ),
        target(
            "soak: orders both charged and dead-lettered",
            result["charged_and_dead_lettered"],
            "==",
            0,
        ),
        target("soak: DLQ messages = failed orders", result["dlq"], "==", result["failed"]),
        *ledger_verdicts(
            "soak",
            lost=None,  # declined orders are accepted and never charged: unsettled counts loss
            twice=result["charged_twice"],
            charges=ledger.total,
            paid=sum(w["paid"] for w in result["workers"]),
        ),
        target(
            "soak: worker memory growth after warm-up",
            max((g for g in growth if g is not None), default=None),
            "<=",
            10,
            "%",
        ),
    ]
    return result


def report(result: SoakResult) -> str:
    s = result["settings"]
    return "\n".join(
        [
            "## soak: sustained load, payment failures, a worker restart",
            "",
            f"{s['rate']:g} orders/s for {s['duration_s']:g} s on /orders/async with order "
            f"state on; payments {s['payment_seconds']:g} s, {100 * s['failure_rate']:g} % "
            f"failing transiently, {100 * s['decline_rate']:g} % declined; "
            f"{s['slots']} slots; the worker replaced (SIGTERM) halfway.",
            "",
            _orders_table(result),
            "",
            _workers_table(result["workers"]),
            "",
        ]
    )


def _orders_table(result: SoakResult) -> str:
    """Every order's end: paid, failed (and in the DLQ), or unsettled; the API's latency."""
    lat = result["api_latency_ms"]
    return table(
        [
            "sent",
            "accepted",
            "paid",
            "failed",
            "in DLQ",
            "unsettled",
            "charged twice",
            "API p50 ms",
            "API p99 ms",
        ],
        [
            [
                result["sent"],
                result["accepted"],
                result["paid"],
                result["failed"],
                result["dlq"],
                result["unsettled"],
                result["charged_twice"],
                lat.get("p50"),
                lat.get("p99"),
            ]
        ],
    )


def _workers_table(workers: list[Generation]) -> str:
    """Each worker generation's counters and memory."""
    rows = [
        [
            f"worker {i + 1}",
            w["paid"],
            (w["stopped"] or {}).get("failed"),
            (w["stopped"] or {}).get("payment_retries"),
            (w["stopped"] or {}).get("duplicates"),
            (w["stopped"] or {}).get("handed_back"),
            w["memory"].get("warm_mb"),
            w["memory"].get("end_mb"),
            w["memory"].get("growth_pct"),
        ]
        for i, w in enumerate(workers)
    ]
    return table(
        [
            "worker",
            "paid",
            "failed",
            "retries",
            "duplicates",
            "handed back",
            "RSS warm MB",
            "RSS end MB",
            "growth %",
        ],
        rows,
    )

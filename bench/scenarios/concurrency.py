"""concurrency: 10,000 concurrent payments in one worker process, its backlog drained whole.

One worker process with 10,000 slots and 30 s payments (333 orders/s, a rate this machine's
local AWS can carry), order state on as `make run` ships it (`--stateless`: off), drains a
preloaded backlog of 30,000 orders. The drain is timed whole, from the worker's start (its
first receive) to the last charge in the payment processor's ledger, against ceil(backlog /
slots) payment times. Holding 10,000 messages and leases costs visibility extensions and
lease renewals: both are reported per order, beside every AWS request per order (the local
AWS's own counts), the worker's CPU per order and its peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
from typing import Any, TypedDict

from localaws.client import ControlError, counts_between, request_counts

from ..harness.ledger import Ledger, ledger_verdicts
from ..harness.procstat import cpu_seconds, rss_mb
from ..harness.queue import preload
from ..harness.results import Earlier, Result, TargetResult
from ..harness.stack import (
    LocalStack,
    WorkerRun,
    local_stack,
    order_state,
    sqs_client,
    wait_until_paid,
)
from ..harness.stats import drain_rate, sustained_rate
from ..harness.targets import target
from ..report.markdown import table

PRELOAD_LIMIT_S = 300.0
VISIBILITY_OPERATIONS = ("ChangeMessageVisibility", "ChangeMessageVisibilityBatch")


class Settings(TypedDict):
    slots: int
    payment_seconds: float
    backlog: int
    time_limit_s: float
    """Seconds the worker may drain, preload not included."""
    order_state: bool


class ConcurrencyResult(Result, total=False):
    settings: Settings
    queued: int
    preload_s: float
    drained: bool
    paid: int
    """Queued orders the processor's ledger shows charged."""
    drain_s: float | None
    ideal_drain_s: float
    drain_of_ideal_pct: float | None
    per_period_per_s: list[float]
    worker_cpu_ms_per_order: float | None
    local_aws_cpu_ms_per_order: float | None
    aws_requests: dict[str, dict[str, int]] | None
    """By service and operation, from the worker's start to its stop (None: not counted)."""
    aws_requests_per_order: float | None
    visibility_per_order: float | None
    """ChangeMessageVisibility(Batch) calls per order: holding messages past their timeout."""
    lease_renewals_per_order: float | None
    """The worker's own count of lease renewals per order (None: it does not report one)."""
    worker_rss_max_mb: float | None
    charged_twice: int
    charges: int
    paid_reported: int
    worker: dict[str, Any] | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slots", type=int, default=10_000, help="payment slots (10,000)")
    parser.add_argument("--payment-seconds", type=float, default=30.0, help="(default 30)")
    parser.add_argument("--backlog", type=int, default=30_000, help="orders queued (30,000)")
    parser.add_argument(
        "--time-limit", type=float, help="seconds of draining (default: twice the ideal + 60)"
    )


def settings(args: argparse.Namespace) -> Settings:
    ideal = math.ceil(args.backlog / args.slots) * args.payment_seconds
    return {
        "slots": args.slots,
        "payment_seconds": args.payment_seconds,
        "backlog": args.backlog,
        "time_limit_s": args.time_limit or 2 * ideal + 60,
        "order_state": order_state(args),
    }


async def _fill(stack: LocalStack, backlog: int) -> tuple[set[str], float]:
    async with sqs_client(stack.aws) as sqs:
        started = time.monotonic()
        ids = await preload(sqs, stack.topology.queue_url, backlog, PRELOAD_LIMIT_S)
    return ids, time.monotonic() - started


async def _counts(stack: LocalStack) -> dict[str, dict[str, int]] | None:
    assert stack.aws.endpoint_url is not None
    try:
        return await request_counts(stack.aws.endpoint_url)
    except (ControlError, OSError, ValueError):
        return None  # a local AWS without the counting endpoint


async def _watch(worker: WorkerRun, ids: set[str], limit: float) -> tuple[bool, float | None]:
    """Wait for every order to be paid (or `limit` s), sampling the worker's RSS each second."""
    peak: float | None = None

    async def sample() -> None:
        nonlocal peak
        while True:
            rss = rss_mb(worker.pid)
            if rss is not None:
                peak = rss if peak is None else max(peak, rss)
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    try:
        drained = await wait_until_paid(worker, ids, limit)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    return drained, peak


def _drain(stack: LocalStack, ids: set[str], spec: Settings) -> ConcurrencyResult:
    """One worker draining the backlog: the whole drain, requests, CPU and memory."""
    pay = spec["payment_seconds"]
    before = asyncio.run(_counts(stack))
    aws_cpu = cpu_seconds(stack.aws_pid)
    with stack.worker(
        slots=spec["slots"],
        payment_seconds=pay,
        grace_seconds=pay,
        extra={"PAYMENT_TIMEOUT_SECONDS": str(2 * pay)},
    ) as worker:
        drained, peak = asyncio.run(_watch(worker, ids, spec["time_limit_s"]))
        aws_cpu_end = cpu_seconds(stack.aws_pid)
    after = asyncio.run(_counts(stack))
    made = counts_between(before, after) if before is not None and after is not None else None
    result = _figures(worker, ids, drained, spec, made)
    result["worker_rss_max_mb"] = None if peak is None else round(peak, 1)
    paid = result.get("paid", 0)
    result["local_aws_cpu_ms_per_order"] = (
        (aws_cpu_end - aws_cpu) * 1000 / paid
        if paid and aws_cpu is not None and aws_cpu_end is not None
        else None
    )
    return result


def _per(count: float | None, paid: int) -> float | None:
    return count / paid if count is not None and paid else None


def _figures(
    worker: WorkerRun,
    ids: set[str],
    drained: bool,
    spec: Settings,
    made: dict[str, dict[str, int]] | None,
) -> ConcurrencyResult:
    pay, slots = spec["payment_seconds"], spec["slots"]
    charged = [at for order_id, at in worker.charged_at.items() if order_id in ids]
    start = worker.started_at
    drain = (
        drain_rate(start, max(charged), len(charged), slots, pay)
        if drained and start is not None and charged
        else None
    )
    starts = [p.at - p.payment_ms / 1000 for p in worker.paid]
    periods = sustained_rate(
        [p.at for p in worker.paid],
        pay,
        until=max(starts, default=None),
        started=starts,
        since=start,
    )
    paid = len(charged)
    stats = worker.stopped or {}
    sqs = (made or {}).get("sqs", {})
    visibility = sum(sqs.get(op, 0) for op in VISIBILITY_OPERATIONS) if made is not None else None
    ledger = Ledger.of(worker.charges)
    cpu = worker.cpu_seconds
    return {
        "drained": drained,
        "paid": paid,
        "drain_s": None if drain is None else round(drain.seconds, 2),
        "ideal_drain_s": math.ceil(spec["backlog"] / slots) * pay,
        "drain_of_ideal_pct": None if drain is None else drain.of_ideal_pct,
        "per_period_per_s": [round(r, 1) for r in periods.per_period],
        "worker_cpu_ms_per_order": None if cpu is None else _per(cpu * 1000, paid),
        "aws_requests": made,
        "aws_requests_per_order": _per(
            None if made is None else sum(sum(ops.values()) for ops in made.values()), paid
        ),
        "visibility_per_order": _per(visibility, paid),
        "lease_renewals_per_order": _per(stats.get("lease_renewals"), paid),
        "charged_twice": len(ledger.twice()),
        "charges": ledger.total,
        "paid_reported": len(worker.paid),
        "worker": worker.stopped,
    }


def run(args: argparse.Namespace, earlier: Earlier) -> ConcurrencyResult:
    spec = settings(args)
    with local_stack("concurrency", order_state=spec["order_state"]) as stack:
        ids, preload_s = asyncio.run(_fill(stack, spec["backlog"]))
        result = _drain(stack, ids, spec)
    result["settings"] = spec
    result["queued"] = len(ids)
    result["preload_s"] = round(preload_s, 2)
    result["targets"] = targets(result, lost=len(ids) - result.get("paid", 0))
    return result


def targets(result: ConcurrencyResult, *, lost: int) -> list[TargetResult]:
    s = result["settings"]
    shape = (
        f"{s['slots']:,} slots, {s['payment_seconds']:g} s payment, "
        f"{result.get('queued', 0):,} queued, order state {'on' if s['order_state'] else 'off'}"
    )
    return [
        target(
            "concurrency: whole drain, first receive to last payment",
            result.get("drain_of_ideal_pct"),
            ">=",
            93,
            "% of ideal",
            f"{shape}; ideal: ceil(backlog / slots) payment times",
        ),
        target(
            "concurrency: worker CPU per order",
            result.get("worker_cpu_ms_per_order"),
            "<=",
            0.6,
            "ms",
        ),
        target(
            "concurrency: AWS requests per order",
            result.get("aws_requests_per_order"),
            "<=",
            0.5,
            note="receive, delete, visibility, claim, renewal, paid-mark: every request counted",
        ),
        target("concurrency: worker RSS, peak", result.get("worker_rss_max_mb"), "<=", 300, "MB"),
        *ledger_verdicts(
            "concurrency",
            lost=lost,
            twice=result.get("charged_twice", 0),
            charges=result.get("charges", 0),
            paid=result.get("paid_reported", 0),
        ),
    ]


def report(result: ConcurrencyResult) -> str:
    s = result["settings"]
    ops = result.get("aws_requests") or {}
    by_op = ", ".join(
        f"{service} {op} {n:,}"
        for service, calls in sorted(ops.items())
        for op, n in sorted(calls.items())
    )
    lines = [
        "## concurrency: 10,000 concurrent payments in one worker",
        "",
        f"One worker process, {s['slots']:,} slots, {s['payment_seconds']:g} s payment, "
        f"order state {'on' if s['order_state'] else 'off'}, draining {result.get('queued', 0):,} "
        f"preloaded orders (queued in {result.get('preload_s', 0):g} s). Drain s: from the "
        "worker's start to the last charge in the processor's ledger, ramp and tail included; "
        "ideal: ceil(backlog / slots) payment times. AWS requests: every request the local AWS "
        "counted from the worker's start to its stop, per order paid.",
        "",
        table(
            [
                "paid",
                "drain s",
                "ideal s",
                "% of ideal",
                "worker CPU ms/order",
                "local AWS CPU ms/order",
                "AWS req/order",
                "visibility/order",
                "lease renewals/order",
                "worker RSS max MB",
                "charged twice",
            ],
            [
                [
                    result.get("paid"),
                    result.get("drain_s"),
                    result.get("ideal_drain_s"),
                    result.get("drain_of_ideal_pct"),
                    result.get("worker_cpu_ms_per_order"),
                    result.get("local_aws_cpu_ms_per_order"),
                    result.get("aws_requests_per_order"),
                    result.get("visibility_per_order"),
                    result.get("lease_renewals_per_order"),
                    result.get("worker_rss_max_mb"),
                    result.get("charged_twice"),
                ]
            ],
            digits=2,
        ),
    ]
    if result.get("per_period_per_s"):
        lines += [
            "",
            "Orders/s per whole payment period after the first: "
            + ", ".join(f"{x:,.0f}" for x in result.get("per_period_per_s", [])),
        ]
    if by_op:
        lines += ["", f"Requests by operation: {by_op}."]
    return "\n".join(lines) + "\n"

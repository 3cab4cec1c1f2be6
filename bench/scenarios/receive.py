"""receive: `per-task` vs `batched` receiving, each draining the same backlog at saturation.

The queue is preloaded with a backlog of orders (quick 10,000), then one worker process with
1,000 slots drains it, with order state on as `make run` ships it (`--stateless`: off).
Figures: orders/s per whole payment period in the steady part (after the first wave, before
the backlog runs out or the time limit stops the run) against the ideal slots / payment time,
SQS requests per order and empty receives (the worker's own counters), and CPU per order of
the worker and of the local AWS (from /proc, start-up excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from pathlib import Path
from typing import Any, TypedDict

from devstack.topology import Topology
from services.common.settings import AwsSettings
from services.worker.settings import ReceiveStrategy, WorkerSettings

from ..harness.ledger import Ledger, ledger_verdicts
from ..harness.procstat import cpu_seconds
from ..harness.queue import preload
from ..harness.results import Earlier, Result, TargetResult
from ..harness.stack import (
    LocalStack,
    WorkerRun,
    local_stack,
    new_topology,
    order_state,
    sqs_client,
    state_env,
    wait_until_paid,
    worker_process,
)
from ..harness.stats import drain_rate, sustained_rate
from ..harness.targets import target
from ..report.charts import bars
from ..report.markdown import table

STRATEGIES: tuple[ReceiveStrategy, ...] = ("per-task", "batched")
# Concurrent receives x the cost of one, above this many seconds, would keep the local AWS
# busy long after the run's time limit (it cannot abandon a request it has started).
RECEIVE_BUDGET_S = 60.0
PRELOAD_LIMIT_S = 120.0


class Settings(TypedDict):
    slots: int
    payment_seconds: float
    backlog: int
    time_limit_s: float
    """Seconds a worker may drain, preload not included; the run stops there if not drained."""
    strategies: list[str]
    order_state: bool


class Rates(TypedDict, total=False):
    """A drain timed whole, and per whole payment period."""

    drain_s: float | None
    """From the worker's start (its first receive) to the last charge; None: not drained."""
    ideal_drain_s: float
    """ceil(backlog / slots) payment times."""
    drain_per_s: float | None
    drain_of_ideal_pct: float | None
    sustained_per_s: float | None
    per_period_per_s: list[float]
    periods_measured: int
    of_ideal_pct: float | None
    min_period_of_ideal_pct: float | None


class StrategyRun(Rates, total=False):
    """One strategy draining the backlog; a skipped run has only the first keys and `skipped`."""

    strategy: str
    order_state: bool
    queued: int
    preload_s: float
    receive_probe_ms: float
    skipped: str
    """Why the run was not made (one receive too slow at this backlog)."""
    drained: bool
    paid: int
    charged_twice: int
    charges: int
    """Every charge in this worker's ledger lines."""
    paid_reported: int
    """The worker's own order_paid lines."""
    run_s: float
    ideal_per_s: float
    sqs_requests: int
    requests_per_order: float | None
    cpu_ms_per_order: float | None
    local_aws_cpu_ms_per_order: float | None
    worker: dict[str, Any]
    """The worker's `worker_stopped` counters."""


class ReceiveResult(Result):
    settings: Settings
    runs: dict[str, StrategyRun]
    """By strategy name, in the order run."""


def _strategies(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown strategy {unknown[0]!r}; use {STRATEGIES}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slots", type=int, default=1000, help="payment slots (default 1000)")
    parser.add_argument("--payment-seconds", type=float, default=3.0)
    parser.add_argument("--backlog", type=int, help="orders preloaded (quick 10,000, full 20,000)")
    parser.add_argument(
        "--time-limit", type=float, help="seconds of draining per strategy (quick 30, full 90)"
    )
    parser.add_argument(
        "--strategies",
        type=_strategies,
        default=STRATEGIES,
        help="comma-separated (default per-task,batched)",
    )


def settings(args: argparse.Namespace) -> Settings:
    return {
        "slots": args.slots,
        "payment_seconds": args.payment_seconds,
        "backlog": args.backlog or (10_000 if args.quick else 20_000),
        # Room for the ideal drain (10,000 at 333/s: 30 s) plus the first and last payments.
        "time_limit_s": args.time_limit or (40.0 if args.quick else 90.0),
        "strategies": list(args.strategies),
        "order_state": order_state(args),
    }


async def _fill(aws: AwsSettings, spec: Settings) -> tuple[Topology, set[str], float, float]:
    """A fresh queue with the backlog on it; the cost of one receive at that depth."""
    topology = await new_topology(aws, "receive")
    async with sqs_client(aws) as sqs:
        started = time.monotonic()
        ids = await preload(sqs, topology.queue_url, spec["backlog"], PRELOAD_LIMIT_S)
        preload_s = time.monotonic() - started
        # VisibilityTimeout 0: the probe leaves the backlog as it found it.
        started = time.monotonic()
        await sqs.receive_message(
            QueueUrl=topology.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=0
        )
        probe_s = time.monotonic() - started
    return topology, ids, preload_s, probe_s


def _skip(
    aws: AwsSettings, probe_s: float, queued: int, spec: Settings, strategy: ReceiveStrategy
) -> str | None:
    """Why a strategy cannot be run at this backlog, or None: its receives would be too slow."""
    worker_settings = WorkerSettings(
        queue_url="", aws=aws, slots=spec["slots"], receive_strategy=strategy
    )
    concurrency = worker_settings.receive_concurrency
    if probe_s * concurrency <= RECEIVE_BUDGET_S:
        return None
    return (
        f"one receive takes {probe_s * 1000:,.0f} ms at {queued:,} queued; "
        f"{concurrency:,} at once would keep the local AWS busy for minutes"
    )


def _drain(
    stack: LocalStack, topology: Topology, ids: set[str], strategy: ReceiveStrategy, spec: Settings
) -> StrategyRun:
    """One worker draining the backlog on `topology`: its rate, requests and CPU per order."""
    pay = spec["payment_seconds"]
    aws_cpu_start = cpu_seconds(stack.aws_pid)
    with worker_process(
        stack.aws,
        topology.queue_url,
        slots=spec["slots"],
        payment_seconds=pay,
        strategy=strategy,
        grace_seconds=pay,
        extra=state_env(spec["order_state"], topology),
    ) as worker:
        started = time.time()
        drained = asyncio.run(wait_until_paid(worker, ids, spec["time_limit_s"]))
        stopped_at = time.time()
        aws_cpu = cpu_seconds(stack.aws_pid)
    stats = worker.stopped or {}
    paid = len(ids & worker.charged_ids())
    ideal = spec["slots"] / pay
    requests = stats.get("receive_calls", 0) + stats.get("delete_calls", 0)
    ledger = Ledger.of(worker.charges)
    run: StrategyRun = {
        "drained": drained,
        "paid": paid,
        "charged_twice": len(ledger.twice()),
        "charges": ledger.total,
        "paid_reported": len(worker.paid),
        "run_s": round(stopped_at - started, 2),
        "ideal_per_s": ideal,
        "sqs_requests": requests,
        "requests_per_order": requests / paid if paid else None,
        "cpu_ms_per_order": per_order(worker.cpu_seconds, paid),
        "local_aws_cpu_ms_per_order": per_order(_spent(aws_cpu_start, aws_cpu), paid),
        "worker": stats,
    }
    run.update(_rates(worker, drained, stopped_at, spec))
    return run


def _rates(worker: WorkerRun, drained: bool, stopped_at: float, spec: Settings) -> StrategyRun:
    """The drain timed from the worker's start to the last charge, and per period."""
    pay, slots = spec["payment_seconds"], spec["slots"]
    ideal = slots / pay
    backlog = spec["backlog"]
    charged = list(worker.charged_at.values())
    start = worker.started_at
    drain = (
        drain_rate(start, max(charged), len(charged), slots, pay)
        if drained and start is not None and charged
        else None
    )
    # When the backlog ran out: the last payment's start, if every order got one.
    starts = [p.at - p.payment_ms / 1000 for p in worker.paid]
    backlog_out = max(starts) if drained and starts else None
    until = min(stopped_at, backlog_out) if backlog_out is not None else stopped_at
    rate = sustained_rate(
        [p.at for p in worker.paid], pay, until=until, started=starts, since=start
    )
    return {
        "drain_s": None if drain is None else round(drain.seconds, 2),
        "ideal_drain_s": math.ceil(backlog / slots) * pay,
        "drain_per_s": None if drain is None else drain.per_s,
        "drain_of_ideal_pct": None if drain is None else drain.of_ideal_pct,
        "sustained_per_s": rate.per_s,
        "per_period_per_s": [round(r, 2) for r in rate.per_period],
        "periods_measured": len(rate.per_period),
        "of_ideal_pct": 100 * rate.per_s / ideal if rate.per_s is not None else None,
        "min_period_of_ideal_pct": (
            100 * min(rate.per_period) / ideal if rate.per_period else None
        ),
    }


def _spent(start: float | None, end: float | None) -> float | None:
    return end - start if start is not None and end is not None else None


def per_order(seconds: float | None, orders: int) -> float | None:
    """CPU seconds spread over orders, in ms each; None when either is missing."""
    return seconds * 1000 / orders if seconds is not None and orders else None


def _one(stack: LocalStack, name: str, spec: Settings) -> StrategyRun:
    strategy: ReceiveStrategy = "per-task" if name == "per-task" else "batched"
    topology, ids, preload_s, probe_s = asyncio.run(_fill(stack.aws, spec))
    result: StrategyRun = {
        "strategy": name,
        "order_state": spec["order_state"],
        "queued": len(ids),
        "preload_s": round(preload_s, 2),
        "receive_probe_ms": round(probe_s * 1000, 2),
    }
    skipped = _skip(stack.aws, probe_s, len(ids), spec, strategy)
    if skipped is not None:
        result["skipped"] = skipped
        return result
    result.update(_drain(stack, topology, ids, strategy, spec))
    return result


def run(args: argparse.Namespace, earlier: Earlier) -> ReceiveResult:
    spec = settings(args)
    with local_stack("receive", order_state=spec["order_state"]) as stack:
        runs = {strategy: _one(stack, strategy, spec) for strategy in spec["strategies"]}
    result: ReceiveResult = {"settings": spec, "runs": runs}
    result["targets"] = targets(result)
    return result


def targets(result: ReceiveResult) -> list[TargetResult]:
    """The drain's targets: whole and per period, requests and CPU per order, the ledger."""
    spec, runs = result["settings"], result["runs"]
    batched = runs.get("batched", StrategyRun())
    state = "with order state" if spec["order_state"] else "stateless"
    note = (
        f"{spec['slots']:,} slots, {spec['payment_seconds']:g} s payment, "
        f"{batched.get('queued', 0):,} queued, {state}"
    )
    return [
        target(
            "receive: one worker's whole drain, first receive to last payment, batched",
            batched.get("drain_of_ideal_pct"),
            ">=",
            96,
            "% of ideal",
            f"{note}; ideal: ceil(backlog / slots) payment times",
        ),
        target(
            "receive: one worker's sustained rate per whole payment period, batched",
            batched.get("of_ideal_pct"),
            ">=",
            95,
            "% of ideal",
            note,
        ),
        target(
            "receive: SQS requests per order, batched",
            batched.get("requests_per_order"),
            "<=",
            0.25,
        ),
        target(
            "receive: worker CPU per order, batched",
            batched.get("cpu_ms_per_order"),
            "<=",
            0.5,
            "ms",
            state,
        ),
        *ledger_verdicts(
            "receive",
            lost=None,  # a run stopped by its time limit leaves orders queued, not lost
            twice=sum(r.get("charged_twice", 0) for r in runs.values()),
            charges=sum(r.get("charges", 0) for r in runs.values()),
            paid=sum(r.get("paid_reported", 0) for r in runs.values()),
        ),
    ]


_HEADER = [
    "strategy",
    "queued",
    "paid",
    "periods",
    "orders/s",
    "% of ideal",
    "min %",
    "drain s",
    "ideal s",
    "drain % of ideal",
    "SQS req/order",
    "receives",
    "empty",
    "deletes",
    "worker CPU ms/order",
    "local AWS CPU ms/order",
    "1 receive ms",
]


def _row(strategy: str, r: StrategyRun) -> list[Any]:
    w = r.get("worker") or {}
    return [
        strategy,
        r["queued"],
        r.get("paid"),
        r.get("periods_measured"),
        r.get("sustained_per_s"),
        r.get("of_ideal_pct"),
        r.get("min_period_of_ideal_pct"),
        r.get("drain_s"),
        r.get("ideal_drain_s"),
        r.get("drain_of_ideal_pct"),
        r.get("requests_per_order"),
        w.get("receive_calls"),
        w.get("empty_receives"),
        w.get("delete_calls"),
        r.get("cpu_ms_per_order"),
        r.get("local_aws_cpu_ms_per_order"),
        r["receive_probe_ms"],
    ]


def _notes(strategy: str, r: StrategyRun, s: Settings) -> list[str]:
    """Why a strategy's row is short: not run, not drained, or a short preload."""
    notes = []
    if "skipped" in r:
        notes.append(f"- `{strategy}` not run: {r['skipped']}.")
    elif not r.get("drained"):
        notes.append(
            f"- `{strategy}` did not drain {r['queued']:,} orders within "
            f"{s['time_limit_s']:g} s ({r.get('paid', 0):,} paid): its rate is counted up "
            "to the stop."
        )
    if r["queued"] < s["backlog"]:
        notes.append(
            f"- `{strategy}`: the local AWS queued only {r['queued']:,} of "
            f"{s['backlog']:,} orders in {r['preload_s']:g} s."
        )
    return notes


def report(result: ReceiveResult) -> str:
    s, runs = result["settings"], result["runs"]
    notes = [note for strategy, r in runs.items() for note in _notes(strategy, r, s)]
    periods = [
        f"- `{strategy}` orders/s per period: "
        + ", ".join(f"{x:,.0f}" for x in r["per_period_per_s"])
        for strategy, r in runs.items()
        if r.get("per_period_per_s")
    ]
    lines = [
        "## receive: per-task vs batched at saturation",
        "",
        f"One worker, {s['slots']:,} slots, payment {s['payment_seconds']:g} s (ideal "
        f"{s['slots'] / s['payment_seconds']:,.1f} orders/s), draining a preloaded backlog of "
        f"{s['backlog']:,} orders for at most {s['time_limit_s']:g} s, order state "
        f"{'on' if s.get('order_state') else 'off'}. Drain s is timed whole, from the "
        "worker's start (its first receive; the backlog is already queued) to the last "
        "charge in the processor's ledger, ramp and tail included, against ceil(backlog / "
        "slots) payment times (ideal s). Per period: each whole payment period after the "
        "first (slots filling) up to the backlog running out (or the stop) is credited with "
        "the payment time spent in it; orders/s is their mean and min % the worst. Receives "
        "count every call started, long polls still waiting at the stop included; CPU with "
        "psutil (local AWS: the server's whole run).",
        "",
        table(_HEADER, [_row(strategy, r) for strategy, r in runs.items()], digits=2),
    ]
    if notes or periods:
        lines += ["", *notes, *periods]
    return "\n".join(lines) + "\n"


def charts(result: ReceiveResult, out_dir: Path) -> list[str]:
    values = {
        name: per_order
        for name, r in result["runs"].items()
        if (per_order := r.get("requests_per_order")) is not None
    }
    if not values:
        return []
    return [
        bars(
            values,
            out_dir / "receive-requests-per-order.png",
            "receive: SQS requests per order",
            "requests per paid order",
        )
    ]

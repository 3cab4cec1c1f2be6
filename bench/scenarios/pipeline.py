"""pipeline: the whole system at rising open-loop rates.

The local AWS, the topology, the API and one worker with order state on (`--stateless`:
off), as `make run` starts them but with 1,000 slots (`--slots`; `make run` ships 100, which
at 3 s payments carry 33 orders/s): enough that the worker's slots are not what limits any
rate tried below 333/s, so the sweep finds the pipeline's own limit. Orders arrive open loop
at 30, 60, 120, 240, ... a second, half of them keyed with a client `order_id`; the sweep
stops at the first rate whose p99 passes the limit or whose orders are refused, but always
runs up to the rate the targets name; a short warm-up at 10/s comes first and is not
counted. Per rate: p50/p99, accepted %, AWS requests per order by service (the local AWS's
own counts), and CPU ms per order of each process (API, worker, local AWS), counted from the
first arrival until every accepted order is paid. A rate is carried when every order was
accepted, and charged (the processor's ledger) within one payment time plus 5 s of the last
arrival, with p99 in bound.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from localaws.client import ControlError, request_counts

from ..harness.ledger import Ledger, ledger_verdicts
from ..harness.load import open_loop
from ..harness.procstat import cpu_seconds
from ..harness.remote import RemoteOrders
from ..harness.results import Earlier, Result, TargetResult
from ..harness.stack import (
    local_stack,
    order_state,
    wait_until_paid,
)
from ..harness.stats import summarize
from ..harness.targets import target
from ..report.charts import latency_vs_rate
from ..report.markdown import table

RATES = (30.0, 60.0, 120.0, 240.0, 480.0, 960.0)
# The p99 target names this rate; the sweep never stops before --min-rate (default 120/s).
P99_RATE, MIN_RATE = 60.0, 120.0
# CPU ms per order at the highest rate carried, where arrivals overlap and calls batch:
# (label, process, limit).
CPU_TARGETS = (("API", "api", 1.5), ("local AWS", "local_aws", 2.5), ("worker", "worker", 0.6))
PIPELINE_P99_MS = 100.0
PIPELINE_RATE = 250.0
# Carried: the last order paid within one payment time and this many seconds of the last
# arrival (a worker capped below the rate would still drain, long after arrivals stop).
CARRY_SLACK_S = 5.0
# A doubling ladder brackets the highest rate carried within a factor of two (240 carried and
# 480 not says little about 250); this many bisections between the two narrow it to 1/8.
REFINE_STEPS = 2
WARMUP_RATE = 10.0


class Settings(TypedDict):
    rates: list[float]
    duration_s: float
    """Seconds of arrivals per rate."""
    keyed_share: float
    slots: int
    payment_seconds: float
    p99_limit_ms: float
    """The sweep stops after the first rate whose p99 is above this."""
    min_rate: float
    """...but not before this rate has run."""
    refine_steps: int
    """Rates tried between the highest carried and the next one up, bisecting."""
    timeout_s: float
    warmup_s: float
    """Seconds of orders at WARMUP_RATE before the sweep, not counted: warm connections."""
    order_state: bool
    target: NotRequired[str | None]
    """--target: the running stack swept (no CPU, request counts or ledger of its own)."""


class Step(TypedDict):
    rate: float
    sent: int
    accepted: int
    accepted_pct: float | None
    timeouts: int
    errors: int
    latency_ms: dict[str, float | int | None]
    generator_max_lag_ms: float
    paid: int
    all_paid: bool
    """Every accepted order charged within one payment time plus CARRY_SLACK_S of the last
    arrival: the worker kept up, rather than drained a queue after arrivals stopped."""
    last_paid_after_s: float | None
    """From the end of arrivals to the last accepted order's charge (the ledger's line)."""
    requests_per_order: dict[str, float] | None
    """AWS requests per accepted order by service (None: the local AWS cannot count them)."""
    requests_by_operation: dict[str, dict[str, int]] | None
    cpu_ms_per_order: dict[str, float | None]
    """api, worker, local_aws: CPU ms per accepted order over the step."""


class PipelineResult(Result):
    settings: Settings
    steps: list[Step]
    """One per rate tried, by rate: the sweep (it stops past the p99 limit or a refusal) and
    the bisections between the highest rate carried and the next one up."""
    charged_twice: int | None
    """Orders the processor's ledger shows charged more than once (None: on a --target,
    whose ledger the bench cannot read)."""
    charges: int | None
    """Every charge in the processor's ledger (API and worker)."""
    paid_reported: int | None
    """The worker's order_paid lines, warm-up included."""
    worker: dict[str, Any] | None
    """The worker's `worker_stopped` counters."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=list(RATES),
        help="comma-separated orders/s, in order (default 30,60,120,240,480,960)",
    )
    parser.add_argument("--duration", type=float, help="seconds per rate (quick 10, full 30)")
    parser.add_argument("--keyed", type=float, default=0.5, help="share with a client order_id")
    parser.add_argument("--slots", type=int, default=1000, help="worker slots (default 1000)")
    parser.add_argument("--payment-seconds", type=float, default=3.0)
    parser.add_argument(
        "--p99-limit", type=float, default=1000.0, help="stop past this p99 (ms, default 1000)"
    )
    parser.add_argument(
        "--min-rate", type=float, default=MIN_RATE, help="run at least up to this rate"
    )
    parser.add_argument(
        "--refine",
        type=int,
        default=REFINE_STEPS,
        help=f"rates bisected between the highest carried and the next (default {REFINE_STEPS})",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout (s)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help=f"seconds of {WARMUP_RATE:g} orders/s before the sweep, not counted (default 2)",
    )


def settings(args: argparse.Namespace) -> Settings:
    return {
        "rates": list(args.rates),
        "duration_s": float(args.duration or (10 if args.quick else 30)),
        "keyed_share": args.keyed,
        "slots": args.slots,
        "payment_seconds": args.payment_seconds,
        "p99_limit_ms": args.p99_limit,
        "min_rate": args.min_rate,
        "refine_steps": args.refine,
        "timeout_s": args.timeout,
        "warmup_s": args.warmup,
        "order_state": order_state(args),
        "target": getattr(args, "target", None),
    }


async def _counts(endpoint: str) -> dict[str, dict[str, int]] | None:
    try:
        return await request_counts(endpoint)
    except (ControlError, OSError, ValueError):
        return None  # a local AWS without the counting endpoint


def _difference(
    after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    return {
        service: {
            op: n - before.get(service, {}).get(op, 0)
            for op, n in ops.items()
            if n - before.get(service, {}).get(op, 0)
        }
        for service, ops in after.items()
    }


@dataclass(frozen=True)
class _Under:
    """What the sweep runs against: the bench's own stack, or one it did not start."""

    url: str
    wait: Callable[[set[str], float], Awaitable[bool]]
    """Wait until every order is paid (or the limit): the worker's ledger, or GET /orders."""
    paid_at: Callable[[], Mapping[str, float]]
    pids: Mapping[str, int]
    """Processes whose CPU is read (none on a target: its CPU is not the bench's to read)."""
    endpoint: str | None
    """The local AWS, for its request counts (None on a target)."""


def _cpu_per_order(
    before: Mapping[str, float | None], after: Mapping[str, float | None], n: int
) -> dict[str, float | None]:
    cpu: dict[str, float | None] = {}
    for name, start in before.items():
        end = after.get(name)
        cpu[name] = (
            (end - start) * 1000 / n if n and start is not None and end is not None else None
        )
    return cpu


async def _step(under: _Under, rate: float, s: Settings) -> Step:
    before = None if under.endpoint is None else await _counts(under.endpoint)
    cpu_before = {name: cpu_seconds(pid) for name, pid in under.pids.items()}
    load = await open_loop(
        under.url + "/orders/async",
        rate=rate,
        duration=s["duration_s"],
        request_timeout=s["timeout_s"],
        desc=f"pipeline {rate:g}/s",
        keyed=s["keyed_share"],
    )
    accepted = {o.order_id for o in load.outcomes if o.status == 202}
    # Every order is waited for (the next rate starts on an idle pipeline); in time or not
    # is judged from the payments' own timestamps below.
    await under.wait(accepted, 2 * s["payment_seconds"] + 20)
    cpu_after = {name: cpu_seconds(pid) for name, pid in under.pids.items()}
    after = None if under.endpoint is None else await _counts(under.endpoint)
    paid_at = [at for order_id, at in under.paid_at().items() if order_id in accepted]
    n = len(accepted)
    by_op = _difference(after, before) if after is not None and before is not None else None
    per_order = (
        {service: sum(ops.values()) / n for service, ops in by_op.items()}
        if by_op is not None and n
        else None
    )
    answered = [o.latency_ms for o in load.outcomes if o.status == 202 and o.latency_ms is not None]
    return {
        "rate": rate,
        "sent": len(load.outcomes),
        "accepted": n,
        "accepted_pct": 100 * n / len(load.outcomes) if load.outcomes else None,
        "timeouts": sum(1 for o in load.outcomes if o.error == "timeout"),
        "errors": sum(1 for o in load.outcomes if o.status != 202 and o.error != "timeout"),
        "latency_ms": summarize(answered),
        "generator_max_lag_ms": load.max_lag_ms,
        "paid": len(paid_at),
        "all_paid": len(paid_at) == n and _in_time(paid_at, load.ended, s["payment_seconds"]),
        "last_paid_after_s": max(paid_at) - load.ended if paid_at else None,
        "requests_per_order": per_order,
        "requests_by_operation": by_op,
        "cpu_ms_per_order": _cpu_per_order(cpu_before, cpu_after, n),
    }


def _in_time(charged_at: list[float], arrivals_ended: float, payment_seconds: float) -> bool:
    """Whether the last charge came within one payment time plus CARRY_SLACK_S of the end
    of arrivals."""
    return not charged_at or max(charged_at) - arrivals_ended <= payment_seconds + CARRY_SLACK_S


async def _warm_up(under: _Under, s: Settings) -> None:
    """A few orders through the whole pipeline first: the figures are not its cold start."""
    load = await open_loop(
        under.url + "/orders/async",
        rate=WARMUP_RATE,
        duration=s["warmup_s"],
        request_timeout=s["timeout_s"],
        desc="pipeline warm-up",
        keyed=s["keyed_share"],
    )
    accepted = {o.order_id for o in load.outcomes if o.status == 202}
    await under.wait(accepted, 2 * s["payment_seconds"] + 20)


def _carried(step: Step) -> bool:
    """Every order accepted and paid in time (`all_paid`), p99 within the target's bound."""
    p99 = step["latency_ms"]["p99"]
    return (
        step["accepted"] == step["sent"]
        and step["all_paid"]
        and p99 is not None
        and p99 <= PIPELINE_P99_MS
    )


def _next_bisection(steps: list[Step]) -> float | None:
    """The rate halfway between the highest carried and the lowest above it not carried."""
    carried = [st["rate"] for st in steps if _carried(st)]
    if not carried:
        return None
    low = max(carried)
    above = [st["rate"] for st in steps if st["rate"] > low]
    if not above:
        return None
    return float(round((low + min(above)) / 2))


def _past_limit(step: Step, s: Settings) -> bool:
    p99 = step["latency_ms"]["p99"]
    refused = step["accepted"] < step["sent"]
    return refused or p99 is None or p99 > s["p99_limit_ms"]


def _sweep(under: _Under, s: Settings) -> list[Step]:
    """The ladder of rates up to the limit, then the bisections above the highest carried."""
    steps: list[Step] = []
    if s["warmup_s"] > 0:
        asyncio.run(_warm_up(under, s))
    for rate in s["rates"]:
        step = asyncio.run(_step(under, rate, s))
        steps.append(step)
        if _past_limit(step, s) and rate >= s["min_rate"]:
            break
        time.sleep(0.5)  # let the last deletes land before the next step's counts
    for _ in range(s["refine_steps"]):
        between = _next_bisection(steps)
        if between is None or any(st["rate"] == between for st in steps):
            break
        steps.append(asyncio.run(_step(under, between, s)))
        time.sleep(0.5)
    return steps


def _on_target(s: Settings, url: str) -> PipelineResult:
    """The sweep against a stack the bench did not start: completion from GET /orders/{id}."""
    orders = RemoteOrders(url)
    under = _Under(url, orders.wait_until_paid, lambda: orders.paid_at, {}, None)
    steps = _sweep(under, s)
    return {
        "settings": s,
        "steps": sorted(steps, key=lambda st: st["rate"]),
        "charged_twice": None,
        "charges": None,
        "paid_reported": None,
        "worker": None,
    }


def run(args: argparse.Namespace, earlier: Earlier) -> PipelineResult:
    s = settings(args)
    if s["target"] is not None:
        remote = _on_target(s, s["target"])
        remote["targets"] = targets(remote)
        return remote
    pay = s["payment_seconds"]
    with (
        local_stack("pipeline", order_state=s["order_state"]) as stack,
        stack.api(pay) as api,
        stack.worker(slots=s["slots"], payment_seconds=pay, grace_seconds=pay) as worker,
    ):
        pids = {"api": api.pid, "worker": worker.pid, "local_aws": stack.aws_pid}
        under = _Under(
            api.url,
            lambda ids, limit: wait_until_paid(worker, ids, limit),
            lambda: worker.charged_at,
            pids,
            stack.aws.endpoint_url,
        )
        steps = _sweep(under, s)
    ledger = Ledger.of(api.charges, worker.charges)
    result: PipelineResult = {
        "settings": s,
        "steps": sorted(steps, key=lambda st: st["rate"]),
        "charged_twice": len(ledger.twice()),
        "charges": ledger.total,
        "paid_reported": len(worker.paid),
        "worker": worker.stopped,
    }
    result["targets"] = targets(result)
    return result


def _at(steps: list[Step], rate: float) -> Step | None:
    return next((step for step in steps if step["rate"] == rate), None)


def _cpu(step: Step | None, name: str) -> float | None:
    return None if step is None else step["cpu_ms_per_order"].get(name)


def targets(result: PipelineResult) -> list[TargetResult]:
    """The default path's targets, from the sweep; on a --target, those a client can see."""
    steps: list[Step] = result["steps"]
    s: Settings = result["settings"]
    state = "order state on" if s["order_state"] else "stateless"
    at_p99 = _at(steps, P99_RATE)
    # The highest rate the whole pipeline carried: every order accepted and paid in time,
    # p99 in bound; the CPU targets are read there, where batching forms.
    carried = [step for step in steps if _carried(step)]
    top = max(carried, key=lambda st: st["rate"], default=None)
    tried = ", ".join(f"{step['rate']:g}" for step in steps)
    lost = sum(step["accepted"] - step["paid"] for step in steps)
    seen = [
        target(
            f"pipeline: p99 at {P99_RATE:g} orders/s",
            None if at_p99 is None else at_p99["latency_ms"]["p99"],
            "<=",
            25,
            "ms",
            f"{s['keyed_share'] * 100:g} % keyed, {state}",
        ),
        target(
            f"pipeline: highest rate carried with p99 <= {PIPELINE_P99_MS:g} ms",
            None if top is None else top["rate"],
            ">=",
            PIPELINE_RATE,
            "orders/s",
            f"rates tried: {tried}; all accepted and paid within one payment time + "
            f"{CARRY_SLACK_S:g} s of the last arrival",
        ),
    ]
    if s.get("target"):
        # Another stack's CPU and ledger are not the bench's to read: completion from GET.
        return [
            *seen,
            target("pipeline: accepted orders never paid (GET /orders/{id})", lost, "==", 0),
        ]
    at_top = f"at the highest rate carried ({top['rate']:g}/s)" if top else "no rate carried"
    cpu = [
        target(
            f"pipeline: {label} CPU per order {at_top}", _cpu(top, name), "<=", limit, "ms", state
        )
        for label, name, limit in CPU_TARGETS
    ]
    ledger = ledger_verdicts(
        "pipeline",
        lost=lost,
        twice=result["charged_twice"] or 0,
        charges=result.get("charges") or 0,
        paid=result.get("paid_reported") or 0,
    )
    return [*seen, *cpu, *ledger]


def _services(steps: list[Step]) -> list[str]:
    """The AWS services any step counted requests to (none: the local AWS cannot count)."""
    return sorted({svc for st in steps for svc in (st["requests_per_order"] or {})})


CPU_COLUMNS = (("api", "API"), ("worker", "worker"), ("local_aws", "local AWS"))


def _steps_table(steps: list[Step]) -> str:
    """One row per rate: latency, acceptance, AWS requests and CPU per order (the CPU
    columns only when the bench ran the processes: not on a --target)."""
    services = _services(steps)
    with_cpu = any(st["cpu_ms_per_order"] for st in steps)
    cpus = CPU_COLUMNS if with_cpu else ()
    rows = []
    for st in steps:
        lat, cpu, req = st["latency_ms"], st["cpu_ms_per_order"], st["requests_per_order"] or {}
        rows.append(
            [
                st["rate"],
                st["sent"],
                st["accepted_pct"],
                lat["p50"],
                lat["p99"],
                "yes" if st["all_paid"] else "**no**",
                *[req.get(svc) for svc in services],
                *[cpu.get(name) for name, _ in cpus],
            ]
        )
    headers = [
        "orders/s",
        "sent",
        "accepted %",
        "p50 ms",
        "p99 ms",
        "paid in time?",
        *[f"{svc} req/order" for svc in services],
        *[f"{label} CPU ms/order" for _, label in cpus],
    ]
    return table(headers, rows, digits=2)


def _target_report(s: Settings, steps: list[Step]) -> str:
    return "\n".join(
        [
            f"## pipeline: {s.get('target')} at rising rates",
            "",
            f"A stack the bench did not start (`--target`): open-loop arrivals for "
            f"{s['duration_s']:g} s per rate, {s['keyed_share'] * 100:g} % keyed; latency from "
            "the client, completion from GET /orders/{id} (its `paid_at`); the stack's CPU, "
            "request counts and ledger are not the bench's to read.",
            "",
            _steps_table(steps),
            "",
        ]
    )


def report(result: PipelineResult) -> str:
    s: Settings = result["settings"]
    steps: list[Step] = result["steps"]
    if s.get("target"):
        return _target_report(s, steps)
    counted = "" if _services(steps) else " (this local AWS does not count requests)"
    return "\n".join(
        [
            "## pipeline: the whole system at rising rates",
            "",
            f"The API, one worker ({s['slots']:,} slots, {s['payment_seconds']:g} s payment) "
            f"and the local AWS as `make run` starts them but with {s['slots']:,} slots "
            "(`make run` ships 100: 33 orders/s at 3 s payments; here the slots are not "
            "what limits the rates tried), order state "
            f"{'on' if s['order_state'] else 'off'}; open-loop arrivals for "
            f"{s['duration_s']:g} s per rate, {s['keyed_share'] * 100:g} % with a client "
            f"`order_id`; the sweep stops past p99 {s['p99_limit_ms']:g} ms or at the first "
            f"refusal, not before {s['min_rate']:g}/s, then "
            f"{s.get('refine_steps', 0)} bisections between the highest rate carried (p99 "
            f"<= {PIPELINE_P99_MS:g} ms, all accepted and charged within "
            f"{s['payment_seconds'] + CARRY_SLACK_S:g} s of the last arrival) and the next "
            "one up; "
            f"{s.get('warmup_s', 0):g} s at "
            f"{WARMUP_RATE:g}/s first, not counted. AWS requests{counted} and CPU per "
            "accepted order (a 202 the client received), from the first arrival until every "
            "accepted order is paid; a request the client gave up on may still have been "
            "published and paid, so a rate with timeouts overstates both. "
            f"{result['charged_twice']} orders charged twice.",
            "",
            _steps_table(steps),
            "",
        ]
    )


def charts(result: PipelineResult, out_dir: Path) -> list[str]:
    steps: list[Step] = result["steps"]
    if not steps:
        return []
    rates = [st["rate"] for st in steps]
    return [
        latency_vs_rate(
            rates,
            {
                "p50": [st["latency_ms"]["p50"] for st in steps],
                "p99": [st["latency_ms"]["p99"] for st in steps],
            },
            out_dir / "pipeline-latency.png",
            "pipeline: /orders/async latency vs offered rate",
            limit_ms=PIPELINE_P99_MS,
        )
    ]

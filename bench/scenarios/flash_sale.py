"""flash-sale: open-loop arrivals at a fixed rate (60 orders/s) on async, then on sync.

Async: every order's fate is traced by id, from the API's 202 to the worker's `order_paid`
line; the queue's depth is sampled throughout and until it drains. Sync: the same arrivals
against /orders/sync with a client timeout, which is what a customer at the checkout sees.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from services.common.settings import AwsSettings

from ..harness.capacity import plan
from ..harness.ledger import Ledger, ledger_verdicts
from ..harness.load import OpenLoopRun, open_loop
from ..harness.queue import Depth, sampling
from ..harness.remote import RemoteOrders
from ..harness.results import Earlier, Result, TargetResult
from ..harness.stack import (
    WorkerRun,
    local_stack,
    order_state,
    poll_until,
    sqs_client,
    wait_until_paid,
)
from ..harness.stats import summarize
from ..harness.targets import target
from ..report.charts import queue_depth
from ..report.markdown import table

TARGET_WAIT_SECONDS = 0.1


class SaleSpec(TypedDict):
    """A flash sale's settings (plan reuses the suite's run only when they are equal)."""

    rate: float
    duration_s: float
    payment_seconds: float
    slots: int
    timeout_s: float
    target_wait_s: float
    order_state: bool


class Outcomes(TypedDict):
    """What the clients saw of one endpoint's arrivals."""

    sent: int
    ok: int
    ok_pct: float | None
    timeouts: int
    errors: int
    latency_ms: dict[str, float | int | None]
    generator_max_lag_ms: float


class AsyncSale(Outcomes):
    """The async side, each accepted order traced to its charge in the processor's ledger."""

    accepted: int
    paid: int
    lost: int
    drain_s: float | None
    """From the end of arrivals to an empty queue."""
    last_paid_s: float | None
    queue_wait_ms: dict[str, float | int | None]
    mean_payment_ms: float | None
    max_visible: int
    depth: Depth
    arrivals_s: float
    worker: dict[str, Any] | None
    """The worker's `worker_stopped` counters (set once it has stopped)."""


# "async" is a keyword: these keys need the functional form.
Sale = TypedDict(
    "Sale",
    {
        "async": AsyncSale,
        "sync": NotRequired[Outcomes],
        "charged_twice": int,
        "charges": NotRequired[int],
        "paid_reported": NotRequired[int],
    },
)


class FlashSaleResult(Result, Sale):
    settings: SaleSpec
    plan: dict[str, float | int]
    target: NotRequired[str]
    """--target: the running stack the sale ran against (no ledger or queue of its own)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=60.0, help="orders per second")
    parser.add_argument("--duration", type=float, help="seconds of arrivals (quick 10, full 60)")
    parser.add_argument("--payment-seconds", type=float, default=3.0)
    parser.add_argument("--slots", type=int, help="worker slots (default: what `plan` gives)")
    parser.add_argument(
        "--target-wait",
        type=float,
        default=TARGET_WAIT_SECONDS,
        help="mean wait for a free slot the planned slots aim at (s)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout (s)")


def duration(args: argparse.Namespace) -> float:
    return float(args.duration or (10 if args.quick else 60))


def _outcomes(load: OpenLoopRun, ok: int) -> Outcomes:
    answered = [o for o in load.outcomes if o.status == ok]
    return {
        "sent": len(load.outcomes),
        "ok": len(answered),
        "ok_pct": 100 * len(answered) / len(load.outcomes) if load.outcomes else None,
        "timeouts": sum(1 for o in load.outcomes if o.error == "timeout"),
        "errors": sum(1 for o in load.outcomes if o.status != ok and o.error != "timeout"),
        "latency_ms": summarize([o.latency_ms for o in answered if o.latency_ms is not None]),
        "generator_max_lag_ms": load.max_lag_ms,
    }


async def _async_sale(
    aws: AwsSettings, url: str, queue_url: str, worker: WorkerRun, spec: SaleSpec
) -> AsyncSale:
    pay = spec["payment_seconds"]
    async with sqs_client(aws) as sqs, sampling(sqs, queue_url, 0.25) as depth:
        load = await open_loop(
            url + "/orders/async",
            rate=spec["rate"],
            duration=spec["duration_s"],
            request_timeout=spec["timeout_s"],
            desc="flash sale /orders/async",
        )
        accepted = {o.order_id for o in load.outcomes if o.status == 202}
        await wait_until_paid(worker, accepted, limit=max(30.0, 4 * pay))
        # Paid is not yet drained: the deletes follow, so watch the queue empty too.
        await poll_until(lambda: depth.empty_after(load.ended) is not None, 2 * pay + 5)
    paid = [p for p in worker.paid if p.order_id in accepted]
    empty_at = depth.empty_after(load.ended)
    return {
        **_outcomes(load, 202),
        "accepted": len(accepted),
        "paid": len({p.order_id for p in paid}),
        "lost": len(accepted - worker.charged_ids()),
        "drain_s": empty_at - load.ended if empty_at is not None else None,
        "last_paid_s": max(p.at for p in paid) - load.ended if paid else None,
        "queue_wait_ms": summarize([p.queue_ms for p in paid]),
        "mean_payment_ms": sum(p.payment_ms for p in paid) / len(paid) if paid else None,
        "max_visible": depth.max_visible(load.started, load.ended),
        "depth": depth.as_dict(load.started),
        "arrivals_s": load.ended - load.started,
        "worker": None,
    }


def sale(spec: SaleSpec, *, with_sync: bool) -> Sale:
    """Run the flash sale described by `spec` (see settings in run()) and collect everything."""
    pay = spec["payment_seconds"]
    with local_stack("flash", order_state=spec["order_state"]) as stack:
        queue_url = stack.topology.queue_url
        with stack.api(pay) as api:
            with stack.worker(
                slots=spec["slots"], payment_seconds=pay, grace_seconds=pay
            ) as worker:
                outcome = asyncio.run(_async_sale(stack.aws, api.url, queue_url, worker, spec))
            outcome["worker"] = worker.stopped
            result: Sale = {"async": outcome, "charged_twice": 0}
            if with_sync:
                sync = asyncio.run(
                    open_loop(
                        api.url + "/orders/sync",
                        rate=spec["rate"],
                        duration=spec["duration_s"],
                        request_timeout=spec["timeout_s"],
                        desc="flash sale /orders/sync",
                    )
                )
                result["sync"] = _outcomes(sync, 200)
    # The processor's ledger over both processes: the worker's and the API's (sync) charges.
    ledger = Ledger.of(api.charges, worker.charges)
    result["charged_twice"] = len(ledger.twice())
    result["charges"] = ledger.total
    # What the services say they paid: the worker's order_paid lines and the sync answers.
    result["paid_reported"] = len(worker.paid) + result.get("sync", {"ok": 0})["ok"]
    return result


async def _async_on_target(url: str, spec: SaleSpec) -> AsyncSale:
    """The async side against a stack the bench did not start: paid from GET /orders/{id};
    its queue is not the bench's to read, so the drain is to the last order paid."""
    load = await open_loop(
        url + "/orders/async",
        rate=spec["rate"],
        duration=spec["duration_s"],
        request_timeout=spec["timeout_s"],
        desc="flash sale /orders/async",
    )
    accepted = {o.order_id for o in load.outcomes if o.status == 202}
    orders = RemoteOrders(url)
    await orders.wait_until_paid(accepted, max(30.0, 4 * spec["payment_seconds"]))
    paid = [at for order_id, at in orders.paid_at.items() if order_id in accepted]
    last = max(paid) - load.ended if paid else None
    return {
        **_outcomes(load, 202),
        "accepted": len(accepted),
        "paid": len(paid),
        "lost": len(accepted) - len(paid),
        "drain_s": last if len(paid) == len(accepted) else None,
        "last_paid_s": last,
        "queue_wait_ms": summarize([]),
        "mean_payment_ms": None,
        "max_visible": 0,
        "depth": {"t": [], "visible": [], "in_flight": []},
        "arrivals_s": load.ended - load.started,
        "worker": None,
    }


def on_target(url: str, spec: SaleSpec) -> Sale:
    """The flash sale against a running stack: async, then sync, as the clients see them."""
    outcome = asyncio.run(_async_on_target(url, spec))
    sync = asyncio.run(
        open_loop(
            url + "/orders/sync",
            rate=spec["rate"],
            duration=spec["duration_s"],
            request_timeout=spec["timeout_s"],
            desc="flash sale /orders/sync",
        )
    )
    return {"async": outcome, "sync": _outcomes(sync, 200), "charged_twice": 0}


def run(args: argparse.Namespace, earlier: Earlier) -> FlashSaleResult:
    planned = plan(args.rate, args.payment_seconds, args.target_wait)
    spec: SaleSpec = {
        "rate": args.rate,
        "duration_s": duration(args),
        "payment_seconds": args.payment_seconds,
        "slots": args.slots or planned.slots,
        "timeout_s": args.timeout,
        "target_wait_s": args.target_wait,
        "order_state": order_state(args),
    }
    url = getattr(args, "target", None)
    got = sale(spec, with_sync=True) if url is None else on_target(url, spec)
    result: FlashSaleResult = {
        "settings": spec,
        "plan": planned.as_dict(),
        "async": got["async"],
        "charged_twice": got["charged_twice"],
        "charges": got.get("charges", 0),
        "paid_reported": got.get("paid_reported", 0),
    }
    if "sync" in got:
        result["sync"] = got["sync"]
    if url is not None:
        result["target"] = url
    result["targets"] = targets(result, args.payment_seconds)
    return result


def targets(result: FlashSaleResult, payment_seconds: float) -> list[TargetResult]:
    """Acceptance, the drain and the ledger; on a --target, paid as GET /orders/{id} shows."""
    a, spec = result["async"], result["settings"]
    seen = [
        target("flash sale: orders accepted", a["ok_pct"], "==", 100, "%"),
        target(
            "flash sale: drain after arrivals stop",
            a["drain_s"],
            "<=",
            2 * payment_seconds,
            "s",
            f"{spec['slots']} slots (an input)"
            + ("; to the last order paid (GET /orders/{id})" if result.get("target") else ""),
        ),
    ]
    if result.get("target"):
        lost = target(
            "flash sale: accepted orders never paid (GET /orders/{id})", a["lost"], "==", 0
        )
        return [*seen, lost]
    return [
        *seen,
        *ledger_verdicts(
            "flash sale",
            lost=a["lost"],
            twice=result["charged_twice"],
            charges=result.get("charges", 0),
            paid=result.get("paid_reported", 0),
        ),
    ]


def _endpoints_table(result: FlashSaleResult) -> str:
    """What the clients saw of each endpoint."""
    rows = []
    for name, r in (("async", result["async"]), ("sync", result.get("sync"))):
        if r is None:
            continue
        lat = r["latency_ms"]
        rows.append(
            [name, r["sent"], r["ok_pct"], r["timeouts"], r["errors"], lat["p50"], lat["p99"]]
        )
    return table(["endpoint", "sent", "answered %", "timeouts", "errors", "p50 ms", "p99 ms"], rows)


def _orders_table(result: FlashSaleResult) -> str:
    """The accepted orders' fate, and the queue's drain."""
    a = result["async"]
    return table(
        [
            "accepted",
            "paid",
            "lost",
            "charged twice",
            "max waiting",
            "drained after s",
            "last paid after s",
        ],
        [
            [
                a["accepted"],
                a["paid"],
                a["lost"],
                # .get: results saved before the ledger was counted lack it.
                result.get("charged_twice"),
                a["max_visible"],
                a["drain_s"],
                a["last_paid_s"],
            ]
        ],
        digits=2,
    )


def report(result: FlashSaleResult) -> str:
    s, a = result["settings"], result["async"]
    where = (
        f"against {result['target']}, a stack the bench did not start (its own payment time "
        "and slots; paid as GET /orders/{id} shows it, drained at the last order paid)"
        if result.get("target")
        else f"payment {s['payment_seconds']:g} s, {s['slots']} worker slots (an input: "
        f"`--slots` or the plan's), order state {'on' if s.get('order_state') else 'off'}"
    )
    lines = [
        "## flash-sale: open-loop arrivals",
        "",
        f"{s['rate']:g} orders/s for {s['duration_s']:g} s (open loop: sent on schedule, answered "
        f"or not), {where}, client timeout {s['timeout_s']:g} s.",
        "",
        _endpoints_table(result),
        "",
        _orders_table(result),
        "",
        f"Slots needed: Little's law floor {result['plan']['min_slots']}, planned "
        f"{result['plan']['slots']}, used {s['slots']}; at most "
        f"{(a.get('worker') or {}).get('max_in_flight', '-')} payments ran at once. "
        f"Wait from acceptance to payment: p50 {a['queue_wait_ms']['p50'] or 0:,.0f} ms, "
        f"p99 {a['queue_wait_ms']['p99'] or 0:,.0f} ms.",
    ]
    if "sync" in result:
        sync = result["sync"]
        lines += [
            "",
            f"A sync customer waits {(sync['latency_ms']['p50'] or 0) / 1000:,.1f} s at the "
            f"median for an answer; {sync['timeouts']} of {sync['sent']} gave up after "
            f"{s['timeout_s']:g} s. An async customer waits "
            f"{a['latency_ms']['p50'] or 0:,.0f} ms.",
        ]
    return "\n".join(lines) + "\n"


def charts(result: FlashSaleResult, out_dir: Path) -> list[str]:
    d = result["async"]["depth"]
    return [
        queue_depth(
            {f"{result['settings']['slots']} slots": (d["t"], d["visible"])},
            out_dir / "flash-sale-queue-depth.png",
            f"flash sale: {result['settings']['rate']:g} orders/s",
            arrivals_end=result["async"]["arrivals_s"],
            in_flight=(d["t"], d["in_flight"]),
        )
    ]

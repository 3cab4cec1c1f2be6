"""scaling: worker slots 1, 5, 20, 100 and 1,000 under one arrival rate; who keeps up?

One API and one topic; every slot count gets a fresh empty queue on that topic and its own
worker process, while the same open-loop arrivals run and the queue's depth is sampled.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TypedDict

from services.common.settings import AwsSettings

from ..harness.ledger import Ledger, ledger_targets
from ..harness.load import open_loop
from ..harness.queue import Depth, sampling
from ..harness.results import Earlier, Result
from ..harness.stack import WorkerRun, local_stack, order_state, resubscribe, sqs_client
from ..harness.stats import rate_between
from ..report.charts import queue_depth
from ..report.markdown import table

SLOTS = (1, 5, 20, 100, 1000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--slots",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        default=SLOTS,
        help="comma-separated slot counts (default 1,5,20,100,1000)",
    )
    parser.add_argument(
        "--rate", type=float, help="orders per second (quick 18, full 6: the report's ~5.7)"
    )
    parser.add_argument("--payment-seconds", type=float, help="quick 1, full 3")
    parser.add_argument(
        "--duration", type=float, help="seconds of arrivals per run (quick 10, full 60)"
    )


class ScalingSettings(TypedDict):
    slots: list[int]
    """One run per slot count, each on a fresh queue."""
    rate: float
    payment_seconds: float
    duration_s: float
    order_state: bool


class SlotsRun(TypedDict):
    """One worker size under the arrivals."""

    slots: int
    capacity_per_s: float
    processing_per_s: float | None
    accepted: int
    paid: int
    depth_start: int | None
    depth_end: int | None
    depth_max: int
    keeps_up: bool
    """Under a second's worth of arrivals waiting when arrivals stop."""
    depth: Depth
    arrivals_s: float


class ScalingResult(Result):
    settings: ScalingSettings
    runs: list[SlotsRun]


def settings(args: argparse.Namespace) -> ScalingSettings:
    # Quick keeps the report's ratio (rate x payment time = 18 busy slots: 5 fall behind,
    # 20 just keep up) at a third of the payment time, so each run is short yet telling.
    return {
        "slots": list(args.slots),
        "rate": args.rate or (18.0 if args.quick else 6.0),
        "payment_seconds": args.payment_seconds or (1.0 if args.quick else 3.0),
        "duration_s": args.duration or (10.0 if args.quick else 60.0),
        "order_state": order_state(args),
    }


async def _one(
    aws: AwsSettings, url: str, queue_url: str, worker: WorkerRun, spec: ScalingSettings
) -> SlotsRun:
    rate, pay = spec["rate"], spec["payment_seconds"]
    async with sqs_client(aws) as sqs, sampling(sqs, queue_url, 0.25) as depth:
        load = await open_loop(
            url + "/orders/async",
            rate=rate,
            duration=spec["duration_s"],
            request_timeout=10,
            desc=f"{worker.slots} slots",
        )
        await asyncio.sleep(0.5)  # one more sample past the end of arrivals
    start, end = depth.at(load.started), depth.at(load.ended)
    paid_at = [p.at for p in worker.paid]
    # From one payment time in (the first payments finish then) to the end of arrivals.
    processing = rate_between(paid_at, load.started + pay, load.ended)
    end_visible = end[0] if end else None
    return {
        "slots": worker.slots,
        "capacity_per_s": worker.slots / pay,
        "processing_per_s": processing,
        "accepted": sum(1 for o in load.outcomes if o.status == 202),
        "paid": len(paid_at),
        "depth_start": start[0] if start else None,
        "depth_end": end_visible,
        "depth_max": depth.max_visible(load.started, load.ended),
        # Keeping up: less than a second's worth of arrivals waiting when arrivals stop.
        "keeps_up": end_visible is not None and end_visible <= rate,
        "depth": depth.as_dict(load.started),
        "arrivals_s": load.ended - load.started,
    }


def run(args: argparse.Namespace, earlier: Earlier) -> ScalingResult:
    spec = settings(args)
    pay = spec["payment_seconds"]
    runs: list[SlotsRun] = []
    workers: list[WorkerRun] = []
    with local_stack("scaling", order_state=spec["order_state"]) as stack, stack.api(pay) as api:
        for slots in spec["slots"]:
            stack.topology = asyncio.run(resubscribe(stack.aws, stack.topology, "scaling"))
            # No grace: what is still queued or paying when arrivals stop is the answer.
            with stack.worker(slots=slots, payment_seconds=pay) as worker:
                got = _one(stack.aws, api.url, stack.topology.queue_url, worker, spec)
                runs.append(asyncio.run(got))
            workers.append(worker)
    ledger = Ledger.of(api.charges, *(w.charges for w in workers))
    # No lost-order verdict: without grace, orders still queued at a stop are not lost.
    verdicts = ledger_targets(
        "scaling", ledger, accepted=None, paid=sum(len(w.paid) for w in workers)
    )
    return {"settings": spec, "runs": runs, "targets": verdicts}


def _runs_table(result: ScalingResult) -> str:
    """One row per slot count: capacity, processing rate, the queue's depth."""
    rows = [
        [
            r["slots"],
            r["capacity_per_s"],
            r["processing_per_s"],
            r["depth_start"],
            r["depth_end"],
            r["depth_max"],
            "yes" if r["keeps_up"] else "**no**",
        ]
        for r in result["runs"]
    ]
    return table(
        [
            "slots",
            "capacity /s (slots ÷ payment)",
            "processing /s",
            "depth start",
            "depth end",
            "depth max",
            "keeps up?",
        ],
        rows,
        digits=2,
    )


def report(result: ScalingResult) -> str:
    s = result["settings"]
    return (
        "\n".join(
            [
                "## scaling: worker slots under one arrival rate",
                "",
                f"{s['rate']:g} orders/s for {s['duration_s']:g} s per run, payment "
                f"{s['payment_seconds']:g} s, so {s['rate'] * s['payment_seconds']:g} slots are "
                f"busy on average (Little's law); order state "
                f"{'on' if s.get('order_state') else 'off'}. Processing rate is counted from "
                "one payment time in to the end of arrivals; keeps up = under a second of "
                "arrivals waiting at the end.",
                "",
                _runs_table(result),
                "",
                "Reference (AWS, 3 s payment, ~6 orders/s): 1 and 5 fall behind, 20 keep the queue "
                "at ~0, 100 is overkill.",
            ]
        )
        + "\n"
    )


def charts(result: ScalingResult, out_dir: Path) -> list[str]:
    series = {
        f"{r['slots']} slot{'' if r['slots'] == 1 else 's'}": (
            r["depth"]["t"],
            r["depth"]["visible"],
        )
        for r in result["runs"]
    }
    arrivals = max((r["arrivals_s"] for r in result["runs"]), default=None)
    return [
        queue_depth(
            series,
            out_dir / "scaling-queue-depth.png",
            f"scaling: queue depth at {result['settings']['rate']:g} orders/s",
            arrivals_end=arrivals,
        )
    ]

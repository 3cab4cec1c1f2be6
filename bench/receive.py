"""receive: `per-task` vs `batched` receiving, each draining the same backlog at saturation.

The queue is preloaded with (waves + 1) x slots orders, so every slot stays busy for whole
payment periods; then one worker process drains it. Figures: sustained orders/s (against the
ideal slots / payment time), SQS requests per order and empty receives (the worker's own
counters), and the worker's CPU per order (from /proc, start-up excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from services.common.settings import AwsSettings
from services.worker.settings import ReceiveStrategy, WorkerSettings

from .charts import bars
from .markdown import table, target
from .queue import preload
from .stack import local_aws, new_topology, sqs_client, wait_until_paid, worker_process
from .stats import sustained_rate

STRATEGIES = ("per-task", "batched")
# Concurrent receives x the cost of one, above this many seconds, would keep the local AWS
# busy long after the run's time limit (it cannot abandon a request it has started).
RECEIVE_BUDGET_S = 60.0


def _strategies(text: str) -> tuple[str, ...]:
    names = tuple(text.split(","))
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown strategy {unknown[0]!r}; use {STRATEGIES}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slots", type=int, default=1000, help="payment slots (default 1000)")
    parser.add_argument("--payment-seconds", type=float, default=3.0)
    parser.add_argument(
        "--waves", type=int, help="payment periods measured at saturation (quick 2, full 5)"
    )
    parser.add_argument(
        "--time-limit", type=float, help="seconds per strategy, preload included (quick 30)"
    )
    parser.add_argument(
        "--strategies",
        type=_strategies,
        default=STRATEGIES,
        help="comma-separated (default per-task,batched)",
    )


def settings(args: argparse.Namespace) -> dict[str, Any]:
    waves = args.waves or (2 if args.quick else 5)
    return {
        "slots": args.slots,
        "payment_seconds": args.payment_seconds,
        "waves": waves,
        "backlog": (waves + 1) * args.slots,
        "time_limit_s": args.time_limit or (30.0 if args.quick else 150.0),
        "strategies": list(args.strategies),
    }


async def _fill(aws: AwsSettings, spec: dict[str, Any]) -> tuple[str, set[str], float, float]:
    """A fresh queue with the backlog on it; the cost of one receive at that depth."""
    topology = await new_topology(aws, "receive")
    async with sqs_client(aws) as sqs:
        started = time.monotonic()
        ids = await preload(sqs, topology.queue_url, spec["backlog"], spec["time_limit_s"] / 2)
        preload_s = time.monotonic() - started
        # VisibilityTimeout 0: the probe leaves the backlog as it found it.
        started = time.monotonic()
        await sqs.receive_message(
            QueueUrl=topology.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=0
        )
        probe_s = time.monotonic() - started
    return topology.queue_url, ids, preload_s, probe_s


def _one(aws: AwsSettings, strategy: ReceiveStrategy, spec: dict[str, Any]) -> dict[str, Any]:
    slots, pay = spec["slots"], spec["payment_seconds"]
    queue_url, ids, preload_s, probe_s = asyncio.run(_fill(aws, spec))
    result: dict[str, Any] = {
        "strategy": strategy,
        "queued": len(ids),
        "preload_s": round(preload_s, 2),
        "receive_probe_ms": round(probe_s * 1000, 2),
    }
    worker_settings = WorkerSettings(
        queue_url=queue_url, aws=aws, num_workers=slots, receive_strategy=strategy
    )
    concurrency = worker_settings.receive_concurrency
    if probe_s * concurrency > RECEIVE_BUDGET_S:
        result["skipped"] = (
            f"one receive takes {probe_s * 1000:,.0f} ms at {len(ids):,} queued; "
            f"{concurrency:,} at once would keep the local AWS busy for minutes"
        )
        return result
    left = max(5.0, spec["time_limit_s"] - preload_s)
    with worker_process(
        aws, queue_url, slots=slots, payment_seconds=pay, strategy=strategy, grace_seconds=pay
    ) as worker:
        started = time.time()
        drained = asyncio.run(wait_until_paid(worker, ids, left))
        result["run_s"] = round(time.time() - started, 2)
    stats = worker.stopped or {}
    paid = len(ids & worker.paid_ids())
    rate, waves = sustained_rate([p.at for p in worker.paid], slots, pay)
    requests = stats.get("receive_calls", 0) + stats.get("delete_calls", 0)
    cpu = worker.cpu_seconds
    return result | {
        "drained": drained,
        "paid": paid,
        "sustained_per_s": rate if waves else None,
        "waves_measured": waves,
        "ideal_per_s": slots / pay,
        "of_ideal_pct": 100 * rate / (slots / pay) if waves else None,
        "sqs_requests": requests,
        "requests_per_order": requests / paid if paid else None,
        "cpu_ms_per_order": cpu * 1000 / paid if paid and cpu is not None else None,
        "worker": stats,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    spec = settings(args)
    with local_aws() as aws:
        runs = {strategy: _one(aws, strategy, spec) for strategy in spec["strategies"]}
    result: dict[str, Any] = {"settings": spec, "runs": runs}
    batched, per_task = runs.get("batched", {}), runs.get("per-task", {})
    note = f"{spec['slots']} slots, {spec['payment_seconds']:g} s payment"
    result["targets"] = [
        target(
            "receive: one worker's sustained rate, batched",
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
            "receive: SQS requests per order, per-task",
            per_task.get("requests_per_order"),
            ">=",
            2,
        ),
        target(
            "receive: worker CPU per order, batched",
            batched.get("cpu_ms_per_order"),
            "<=",
            0.5,
            "ms",
        ),
    ]
    return result


def report(result: dict[str, Any]) -> str:
    s = result["settings"]
    rows = []
    notes = []
    for strategy, r in result["runs"].items():
        w = r.get("worker") or {}
        rows.append(
            [
                strategy,
                r["queued"],
                r.get("paid"),
                r.get("sustained_per_s"),
                r.get("of_ideal_pct"),
                r.get("requests_per_order"),
                w.get("receive_calls"),
                w.get("empty_receives"),
                w.get("delete_calls"),
                r.get("cpu_ms_per_order"),
                r["receive_probe_ms"],
            ]
        )
        if "skipped" in r:
            notes.append(f"- `{strategy}` not run: {r['skipped']}.")
        elif not r.get("drained"):
            notes.append(
                f"- `{strategy}` did not drain {r['queued']:,} orders within the time limit."
            )
        if r["queued"] < s["backlog"]:
            notes.append(
                f"- `{strategy}`: the local AWS queued only {r['queued']:,} of "
                f"{s['backlog']:,} orders in {r['preload_s']:g} s."
            )
    lines = [
        "## receive: per-task vs batched at saturation",
        "",
        f"One worker, {s['slots']:,} slots, payment {s['payment_seconds']:g} s (ideal "
        f"{s['slots'] / s['payment_seconds']:,.1f} orders/s), draining a preloaded backlog of "
        f"{s['backlog']:,} orders; rate measured over {s['waves']} whole payment periods. "
        "Receives count every call started, long polls still waiting at the stop included.",
        "",
        table(
            [
                "strategy",
                "queued",
                "paid",
                "orders/s",
                "% of ideal",
                "SQS req/order",
                "receives",
                "empty",
                "deletes",
                "CPU ms/order",
                "1 receive ms",
            ],
            rows,
            digits=2,
        ),
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def charts(result: dict[str, Any], out_dir: Path) -> list[str]:
    values = {
        name: r["requests_per_order"]
        for name, r in result["runs"].items()
        if r.get("requests_per_order") is not None
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


def main(argv: list[str] | None = None) -> int:
    from .cli import scenario_main

    return scenario_main("receive", argv)


if __name__ == "__main__":
    raise SystemExit(main())

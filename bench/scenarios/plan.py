"""plan: payment slots and ECS tasks for an arrival rate (Little's law), checked by a flash sale.

The plan comes from bench.harness.capacity; the check runs the flash sale with exactly the planned
slots (or, in the suite, reuses the flash-sale run when it used the same plan).
"""

from __future__ import annotations

import argparse
from typing import NotRequired, TypedDict, cast

from ..harness.capacity import plan
from ..harness.results import Earlier, Result
from ..harness.stack import order_state
from ..report.markdown import table
from . import flash_sale

# Rates beside the asked one, so the table shows how the answer scales.
OTHER_RATES = (6.0, 600.0)

# "async" is a keyword: the functional form.
PlanCheck = TypedDict(
    "PlanCheck",
    {
        "reused": str | None,
        "settings": flash_sale.SaleSpec,
        "async": flash_sale.AsyncSale,
        "charged_twice": NotRequired[int],
    },
)


class PlanResult(Result):
    plan: dict[str, float | int]
    other_rates: list[dict[str, float | int]]
    check: PlanCheck | None
    """The flash sale run with the planned slots (or the suite's, if it used them)."""
    plan_holds: NotRequired[bool]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=60.0, help="orders per second")
    parser.add_argument("--payment-seconds", type=float, default=3.0)
    parser.add_argument(
        "--target-wait",
        type=float,
        default=flash_sale.TARGET_WAIT_SECONDS,
        help="mean wait for a free slot to plan for (s)",
    )
    parser.add_argument(
        "--slots-per-task", type=int, default=100, help="NUM_WORKERS per ECS task (default 100)"
    )
    parser.add_argument("--no-check", dest="check", action="store_false", help="plan only")
    parser.add_argument("--duration", type=float, help="check run's arrivals (quick 10, full 60)")
    parser.add_argument("--timeout", type=float, default=10.0, help=argparse.SUPPRESS)


def _check(args: argparse.Namespace, slots: int, earlier: Earlier) -> PlanCheck | None:
    spec: flash_sale.SaleSpec = {
        "rate": args.rate,
        "duration_s": flash_sale.duration(args),
        "payment_seconds": args.payment_seconds,
        "slots": slots,
        "timeout_s": args.timeout,
        "target_wait_s": args.target_wait,
        "order_state": order_state(args),
    }
    previous = cast("flash_sale.FlashSaleResult | None", earlier.get("flash-sale"))
    if previous is not None and previous.get("settings") == spec:
        return {"reused": "flash-sale", "settings": spec, "async": previous["async"]}
    if not args.check:
        return None
    sale = flash_sale.sale(spec, with_sync=False)
    return {
        "reused": None,
        "settings": spec,
        "async": sale["async"],
        "charged_twice": sale["charged_twice"],
    }


def run(args: argparse.Namespace, earlier: Earlier) -> PlanResult:
    asked = plan(args.rate, args.payment_seconds, args.target_wait, args.slots_per_task)
    others = [
        plan(rate, args.payment_seconds, args.target_wait, args.slots_per_task).as_dict()
        for rate in OTHER_RATES
        if rate != args.rate
    ]
    check = _check(args, asked.slots, earlier)
    result: PlanResult = {"plan": asked.as_dict(), "other_rates": others, "check": check}
    if check is not None:
        a = check["async"]
        holds = a["ok_pct"] == 100 and a["lost"] == 0
        holds = holds and a["drain_s"] is not None and a["drain_s"] <= 2 * args.payment_seconds
        # Not a target: it repeats the flash sale's, and cannot tell the planned slots from
        # a few fewer (evenly spaced arrivals, fixed payment time).
        result["plan_holds"] = holds
    return result


def _plans_table(result: PlanResult) -> str:
    """The plan for the asked rate, then for the other rates."""
    rows = [
        [
            x["arrival_rate"],
            x["offered_load"],
            x["min_slots"],
            x["slots"],
            x["predicted_wait_seconds"] * 1000,
            x["utilization"] * 100,
            x["tasks"],
        ]
        for x in [result["plan"], *result["other_rates"]]
    ]
    return table(
        [
            "orders/s",
            "busy slots (λ·W)",
            "floor",
            "slots",
            "predicted wait ms",
            "utilization %",
            "ECS tasks",
        ],
        rows,
    )


def report(result: PlanResult) -> str:
    p = result["plan"]
    lines = [
        "## plan: slots and ECS tasks (Little's law)",
        "",
        f"Payment {p['payment_seconds']:g} s, mean wait for a free slot under "
        f"{p['target_wait_seconds'] * 1000:g} ms (Erlang C, a safe bound for fixed-time "
        f"payments), {p['slots_per_task']} slots per ECS task.",
        "",
        _plans_table(result),
        "",
        f"The reference computed 182 slots for 60 orders/s (60 / 0.33, rounded); Little's "
        f"law gives {p['min_slots']} as the floor, and {p['slots']} keep the wait under target.",
    ]
    check = result.get("check")
    if check is not None:
        a = check["async"]
        worker = a.get("worker") or {}
        source = "the flash-sale run above" if check["reused"] else "its own flash-sale run"
        lines += [
            "",
            f"Checked against {source}: {a['ok_pct']:g} % accepted, {a['lost']} lost, "
            f"drained {a['drain_s'] if a['drain_s'] is None else round(a['drain_s'], 2)} s "
            f"after arrivals stopped; at most {worker.get('max_in_flight', '-')} payments at "
            f"once against {p['offered_load']:g} predicted busy; mean wait from acceptance to "
            f"payment {a['queue_wait_ms']['mean'] or 0:,.0f} ms (includes SNS→SQS delivery "
            f"and the receive), predicted queueing {p['predicted_wait_seconds'] * 1000:,.0f} ms. "
            f"**The plan {'holds' if result['plan_holds'] else 'does not hold'}.**",
        ]
    return "\n".join(lines) + "\n"

"""logs: what shipping the services' logs to CloudWatch Logs costs, and Logs Insights' speed.

Ingestion: the API and one worker under the same open-loop arrivals twice, each on a fresh
local AWS, with every service's stdout through a log relay (bench/harness/logrelay.py):
`LOG_SHIPPING=off` (lines only passed on) and `on` (the same lines also shipped by
devstack's `LogShipper`, as `make run`'s launcher ships them, into `/orderflow/api` and
`/orderflow/worker`), in rounds that put off and on first in turn. Same processes either
way, so on against off is shipping's cost: CPU ms per order of the API, the worker, the
local AWS and the relays, counted from the first arrival until every order is paid.

The machine's speed moves between two runs a minute apart by more than the few percent
measured (the API's and the worker's CPU per order, the same work in both modes, moved by up
to 33 % between the rounds of one reference run), so each round's total on/off is divided by
the API's and the worker's own on/off (SPEED_GAUGE), and the verdict takes the median round.

With shipping on, the lines are counted where a user finds them (FilterLogEvents over both
log groups once the services have stopped): lines/s stored with timestamps inside that
window, and every line the relays read against the lines stored (lost). The rate is what the
services wrote at this load, not a ceiling.

Query speed: `python -m localaws.insights.bench --server` (reused, not rewritten): N
service-shaped lines put into a fresh local AWS, then its `filter | stats pct() by bin()`
query through StartQuery/GetQueryResults, QUERY_RUNS times on that server; lines scanned
per second by wall clock (what a user waits for: StartQuery to the first GetQueryResults
that says Complete, polled every 20 ms) and by the local AWS's CPU time, of the median run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from typing import Any, TypedDict

import boto3

from devstack.logship import log_group
from localaws.insights.bench import QUERY, via_server

from ..harness.ledger import Ledger, ledger_verdicts
from ..harness.load import open_loop
from ..harness.procstat import cpu_seconds
from ..harness.results import Earlier, Result, TargetResult
from ..harness.stack import ApiRun, LocalStack, WorkerRun, local_stack, order_state, wait_until_paid
from ..harness.stats import summarize
from ..harness.targets import target
from ..report.markdown import table

SHIPPING_CPU_LIMIT_PCT = 5.0
"""Shipping may cost the services at most this much more CPU per order (issue 22)."""
SCAN_LIMIT_PER_S = 200_000.0
MIN_QUERY_LINES = 200_000
QUERY_RUNS = 3
"""The verdict takes the median run: one run on a shared box says more about the box."""
PROCESSES = (
    ("api", "API"),
    ("worker", "worker"),
    ("local_aws", "local AWS"),
    ("relays", "log relays"),
)
GROUPS = ("api", "worker")
SPEED_GAUGE = ("api", "worker")
"""The processes whose work shipping does not change (their stdout is the same either way and
nothing else differs): their CPU per order, on against off, is the machine's speed in that
round's two runs."""


class Settings(TypedDict):
    rate: float
    duration_s: float
    payment_seconds: float
    slots: int
    warmup_s: float
    timeout_s: float
    query_lines: int
    rounds: int
    order_state: bool


class Shipping(TypedDict):
    shipping: bool
    sent: int
    accepted: int
    paid: int
    window_s: float
    cpu_ms_per_order: dict[str, float | None]
    """API, worker, local AWS, the relays (both) and `total`, over the window."""
    lines_read: int | None
    """Lines the relays read from the services (the whole run, warm-up included)."""
    lines_stored: int | None
    """Events in the log groups afterwards (shipping on; None off)."""
    lines_in_window: int | None
    lines_per_s: float | None
    lines_per_order: float | None
    ship_delay_ms: dict[str, Any] | None
    """ingestionTime - timestamp of each stored line: how long a line waits to be sent."""
    dropped: int | None
    """Lines the shipper reported dropped (its own count)."""
    charged_twice: int
    charges: int
    paid_reported: int
    lost: int


class LogsResult(Result, total=False):
    settings: Settings
    rounds: list[dict[str, Shipping]]
    """Every round, each run on a fresh local AWS: "off" first in rounds 1, 3, ..., "on"
    first in rounds 2, 4, ... (round_order)."""
    runs: dict[str, Shipping]
    """"off" and "on" of the median round (median_round), which the verdict takes."""
    cpu_overhead_pct: float | None
    """The median round's overhead at the machine's speed (overhead_pct)."""
    overhead_each_pct: list[float | None]
    """Every round's overhead at the machine's speed, in round order."""
    raw_overhead_each_pct: list[float | None]
    """Every round's total on/off - 1, speed not allowed for (raw_overhead_pct)."""
    query: dict[str, Any]
    """localaws.insights.bench's figures (lines_scanned, rows, wall_s, cpu_s, lines_per_s_wall,
    lines_per_s_cpu) and the query."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=30.0, help="orders/s (default 30)")
    parser.add_argument("--duration", type=float, help="seconds of arrivals (quick 20, full 60)")
    parser.add_argument("--payment-seconds", type=float, default=0.5)
    parser.add_argument("--slots", type=int, default=100, help="worker slots (default 100)")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of 10 orders/s first, not counted"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="client timeout (s)")
    parser.add_argument(
        "--query-lines",
        type=int,
        default=MIN_QUERY_LINES,
        help=f"lines the query scans (default {MIN_QUERY_LINES:,}; 0 skips the query)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        # One pair cannot resolve a few percent on a 2-core machine (seen here: +11.6 % in one
        # round, +4.0 % as the least of three, quiet both times): three by default.
        default=3,
        help="off/on pairs, each run first in turn; the median round's overhead is the "
        "verdict (default 3)",
    )


def settings(args: argparse.Namespace) -> Settings:
    return {
        "rate": args.rate,
        "duration_s": float(args.duration or (20 if args.quick else 60)),
        "payment_seconds": args.payment_seconds,
        "slots": args.slots,
        "warmup_s": args.warmup,
        "timeout_s": args.timeout,
        "query_lines": args.query_lines,
        "rounds": max(1, args.rounds),
        "order_state": order_state(args),
    }


def _cpu(pids: Mapping[str, list[int]]) -> dict[str, float | None]:
    """CPU seconds of each group of processes (None if one of them is gone)."""
    out: dict[str, float | None] = {}
    for name, group in pids.items():
        times = [cpu_seconds(pid) for pid in group]
        out[name] = None if any(t is None for t in times) else sum(t or 0.0 for t in times)
    return out


def cpu_per_order(
    before: Mapping[str, float | None], after: Mapping[str, float | None], orders: int
) -> dict[str, float | None]:
    """CPU ms per order of each process group, and `total` (None if any is unknown)."""
    per: dict[str, float | None] = {}
    for name, start in before.items():
        end = after.get(name)
        per[name] = (
            (end - start) * 1000 / orders
            if orders and start is not None and end is not None
            else None
        )
    known = [v for v in per.values() if v is not None]
    per["total"] = sum(known) if per and len(known) == len(per) else None
    return per


async def _orders(url: str, worker: WorkerRun, rate: float, duration: float, s: Settings) -> Any:
    load = await open_loop(
        url + "/orders/async",
        rate=rate,
        duration=duration,
        request_timeout=s["timeout_s"],
        desc=f"logs {rate:g}/s",
    )
    accepted = {o.order_id for o in load.outcomes if o.status == 202}
    await wait_until_paid(worker, accepted, 2 * s["payment_seconds"] + 30)
    return load, accepted


def _stored(stack: LocalStack) -> list[dict[str, Any]]:
    """Every event in the services' log groups, as FilterLogEvents gives them."""
    logs = boto3.client(
        "logs",
        endpoint_url=stack.aws.endpoint_url,
        region_name=stack.aws.region,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    events: list[dict[str, Any]] = []
    for service in GROUPS:
        group = log_group("orderflow", service)
        try:
            for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
                events += page["events"]
        except logs.exceptions.ResourceNotFoundException:
            continue
    return events


def _one(shipping: bool, s: Settings) -> Shipping:
    pay = s["payment_seconds"]
    with (
        local_stack("logs", order_state=s["order_state"], log_shipping=shipping) as stack,
    ):
        api: ApiRun
        worker: WorkerRun
        with (
            stack.api(pay) as api,
            stack.worker(slots=s["slots"], payment_seconds=pay, grace_seconds=pay) as worker,
        ):
            pids = _pids(stack, api, worker)
            if s["warmup_s"] > 0:
                asyncio.run(_orders(api.url, worker, 10.0, s["warmup_s"], s))
            before = _cpu(pids)
            started = time.time()
            load, accepted = asyncio.run(_orders(api.url, worker, s["rate"], s["duration_s"], s))
            after = _cpu(pids)
            ended = time.time()
        # The services and their relays have stopped: every line is sent, or counted dropped.
        stored = _stored(stack) if shipping else None
    ledger = Ledger.of(api.charges, worker.charges)
    lines_read, dropped = _relayed(api, worker)
    in_window = (
        None
        if stored is None
        else sum(1 for e in stored if started * 1000 <= e["timestamp"] <= ended * 1000)
    )
    window = ended - started
    n = len(accepted)
    return {
        "shipping": shipping,
        "sent": len(load.outcomes),
        "accepted": n,
        "paid": len(accepted & worker.charged_ids()),
        "window_s": round(window, 3),
        "cpu_ms_per_order": cpu_per_order(before, after, n),
        "lines_read": lines_read,
        "lines_stored": None if stored is None else len(stored),
        "lines_in_window": in_window,
        "lines_per_s": None if in_window is None or window <= 0 else in_window / window,
        "lines_per_order": None if in_window is None or not n else in_window / n,
        "ship_delay_ms": None
        if not stored
        else summarize([float(e["ingestionTime"] - e["timestamp"]) for e in stored]),
        "dropped": dropped,
        "charged_twice": len(ledger.twice()),
        "charges": ledger.total,
        "paid_reported": len(worker.paid),
        "lost": len(ledger.lost(accepted)),
    }


def _pids(stack: LocalStack, api: ApiRun, worker: WorkerRun) -> dict[str, list[int]]:
    """The processes whose CPU an order costs, by the column that reports them."""
    relays = [r.pid for r in (api.relay, worker.relay) if r is not None]
    return {
        "api": [api.pid],
        "worker": [worker.pid],
        "local_aws": [stack.aws_pid],
        "relays": relays,
    }


def _relayed(api: ApiRun, worker: WorkerRun) -> tuple[int | None, int | None]:
    """Lines the relays read and dropped, summed; None unless every relay's count was read."""
    counts = [r.stats for r in (api.relay, worker.relay) if r is not None]
    read = [st for st in counts if st is not None]
    whole = bool(read) and len(read) == len(counts)
    lines_read = sum(st["read"] for st in read) if whole else None
    dropped = sum(st["dropped"] for st in read) if whole else None
    return lines_read, dropped


def raw_overhead_pct(off: Shipping, on: Shipping) -> float | None:
    """How much more CPU per order (all processes) the services took with shipping on."""
    a, b = off["cpu_ms_per_order"].get("total"), on["cpu_ms_per_order"].get("total")
    return None if a is None or b is None or a <= 0 else 100 * (b / a - 1)


def _gauge(run: Shipping) -> float | None:
    """The CPU per order of the processes whose work shipping does not change."""
    values = [run["cpu_ms_per_order"].get(name) for name in SPEED_GAUGE]
    if any(v is None for v in values):
        return None
    total = sum(v or 0.0 for v in values)
    return total if total > 0 else None


def overhead_pct(off: Shipping, on: Shipping) -> float | None:
    """How much more CPU per order (all processes) the services took with shipping on, at the
    machine's speed of the off run: total on/off divided by the speed gauge's on/off. A
    machine 10 % slower in the on run raises every process by 10 %, the gauge too, and the
    overhead not at all; a relay or a local AWS working 10 % harder raises only the total."""
    raw, a, b = raw_overhead_pct(off, on), _gauge(off), _gauge(on)
    if raw is None or a is None or b is None:
        return None
    return 100 * ((1 + raw / 100) / (b / a) - 1)


def median_round(
    rounds: list[dict[str, Shipping]],
) -> tuple[dict[str, Shipping] | None, float | None]:
    """The round whose overhead is the median (the lower middle one of an even count), and that
    overhead; (None, None) if any round's was not measured (a process gone, no orders), which
    no verdict may pass over."""
    each = [overhead_pct(r["off"], r["on"]) for r in rounds]
    known = [(v, i) for i, v in enumerate(each) if v is not None]
    if not rounds or len(known) < len(each):
        return None, None
    value, index = sorted(known)[(len(known) - 1) // 2]
    return rounds[index], value


def round_order(index: int) -> tuple[bool, bool]:
    """The modes of round `index` (from 0) in the order they run, shipping off or on: each
    first in turn, so that a machine slowing (or warming) through the scenario counts
    against neither."""
    return (False, True) if index % 2 == 0 else (True, False)


def run(args: argparse.Namespace, earlier: Earlier) -> LogsResult:
    s = settings(args)
    rounds: list[dict[str, Shipping]] = []
    for index in range(s["rounds"]):
        ran = {shipping: _one(shipping, s) for shipping in round_order(index)}
        rounds.append({"off": ran[False], "on": ran[True]})
    median, overhead = median_round(rounds)
    result: LogsResult = {
        "settings": s,
        "rounds": rounds,
        # Not measured: the first round stands in the table, and the verdict fails (None).
        "runs": median or rounds[0],
        "cpu_overhead_pct": overhead,
        "overhead_each_pct": [overhead_pct(r["off"], r["on"]) for r in rounds],
        "raw_overhead_each_pct": [raw_overhead_pct(r["off"], r["on"]) for r in rounds],
    }
    if s["query_lines"] > 0:
        result["query"] = {
            "query": QUERY,
            "lines": s["query_lines"],
            **via_server(s["query_lines"], runs=QUERY_RUNS),
        }
    result["targets"] = targets(result)
    return result


def _sum(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v or 0 for v in values)


def shipping_targets(
    overhead: float | None, lines_read: int | None, lines_stored: int | None
) -> list[TargetResult]:
    """Shipping's CPU cost per order, and every line the services wrote stored."""
    lost = None if lines_read is None or lines_stored is None else lines_read - lines_stored
    return [
        target(
            "logs: CPU per order, shipping on vs off (API + worker + local AWS + log relays)",
            overhead,
            "<=",
            SHIPPING_CPU_LIMIT_PCT,
            "% more",
            "same processes, LOG_SHIPPING off and on, at the machine's speed (API + worker), "
            "median round",
        ),
        target(
            "logs: lines written by the services and not in CloudWatch Logs",
            lost,
            "==",
            0,
            "lines",
            "the relays' count against FilterLogEvents over /orderflow/api and /orderflow/worker",
        ),
    ]


def query_target(query: Mapping[str, Any] | None, min_lines: int) -> TargetResult:
    """Lines scanned per second by wall clock; not measured unless the query scanned at
    least `min_lines` (a rate over a few lines says nothing about a flash sale's logs)."""
    scanned = None if query is None else query.get("lines_scanned")
    rate = None if query is None else query.get("lines_per_s_wall")
    enough = scanned is not None and scanned >= min_lines
    return target(
        f"logs: Logs Insights lines scanned per second (filter | stats pct() by bin(), "
        f"≥ {min_lines:,} lines)",
        float(rate) if enough and rate is not None else None,
        ">=",
        SCAN_LIMIT_PER_S,
        "lines/s",
        "wall clock, StartQuery to Complete through the local AWS",
    )


def targets(result: LogsResult) -> list[TargetResult]:
    rounds = result.get("rounds") or [result["runs"]]
    shipped = [r["on"] for r in rounds]
    found = shipping_targets(
        result.get("cpu_overhead_pct"),
        _sum([r["lines_read"] for r in shipped]),
        _sum([r["lines_stored"] for r in shipped]),
    )
    found.append(query_target(result.get("query"), MIN_QUERY_LINES))
    for mode in ("off", "on"):
        each = [r[mode] for r in rounds]
        found += ledger_verdicts(
            f"logs (shipping {mode})",
            lost=sum(r["lost"] for r in each),
            twice=sum(r["charged_twice"] for r in each),
            charges=sum(r["charges"] for r in each),
            paid=sum(r["paid_reported"] for r in each),
        )
    return found


def report(result: LogsResult) -> str:
    lines = [
        *_intro(result),
        "",
        table(_HEADERS, _rows(result["runs"]), digits=2),
        "",
    ]
    lines += _rounds_table(result)
    lines += _query_lines(result.get("query"))
    return "\n".join(lines)


_HEADERS = [
    "shipping",
    "accepted",
    "paid",
    *[f"{label} CPU ms/order" for _, label in PROCESSES],
    "total CPU ms/order",
    "lines/s shipped",
    "lines/order",
    "lines read",
    "lines stored",
    "delay p50 ms",
]
"""The columns of the per-mode table, one row per mode (and on - off)."""


def _rows(runs: dict[str, Shipping]) -> list[list[Any]]:
    """One row per mode, then on minus off when both ran."""
    rows = []
    for name, one in runs.items():
        cpu = one["cpu_ms_per_order"]
        rows.append(
            [
                name,
                one["accepted"],
                one["paid"],
                *[cpu.get(key) for key, _ in PROCESSES],
                cpu.get("total"),
                one["lines_per_s"],
                one["lines_per_order"],
                one["lines_read"],
                one["lines_stored"],
                None if one["ship_delay_ms"] is None else one["ship_delay_ms"]["p50"],
            ]
        )
    off, on = runs.get("off"), runs.get("on")
    if off is not None and on is not None:
        # The API and the worker do no extra work with shipping on (their stdout is the
        # same): their difference here is the machine's noise, beside the real costs.
        a, b = off["cpu_ms_per_order"], on["cpu_ms_per_order"]
        delta = [_minus(b.get(key), a.get(key)) for key, _ in (*PROCESSES, ("total", ""))]
        rows.append(["on - off", None, None, *delta, *[None] * 5])
    return rows


def _intro(result: LogsResult) -> list[str]:
    """The section's title and the paragraph that says what ran and what it cost."""
    s = result["settings"]
    return [
        "## logs: shipping the services' logs, and querying them",
        "",
        f"The API and one worker ({s['slots']} slots, {s['payment_seconds']:g} s payments, "
        f"order state {'on' if s['order_state'] else 'off'}), {s['rate']:g} orders/s open loop "
        f"for {s['duration_s']:g} s after {s['warmup_s']:g} s at 10/s not counted, each "
        "service's stdout through a log relay: LOG_SHIPPING off and on (a fresh local AWS "
        "each). CPU from the first arrival until every order is paid; lines counted in the "
        "local AWS (FilterLogEvents) once the services stopped. "
        f"With shipping on, CPU per order changed by **{_pct(result.get('cpu_overhead_pct'))}**"
        " at the machine's speed (each round's total on/off divided by the API's and the "
        "worker's on/off: the same work either way)"
        + (
            f", the median of {s['rounds']} rounds, off and on first in turn; the table shows "
            "that round."
            if s.get("rounds", 1) > 1
            else " (one round: on a busy machine that cannot resolve a few percent)."
        ),
    ]


def _rounds_table(result: LogsResult) -> list[str]:
    """Every round's CPU per order, off and on, and its overhead with and without the machine's
    speed allowed for; nothing for a single round."""
    rounds = result.get("rounds") or []
    if len(rounds) <= 1:
        return []
    each = []
    for i, r in enumerate(rounds):
        off, on = r["off"]["cpu_ms_per_order"], r["on"]["cpu_ms_per_order"]
        each.append(
            [
                i + 1,
                "on" if round_order(i)[0] else "off",
                off.get("total"),
                on.get("total"),
                _gauge(r["off"]),
                _gauge(r["on"]),
                _pct(raw_overhead_pct(r["off"], r["on"])),
                _pct(overhead_pct(r["off"], r["on"])),
            ]
        )
    headers = [
        "round",
        "first",
        "off CPU ms/order",
        "on CPU ms/order",
        "off API + worker",
        "on API + worker",
        "on/off - 1",
        "at the machine's speed",
    ]
    return [table(headers, each, digits=2), ""]


def _query_lines(query: dict[str, Any] | None) -> list[str]:
    """Logs Insights' scan rate and the query it ran; nothing when no query ran."""
    if not query:
        return []
    return [
        f"Logs Insights (`python -m localaws.insights.bench --server --lines "
        f"{query['lines']} --runs {query.get('runs', 1)}`): "
        f"{query['lines_scanned']:,} lines scanned, "
        f"{query['rows']} rows, in {query['wall_s']} s "
        f"(**{query['lines_per_s_wall']:,} lines/s** by wall clock, "
        f"{query['lines_per_s_cpu']:,} lines/s of the local AWS's CPU; the median of "
        f"{query.get('runs', 1)} runs, each "
        f"{', '.join(f'{n:,}' for n in query.get('lines_per_s_wall_each', []))} lines/s; "
        f"the wall clock runs from StartQuery to the first GetQueryResults that says "
        f"Complete, polled every {query.get('poll_s', 0.25)} s).",
        "",
        "```",
        str(query["query"]),
        "```",
        "",
    ]


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"

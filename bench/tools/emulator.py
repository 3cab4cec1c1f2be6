"""The local AWS's own costs: stock moto against the patched launcher, side by side.

`python -m bench.tools.emulator [--quick|--full]` (or `python -m bench emulator`). For each
server, started in turn as `python -m localaws [--stock]` on loopback: the round trip of
publish, publish-batch, receive-10 and delete-batch at backlogs of 10, 1,000 and 10,000
queued messages; the end-to-end ceiling (messages/s through publish-batch -> receive-10 ->
delete-batch with a standing backlog); and the server's CPU while 1,000 long polls wait
on an empty queue. Stock moto's sends cost O(backlog), so filling it to 10,000 would take
tens of minutes: backlogs above `--stock-max-backlog` are skipped for stock and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import TypedDict, cast

import orjson

from devstack.local_aws import local_aws_server

from ..harness.results import Earlier, Result, TargetResult
from ..harness.targets import Op, target
from . import emulator_load
from .emulator_load import CallCost, Ceiling, IdlePolls

SERVERS = {"stock": ("--stock",), "patched": ()}


@dataclass(frozen=True)
class Plan:
    backlogs: tuple[int, ...]
    samples: int
    """Rounds (one call of each kind) per backlog, unless the time budget ends first."""
    budget_s: float
    """Seconds of counted rounds over all backlogs; at least 3 run whatever it says."""
    stock_max_backlog: int
    ceiling_backlog: int
    ceiling_s: float
    publishers: int
    consumers: int
    idle_polls: int
    idle_window_s: float


class PlanFigures(TypedDict):
    """A Plan in its JSON form (asdict)."""

    backlogs: Sequence[int]
    """A tuple as run() returns it, a list once through JSON."""
    samples: int
    budget_s: float
    stock_max_backlog: int
    ceiling_backlog: int
    ceiling_s: float
    publishers: int
    consumers: int
    idle_polls: int
    idle_window_s: float


class ServerResult(TypedDict):
    """One server's figures (stock or patched moto)."""

    costs: dict[str, dict[str, CallCost]]
    """{backlog: {call: cost}}; the backlog a string, as JSON keys are."""
    skipped_backlogs: list[int]
    """Backlogs above what this server was filled to."""
    fill_seconds: dict[str, float]
    ceiling: Ceiling | None
    """None when the ceiling's backlog was above what this server was filled to."""
    idle_polls: IdlePolls


class LoadAverage(TypedDict):
    start: list[float]
    end: list[float]


class EmulatorResult(Result):
    moto: str
    plan: PlanFigures
    cpus: int | None
    load_average: LoadAverage
    """The machine's 1, 5 and 15 min load averages: other work shares it."""
    servers: dict[str, ServerResult]
    """By name in SERVERS."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backlogs", type=lambda s: tuple(int(x) for x in s.split(",")), default=(10, 1000, 10000)
    )
    parser.add_argument("--samples", type=int, help="rounds per backlog (quick 15, full 40)")
    parser.add_argument(
        "--stock-max-backlog", type=int, help="largest backlog filled on stock moto (1000/2000)"
    )
    parser.add_argument(
        "--ceiling-backlog", type=int, help="standing backlog for the ceiling (1000/2000)"
    )
    parser.add_argument("--ceiling-seconds", type=float, help="ceiling run length (4/10)")
    parser.add_argument("--publishers", type=int, default=4, help="ceiling: publish-batch loops")
    parser.add_argument("--consumers", type=int, default=8, help="ceiling: receive/delete loops")
    parser.add_argument("--idle-polls", type=int, default=1000)


def plan(args: argparse.Namespace) -> Plan:
    quick = bool(getattr(args, "quick", False))
    return Plan(
        backlogs=tuple(sorted(args.backlogs)),
        samples=args.samples or (15 if quick else 40),
        budget_s=8.0 if quick else 40.0,
        stock_max_backlog=args.stock_max_backlog or (1000 if quick else 2000),
        ceiling_backlog=args.ceiling_backlog or (1000 if quick else 2000),
        ceiling_s=args.ceiling_seconds or (4.0 if quick else 10.0),
        publishers=args.publishers,
        consumers=args.consumers,
        idle_polls=args.idle_polls,
        idle_window_s=3.0 if quick else 5.0,
    )


async def _measure(endpoint: str, pid: int, p: Plan, max_backlog: int) -> ServerResult:
    measured = [n for n in p.backlogs if n <= max_backlog]
    fill_s: dict[str, float] = {}
    async with emulator_load.clients(endpoint, pool_size=p.publishers + p.consumers + 4) as aws:
        # One pipeline per backlog, all in the same server, measured in turn.
        pipes = {n: await emulator_load.pipeline(aws) for n in measured}
        for n, pipe in pipes.items():
            fill_s[str(n)] = round(await emulator_load.fill(aws, pipe, n), 2)
        costs = await emulator_load.call_costs(aws, pipes, p.samples, p.budget_s)
        ceiling = None
        if p.ceiling_backlog <= max_backlog:
            # Topped up from the largest backlog below it: stock moto fills slowly.
            below = [n for n in measured if n <= p.ceiling_backlog]
            pipe = pipes[max(below)] if below else await emulator_load.pipeline(aws)
            fill_s[f"{p.ceiling_backlog} (ceiling)"] = round(
                await emulator_load.fill(aws, pipe, p.ceiling_backlog), 2
            )
            ceiling = await emulator_load.ceiling(
                aws, pipe, pid, p.ceiling_s, p.publishers, p.consumers
            )
    idle = await emulator_load.idle_polls(endpoint, pid, p.idle_polls, p.idle_window_s)
    return {
        "costs": costs,
        "skipped_backlogs": [n for n in p.backlogs if n > max_backlog],
        "fill_seconds": fill_s,
        "ceiling": ceiling,
        "idle_polls": idle,
    }


def run(args: argparse.Namespace, earlier: Earlier) -> EmulatorResult:
    p = plan(args)
    load_start = [round(x, 2) for x in os.getloadavg()]
    servers: dict[str, ServerResult] = {}
    for name, extra in SERVERS.items():
        print(f"emulator: measuring {name} moto", file=sys.stderr, flush=True)
        max_backlog = p.stock_max_backlog if name == "stock" else max(p.backlogs)
        with local_aws_server(extra_args=extra) as server:
            servers[name] = asyncio.run(_measure(server.endpoint, server.pid, p, max_backlog))
    result: EmulatorResult = {
        "moto": version("moto"),
        # asdict() is untyped: PlanFigures lists Plan's fields.
        "plan": cast("PlanFigures", asdict(p)),
        "cpus": os.cpu_count(),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "servers": servers,
    }
    result["targets"] = targets(result)
    return result


def _median(result: EmulatorResult, server: str, backlog: int, op: str) -> float | None:
    got = result["servers"][server]["costs"].get(str(backlog), {}).get(op)
    return None if got is None else float(got["median_ms"])


def targets(result: EmulatorResult) -> list[TargetResult]:
    """The issue's targets, in the bench suite's format; a figure not measured is not met."""
    p = result["plan"]
    small, large = min(p["backlogs"]), max(p["backlogs"])
    at_small = _median(result, "patched", small, "receive-10")
    at_large = _median(result, "patched", large, "receive-10")
    ceiling = result["servers"]["patched"].get("ceiling")
    stock = result["servers"]["stock"].get("ceiling")
    ours = ceiling["messages_per_s"] if ceiling else None
    theirs = stock["messages_per_s"] if stock else None
    capacity = ceiling["messages_per_server_cpu_s"] if ceiling else None
    backlog = f"{p['ceiling_backlog']:,} backlog"
    idle = result["servers"]["patched"]["idle_polls"]
    return [
        _target(
            f"receive-10 at {large:,} queued / at {small:,}",
            at_large / at_small if at_small and at_large else None,
            "<=",
            2,
            "x",
        ),
        target(
            f"end-to-end ceiling at {backlog}",
            None if ours is None else round(ours, 2),
            ">=",
            1000,
            "msg/s",
            f"server alone on a core: {capacity or 0:,.0f}/s; load average "
            f"{result['load_average']['end'][0]}",
        ),
        _target(
            f"ceiling vs stock moto at {backlog}",
            ours / theirs if ours and theirs else None,
            ">=",
            10,
            "x",
        ),
        _target(
            f"{idle['polls']:,} idle long polls",
            idle["cpu_percent_of_one_core"],
            "<",
            5,
            "% of a core",
        ),
    ]


def _target(name: str, measured: float | None, op: Op, limit: float, unit: str) -> TargetResult:
    return target(name, None if measured is None else round(measured, 2), op, limit, unit)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "not measured" if value is None else f"{value:,.1f}"


def report(result: EmulatorResult) -> str:
    return "\n".join(
        [
            "## Local AWS: stock moto vs the patched launcher",
            "",
            _call_costs(result),
            "",
            _ceiling(result),
            "",
            _idle_polls(result),
            "",
        ]
    )


def _call_costs(result: EmulatorResult) -> str:
    """Round trip per call, stock against patched, at each backlog."""
    p, servers = result["plan"], result["servers"]
    rows = []
    for backlog in p["backlogs"]:
        for op in emulator_load.OPS:
            stock = _median(result, "stock", backlog, op)
            ours = _median(result, "patched", backlog, op)
            speedup = f"{stock / ours:,.1f}x" if stock and ours else ""
            rows.append([f"{backlog:,}", op, _ms(stock), _ms(ours), speedup])
    skipped = servers["stock"]["skipped_backlogs"]
    note = (
        f" Stock moto was not filled past {p['stock_max_backlog']:,} messages "
        f"(skipped: {', '.join(f'{n:,}' for n in skipped)}): every send scans the queue, "
        "so filling costs O(n²)."
        if skipped
        else ""
    )
    return "\n".join(
        [
            f"moto {result['moto']}, both served over HTTP on loopback, {result['cpus']} CPUs, "
            f"load average {result['load_average']['start'][0]} at the start and "
            f"{result['load_average']['end'][0]} at the end (other work shares this machine). "
            "Round trip per call (median ms, one call at a time; rounds of one call of each "
            "kind go over the backlogs in turn, so load from elsewhere hits them alike; "
            f"{p['samples']} rounds at most, fewer on stock, within "
            f"{p['budget_s']:.0f} s).{note}",
            "",
            _table(["backlog", "call", "stock ms", "patched ms", "speed-up"], rows),
        ]
    )


def _ceiling(result: EmulatorResult) -> str:
    """The end-to-end ceiling of each server under publishers and consumers."""
    p, servers = result["plan"], result["servers"]
    rows = [
        [
            name,
            f"{c['backlog_before']:,} -> {c['backlog_after']:,}",
            f"{c['published_per_s']:,.0f}",
            f"{c['deleted_per_s']:,.0f}",
            f"**{c['messages_per_s']:,.0f}**",
            f"{c['server_cpu_percent']:.0f} % / {c['client_cpu_percent']:.0f} %",
            f"{c['messages_per_server_cpu_s'] or 0:,.0f}",
        ]
        for name, c in ((n, servers[n]["ceiling"]) for n in SERVERS)
        if c
    ]
    return "\n".join(
        [
            f"End-to-end ceiling: {p['publishers']} publishers (publish-batch of 10) and "
            f"{p['consumers']} consumers (receive-10, delete-batch) for {p['ceiling_s']:.0f} s "
            f"over a standing backlog of {p['ceiling_backlog']:,}; through = the slower half. "
            "CPU in % of one core; messages per server CPU-second is the rate the server "
            "could carry with a core to itself.",
            "",
            _table(
                [
                    "server",
                    "backlog",
                    "published/s",
                    "deleted/s",
                    "through/s",
                    "CPU server / bench",
                    "msgs per server CPU-s",
                ],
                rows,
            ),
        ]
    )


def _idle_polls(result: EmulatorResult) -> str:
    """What idle long polls cost each server."""
    p, servers = result["plan"], result["servers"]
    rows = [
        [
            name,
            f"{i['answered_during_window']:,} / {i['answered_after_one_send']:,}",
            f"**{i['cpu_percent_of_one_core']:.1f} %**",
            f"{i['cpu_percent_idle_without_polls']:.1f} %",
            f"{i['server_threads']:,}",
            f"{i['server_rss_mib']:,.0f}",
        ]
        for name, i in ((n, servers[n]["idle_polls"]) for n in SERVERS)
    ]
    return "\n".join(
        [
            f"{p['idle_polls']:,} long polls (WaitTimeSeconds 20) held on an empty queue; server "
            f"CPU over {p['idle_window_s']:.0f} s.",
            "",
            _table(
                [
                    "server",
                    "answered: idle / after 1 send",
                    "CPU (one core)",
                    "CPU with no polls",
                    "threads",
                    "RSS MiB",
                ],
                rows,
            ),
        ]
    )


def targets_section(result: EmulatorResult) -> str:
    """The targets as a table (the bench suite renders them itself, at the top)."""
    rows = [
        [
            t["name"],
            f"{t['measured']:,} {t['unit']}",
            f"{t['op']} {t['limit']:,} {t['unit']}",
            "met" if t["met"] else "**not met**",
            t.get("note", ""),
        ]
        for t in result["targets"]
    ]
    return _table(["target", "measured", "wanted", "verdict", "note"], rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.emulator", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="quick", action="store_true", default=True)
    mode.add_argument("--full", dest="quick", action="store_false")
    parser.add_argument("--json", help="also write the figures to this file")
    add_arguments(parser)
    args = parser.parse_args(argv)
    result = run(args, {})
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report(result))
    print(targets_section(result))
    return 0 if all(t["met"] for t in result["targets"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m localaws.insights.bench [--lines N] [--server [--runs R]]`: lines scanned per second.

Builds N JSON log lines shaped like the services' (structlog: event, level, timestamp,
service, order_id, timings; a third are `http_request` lines, some have EMF `_aws`), then
runs `filter ... | stats pct() ... by bin()` over them and prints lines/s by wall clock
and by this process's CPU time (`time.process_time`: what the figure is on a shared box).

Without `--server` the engine runs in this process over moto `LogEvent` objects (the
objects the local AWS stores). With `--server` it starts the local AWS, ships the lines
with PutLogEvents and times the query through StartQuery/GetQueryResults (boto3), wall
clock from StartQuery to the first GetQueryResults that says Complete, polling every
POLL_S (a CLI polls about once a second; the figure is the emulator's scan speed, so the
bench polls often enough that its polling adds at most POLL_S to it).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
import uuid
from typing import Any

import orjson
from moto.logs.models import LogEvent

from .engine import Statistics, Stream, compile_text, render_rows, run
from .records import Source

QUERY = (
    'filter event = "order_paid" and mode = "async"\n'
    "| stats pct(payment_ms, 50) as p50, pct(payment_ms, 99) as p99, "
    "pct(queue_ms, 99) as queue_p99, count(*) as orders by bin(5m)"
)
START_MS = 1_700_000_000_000
POLL_S = 0.02
"""Between GetQueryResults calls: each costs the server ~1 ms of CPU, taken from the scan
(one interpreter lock), so a poll every 20 ms costs a running query ~5 %."""


def lines(count: int, seed: int = 7) -> list[tuple[int, str]]:
    """(timestamp ms, message) pairs, one every 5 ms, deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        ts = START_MS + i * 5
        kind = i % 3
        line: dict[str, Any] = {
            "service": "worker" if kind else "api",
            "level": "info",
            "timestamp": f"2023-11-14T22:13:20.{i % 1000:03d}Z",
            "order_id": str(uuid.UUID(int=rng.getrandbits(128))),
        }
        if kind == 0:
            line |= {
                "event": "http_request",
                "method": "POST",
                "path": "/orders",
                "status": 202,
                "duration_ms": round(rng.expovariate(1 / 3), 3),
            }
        elif kind == 1:
            line |= {
                "event": "order_paid",
                "mode": "async" if rng.random() < 0.8 else "sync",
                "payment_ms": round(rng.expovariate(1 / 40), 3),
                "queue_ms": round(rng.expovariate(1 / 15), 3),
                "receive_count": 1,
            }
        else:
            line |= {
                "event": "order_claimed",
                "_aws": {
                    "Timestamp": ts,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": "orderflow",
                            "Dimensions": [["service"]],
                            "Metrics": [{"Name": "ClaimMs", "Unit": "Milliseconds"}],
                        }
                    ],
                },
                "ClaimMs": round(rng.expovariate(1 / 2), 3),
            }
        out.append((ts, orjson.dumps(line).decode()))
    return out


def in_process(count: int, query: str = QUERY) -> dict[str, float]:
    events = [LogEvent(ts + 3, {"timestamp": ts, "message": m}) for ts, m in lines(count)]
    half = len(events) // 2
    streams = [
        Stream(Source("/orderflow/worker", "worker-1", "123456789012"), events[:half]),
        Stream(Source("/orderflow/worker", "worker-2", "123456789012"), events[half:]),
    ]
    plan = compile_text(query)
    statistics = Statistics()
    wall, cpu = time.perf_counter(), time.process_time()
    rows = run(plan, streams, 0, 2**62, statistics)
    render_rows(plan, rows)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return _figures(statistics.records_scanned, wall, cpu, len(rows))


def via_server(count: int, query: str = QUERY, runs: int = 1) -> dict[str, Any]:
    """The query `runs` times over the same shipped lines; the median run's figures (of an
    even number of runs, the slower middle one), and every run's lines/s."""
    import boto3

    from devstack.local_aws import local_aws_server

    data = lines(count)
    now_ms = int(time.time() * 1000)
    shift = now_ms - 3_600_000 - START_MS  # an hour ago: PutLogEvents takes 14 days back
    with local_aws_server() as server:
        logs = boto3.client(
            "logs",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        logs.create_log_group(logGroupName="/orderflow/worker")
        logs.create_log_stream(logGroupName="/orderflow/worker", logStreamName="worker-1")
        for i in range(0, len(data), 5000):
            batch = [{"timestamp": ts + shift, "message": m} for ts, m in data[i : i + 5000]]
            logs.put_log_events(
                logGroupName="/orderflow/worker", logStreamName="worker-1", logEvents=batch
            )
        each = [_timed_query(logs, server.pid, query, now_ms // 1000) for _ in range(max(1, runs))]
    ranked = sorted(each, key=lambda f: f["lines_per_s_wall"])
    return ranked[(len(ranked) - 1) // 2] | {
        "poll_s": POLL_S,
        "runs": len(each),
        "lines_per_s_wall_each": [f["lines_per_s_wall"] for f in each],
        "lines_per_s_cpu_each": [f["lines_per_s_cpu"] for f in each],
    }


def _timed_query(logs: Any, pid: int, query: str, end_s: int) -> dict[str, float]:
    """StartQuery to the first GetQueryResults that says Complete: wall clock, server CPU."""
    cpu_before = _process_cpu(pid)
    wall = time.perf_counter()
    query_id = logs.start_query(
        logGroupName="/orderflow/worker", startTime=0, endTime=end_s, queryString=query
    )["queryId"]
    while True:
        answer = logs.get_query_results(queryId=query_id)
        if answer["status"] not in ("Scheduled", "Running"):
            break
        threading.Event().wait(POLL_S)
    wall = time.perf_counter() - wall
    cpu = _process_cpu(pid) - cpu_before
    if answer["status"] != "Complete":
        raise SystemExit(f"query ended {answer['status']}")
    scanned = int(answer["statistics"]["recordsScanned"])
    return _figures(scanned, wall, cpu, len(answer["results"]))


def _process_cpu(pid: int) -> float:
    """The server's user+system CPU seconds (/proc/PID/stat; clock ticks of 10 ms)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _figures(scanned: int, wall: float, cpu: float, rows: int) -> dict[str, float]:
    return {
        "lines_scanned": scanned,
        "rows": rows,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "lines_per_s_wall": round(scanned / wall) if wall else 0,
        "lines_per_s_cpu": round(scanned / cpu) if cpu else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localaws.insights.bench", description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--server", action="store_true", help="through the local AWS (boto3)")
    parser.add_argument(
        "--query",
        default=QUERY,
        help="another query over the same lines (the default is the shipped percentiles one)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="with --server: the query this many times on one server, the median run's figures",
    )
    args = parser.parse_args(argv)
    figures: dict[str, Any] = (
        via_server(args.lines, args.query, args.runs)
        if args.server
        else in_process(args.lines, args.query)
    )
    figures["load_avg_1m"] = round(os.getloadavg()[0], 2)
    sys.stdout.write(orjson.dumps({"query": args.query, **figures}).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

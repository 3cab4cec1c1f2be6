"""compare: sync vs async under Locust, as in the reference report (20 users, spawn 10/s).

Locust runs headless as a subprocess against the real API (and, for async, the real worker
draining the queue behind it), once per endpoint, and every request's latency is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from .charts import latency_distribution
from .markdown import table, target
from .stack import api_process, local_aws, new_topology, require_loopback, wait_until_paid
from .stack import worker_process as start_worker
from .stats import summarize

ENDPOINTS = ("/orders/sync", "/orders/async")
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
# The reference's async figures; ours are judged against the targets.
REFERENCE = {"sync_p50_ms": 3024, "sync_rps": 5.7, "async_p50_ms": 39, "async_rps": 5.4}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument(
        "--duration", type=float, help="seconds per endpoint (quick 15, full 60: the report's)"
    )
    parser.add_argument("--pacing", type=float, default=3.5, help="mean seconds per user cycle")
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.5,
        help="cycles vary uniformly by this fraction of the pacing, and users started "
        "together spread their first order over the spawn interval; 0 = Locust's lockstep "
        "bursts (default 0.5)",
    )
    parser.add_argument("--payment-seconds", type=float, default=3.0)
    parser.add_argument(
        "--slots", type=int, default=100, help="worker slots behind async (report: 100)"
    )


def _duration(args: argparse.Namespace) -> float:
    return float(args.duration or (15 if args.quick else 60))


def _start_spread(args: argparse.Namespace) -> float:
    """Seconds between Locust's batches of started users (it starts floor(rate) at a time)."""
    if args.jitter == 0:
        return 0.0  # lockstep asked for: keep Locust's own bursts too
    return float(max(1, math.floor(args.spawn_rate)) / args.spawn_rate)


def _locust(url: str, path: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One headless Locust run against one endpoint; its raw samples."""
    require_loopback(url)
    duration = _duration(args)
    samples = workdir / f"samples{path.replace('/', '-')}.json"
    repo = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "BENCH_PATH": path,
        "BENCH_PACING": str(args.pacing),
        "BENCH_JITTER": str(args.jitter),
        "BENCH_START_SPREAD": str(_start_spread(args)),
        "BENCH_SAMPLES": str(samples),
        "PYTHONPATH": repo,
    }
    stop_timeout = args.payment_seconds + 5
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{duration:g}s",
        # Requests still running at the end are waited for, not dropped from the figures.
        "--stop-timeout",
        f"{stop_timeout:g}",
        "--host",
        url,
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    started = time.time()
    # A file, not a pipe: nobody reads Locust's stderr while it runs, and a full pipe stalls it.
    log = workdir / f"locust{path.replace('/', '-')}.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            command, env=env, cwd=repo, stdout=subprocess.DEVNULL, stderr=stderr
        )
    limit = duration + stop_timeout + 30
    with tqdm(total=round(duration), desc=f"locust {path}", unit="s", leave=False) as bar:
        while proc.poll() is None and time.time() - started < limit:
            time.sleep(0.5)
            bar.update(min(round(duration), int(time.time() - started)) - bar.n)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    elapsed = time.time() - started
    if not samples.exists():
        tail = log.read_text(errors="replace")[-500:]
        raise RuntimeError(f"locust wrote no samples (exit {proc.returncode}): {tail}")
    data = orjson.loads(samples.read_bytes())
    latencies: list[float] = data["latencies_ms"]
    return {
        "path": path,
        "requests": len(latencies) + data["failures"],
        "failures": data["failures"],
        "requests_per_s": (len(latencies) + data["failures"]) / duration,
        "latency_ms": summarize(latencies),
        "latencies_ms": [round(x, 3) for x in latencies],
        "accepted": data["accepted"],
        "locust_seconds": round(elapsed, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    pay = args.payment_seconds
    endpoints: dict[str, dict[str, Any]] = {}
    with local_aws() as aws, tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        topology = asyncio.run(new_topology(aws, "compare"))
        with (
            api_process(aws, topology.topic_arn, pay) as url,
            start_worker(
                aws, topology.queue_url, slots=args.slots, payment_seconds=pay, grace_seconds=pay
            ) as worker,
        ):
            for path in ENDPOINTS:
                endpoints[path] = _locust(url, path, args, Path(tmp))
            accepted = set(endpoints["/orders/async"].pop("accepted"))
            endpoints["/orders/sync"].pop("accepted")
            asyncio.run(wait_until_paid(worker, accepted, limit=2 * pay + 10))
            lost = len(accepted - worker.paid_ids())
    sync_p50 = endpoints["/orders/sync"]["latency_ms"]["p50"]
    async_lat = endpoints["/orders/async"]["latency_ms"]
    speedup = sync_p50 / async_lat["p50"] if sync_p50 and async_lat["p50"] else None
    return {
        "settings": {
            "users": args.users,
            "spawn_rate": args.spawn_rate,
            "duration_s": _duration(args),
            "pacing_s": args.pacing,
            "jitter": args.jitter,
            "payment_seconds": pay,
            "worker_slots": args.slots,
        },
        "endpoints": endpoints,
        "speedup_p50": speedup,
        "async_accepted": len(accepted),
        "async_lost": lost,
        "reference": REFERENCE,
        "targets": [
            target("compare: async vs sync p50 speed-up", speedup, ">=", 300, "x"),
            target("compare: async p99 at the reference load", async_lat["p99"], "<=", 25, "ms"),
        ],
    }


def report(result: dict[str, Any]) -> str:
    s = result["settings"]
    rows = []
    for path, e in result["endpoints"].items():
        lat = e["latency_ms"]
        rows.append(
            [
                path,
                e["requests"],
                e["failures"],
                lat["p50"],
                lat["p95"],
                lat["p99"],
                e["requests_per_s"],
            ]
        )
    ref = result["reference"]
    rows.append(
        ["reference sync (AWS)", 321, 0, float(ref["sync_p50_ms"]), None, None, ref["sync_rps"]]
    )
    rows.append(
        ["reference async (AWS)", 337, 0, float(ref["async_p50_ms"]), None, None, ref["async_rps"]]
    )
    speedup = result["speedup_p50"]
    return "\n".join(
        [
            "## compare: sync vs async under Locust",
            "",
            f"Locust headless, {s['users']} users spawned at {s['spawn_rate']:g}/s, one order per "
            f"user every {s['pacing_s']:g} s ± {s.get('jitter', 0) * 100:g} %, "
            f"{s['duration_s']:g} s per endpoint; payment "
            f"{s['payment_seconds']:g} s; {s['worker_slots']} worker slots behind async.",
            "",
            table(
                ["endpoint", "requests", "failures", "p50 ms", "p95 ms", "p99 ms", "req/s"], rows
            ),
            "",
            f"**Async is {speedup:,.0f}x faster at the median** (reference: 77x). "
            f"{result['async_accepted']} async orders accepted, {result['async_lost']} not paid."
            if speedup
            else "No speed-up: an endpoint had no successful request.",
            "",
        ]
    )


def charts(result: dict[str, Any], out_dir: Path) -> list[str]:
    series = {path: e["latencies_ms"] for path, e in result["endpoints"].items()}
    return [latency_distribution(series, out_dir / "compare-latency.png", "compare: Locust")]


def main(argv: list[str] | None = None) -> int:
    from .cli import scenario_main

    return scenario_main("compare", argv)


if __name__ == "__main__":
    raise SystemExit(main())

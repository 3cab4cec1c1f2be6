"""compare: sync vs async under Locust, as in the reference report (20 users, spawn 10/s).

Locust runs headless as a subprocess against the real API (and, for async, the real worker
draining the queue behind it), and every request's latency is kept. Three runs: sync and
async in the reference report's shape (users in Locust's lockstep, no jitter), and async
again with each user's cycle jittered; async runs last long enough for `--min-samples`
requests behind each p99. Order state is on, as `make run` ships it (`--stateless`: off).
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
from typing import NamedTuple, NotRequired, TypedDict

import orjson
from tqdm import tqdm

from ..harness.ledger import Ledger, ledger_targets
from ..harness.remote import RemoteOrders
from ..harness.results import Earlier, Result, TargetResult
from ..harness.stack import (
    LocalStack,
    local_stack,
    order_state,
    require_loopback,
    wait_until_paid,
)
from ..harness.stats import summarize
from ..harness.targets import target
from ..report.charts import latency_distribution
from ..report.markdown import table
from ..report.reference import REFERENCE, REFERENCE_SPEEDUP, Reference

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


# (label, endpoint, jitter or None for --jitter): the reference's shape first.
RUNS = (
    ("sync, reference shape", "/orders/sync", 0.0),
    ("async, reference shape", "/orders/async", 0.0),
    ("async, jittered", "/orders/async", None),
)


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
        help="in the jittered run, cycles vary uniformly by this fraction of the pacing, "
        "and users started together spread their first order over the spawn interval "
        "(default 0.5); the reference-shape runs use 0, Locust's lockstep bursts",
    )
    parser.add_argument(
        "--min-samples",
        type=int,
        default=300,
        help="async runs last until this many requests are expected (default 300)",
    )
    parser.add_argument("--payment-seconds", type=float, default=3.0)
    parser.add_argument(
        "--slots", type=int, default=100, help="worker slots behind async (report: 100)"
    )


def _duration(args: argparse.Namespace, path: str = "/orders/sync") -> float:
    """Seconds of one run; async long enough for min_samples requests at the users' pace."""
    base = float(args.duration or (15 if args.quick else 60))
    if path == "/orders/sync":
        return base
    # Users start over users / spawn_rate seconds, then each sends one per pacing.
    needed = args.min_samples * args.pacing / args.users + args.users / args.spawn_rate
    return max(base, float(math.ceil(needed)))


def _start_spread(args: argparse.Namespace, jitter: float) -> float:
    """Seconds between Locust's batches of started users (it starts floor(rate) at a time)."""
    if jitter == 0:
        return 0.0  # lockstep asked for: keep Locust's own bursts too
    return float(max(1, math.floor(args.spawn_rate)) / args.spawn_rate)


class LocustRun(TypedDict):
    """One headless Locust run against one endpoint."""

    path: str
    jitter: float
    duration_s: float
    requests: int
    failures: int
    requests_per_s: float | None
    """Requests over span_s, the run's measured span."""
    span_s: float | None
    """From the first request sent to the last answered (None: no request)."""
    latency_ms: dict[str, float | int | None]
    latencies_ms: list[float]
    """Every answered request's latency (the latency chart draws them)."""
    accepted: NotRequired[list[str]]
    """Order ids the API accepted (async), dropped once checked against the worker's."""
    locust_seconds: float


class CompareSettings(TypedDict):
    users: int
    spawn_rate: float
    duration_s: float
    """Seconds of the sync run."""
    async_duration_s: float
    """Seconds of each async run: long enough for min_samples requests."""
    min_samples: int
    pacing_s: float
    jitter: float
    """The jittered run's; the reference-shape runs have none."""
    payment_seconds: float
    worker_slots: int
    order_state: bool
    full: NotRequired[bool]
    """--full: the report's 60 s per endpoint; else the quick run's shorter ones."""


class CompareResult(Result):
    settings: CompareSettings
    runs: dict[str, LocustRun]
    """By label, in RUNS' order."""
    speedup_p50: float | None
    """Sync p50 / async p50 in the reference shape; None when either had no answer."""
    async_accepted: int
    async_lost: int
    """Accepted by the API, never charged (the processor's ledger)."""
    charged_twice: int | None
    """None on a --target: its ledger is not the bench's to read."""
    target: NotRequired[str]
    """--target: the running stack compared (paid from GET /orders/{id})."""
    reference: Reference
    reference_speedup_p50: float


def _locust_command(
    url: str, args: argparse.Namespace, duration: float, stop_timeout: int
) -> list[str]:
    return [
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


def _wait_with_progress(
    proc: subprocess.Popen[bytes], path: str, duration: float, limit: float
) -> None:
    """Wait for Locust with a progress bar; kill it `limit` s after it started."""
    started = time.time()
    with tqdm(total=round(duration), desc=f"locust {path}", unit="s", leave=False) as bar:
        while proc.poll() is None and time.time() - started < limit:
            time.sleep(0.5)
            bar.update(min(round(duration), int(time.time() - started)) - bar.n)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _locust(
    url: str, path: str, jitter: float, args: argparse.Namespace, workdir: Path
) -> LocustRun:
    """One headless Locust run against one endpoint; its raw samples."""
    require_loopback(url)
    duration = _duration(args, path)
    tag = f"{path.replace('/', '-')}-{jitter:g}"
    samples = workdir / f"samples{tag}.json"
    repo = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "BENCH_PATH": path,
        "BENCH_PACING": str(args.pacing),
        "BENCH_JITTER": str(jitter),
        "BENCH_START_SPREAD": str(_start_spread(args, jitter)),
        "BENCH_SAMPLES": str(samples),
        "PYTHONPATH": repo,
    }
    stop_timeout = math.ceil(args.payment_seconds + 5)  # Locust takes whole seconds only
    started = time.time()
    # A file, not a pipe: nobody reads Locust's stderr while it runs, and a full pipe stalls it.
    log = workdir / f"locust{tag}.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            _locust_command(url, args, duration, stop_timeout),
            env=env,
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    _wait_with_progress(proc, path, duration, limit=duration + stop_timeout + 30)
    elapsed = time.time() - started
    if not samples.exists():
        tail = log.read_text(errors="replace")[-500:]
        raise RuntimeError(f"locust wrote no samples (exit {proc.returncode}): {tail}")
    data = orjson.loads(samples.read_bytes())
    latencies: list[float] = data["latencies_ms"]
    span: float | None = data.get("span_s")
    return {
        "path": path,
        "jitter": jitter,
        "duration_s": duration,
        "requests": len(latencies) + data["failures"],
        "failures": data["failures"],
        # Over the span measured (first request sent to last answered), not the configured
        # run time: Locust ramps users up and waits for the last answers.
        "requests_per_s": (len(latencies) + data["failures"]) / span if span else None,
        "span_s": span,
        "latency_ms": summarize(latencies),
        "latencies_ms": [round(x, 3) for x in latencies],
        "accepted": data["accepted"],
        "locust_seconds": round(elapsed, 1),
    }


def _settings(args: argparse.Namespace) -> CompareSettings:
    return {
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "duration_s": _duration(args),
        "async_duration_s": _duration(args, "/orders/async"),
        "min_samples": args.min_samples,
        "pacing_s": args.pacing,
        "jitter": args.jitter,
        "payment_seconds": args.payment_seconds,
        "worker_slots": args.slots,
        "order_state": order_state(args),
        "full": not args.quick,
    }


def _targets(args: argparse.Namespace, result: CompareResult) -> list[TargetResult]:
    runs, speedup = result["runs"], result["speedup_p50"]
    ref_async = runs["async, reference shape"]["latency_ms"]
    jittered = runs["async, jittered"]["latency_ms"]
    shape = f"{args.users} users, no jitter"
    return [
        target(
            "compare: async vs sync p50 speed-up, reference shape", speedup, ">=", 300, "x", shape
        ),
        target(
            "compare: async p99, reference shape",
            ref_async["p99"],
            "<=",
            25,
            "ms",
            f"{shape}, {ref_async['count']} samples",
        ),
        target(
            "compare: async p99, jittered",
            jittered["p99"],
            "<=",
            25,
            "ms",
            f"± {args.jitter * 100:g} %, {jittered['count']} samples",
        ),
    ]


class _Runs(NamedTuple):
    runs: dict[str, LocustRun]
    accepted: set[str]
    """Async orders the API accepted."""
    ledger: Ledger
    paid: int
    """Orders the services say they paid: sync answers and the worker's order_paid lines."""


def _locust_runs(stack: LocalStack, args: argparse.Namespace, workdir: Path) -> _Runs:
    """The three Locust runs against one API and worker, until the async orders are paid."""
    pay = args.payment_seconds
    runs: dict[str, LocustRun] = {}
    with (
        stack.api(pay) as api,
        stack.worker(slots=args.slots, payment_seconds=pay, grace_seconds=pay) as worker,
    ):
        for label, path, jitter in RUNS:
            run_jitter = args.jitter if jitter is None else jitter
            runs[label] = _locust(api.url, path, run_jitter, args, workdir)
        accepted = _accepted(runs)
        asyncio.run(wait_until_paid(worker, accepted, limit=2 * pay + 10))
    sync = [r for r in runs.values() if r["path"] == "/orders/sync"]
    paid = len(worker.paid) + sum(r["requests"] - r["failures"] for r in sync)
    return _Runs(runs, accepted, Ledger.of(api.charges, worker.charges), paid)


def _accepted(runs: dict[str, LocustRun]) -> set[str]:
    """The async orders the API accepted (dropped from the runs once collected)."""
    return {
        order_id
        for r in runs.values()
        if r["path"] == "/orders/async"
        for order_id in r.pop("accepted", [])
    }


def _on_target(url: str, args: argparse.Namespace, workdir: Path) -> _Runs:
    """The three Locust runs against a stack the bench did not start; paid from GET."""
    runs = {
        label: _locust(url, path, args.jitter if jitter is None else jitter, args, workdir)
        for label, path, jitter in RUNS
    }
    accepted = _accepted(runs)
    orders = RemoteOrders(url)
    asyncio.run(orders.wait_until_paid(accepted, 2 * args.payment_seconds + 10))
    return _Runs(runs, accepted, Ledger(), len(orders.paid_ids() & accepted))


def _result(spec: CompareSettings, got: _Runs) -> CompareResult:
    sync_p50 = got.runs["sync, reference shape"]["latency_ms"]["p50"]
    async_p50 = got.runs["async, reference shape"]["latency_ms"]["p50"]
    return {
        "settings": spec,
        "runs": got.runs,
        "speedup_p50": sync_p50 / async_p50 if sync_p50 and async_p50 else None,
        "async_accepted": len(got.accepted),
        "async_lost": len(got.ledger.lost(got.accepted)),
        "charged_twice": len(got.ledger.twice()),
        "reference": REFERENCE,
        "reference_speedup_p50": REFERENCE_SPEEDUP,
    }


def run(args: argparse.Namespace, earlier: Earlier) -> CompareResult:
    spec = _settings(args)
    url = getattr(args, "target", None)
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        if url is not None:
            got = _on_target(url, args, Path(tmp))
        else:
            with local_stack("compare", order_state=spec["order_state"]) as stack:
                got = _locust_runs(stack, args, Path(tmp))
    result = _result(spec, got)
    result["targets"] = _targets(args, result)
    if url is None:
        result["targets"] += ledger_targets(
            "compare", got.ledger, accepted=got.accepted, paid=got.paid
        )
        return result
    # Another stack's ledger is not the bench's to read: paid as GET /orders/{id} shows it.
    result["target"] = url
    result["async_lost"] = len(got.accepted) - got.paid
    result["charged_twice"] = None
    result["targets"].append(
        target(
            "compare: accepted orders never paid (GET /orders/{id})", result["async_lost"], "==", 0
        )
    )
    return result


def _runs_table(result: CompareResult) -> str:
    """Each Locust run, then the reference report's two."""
    rows = []
    for label, e in result["runs"].items():
        lat = e["latency_ms"]
        rows.append(
            [
                label,
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
    return table(["run", "requests", "failures", "p50 ms", "p95 ms", "p99 ms", "req/s"], rows)


# The ratio's one caveat, under the heading and beside the README's figure.
CAVEAT = (
    "The speed-up sets the same payment time over loopback here against the report's over "
    "the internet: the report's async median includes its round trip, this one does not."
)


def heading(s: CompareSettings) -> str:
    """Which run this was: quick or --full, and how long each endpoint ran."""
    if s.get("full"):
        return f"--full (the report's {s['duration_s']:g} s per endpoint)"
    return (
        f"quick (sync {s['duration_s']:g} s, async {s.get('async_duration_s', 0):g} s; "
        "`--full` is the report's 60 s per endpoint)"
    )


def report(result: CompareResult) -> str:
    s, ref = result["settings"], result["reference"]
    speedup = result["speedup_p50"]
    ref_speedup = result.get("reference_speedup_p50") or REFERENCE_SPEEDUP
    return "\n".join(
        [
            f"## compare: sync vs async under Locust, {heading(s)}",
            "",
            CAVEAT,
            "",
            f"Locust headless, {s['users']} users spawned at {s['spawn_rate']:g}/s, one order per "
            f"user every {s['pacing_s']:g} s: in the reference report's shape (Locust's "
            f"lockstep, no jitter) and, for async, again with ± {s.get('jitter', 0) * 100:g} % "
            f"jitter; sync {s['duration_s']:g} s, async {s.get('async_duration_s', 0):g} s each "
            f"(at least {s.get('min_samples', 0)} requests behind each p99); "
            + (
                f"against {result['target']}, a stack the bench did not start (its own payment "
                "time and slots; paid as GET /orders/{id} shows it)."
                if result.get("target")
                else f"payment {s['payment_seconds']:g} s; {s['worker_slots']} worker slots behind "
                f"async; order state {'on' if s.get('order_state') else 'off'}."
            ),
            "",
            _runs_table(result),
            "",
            f"**Async is {speedup:,.0f}x faster at the median** in the reference shape "
            f"(reference: {ref['sync_p50_ms']:,} / {ref['async_p50_ms']} ms = "
            f"{ref_speedup:,.0f}x). {result['async_accepted']} async orders accepted, "
            f"{result['async_lost']} not paid, "
            + (
                "charged twice: not readable on a --target."
                if result.get("charged_twice") is None
                else f"{result.get('charged_twice', 0)} charged twice."
            )
            if speedup
            else "No speed-up: an endpoint had no successful request.",
            "",
        ]
    )


def charts(result: CompareResult, out_dir: Path) -> list[str]:
    series = {label: e["latencies_ms"] for label, e in result["runs"].items()}
    return [latency_distribution(series, out_dir / "compare-latency.png", "compare: Locust")]

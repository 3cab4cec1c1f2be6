"""Issue 20's drill against `make run`: DynamoDB hangs (or denies) while orders are paying.

`python -m bench.tools.dynamodb_hang [--denied] [--out DIR]` starts `python -m devstack` (the
launcher `make run` runs) on free loopback ports, and:

- default (hang): sends 60 orders to /orders/async at 20/s (every other one with an
  Idempotency-Key), waits until they are `paying` (the table, read directly), delays every
  DynamoDB call by 60 s for 50 s (a chaos rule), removes the rule;
- `--denied`: every DynamoDB call answers AccessDeniedException (HTTP 400) for 25 s while the
  same orders arrive; meanwhile the API's /health and the worker's container health check
  (`python -m services.worker.healthcheck`, its HEARTBEAT_FILE) are probed every second.

Then it waits (bounded) until every accepted order has an `order_paid` line and the queue is
empty (nothing left to redeliver), stops the launcher with SIGTERM, and counts its stdout:
202s, `payment_charged` per order (the processor's ledger), `order_paid`, duplicates, error
lines (bench/tools/drill_tally.py). Exit 1 if an accepted order was not charged exactly once
or not paid (or, with --denied, the permanent error was not loud); the launcher's whole
stdout is kept in DIR/launcher.log for the evidence.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiobotocore.session import get_session

from bench.harness.load import order_body
from devstack.env import LOOPBACK, client_args
from devstack.processes import free_port
from localaws.client import set_faults
from services.common.aws import client_config

from .drill_tally import Tally, problems, table, tally

ORDERS = 60
RATE = 20.0
HANG_RULE = {"service": "dynamodb", "latency_ms": 60_000}
HANG_SECONDS = 50.0
DENIED_RULE = {
    "service": "dynamodb",
    "error": {
        "statusCode": 400,
        "code": "AccessDeniedException",
        "message": "drill: not authorized to perform this DynamoDB action",
    },
}
DENIED_SECONDS = 25.0
READY_SECONDS = 60.0
PAYING_SECONDS = 30.0
SETTLE_SECONDS = 240.0
"""After the fault: time for every order to be paid and the queue to empty."""
RECOVER_SECONDS = 90.0
"""--denied, once every order is paid: time for both services to report healthy again (the
API's health follows its next DynamoDB answer: a late write, backed off up to a minute)."""
STOP_SECONDS = 60.0


def log(message: str, start: float = 0.0) -> None:
    at = f"[{time.monotonic() - start:7.1f}s] " if start else ""
    print(f"drill: {at}{message}", file=sys.stderr, flush=True)


@dataclass
class Launcher:
    """`python -m devstack`, its stdout parsed line by line as it comes."""

    proc: asyncio.subprocess.Process
    logfile: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ready_line: dict[str, Any] = field(default_factory=dict)

    async def read(self) -> None:
        assert self.proc.stdout is not None
        with self.logfile.open("wb") as out:
            async for line in self.proc.stdout:
                out.write(line)
                try:
                    event = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(event, dict):
                    continue
                self.events.append(event)
                if event.get("event") == "stack_ready":
                    self.ready_line = event
                    self.ready.set()

    def count(self, name: str) -> Counter[str]:
        return Counter(str(e.get("order_id")) for e in self.events if e.get("event") == name)


@asynccontextmanager
async def launcher(env: dict[str, str], out: Path) -> AsyncIterator[Launcher]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devstack",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=(out / "launcher.stderr").open("wb"),
        limit=1 << 20,
    )
    stack = Launcher(proc, out / "launcher.log")
    reader = asyncio.create_task(stack.read())
    try:
        yield stack
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_SECONDS)
        except TimeoutError:
            log(f"launcher still running {STOP_SECONDS:g} s after SIGTERM: killed")
            proc.kill()
            await proc.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 10)
        log(f"launcher exited with code {proc.returncode}")


async def until(predicate: Any, within: float, every: float = 0.5) -> bool:
    """Poll an async predicate until it holds or `within` seconds pass; whether it held."""
    deadline = time.monotonic() + within
    while True:
        if await predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every)


@dataclass
class Sent:
    accepted: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)


async def send_orders(http: aiohttp.ClientSession, api: str, sent: Sent) -> None:
    """ORDERS orders at RATE/s, open loop; every other one carries an Idempotency-Key."""

    async def one(index: int) -> None:
        headers = {"Content-Type": "application/json"}
        if index % 2 == 0:
            headers["Idempotency-Key"] = f"drill-{uuid.uuid4()}"
        try:
            async with http.post(
                f"{api}/orders/async", data=order_body(None), headers=headers
            ) as answer:
                body = await answer.json(content_type=None)
                if answer.status == 202:
                    sent.accepted.append(str(body["order_id"]))
                else:
                    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
                    sent.refused[f"{answer.status} {code}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            sent.refused[type(exc).__name__] += 1

    start = time.monotonic()
    tasks = []
    for i in range(ORDERS):
        await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)


async def statuses(endpoint: str, table_name: str) -> Counter[str]:
    """Every order's status in the table (a Scan, read before or after a fault only)."""
    found: Counter[str] = Counter()
    config = client_config(pool_size=2, read_timeout=10, max_attempts=2)
    async with get_session().create_client("dynamodb", **client_args(endpoint, config)) as db:
        async for page in db.get_paginator("scan").paginate(TableName=table_name):
            for item in page["Items"]:
                if item["pk"]["S"].startswith("order#"):
                    found[item["status"]["S"]] += 1
    return found


async def queue_empty(endpoint: str, queue_url: str) -> bool:
    """No message visible or in flight: nothing can be redelivered any more."""
    config = client_config(pool_size=2, read_timeout=10, max_attempts=2)
    async with get_session().create_client("sqs", **client_args(endpoint, config)) as sqs:
        attrs = await sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    return sum(int(v) for v in attrs["Attributes"].values()) == 0


@dataclass
class Probes:
    """The denied drill's health observations, by second since the rule went in."""

    api_health: list[tuple[float, int]] = field(default_factory=list)
    worker_check: list[tuple[float, int]] = field(default_factory=list)
    during: int = 0
    """How many of the probes were made while the rule was in."""
    recovered_after: float | None = None
    """Seconds from the rule's removal until both were healthy again (None: not within
    RECOVER_SECONDS)."""

    async def take(
        self, http: aiohttp.ClientSession, api: str, env: dict[str, str], t0: float
    ) -> bool:
        """Probe both once and note what they said; True if both are healthy."""
        api_status, check = await probe(http, api, env)
        at = time.monotonic() - t0
        self.api_health.append((at, api_status))
        self.worker_check.append((at, check))
        return api_status == 200 and check == 0


async def probe(http: aiohttp.ClientSession, api: str, env: dict[str, str]) -> tuple[int, int]:
    """The API's /health status and the worker's health check's exit code, right now."""
    try:
        async with http.get(f"{api}/health") as answer:
            api_status = answer.status
    except (aiohttp.ClientError, TimeoutError):
        api_status = 0
    check = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.worker.healthcheck",
        env=env,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return api_status, await check.wait()


async def drill(args: argparse.Namespace, out: Path) -> int:
    api_port, aws_port = free_port(), free_port()
    env = _launcher_env(out, api_port, aws_port)
    api = f"http://{LOOPBACK}:{api_port}"
    mode = "denied" if args.denied else "hang"
    log(f"mode {mode}; load average {os.getloadavg()}; launcher's stdout in {out}/launcher.log")
    sent = Sent()
    probes = Probes()
    timeout = aiohttp.ClientTimeout(total=20)
    async with launcher(env, out) as stack, aiohttp.ClientSession(timeout=timeout) as http:
        if not await until(lambda: _ready(stack), READY_SECONDS):
            log("the launcher never said stack_ready")
            return 2
        endpoint = str(stack.ready_line["endpoint"])
        table_name = str(stack.ready_line["ORDERS_TABLE"])
        queue_url = str(stack.ready_line["ORDER_QUEUE_URL"])
        if not await until(lambda: _healthy(http, api), READY_SECONDS):
            log("the API never answered /health 200")
            return 2
        t0 = time.monotonic()
        log(f"stack ready: API {api}, local AWS {endpoint}", t0)
        if args.denied:
            removed = await _deny(http, api, env, endpoint, sent, probes, t0)
        else:
            await _hang(http, api, endpoint, table_name, sent, t0)

        async def settled() -> bool:
            paid = stack.count("order_paid")
            return all(paid[o] for o in sent.accepted) and await queue_empty(endpoint, queue_url)

        done = await until(settled, SETTLE_SECONDS, every=1)
        log(f"every accepted order paid and the queue empty: {done}", t0)
        after: Counter[str] = Counter()
        with contextlib.suppress(Exception):
            after = await statuses(endpoint, table_name)
        if args.denied:
            await _recover(http, api, env, probes, t0, removed)
    result = tally(ORDERS, sent.accepted, sent.refused, stack.events)
    return _verdict(mode, result, after, done, probes if args.denied else None)


def _launcher_env(out: Path, api_port: int, aws_port: int) -> dict[str, str]:
    """The launcher's environment: free loopback ports, no dashboard, a heartbeat in `out`."""
    heartbeat = out / "worker.heartbeat"
    return {
        **os.environ,
        "LOCALAWS_PORT": str(aws_port),
        "PORT": str(api_port),
        "HOST": LOOPBACK,
        "DASHBOARD_PORT": "0",
        "HEARTBEAT_FILE": str(heartbeat),
        "PYTHONUNBUFFERED": "1",
    }


async def _deny(
    http: aiohttp.ClientSession,
    api: str,
    env: dict[str, str],
    endpoint: str,
    sent: Sent,
    probes: Probes,
    t0: float,
) -> float:
    """The denied fault: orders arrive while health is probed every second; when it ended."""
    await set_faults(endpoint, [DENIED_RULE])
    log(f"rule in: every DynamoDB call AccessDeniedException for {DENIED_SECONDS:g} s", t0)
    sending = asyncio.create_task(send_orders(http, api, sent))
    end = time.monotonic() + DENIED_SECONDS
    while time.monotonic() < end:
        await probes.take(http, api, env, t0)
        await asyncio.sleep(1)
    await sending
    await set_faults(endpoint, [])
    removed = time.monotonic()
    probes.during = len(probes.api_health)
    log("rule removed", t0)
    return removed


async def _hang(
    http: aiohttp.ClientSession, api: str, endpoint: str, table_name: str, sent: Sent, t0: float
) -> None:
    """The hang fault: every order sent, then DynamoDB delayed once half of them are paying."""
    await send_orders(http, api, sent)
    log(f"sent {ORDERS}: {len(sent.accepted)} accepted, other {dict(sent.refused)}", t0)
    seen: Counter[str] = Counter()

    async def paying() -> bool:
        seen.clear()
        seen.update(await statuses(endpoint, table_name))
        return seen["paying"] * 2 >= max(1, len(sent.accepted))

    held = await until(paying, PAYING_SECONDS, every=0.2)
    log(f"orders by status {dict(seen)} (half paying: {held})", t0)
    await set_faults(endpoint, [HANG_RULE])
    log(f"rule in: every DynamoDB call delayed 60 s, for {HANG_SECONDS:g} s", t0)
    await asyncio.sleep(HANG_SECONDS)  # the fault's length, not a proof of anything
    await set_faults(endpoint, [])
    log("rule removed", t0)


async def _recover(
    http: aiohttp.ClientSession,
    api: str,
    env: dict[str, str],
    probes: Probes,
    t0: float,
    removed: float,
) -> None:
    """After the denied fault: probe until both are healthy again, and note how long it took."""
    if await until(lambda: probes.take(http, api, env, t0), RECOVER_SECONDS, every=1):
        probes.recovered_after = round(time.monotonic() - removed, 1)


def _verdict(
    mode: str, result: Tally, after: Counter[str], done: bool, probes: Probes | None
) -> int:
    """Print the drill's table and verdict; 1 if anything expected did not happen."""
    print(f"## DynamoDB {mode} drill against `python -m devstack`\n")
    print(table(result))
    print(f"| orders by status in the table at the end | {dict(after)} |")
    found = problems(result)
    if not done:
        found.append(f"not every accepted order paid with the queue empty within {SETTLE_SECONDS}s")
    if probes is not None:
        found += denied_problems(result, probes)
    print(f"| load average at the end | {os.getloadavg()} |")
    print("\nverdict: " + ("PASS" if not found else "FAIL"))
    for problem in found:
        print(f"- {problem}")
    return 1 if found else 0


def denied_problems(result: Tally, probes: Probes) -> list[str]:
    """The denied drill's own expectations: loud, unhealthy, and healthy again after."""
    api = [s for _, s in probes.api_health]
    worker = [c for _, c in probes.worker_check]
    first_503 = next((round(t, 1) for t, s in probes.api_health if s == 503), None)
    first_fail = next((round(t, 1) for t, c in probes.worker_check if c != 0), None)
    print(
        f"| API /health during the rule (status: probes) | {dict(Counter(api[: probes.during]))} |"
    )
    print(f"| API /health first 503 at (s after the rule) | {first_503} |")
    during = dict(Counter(worker[: probes.during]))
    print(f"| worker healthcheck exit codes during the rule | {during} |")
    print(f"| worker healthcheck first failure at (s) | {first_fail} |")
    print(f"| after recovery: API /health, worker healthcheck | {api[-1]}, {worker[-1]} |")
    print(f"| both healthy again, s after the rule's removal | {probes.recovered_after} |")
    found = []
    if not result.permanent_codes.get("AccessDeniedException"):
        found.append("no aws_permanent_error line with code AccessDeniedException")
    if not result.errors.get("liveness_failed"):
        found.append("no liveness_failed line")
    if first_503 is None:
        found.append("the API's /health never answered 503")
    if first_fail is None:
        found.append("the worker's health check never failed")
    if probes.recovered_after is None:
        found.append(f"not healthy again within {RECOVER_SECONDS:g} s of the rule's removal")
    return found


async def _ready(stack: Launcher) -> bool:
    if stack.proc.returncode is not None:
        raise RuntimeError(f"the launcher exited with code {stack.proc.returncode}")
    return stack.ready.is_set()


async def _healthy(http: aiohttp.ClientSession, api: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with http.get(f"{api}/health") as answer:
            return answer.status == 200
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tools.dynamodb_hang",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--denied", action="store_true", help="AccessDeniedException for 25 s instead of a hang"
    )
    parser.add_argument("--out", help="where the launcher's stdout is kept (default: a temp dir)")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="dynamodb-drill-"))
    out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(drill(args, out))


if __name__ == "__main__":
    raise SystemExit(main())

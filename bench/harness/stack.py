"""The pipeline under test, on this machine: local AWS, topology, API and worker processes.

Every process the bench starts listens on or talks to 127.0.0.1 only, and is stopped by the
context manager that started it, even when a scenario fails half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from aiobotocore.session import ClientCreatorContext, get_session
from tqdm import tqdm

from devstack import processes
from devstack.env import LOOPBACK, REGION, client_args, isolated_process_env, service_env
from devstack.local_aws import local_aws_server
from devstack.processes import free_port
from devstack.topology import Topology, TopologyNames, create_topology, unique_names
from services.common.aws import client_config
from services.common.settings import AwsSettings

from .ledger import CHARGED, charges, parse_lines
from .procstat import cpu_seconds

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


def require_loopback(url: str) -> str:
    """Refuse any load target but 127.0.0.1: the bench must never load another machine."""
    host = urlsplit(url).hostname
    if host != LOOPBACK:
        raise ValueError(f"the bench only targets {LOOPBACK}, not {host!r} ({url})")
    return url


@contextmanager
def local_aws() -> Iterator[AwsSettings]:
    """Start the local AWS and point this process's AWS settings at it (restored after)."""
    with local_aws_server_env() as (aws, _pid):
        yield aws


@contextmanager
def local_aws_server_env() -> Iterator[tuple[AwsSettings, int]]:
    """Like local_aws(), yielding the server's pid too (for its CPU time)."""
    with local_aws_server(LOOPBACK, 0) as server:
        aws = AwsSettings(region=REGION, endpoint_url=require_loopback(server.endpoint))
        # The bench's own clients (topology, sampler, preload) must find the fake
        # credentials and never a developer's real profile.
        with isolated_process_env(aws):
            yield aws, server.pid


def bench_names(prefix: str) -> TopologyNames:
    """Fresh topic and queues; the bench's scenarios share the default order table."""
    return unique_names(prefix, table=TopologyNames.table)


async def new_topology(aws: AwsSettings, prefix: str) -> Topology:
    return await create_topology(aws, bench_names(prefix))


async def resubscribe(aws: AwsSettings, old: Topology, prefix: str) -> Topology:
    """A fresh empty queue on the same topic (the old one unsubscribed): a clean run, same API."""
    names = bench_names(prefix)
    topic_name = old.topic_arn.rsplit(":", 1)[1]
    fresh = await create_topology(
        aws, TopologyNames(topic=topic_name, queue=names.queue, dlq=names.dlq)
    )
    async with sns_client(aws) as sns:
        await sns.unsubscribe(SubscriptionArn=old.subscription_arn)
    return fresh


def _client_args(aws: AwsSettings, pool_size: int) -> dict[str, Any]:
    return client_args(
        aws.endpoint_url, client_config(pool_size=pool_size, read_timeout=30), aws.region
    )


def sqs_client(aws: AwsSettings, pool_size: int = 20) -> ClientCreatorContext[SQSClient]:
    return get_session().create_client("sqs", **_client_args(aws, pool_size))


def sns_client(aws: AwsSettings) -> ClientCreatorContext[SNSClient]:
    return get_session().create_client("sns", **_client_args(aws, 4))


def dynamodb_client(aws: AwsSettings) -> ClientCreatorContext[DynamoDBClient]:
    return get_session().create_client("dynamodb", **_client_args(aws, 4))


def order_state(args: object) -> bool:
    """Whether a scenario runs the services with order state: on unless `--stateless`."""
    return not getattr(args, "stateless", False)


def state_env(order_state: bool, topology: Topology) -> dict[str, str]:
    """A service's order-state setting: the table when state is on, as `make run` sets it."""
    return {"ORDERS_TABLE": topology.table} if order_state else {}


@dataclass
class Relay:
    """The log relay a service's stdout goes through (bench/harness/logrelay.py)."""

    proc: subprocess.Popen[bytes]
    shipping: bool
    """LOG_SHIPPING on: the relay ships every line to the local AWS's CloudWatch Logs."""
    stats_path: Path
    stats: dict[str, int] | None = None
    """After it exits: lines `read`, `sent`, `dropped`, `batches` (None: it wrote none)."""

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_relay(
    service: str,
    aws: AwsSettings,
    *,
    shipping: bool,
    source: IO[bytes],
    stdout: int | IO[bytes],
) -> Relay:
    """Pass `source` (a service's stdout) on to `stdout`, shipping it too if `shipping`."""
    fd, name = tempfile.mkstemp(prefix=f"bench-relay-{service}-", suffix=".json")
    os.close(fd)
    env = service_env(aws, LOG_SHIPPING="on" if shipping else "off")
    proc = subprocess.Popen(
        [*processes.command("bench.harness.logrelay"), service, name],
        env=env,
        stdin=source,
        stdout=stdout,
    )
    return Relay(proc, shipping, Path(name))


def finish_relay(relay: Relay, timeout: float = 60) -> None:
    """Wait for the relay (its service has stopped: it sends what is left) and read its
    counts."""
    try:
        relay.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        relay.proc.kill()
        relay.proc.wait()
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        relay.stats = orjson.loads(relay.stats_path.read_bytes())
    relay.stats_path.unlink(missing_ok=True)


@dataclass
class ApiRun:
    """A running API process; after it stops, the processor's ledger from its log."""

    url: str
    pid: int
    charges: Counter[str] = field(default_factory=Counter)
    """How many times the processor charged each order in this process (/orders/sync)."""
    relay: Relay | None = None
    """Its log relay, when the stack runs one (`log_shipping` on or off)."""


@contextmanager
def api_process(
    aws: AwsSettings,
    topic_arn: str,
    payment_seconds: float,
    extra: Mapping[str, str] | None = None,
    shipping: bool | None = None,
) -> Iterator[ApiRun]:
    """Run `python -m services.api` on a free loopback port; yield it once healthy.

    `shipping` True or False: its stdout goes through a log relay (start_relay) that ships
    it to the local AWS or not; None: no relay, straight to the log file.
    """
    port = free_port()
    env = service_env(
        aws,
        ORDER_TOPIC_ARN=topic_arn,
        HOST=LOOPBACK,
        PORT=str(port),
        PAYMENT_SECONDS=str(payment_seconds),
        **(extra or {}),
    )
    # Its log goes to a file, read after it stops: a reader in this process would take CPU
    # from the load generator, and a full pipe would stall the API.
    with tempfile.TemporaryFile(prefix="bench-api-") as log:
        relay = None
        if shipping is None:
            proc = processes.start("api", env, stdout=log)
        else:
            proc = processes.start("api", env, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            relay = start_relay("api", aws, shipping=shipping, source=proc.stdout, stdout=log)
            proc.stdout.close()  # the relay holds it now
        run = ApiRun(url=f"http://{LOOPBACK}:{port}", pid=proc.pid, relay=relay)
        try:
            processes.wait_listening(proc, port, timeout=30)
            yield run
        finally:
            processes.stop(proc, timeout=15)
            if relay is not None:
                finish_relay(relay)
            log.seek(0)
            run.charges = charges(parse_lines(line for line in log if CHARGED.encode() in line))


@dataclass
class Paid:
    order_id: str
    at: float
    """Unix time the payment finished (the log line's own timestamp)."""
    queue_ms: float
    payment_ms: float
    receive_count: int


@dataclass
class WorkerRun:
    """What a worker process reported on stdout, collected by a reader thread."""

    pid: int
    slots: int
    started_at: float | None = None
    cpu_at_start: float | None = None
    cpu_at_exit: float | None = None
    paid: list[Paid] = field(default_factory=list)
    charges: Counter[str] = field(default_factory=Counter)
    """The processor's ledger in this process: charges per order (`payment_charged` lines)."""
    charged_at: dict[str, float] = field(default_factory=dict)
    """Unix time of each order's last charge (the ledger line's own timestamp)."""
    stopped: dict[str, Any] | None = None
    other_events: dict[str, int] = field(default_factory=dict)
    started: threading.Event = field(default_factory=threading.Event)
    relay: Relay | None = None
    """Its log relay, when the stack runs one (`log_shipping` on or off)."""

    @property
    def cpu_seconds(self) -> float | None:
        """CPU spent from `worker_started` to exit: the work, without the interpreter's start."""
        if self.cpu_at_start is None or self.cpu_at_exit is None:
            return None
        return self.cpu_at_exit - self.cpu_at_start

    def paid_ids(self) -> set[str]:
        """Orders the worker reported paid (`order_paid`): its own account, not the ledger's."""
        return {p.order_id for p in self.paid}

    def charged_ids(self) -> set[str]:
        """Orders the processor's ledger shows charged in this process."""
        return set(self.charged_at)


def _log_time(line: Mapping[str, Any]) -> float:
    stamp = line.get("timestamp")
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp).timestamp()
    return time.time()


def _read_worker(pid: int, lines: IO[bytes], run: WorkerRun) -> None:
    """Follow the worker's log lines (`lines`: its stdout, or its relay's)."""
    for raw in lines:
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        event = line.get("event")
        if event == "order_paid":
            run.paid.append(
                Paid(
                    order_id=str(line["order_id"]),
                    at=_log_time(line),
                    queue_ms=float(line.get("queue_ms", 0.0)),
                    payment_ms=float(line.get("payment_ms", 0.0)),
                    receive_count=int(line.get("receive_count", 1)),
                )
            )
        elif event == CHARGED:
            run.charges[str(line["order_id"])] += 1
            run.charged_at[str(line["order_id"])] = _log_time(line)
        elif event == "worker_started":
            run.cpu_at_start = cpu_seconds(pid)
            run.started_at = _log_time(line)
            run.started.set()
        elif event == "worker_stopped":
            run.stopped = {k: v for k, v in line.items() if isinstance(v, int)}
        else:
            run.other_events[str(event)] = run.other_events.get(str(event), 0) + 1
    # EOF: the process has exited but nobody has reaped it yet, so its times are still there.
    run.cpu_at_exit = cpu_seconds(pid)


@contextmanager
def worker_process(
    aws: AwsSettings,
    queue_url: str,
    *,
    slots: int,
    payment_seconds: float,
    strategy: str = "batched",
    grace_seconds: float = 0.0,
    extra: Mapping[str, str] | None = None,
    shipping: bool | None = None,
) -> Iterator[WorkerRun]:
    """Run `python -m services.worker`; yield its live WorkerRun once it has started.

    On exit the worker gets SIGTERM (`grace_seconds` for payments in flight), and the
    WorkerRun then holds its `worker_stopped` counters and CPU time. `shipping` as in
    api_process: its lines are then read from the relay's stdout.
    """
    env = service_env(
        aws,
        ORDER_QUEUE_URL=queue_url,
        NUM_WORKERS=str(slots),
        PAYMENT_SECONDS=str(payment_seconds),
        RECEIVE_STRATEGY=strategy,
        SHUTDOWN_GRACE_SECONDS=str(grace_seconds),
        **(extra or {}),
    )
    proc = processes.start("worker", env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    lines: IO[bytes] = proc.stdout
    relay = None
    if shipping is not None:
        relay = start_relay(
            "worker", aws, shipping=shipping, source=proc.stdout, stdout=subprocess.PIPE
        )
        proc.stdout.close()  # the relay holds it now
        assert relay.proc.stdout is not None
        lines = relay.proc.stdout
    run = WorkerRun(pid=proc.pid, slots=slots, relay=relay)
    reader = threading.Thread(target=_read_worker, args=(proc.pid, lines, run), daemon=True)
    reader.start()
    try:
        if not run.started.wait(timeout=30):
            raise RuntimeError(f"the worker did not start (exit code {proc.poll()})")
        yield run
    finally:
        # os.kill, not send_signal/poll: those reap an exited worker before the reader has
        # read its CPU time; an unreaped pid cannot be reused, so the signal is safe.
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        # Join the reader before reaping, so it can read the zombie's CPU time.
        reader.join(timeout=grace_seconds + 30)
        processes.stop(proc, timeout=5)
        lines.close()
        if relay is not None:
            finish_relay(relay)


@dataclass
class LocalStack:
    """A local AWS with a fresh topology: what every scenario starts its services against."""

    aws: AwsSettings
    aws_pid: int
    topology: Topology
    order_state: bool
    """Whether the services get ORDERS_TABLE (`make run`'s default) or run stateless."""
    log_shipping: bool | None = None
    """Each service's stdout through a log relay that ships it to the local AWS's
    CloudWatch Logs (True) or only passes it on (False), as `make run`'s launcher with
    LOG_SHIPPING on or off; None (the default): no relay and nothing shipped."""

    def service_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The services' settings besides the AWS ones: order state as the stack runs it."""
        return {**state_env(self.order_state, self.topology), **(extra or {})}

    def api(
        self, payment_seconds: float, extra: Mapping[str, str] | None = None
    ) -> AbstractContextManager[ApiRun]:
        """The API on this stack's topic (see api_process)."""
        return api_process(
            self.aws,
            self.topology.topic_arn,
            payment_seconds,
            self.service_env(extra),
            shipping=self.log_shipping,
        )

    def worker(
        self,
        *,
        slots: int,
        payment_seconds: float,
        grace_seconds: float = 0.0,
        strategy: str = "batched",
        extra: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[WorkerRun]:
        """A worker on this stack's queue (see worker_process)."""
        return worker_process(
            self.aws,
            self.topology.queue_url,
            slots=slots,
            payment_seconds=payment_seconds,
            strategy=strategy,
            grace_seconds=grace_seconds,
            extra=self.service_env(extra),
            shipping=self.log_shipping,
        )


@contextmanager
def local_stack(
    prefix: str, *, order_state: bool, log_shipping: bool | None = None
) -> Iterator[LocalStack]:
    """Start the local AWS and create a fresh topology; stopped when the block ends.

    The services' logs are not shipped unless `log_shipping` says so (LocalStack.log_shipping):
    the bench's processes are started here, not by `make run`'s launcher, which ships.
    """
    with local_aws_server_env() as (aws, pid):
        topology = asyncio.run(new_topology(aws, prefix))
        yield LocalStack(aws, pid, topology, order_state, log_shipping)


async def poll_until(check: Callable[[], bool], limit: float, interval: float = 0.1) -> bool:
    """Call `check` every `interval` s until it is true (True) or `limit` s ran out (False)."""
    deadline = time.monotonic() + limit
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


async def wait_until_paid(run: WorkerRun, ids: set[str], limit: float) -> bool:
    """Wait, with a progress bar, until the processor's ledger shows every order in `ids`
    charged by this worker (and the worker's own `order_paid` line for each has come)."""
    with tqdm(total=len(ids), desc="waiting for payments", unit="order", leave=False) as bar:

        def all_paid() -> bool:
            done = len(ids & run.charged_ids() & run.paid_ids())
            bar.update(done - bar.n)
            return done == len(ids)

        return await poll_until(all_paid, limit)

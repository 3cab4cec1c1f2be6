"""The services' log lines into the local AWS's CloudWatch Logs, as ECS's awslogs driver sends them.

On ECS each container's stdout goes, line by line, to the log group Terraform names
(`/orderflow/api`, `/orderflow/worker`), one stream per task named
`PREFIX/CONTAINER/TASK_ID`, in batched `PutLogEvents` calls made by the driver, never by the
service. Here the launcher plays the driver: it already reads each child's stdout (the tee in
`dashboard/runner.py`), and hands every line to `LogShipper`, which batches like the driver
(a batch is sent at 10,000 events or 1 MiB, counting 26 bytes per event as PutLogEvents does,
or every `flush_seconds`, 5 s by default as the driver's) from a thread of its own, with one
aiobotocore client. The services' stdout is unchanged and they do no extra work.

A process's stream is created when it is registered (`sink`), before its first line is due,
as the driver creates a task's stream when the task starts.

Each event's timestamp is the time the launcher read the line (the driver's too), kept
non-decreasing per stream because a batch must be in chronological order. A line longer than
an event may be (256 KiB minus the 26 bytes) is split, as the driver splits it. A batch the
local AWS refuses (after the client's retries) is dropped and counted: the services never wait
for their logs. `stop()` sends what is left and says how many events went and were dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from services.common.aws import client_config
from services.common.settings import AwsSettings, SettingsError, env_float, env_str

from .env import client_args

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
"""PutLogEvents counts each event as its UTF-8 message plus 26 bytes."""
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
FLUSH_SECONDS = 5.0
"""The awslogs driver's default flush interval."""


def log_group(name: str, service: str) -> str:
    """The log group Terraform gives a service: `/${var.name}/${service}` (observability.tf)."""
    return f"/{name}/{service}"


def stream_name(service: str) -> str:
    """`PREFIX/CONTAINER/TASK_ID`, as awslogs names a task's stream (prefix = container here)."""
    return f"{service}/{service}/{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class ShipSettings:
    enabled: bool = True
    """LOG_SHIPPING: `on` (default) or `off` (stdout only, as before)."""
    flush_seconds: float = FLUSH_SECONDS
    """LOG_SHIP_SECONDS: the longest a line waits before it is sent."""
    name: str = "orderflow"
    """LOG_GROUP_NAME: Terraform's `var.name`, the log groups' first path segment."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ShipSettings:
        shipping = env_str(environ, "LOG_SHIPPING", "on")
        if shipping not in ("on", "off"):
            raise SettingsError(f"LOG_SHIPPING must be 'on' or 'off', got {shipping!r}")
        return cls(
            enabled=shipping == "on",
            flush_seconds=env_float(
                environ, "LOG_SHIP_SECONDS", FLUSH_SECONDS, minimum=0.05, maximum=60
            ),
            name=env_str(environ, "LOG_GROUP_NAME", "orderflow"),
        )


@dataclass
class _Stream:
    group: str
    name: str
    events: list[tuple[int, str]] = field(default_factory=list)
    size: int = 0
    last_ms: int = 0
    created: bool = False

    @property
    def full(self) -> bool:
        """A whole PutLogEvents batch is waiting: it is sent now, not at the next interval."""
        return len(self.events) >= MAX_BATCH_EVENTS or self.size >= MAX_BATCH_BYTES


@dataclass
class ShipStats:
    sent: int = 0
    dropped: int = 0
    batches: int = 0


def split(message: str) -> list[str]:
    """`message` in pieces of at most MAX_EVENT_BYTES of UTF-8 each (almost always one)."""
    data = message.encode()
    if len(data) <= MAX_EVENT_BYTES:
        return [message]
    pieces, start = [], 0
    while start < len(data):
        end = min(start + MAX_EVENT_BYTES, len(data))
        # Never cut a character in two: back up to the start of a UTF-8 sequence.
        while end < len(data) and (data[end] & 0xC0) == 0x80:
            end -= 1
        pieces.append(data[start:end].decode())
        start = end
    return pieces


def batches(events: list[tuple[int, str]]) -> list[list[tuple[int, str]]]:
    """`events` cut into PutLogEvents-sized batches, in order."""
    out: list[list[tuple[int, str]]] = []
    batch: list[tuple[int, str]] = []
    size = 0
    for event in events:
        cost = len(event[1].encode()) + EVENT_OVERHEAD
        if batch and (len(batch) >= MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
            out.append(batch)
            batch, size = [], 0
        batch.append(event)
        size += cost
    if batch:
        out.append(batch)
    return out


class LogShipper:
    """Batches lines per stream and sends them from its own thread between start() and stop()."""

    def __init__(self, aws: AwsSettings, settings: ShipSettings) -> None:
        self.settings = settings
        self.stats = ShipStats()
        self._aws = aws
        self._lock = threading.Lock()
        self._streams: list[_Stream] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()

    def sink(self, service: str) -> Callable[[bytes, float], None]:
        """Where one process's lines go: its own stream in its service's log group."""
        stream = _Stream(log_group(self.settings.name, service), stream_name(service))
        with self._lock:
            self._streams.append(stream)
        # Its stream is created now, as the driver creates a task's at its start: the first
        # batch does not wait on it, nor pay the client's first-call costs.
        self._nudge()

        def put(line: bytes, at: float) -> None:
            message = line.rstrip(b"\r\n").decode(errors="replace")
            if not message:
                return  # PutLogEvents refuses an empty message; the driver skips them too
            with self._lock:
                stamp = stream.last_ms = max(stream.last_ms, int(at * 1000))
                for piece in split(message):
                    stream.events.append((stamp, piece))
                    stream.size += len(piece.encode()) + EVENT_OVERHEAD
                full = stream.full
            if full:
                self._nudge()

        return put

    def _nudge(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: stop() flushed already
                loop.call_soon_threadsafe(wake.set)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="logship", daemon=True)
        self._thread.start()
        self._ready.wait()

    def stop(self) -> ShipStats:
        """Send every line received so far, then close the client (stop the children first)."""
        self._stopping = True
        self._nudge()
        if self._thread is not None:
            self._thread.join()
        return self.stats

    def _run(self) -> None:
        asyncio.run(self._ship())

    async def _ship(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ready.set()
        # One client for the launcher's life; its retries cover a busy local AWS.
        config = client_config(pool_size=2, read_timeout=30, max_attempts=3)
        session: Any = get_session()  # Any: no logs stubs in the locked set
        async with session.create_client(
            "logs", **client_args(self._aws.endpoint_url, config, self._aws.region)
        ) as logs:
            loop = asyncio.get_running_loop()
            due = loop.time() + self.settings.flush_seconds
            while True:
                await self._create_streams(logs)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, due - loop.time()))
                self._wake.clear()
                stopping = self._stopping
                if not stopping and loop.time() < due and not self._full():
                    continue  # woken for a new stream: its lines keep the flush interval
                due = loop.time() + self.settings.flush_seconds
                await self._flush(logs)
                if stopping:
                    return

    def _full(self) -> bool:
        with self._lock:
            return any(s.full for s in self._streams)

    async def _create_streams(self, logs: Any) -> None:
        """Every stream registered and not created yet; one that fails is tried again at its
        flush, which counts its lines dropped if it fails then too."""
        with self._lock:
            new = [s for s in self._streams if not s.created]
        for stream in new:
            with contextlib.suppress(BotoCoreError, ClientError):
                await _ensure_stream(logs, stream.group, stream.name)
                stream.created = True

    async def _flush(self, logs: Any) -> None:
        with self._lock:
            taken = [(s, s.events) for s in self._streams if s.events]
            for stream, _ in taken:
                stream.events, stream.size = [], 0
        # Streams are independent: each sends its batches in order, all streams at once.
        await asyncio.gather(*(self._send(logs, stream, events) for stream, events in taken))

    async def _send(self, logs: Any, stream: _Stream, events: list[tuple[int, str]]) -> None:
        try:
            if not stream.created:
                await _ensure_stream(logs, stream.group, stream.name)
                stream.created = True
        except (BotoCoreError, ClientError) as exc:
            self._drop(len(events), stream, exc)
            return
        for batch in batches(events):
            try:
                await logs.put_log_events(
                    logGroupName=stream.group,
                    logStreamName=stream.name,
                    logEvents=[{"timestamp": ts, "message": m} for ts, m in batch],
                )
            except (BotoCoreError, ClientError) as exc:
                self._drop(len(batch), stream, exc)
            else:
                self.stats.sent += len(batch)
                self.stats.batches += 1

    def _drop(self, count: int, stream: _Stream, exc: Exception) -> None:
        self.stats.dropped += count
        # stderr, not stdout: stdout carries only the services' and the launcher's JSON lines.
        print(f"logship: dropped {count} lines for {stream.name}: {exc}", file=sys.stderr)


async def _ensure_stream(logs: Any, group: str, stream: str) -> None:
    """Create the group (if missing, as Terraform would have) and the process's stream."""
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        await logs.create_log_group(logGroupName=group)
    # The name is this process's own (a random task id): it exists only if an earlier try,
    # whose answer was lost, created it.
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        await logs.create_log_stream(logGroupName=group, logStreamName=stream)

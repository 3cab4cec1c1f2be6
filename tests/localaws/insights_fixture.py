"""A fixed log for the Logs Insights tests, made deterministically, shipped over PutLogEvents.

Two service groups (`api`, `worker`) across five streams: JSON lines like the services'
(some nested, some with arrays) and plain lines shaped like AWS's documentation examples;
a third group holds the values of AWS's documented sort-order example. Every figure the
tests expect is computed here from `Line`s, in plain Python, never by the engine.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from devstack.env import FAKE_CREDENTIALS, REGION

ACCOUNT = "123456789012"  # moto's default account
STEP_MS = 37_000
COUNT = 300


@dataclass(frozen=True)
class Line:
    group: str
    stream: str
    ts: int
    message: str
    data: dict[str, Any] | None
    """The message as JSON, when it is JSON."""

    def get(self, name: str) -> Any:
        """A JSON field by dotted name (what the engine reads must match this)."""
        value: Any = self.data
        for part in name.split("."):
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value


@dataclass(frozen=True)
class Fixture:
    prefix: str
    api: str
    worker: str
    sortable: str
    t0: int
    """The first event's time: a whole hour, three hours ago."""
    lines: list[Line]
    sort_values: list[str]
    """AWS's documented ascending order, the values of the sortable group."""

    def of(self, *groups: str) -> list[Line]:
        return [line for line in self.lines if line.group in groups]


SORT_EXAMPLE = [
    "!:", "#", "*%04", "0#", "5A", "111A", "2345_", "@", "@_", "A", "A9876fghj",
    "a12345hfh", "0", "01", "1", "2", "3",
]  # fmt: skip


def _half(rng: random.Random, mean: float) -> float:
    # Multiples of 0.5: sums are exact in binary whatever order they are added in.
    return round(rng.expovariate(1 / mean) * 2) / 2


def make_lines(prefix: str, t0: int) -> list[Line]:
    rng = random.Random(22)
    api, worker = f"{prefix}/api", f"{prefix}/worker"
    lines: list[Line] = []
    for i in range(COUNT):
        ts = t0 + i * STEP_MS + rng.randrange(0, 1000)
        kind = i % 6
        data: dict[str, Any] | None
        if kind in (0, 1):
            status = rng.choice([202, 202, 202, 200, 400, 500])
            data = {
                "event": "http_request",
                "service": "api",
                "level": "info" if status < 500 else "error",
                "method": "POST" if status != 200 else "GET",
                "path": "/orders" if status != 200 else "/health",
                "status": status,
                "duration_ms": _half(rng, 20),
                "ctx": {"user": {"id": f"u{i % 7}"}},
                "tags": ["edge", f"t{i % 3}"],
            }
            group, stream = api, f"api-{1 + i % 2}"
        elif kind == 2:
            data = {
                "event": "order_rejected",
                "service": "api",
                "level": "warning",
                "code": rng.choice(["invalid_body", "too_large", "duplicate"]),
                "reason": "  padded reason  " if i % 4 == 0 else "",
            }
            group, stream = api, f"api-{1 + i % 2}"
        elif kind in (3, 4):
            data = {
                "event": "order_paid",
                "service": "worker",
                "level": "info",
                "mode": "async" if rng.random() < 0.75 else "sync",
                "order_id": str(uuid.UUID(int=rng.getrandbits(128))),
                "payment_ms": _half(rng, 40),
                "queue_ms": _half(rng, 15),
                "server": f"w{i % 4}",
            }
            group, stream = worker, f"worker-{1 + i % 3}"
        else:
            data = None
            group, stream = worker, f"worker-{1 + i % 3}"
        if data is not None:
            message = json.dumps(data)
        else:
            variant = (i // 6) % 3
            if variant == 0:
                message = (
                    f"25 May 2019 10:24:{i % 60:02d},474 [ERROR] {{foo={i % 5}, bar=data}} "
                    f"The error was: DataIntegrityException{i % 2}"
                )
            elif variant == 1:
                user = ["alice", "bob"][i % 2]
                method = ["GET", "PUT"][(i // 2) % 2]
                message = f"user={user}, method:{method}, latency := {i % 50}"
            else:
                message = f"[INFO] Exception-free line {i}"
        lines.append(Line(group, stream, ts, message, data))
    return lines


def ship(endpoint: str) -> Fixture:
    """Create the groups and streams and PutLogEvents the fixed log into them."""
    prefix = f"/conformance/{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    t0 = (now - 3 * 3_600_000) // 3_600_000 * 3_600_000
    lines = make_lines(prefix, t0)
    sortable = f"{prefix}/sortable"
    # The "01" event is the newest of the equal numbers 01 and 1 (ties keep newest first).
    order = ["0", "1", "01", "2", "3"]
    for index, value in enumerate([v for v in SORT_EXAMPLE if v not in order] + order):
        message = json.dumps({"v": value})
        lines.append(Line(sortable, "only", t0 + index * 1000, message, {"v": value}))
    client = logs_client(endpoint)
    for group in (f"{prefix}/api", f"{prefix}/worker", sortable):
        client.create_log_group(logGroupName=group)
    streams: dict[tuple[str, str], list[Line]] = {}
    for line in lines:
        streams.setdefault((line.group, line.stream), []).append(line)
    for (group, stream), members in streams.items():
        client.create_log_stream(logGroupName=group, logStreamName=stream)
        events = [{"timestamp": m.ts, "message": m.message} for m in sorted(members, key=_ts)]
        client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    return Fixture(prefix, f"{prefix}/api", f"{prefix}/worker", sortable, t0, lines, SORT_EXAMPLE)


def _ts(line: Line) -> int:
    return line.ts


def logs_client(endpoint: str) -> Any:
    """boto3's `logs` client, as a user (and devstack.insights) would make it."""
    return boto3.client(
        "logs",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


# -- how Logs Insights renders values, written out independently of the engine


def fmt_ts(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"


def fmt_num(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def floor_to(ms: int, size_ms: int) -> int:
    return ms - ms % size_ms

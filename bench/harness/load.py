"""Open-loop load: orders sent at a fixed rate whether or not earlier ones were answered.

Closed-loop users (Locust's) slow down when the server does, which hides a slow server; a
flash sale does not wait. Latency is measured from each request's *scheduled* send time, so
a generator that falls behind shows up as latency instead of silently lowering the rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import orjson
from tqdm import tqdm

from .stack import require_loopback

# However high the rate, the bench never holds more connections than this.
MAX_CONNECTIONS = 2000


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this process while it sends load; a full one first.

    The bench process holds what earlier scenarios left and parses every service's log lines
    as they come, so a full collection of its heap took 90-200 ms (timed with gc.callbacks
    in a suite run). One that fell inside a run held back every send due meanwhile, and the
    open loop rightly charged that wait to the system: the reference flash sale's p99 was
    43 ms with the generator 94 ms late, 14-15 ms in runs where no collection fell inside.
    Runs are bounded, and reference counting still frees all but cycles meanwhile.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def schedule(rate: float, duration: float) -> list[float]:
    """Send offsets (seconds from the start) of a fixed-rate run: rate x duration requests."""
    if rate <= 0 or duration <= 0:
        return []
    count = round(rate * duration)
    return [i / rate for i in range(count)]


def order_body(order_id: str | None) -> bytes:
    """The reference order; with an id chosen by the client (a keyed order) unless None."""
    body: dict[str, object] = {
        "customer_id": 1,
        "items": [{"product_id": "sku-1", "quantity": 1, "price": 9.99}],
    }
    if order_id is not None:
        body["order_id"] = order_id
    return orjson.dumps(body)


def is_keyed(index: int, share: float) -> bool:
    """Whether the index-th request carries a client order id, `share` of them spread evenly."""
    return math.floor((index + 1) * share) > math.floor(index * share)


@dataclass(frozen=True, slots=True)
class Outcome:
    order_id: str
    scheduled: float
    """Unix time the request was due to be sent."""
    latency_ms: float | None
    """From the scheduled send to the full answer; None when there was no answer."""
    status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class OpenLoopRun:
    outcomes: list[Outcome]
    started: float
    ended: float
    """Unix time the last request was due (the end of arrivals)."""
    max_lag_ms: float
    """How late the generator sent its most delayed request."""


async def open_loop(
    url: str,
    *,
    rate: float,
    duration: float,
    request_timeout: float,
    desc: str,
    keyed: float = 1.0,
) -> OpenLoopRun:
    """POST orders to `url`, `rate` a second for `duration` s, each given `request_timeout` s.

    A `keyed` share of them carry a client `order_id`; the others get theirs from the answer.
    """
    require_loopback(url)
    offsets = schedule(rate, duration)
    limit = min(MAX_CONNECTIONS, math.ceil(rate * request_timeout) + 10)
    connector = aiohttp.TCPConnector(limit=limit)
    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    headers = {"Content-Type": "application/json"}
    outcomes: list[Outcome] = []
    lag = 0.0
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        with (
            collector_paused(),
            tqdm(total=len(offsets), desc=desc, unit="req", leave=False) as bar,
        ):

            async def one(due: float, index: int) -> None:
                key = str(uuid.uuid4()) if is_keyed(index, keyed) else None
                order_id = key or ""
                status: int | None = None
                error: str | None = None
                latency: float | None = None
                try:
                    async with session.post(url, data=order_body(key), headers=headers) as r:
                        answer = await r.read()
                        status = r.status
                    latency = (time.time() - due) * 1000
                    if key is None and status in (200, 202):
                        order_id = str(orjson.loads(answer)["order_id"])
                except TimeoutError:
                    error = "timeout"
                except aiohttp.ClientError as exc:
                    error = type(exc).__name__
                outcomes.append(Outcome(order_id, due, latency, status, error))
                bar.update(1)

            started = time.time() + 0.05
            tasks = []
            for index, offset in enumerate(offsets):
                due = started + offset
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                lag = max(lag, time.time() - due)
                tasks.append(asyncio.create_task(one(due, index)))
            await asyncio.gather(*tasks)
    ended = started + (offsets[-1] if offsets else 0.0)
    return OpenLoopRun(outcomes, started, ended, round(lag * 1000, 3))

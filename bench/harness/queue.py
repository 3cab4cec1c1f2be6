"""Watching and filling the order queue: depth samples over time, and a preloaded backlog."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict

from tqdm import tqdm

from devstack.topology import queue_counts
from services.domain.messages import OrderItem, OrderMessage, encode_message
from services.worker.settings import SQS_BATCH

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


class Depth(TypedDict):
    """Queue depth samples; `t` in seconds from the run's start."""

    t: list[float]
    visible: list[int]
    in_flight: list[int]


@dataclass
class DepthSeries:
    """(time, visible, in flight) samples: what CloudWatch shows as the queue's depth."""

    t: list[float] = field(default_factory=list)
    visible: list[int] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)

    def at(self, when: float) -> tuple[int, int] | None:
        """The last sample taken at or before `when`."""
        best = None
        for t, vis, fly in zip(self.t, self.visible, self.in_flight, strict=True):
            if t > when:
                break
            best = (vis, fly)
        return best

    def max_visible(self, start: float, end: float) -> int:
        inside = [v for t, v in zip(self.t, self.visible, strict=True) if start <= t <= end]
        return max(inside, default=0)

    def empty_after(self, when: float) -> float | None:
        """The first time at or after `when` the queue held nothing, visible or in flight."""
        for t, vis, fly in zip(self.t, self.visible, self.in_flight, strict=True):
            if t >= when and vis == 0 and fly == 0:
                return t
        return None

    def as_dict(self, origin: float) -> Depth:
        return {
            "t": [round(t - origin, 3) for t in self.t],
            "visible": self.visible,
            "in_flight": self.in_flight,
        }


@asynccontextmanager
async def sampling(sqs: SQSClient, queue_url: str, interval: float) -> AsyncIterator[DepthSeries]:
    """Sample the queue's depth every `interval` seconds while the block runs."""
    series = DepthSeries()

    async def sample_once() -> None:
        visible, in_flight = await queue_counts(sqs, queue_url)
        series.t.append(time.time())
        series.visible.append(visible)
        series.in_flight.append(in_flight)

    async def sample() -> None:
        while True:
            await asyncio.sleep(interval)
            await sample_once()

    # The first sample is taken before the block starts: the depth at the start is known.
    await sample_once()
    task = asyncio.create_task(sample())
    try:
        yield series
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def bench_order(order_id: str | None = None) -> OrderMessage:
    """The reference report's order: one item, one customer."""
    item = OrderItem(product_id="sku-1", quantity=1, price=9.99)
    return OrderMessage(
        order_id=order_id or str(uuid.uuid4()),
        customer_id=1,
        items=(item,),
        total=9.99,
        accepted_at=time.time(),
    )


async def preload(
    sqs: SQSClient, queue_url: str, count: int, limit_s: float, concurrency: int = 8
) -> set[str]:
    """Put up to `count` orders straight on the queue (a backlog, not API traffic).

    Stops sending after `limit_s` seconds, so a slow local AWS cannot stall the bench;
    returns the ids that were queued.
    """
    deadline = time.monotonic() + limit_s
    ids: set[str] = set()
    chunks = [min(SQS_BATCH, count - start) for start in range(0, count, SQS_BATCH)]
    slots = asyncio.Semaphore(concurrency)
    with tqdm(total=count, desc="preload queue", unit="msg", leave=False) as bar:

        async def send(size: int) -> None:
            orders = [bench_order() for _ in range(size)]
            entries = [
                {"Id": str(i), "MessageBody": encode_message(order)}
                for i, order in enumerate(orders)
            ]
            async with slots:
                if time.monotonic() > deadline:
                    return
                got = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
            if got.get("Failed"):
                raise RuntimeError(f"preload: SQS refused {len(got['Failed'])} messages")
            ids.update(order.order_id for order in orders)
            bar.update(size)

        await asyncio.gather(*(send(size) for size in chunks))
    return ids

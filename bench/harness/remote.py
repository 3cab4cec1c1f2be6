"""A stack the bench did not start (`--target URL`): what any client of it can see.

Latency comes from the client, as always; completion from GET /orders/{id} (the order's
`status` and `paid_at`), since neither the processes' logs nor their CPU time are the
bench's to read. The target must run with order state: without it, GET /orders/{id} is 404
and no order can be seen paid.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp
from tqdm import tqdm

from .stack import require_loopback

# Orders polled at once: enough to follow hundreds of orders a second, bounded for the target.
POLL_CONCURRENCY = 16
POLL_INTERVAL_S = 0.5


def target_url(url: str, *, remote_ok: bool = False) -> str:
    """The target's base URL; loopback only unless the caller says a remote one is meant."""
    url = url.rstrip("/")
    return url if remote_ok else require_loopback(url)


@dataclass
class RemoteOrders:
    """Orders' completion on a running stack, read with GET /orders/{id}."""

    url: str
    paid_at: dict[str, float] = field(default_factory=dict)
    """Unix time each order was paid, from the order's own `paid_at`."""
    failed: set[str] = field(default_factory=set)

    def paid_ids(self) -> set[str]:
        return set(self.paid_at)

    async def _check(self, session: aiohttp.ClientSession, order_id: str) -> None:
        async with session.get(f"{self.url}/orders/{order_id}") as response:
            if response.status != 200:
                return  # not (yet) known: asked again next round
            order = await response.json()
        if order.get("status") == "paid":
            stamp = order.get("paid_at")
            self.paid_at[order_id] = (
                datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else time.time()
            )
        elif order.get("status") == "failed":
            self.failed.add(order_id)

    async def wait_until_paid(self, ids: set[str], limit: float) -> bool:
        """Poll every order in `ids` not yet seen paid or failed, until all are paid (True)
        or `limit` s ran out (False)."""
        deadline = time.monotonic() + limit
        slots = asyncio.Semaphore(POLL_CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=10)

        async def check(session: aiohttp.ClientSession, order_id: str) -> None:
            # A failed GET is asked again next round.
            async with slots:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    await self._check(session, order_id)

        with tqdm(total=len(ids), desc="GET /orders/{id}", unit="order", leave=False) as bar:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while True:
                    todo = ids - self.paid_ids() - self.failed
                    bar.update(len(ids) - len(todo) - bar.n)
                    if not todo or time.monotonic() >= deadline:
                        return not (ids - self.paid_ids())
                    await asyncio.gather(*(check(session, i) for i in todo))
                    if ids - self.paid_ids() - self.failed:
                        await asyncio.sleep(POLL_INTERVAL_S)

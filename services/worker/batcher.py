"""Many payment tasks' single calls gathered into SQS/DynamoDB batch calls of up to 10.

A batch goes out as soon as it is full, or after a short linger; each caller awaits its own
item's result. At saturation batches fill in milliseconds, so the linger costs nothing there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from services.common.orders import OrderStore

from .settings import SQS_BATCH
from .stats import WorkerStats

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Collects items from concurrent callers into `send` calls of at most `size` items."""

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        size: int = SQS_BATCH,
        linger: float = 0.05,
    ) -> None:
        self._send = send
        self._size = size
        self._linger = linger
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        """Queue `item` for the next batch and wait for its own result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[: self._size], self._pending[self._size :]
            task = asyncio.create_task(self._run(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._send([item for item, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        """Send whatever is pending and wait for every batch in flight."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


def paid_batcher(store: OrderStore, stats: WorkerStats) -> Batcher[tuple[str, str, float], bool]:
    """Mark orders paid, 10 per DynamoDB transaction; each result says whether the claim held."""

    async def send(paid: list[tuple[str, str, float]]) -> list[bool]:
        stats.state_batches += 1
        return await store.mark_paid_many(paid)

    return Batcher(send)

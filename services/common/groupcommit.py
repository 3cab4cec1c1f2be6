"""Group commit: concurrent single requests share batch calls, with no timer when idle.

Requests that arrive while a call is in flight join the next batch, and a batch leaves as soon
as a call slot is free (databases' log writers; the AWS SDKs' buffered SQS client). A lone
request on an idle path is sent at once, so batching adds no latency when idle and, under
load, batches grow by themselves to whatever arrived during one round trip.

Each caller awaits its own entry's result: `send` returns one result or exception per entry,
so one failed entry fails only its caller; an exception raised by `send` itself fails every
entry of that batch. A caller cancelled while its entry waits takes the entry out of the next
batch; one cancelled after its batch left leaves the batch alone (its result is dropped).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# The linger is only a way to let a batch fill while other calls are in flight; longer than
# this it would be a latency cost, not a batching aid.
MAX_LINGER = 0.002


class GroupCommitClosed(RuntimeError):
    """A request submitted after `close()` began."""


@dataclass(slots=True)
class GroupCommitStats:
    """Counters for benches and logs: calls made and entries they carried."""

    calls: int = 0
    entries: int = 0
    failed_calls: int = 0
    largest_batch: int = 0


@dataclass(slots=True, eq=False)
class _Entry(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    size: int
    key: Hashable | None


@dataclass(eq=False)
class GroupCommit(Generic[T, R]):
    """Gathers concurrent `submit(item)` calls into `send(items)` calls.

    send: makes one call for a batch and returns, in order, one result or one exception
        instance per item (an exception fails only that item's caller).
    max_items: the most items in one call.
    max_bytes, size_of: optionally, the most total `size_of(item)` in one call; an item
        larger than max_bytes on its own travels alone (the service then answers for it).
    key_of: optionally, items with equal keys never share a call (a later one waits for the
        next batch), e.g. a DynamoDB transaction may not touch one item twice.
    concurrency: calls in flight at once on this path.
    linger: seconds (at most MAX_LINGER) a batch may wait to fill, only when a slot is free
        while another call is still in flight; never when the path is idle.
    """

    send: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]
    _: KW_ONLY
    max_items: int = 10
    max_bytes: int | None = None
    size_of: Callable[[T], int] | None = None
    key_of: Callable[[T], Hashable] | None = None
    concurrency: int = 1
    linger: float = 0.0
    stats: GroupCommitStats = field(default_factory=GroupCommitStats)

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ValueError("max_items must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 <= self.linger <= MAX_LINGER:
            raise ValueError(f"linger must be between 0 and {MAX_LINGER} s")
        if (self.max_bytes is None) != (self.size_of is None):
            raise ValueError("max_bytes and size_of go together")
        self._pending: deque[_Entry[T, R]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        # A sender task created but not yet started takes every entry queued before it runs,
        # so entries submitted in the same loop iteration share its batch; only one is kept.
        self._starting = False
        self._closing = False

    async def submit(self, item: T) -> R:
        """Queue `item` for the next batch and return its own result (or raise its error)."""
        if self._closing:
            raise GroupCommitClosed("this group commit is closed")
        size = self.size_of(item) if self.size_of is not None else 0
        key = self.key_of(item) if self.key_of is not None else None
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Entry(item, future, size, key))
        self._start()
        # A cancelled caller cancels its future: a queued entry is then skipped by `_take`,
        # and a batch already in flight ignores it when results come back.
        return await future

    @property
    def in_flight(self) -> int:
        """Calls started (or about to start) and not yet returned."""
        return len(self._tasks)

    @property
    def queued(self) -> int:
        """Entries waiting for a batch (cancelled ones included until skipped)."""
        return len(self._pending)

    async def close(self) -> None:
        """Refuse new requests, send every queued one and wait for all calls to return."""
        self._closing = True
        while self._pending or self._tasks:
            self._start()
            if self._tasks:
                await asyncio.wait(set(self._tasks))

    def _start(self) -> None:
        if self._pending and not self._starting and len(self._tasks) < self.concurrency:
            self._starting = True
            task = asyncio.get_running_loop().create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._start()

    async def _run(self) -> None:
        try:
            if self.linger and len(self._tasks) > 1 and not self._closing and not self._full():
                await asyncio.sleep(self.linger)
        finally:
            self._starting = False
        batch = self._take()
        # Whatever did not fit may start now on another free slot.
        self._start()
        if batch:
            await self._call(batch)

    def _full(self) -> bool:
        return len(self._pending) >= self.max_items

    def _take(self) -> list[_Entry[T, R]]:
        """The next batch, in arrival order, within the limits; skipped entries keep order."""
        batch: list[_Entry[T, R]] = []
        held: list[_Entry[T, R]] = []
        keys: set[Hashable] = set()
        total = 0
        pending = self._pending
        while pending and len(batch) < self.max_items:
            entry = pending[0]
            if entry.future.done():  # its caller was cancelled while it waited
                pending.popleft()
                continue
            if self.max_bytes is not None and batch and total + entry.size > self.max_bytes:
                break
            pending.popleft()
            if entry.key is not None:
                if entry.key in keys:
                    held.append(entry)
                    continue
                keys.add(entry.key)
            batch.append(entry)
            total += entry.size
        pending.extendleft(reversed(held))
        return batch

    async def _call(self, batch: list[_Entry[T, R]]) -> None:
        self.stats.calls += 1
        self.stats.entries += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        try:
            results = await self.send([entry.item for entry in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"send returned {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            # The sender itself was cancelled (loop shutdown): its callers cannot be answered.
            self.stats.failed_calls += 1
            for entry in batch:
                entry.future.cancel()
            raise
        except Exception as exc:
            self.stats.failed_calls += 1
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(exc)
            return
        for entry, result in zip(batch, results, strict=True):
            if entry.future.done():
                continue
            if isinstance(result, BaseException):
                entry.future.set_exception(result)
            else:
                entry.future.set_result(result)

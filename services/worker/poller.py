"""Receiving: pollers that feed received messages to processing, and the slots they fill.

Two receive strategies share everything but the loop that feeds the slots:
- `per-task`: each of the NUM_WORKERS slots is a task: long-poll for one message, pay,
  settle, repeat.
- `batched`: a few pollers receive up to min(10, free slots) at once, payments run as tasks,
  and deletes go out in batches of 10, so SQS requests per order fall toward 0.2. Up to
  RECEIVE_PREFETCH messages more (as many as the slots unless set) are received and claimed
  ahead, for their wait as well, and wait in line for a slot (`Capacity`), so a slot freed at
  the end of a wave of payments starts its next one at once instead of after a receive and a
  claim.

Each poller owns its failure count: a failed ReceiveMessage never spends a message, it backs
off (jittered, doubling, capped) and polls again. Batched pollers share their pacing: while
the worker keeps up, one receives at a time, spaced (RECEIVE_FILL_WAIT).

A stopping worker abandons long polls still waiting on an empty queue at once; a poll being
answered is let land, and what it caught is handed back through settling.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

from services.common.logging import get_logger
from services.common.retry import Backoff, sleep_unless

from .holding import Holding, Job
from .outcomes import HandBack, Unrecorded
from .processing import Processor
from .queue import OrderQueue, QueueUnavailable, Received
from .settings import SQS_BATCH, WorkerSettings
from .settling import Settler
from .stats import WorkerStats

log = get_logger()

# Backoff after a failed ReceiveMessage: jittered, doubling, capped so an outage costs little.
RECEIVE_BACKOFF = Backoff(base=0.2, cap=10.0)
# While the worker keeps up with the queue (a receive came back with fewer messages than it
# asked for), one poller receives at a time, at most once per this many seconds: the
# messages that arrive in between share one receive instead of each waking a parked poll.
# A small part of any payment; a full receive (a backlog) lifts it until one comes back short.
RECEIVE_FILL_WAIT = 0.05
# How long a stopping worker lets receives already under way come back before cutting them off.
RECEIVE_DRAIN_SECONDS = 1.0


class Slots:
    """A counting semaphore that hands out several permits at once (up to what is free)."""

    def __init__(self, total: int) -> None:
        self.free = total
        self._changed = asyncio.Event()

    def release(self, count: int = 1) -> None:
        self.free += count
        self._changed.set()

    def wake(self) -> None:
        self._changed.set()

    async def acquire_up_to(self, count: int, stopping: asyncio.Event) -> int:
        """Take between 1 and `count` permits, waiting for one; 0 once stopping is set."""
        while self.free == 0 and not stopping.is_set():
            self._changed.clear()
            await self._changed.wait()
        if stopping.is_set():
            return 0
        taken = min(count, self.free)
        self.free -= taken
        return taken


class Capacity:
    """A batched worker's two limits: messages held (paying, or claimed and ready next) and
    payments running. A claimed job starts paying at once if a slot is free, else it waits in
    line (`ready`) and the next payment to end hands it its slot: no task waits for one."""

    def __init__(
        self, slots: int, held: int, stopping: asyncio.Event, start: Callable[[Job], None]
    ) -> None:
        self.held = Slots(held)
        self.ready: deque[Job] = deque()
        self._line_moved = asyncio.Event()
        self._free = slots
        self._stopping = stopping
        # How a job given a slot starts paying (the worker runs `pay_in_slot` as a task).
        self._start = start

    def pay(self, job: Job) -> None:
        """Start `job` now if a slot is free, else when one is (never once stopping: the
        shutdown hands it back)."""
        if self._free and not self.ready and not self._stopping.is_set():
            self._free -= 1
            self._start(job)
        else:
            self.ready.append(job)

    def release(self) -> None:
        """A payment ended: its slot goes to the next ready job, its hold to the pollers."""
        self.held.release()
        if self.ready and not self._stopping.is_set():
            self._start(self.ready.popleft())
            self._line_moved.set()
        else:
            self._free += 1

    def lines_up(self, count: int) -> bool:
        """Whether some of `count` jobs claimed now would wait in line for a slot."""
        return bool(self.ready) or count > self._free

    def take_ready(self) -> list[Job]:
        """The jobs still waiting for a slot (to hand back at shutdown); each frees its hold."""
        jobs = list(self.ready)
        self.ready.clear()
        self.held.release(len(jobs))
        self._line_moved.set()
        return jobs

    async def line_cleared(self) -> None:
        """Wait until no job waits for a slot (each started, or taken back at shutdown)."""
        while self.ready:
            self._line_moved.clear()
            await self._line_moved.wait()

    def wake(self) -> None:
        self.held.wake()


class Pacing:
    """Batched pollers' turn-taking (see RECEIVE_FILL_WAIT), shared by all of them.

    A backlog is assumed until a receive comes back short; then pollers take turns, spaced.
    """

    def __init__(self) -> None:
        self.backlogged = True
        self.turn = asyncio.Lock()
        self.next_receive = 0.0


class Poller:
    """One receive loop's ReceiveMessage calls: its failure count and backoff, its pacing."""

    def __init__(
        self,
        settings: WorkerSettings,
        queue: OrderQueue,
        stats: WorkerStats,
        holding: Holding,
        settler: Settler,
        stopping: asyncio.Event,
        stop_waiter: asyncio.Task[bool],
        queue_emptied: Callable[[], None],
        pacing: Pacing,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self.stopping = stopping
        self._queue = queue
        self._holding = holding
        self._settler = settler
        self._stop_waiter = stop_waiter
        # Burst mode: the queue is empty, the worker stops (once its line has a slot).
        self._queue_emptied = queue_emptied
        self._pacing = pacing
        self.failures = 0

    async def receive(self, count: int) -> list[Received]:
        """One ReceiveMessage, abandoned (and its catch handed back) if stop() comes first."""
        call = asyncio.ensure_future(
            self._queue.receive(
                count, self.settings.wait_time_seconds, self._holding.receive_visibility
            )
        )
        try:
            await asyncio.wait({call, self._stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not call.done():
                # Stopping. A poll the queue is answering right now would, if cut off, leave
                # its messages invisible for a whole visibility timeout: let it land (they are
                # handed back below). A poll still waiting on an empty queue is abandoned.
                await asyncio.wait({call}, timeout=RECEIVE_DRAIN_SECONDS)
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, QueueUnavailable):
                    await call
        if call.cancelled():
            return []
        messages = call.result()
        self.stats.received += len(messages)
        if self.stopping.is_set():
            # The poll completed in the same instant as stop(): give its messages back.
            await self._settler.hand_back([self._holding.hold(m) for m in messages])
            return []
        if not messages:
            self.stats.empty_receives += 1
            if self.settings.burst:
                self._queue_emptied()
        return messages

    async def receive_with_backoff(self, count: int) -> list[Received]:
        try:
            messages = await self.receive(count)
        except QueueUnavailable as exc:
            self.failures += 1
            self.stats.receive_errors += 1
            delay = RECEIVE_BACKOFF.delay(self.failures)
            log.warning(
                "receive_failed",
                error=type(exc.__cause__ or exc).__name__,
                detail=str(exc),
                retry_in_s=round(delay, 3),
            )
            await sleep_unless(self.stopping, delay)
            return []
        self.failures = 0
        return messages

    async def receive_some(self, count: int) -> list[Received]:
        """Up to `count` messages; spaced receives by one poller at a time unless backlogged."""
        pacing = self._pacing
        if pacing.backlogged:
            messages = await self.receive_with_backoff(count)
        else:
            async with pacing.turn:
                wait = pacing.next_receive - time.monotonic()
                if wait > 0 and await sleep_unless(self.stopping, wait):
                    return []
                messages = await self.receive_with_backoff(count)
                pacing.next_receive = time.monotonic() + RECEIVE_FILL_WAIT
        pacing.backlogged = len(messages) == count
        return messages


# -- the two strategies ---------------------------------------------------------------------


async def per_task_slot(poller: Poller, processor: Processor, settler: Settler) -> None:
    while not poller.stopping.is_set():
        messages = await poller.receive_with_backoff(1)
        for job in await processor.prepare(messages):
            await settler.settle(job, await processor.process(job, _no_slot))


async def batched_poller(
    poller: Poller,
    processor: Processor,
    settler: Settler,
    capacity: Capacity,
) -> None:
    held = capacity.held
    while not poller.stopping.is_set():
        reserved = await held.acquire_up_to(SQS_BATCH, poller.stopping)
        if not reserved:
            break
        messages = await poller.receive_some(reserved)
        # Orders bound for the line are claimed for their wait as well: a renewal before each
        # charge would put a DynamoDB write between a freed slot and its next payment.
        jobs = await processor.prepare(messages, for_line=capacity.lines_up(len(messages)))
        held.release(reserved - len(jobs))
        for job in jobs:
            capacity.pay(job)


async def pay_in_slot(job: Job, processor: Processor, settler: Settler, capacity: Capacity) -> None:
    try:
        outcome = await processor.process(job, capacity.release)
    except Exception as exc:
        # A bug, not an outage: never leave the job held for the life of the process.
        # Charged: kept like an unrecorded charge; not charged: handed back.
        log.error(
            "payment_crashed",
            order_id=job.order.order_id if job.order else None,
            charged=job.charged,
            error=repr(exc),
        )
        outcome = Unrecorded() if job.charged else HandBack()
    await settler.settle(job, outcome)


def _no_slot() -> None:
    """Per-task slots are the tasks themselves: nothing to give back."""

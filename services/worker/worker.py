"""The worker: receive orders from SQS, pay each in its own asyncio task, settle each message.

Each room has one job, and a message passes through them in this order:
- poller.py: receiving (the two strategies, pacing, receive failures, the payment slots);
- processing.py: decode, claim, charge, record, deciding an `Outcome` (outcomes.py);
- settling.py: the one place a message's fate is applied to SQS;
- holding.py: the jobs held meanwhile, kept invisible and their claims leased (renewal).

This module runs them, stops them, and opens the clients they share.

Shutdown (stop(), or SIGTERM in __main__): pending long polls are abandoned at once, work in
flight gets `shutdown_grace_seconds` to finish (payments, and the paid-marks and deletes after
them), and any message still held after that is handed back to the queue (visibility 0, claim
released) so another worker takes it immediately; a charge whose paid-mark never landed is
kept hidden instead (never handed back: a redelivery would charge again).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from aiobotocore.session import get_session

from services.common.aws import client_config, open_client
from services.common.awserrors import AwsHealth
from services.common.logging import get_logger
from services.domain.orders import NullStore, OrderStore
from services.domain.payment import PaymentProcessor

from .holding import SETTLE_SECONDS, Holding, Job
from .liveness import LivenessFile, keep_alive
from .outcomes import Unrecorded
from .poller import Capacity, Pacing, Poller, batched_poller, pay_in_slot, per_task_slot
from .processing import Processor
from .queue import OrderQueue, QueueConfig, QueueNotFound
from .settings import WorkerSettings
from .settling import Settler
from .stats import WorkerStats

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from types_aiobotocore_sqs import SQSClient

__all__ = ["QueueNotFound", "Worker", "open_worker"]

log = get_logger()

# How long a claim or paid-mark may wait for others to share its DynamoDB call: a small part
# of any payment, and what lets batches fill past one receive's 10 messages.
STATE_FILL_WAIT = 0.02


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        queue: OrderQueue,
        config: QueueConfig,
        payments: PaymentProcessor,
        store: OrderStore,
    ) -> None:
        self.settings = settings
        self.stats = WorkerStats()
        self._queue = queue
        self._config = config
        self._store = store
        # Set by stop(): take no more work. Set when the grace period is over: give up what
        # is still being retried and hand it back.
        self._stopping = asyncio.Event()
        self._abandon = asyncio.Event()
        self._capacity = Capacity(
            settings.slots, settings.held, self._stopping, self._start_payment
        )
        self._holding = Holding(settings, queue, config, self.stats, store)
        self._settler = Settler(queue, self.stats, self._holding, self._abandon)
        self._processing = Processor(
            settings,
            config,
            self.stats,
            payments,
            store,
            self._holding,
            self._settler.settle,
            self._stopping,
            self._abandon,
        )
        # Payment tasks of batched jobs given a slot (_start_payment): shutdown waits for them.
        self._tasks: set[asyncio.Task[None]] = set()
        # Burst mode's stop, once the queue was found empty (_queue_emptied).
        self._emptied: asyncio.Task[None] | None = None

    def _start_payment(self, job: Job) -> None:
        """A batched job given a slot: its payment runs as a task shutdown waits for."""
        task = asyncio.create_task(
            pay_in_slot(job, self._processing, self._settler, self._capacity)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Ask the worker to stop; idempotent and safe to call from a signal handler."""
        self._stopping.set()
        self._capacity.wake()

    def _queue_emptied(self) -> None:
        """Burst mode found the queue empty: stop once the orders received ahead have a slot,
        so they are paid here rather than handed back as a SIGTERM's would be."""
        if self._emptied is None:
            self._emptied = asyncio.create_task(self._stop_after_line())

    async def _stop_after_line(self) -> None:
        await self._capacity.line_cleared()
        self.stop()

    def _receivers(self, stop_waiter: asyncio.Task[bool]) -> list[Coroutine[None, None, None]]:
        settings, pacing = self.settings, Pacing()

        def poller() -> Poller:
            return Poller(
                settings,
                self._queue,
                self.stats,
                self._holding,
                self._settler,
                self._stopping,
                stop_waiter,
                self._queue_emptied,
                pacing,
            )

        processing, settler = self._processing, self._settler
        if settings.receive_strategy == "per-task":
            return [per_task_slot(poller(), processing, settler) for _ in range(settings.slots)]
        return [
            batched_poller(poller(), processing, settler, self._capacity)
            for _ in range(settings.receive_concurrency)
        ]

    async def run(self) -> WorkerStats:
        """Process messages until stop() (or, in burst mode, until the queue is empty)."""
        settings = self.settings
        stop_waiter = asyncio.create_task(self._stopping.wait())
        receivers = [asyncio.create_task(loop) for loop in self._receivers(stop_waiter)]
        # Holding: visibility and leases, each its own task so neither waits on the other.
        renewals = [asyncio.create_task(self._holding.keep_invisible())]
        if self._store.stateful:
            renewals.append(asyncio.create_task(self._holding.keep_leased()))
        # Liveness for the container health check: a file the event loop keeps touching.
        alive = asyncio.create_task(
            keep_alive(
                LivenessFile(settings.liveness.path),
                settings.liveness.interval_seconds,
                lambda: self._queue.health.healthy and not any(r.done() for r in renewals),
            )
        )
        log.info(
            "worker_started",
            num_workers=settings.slots,
            strategy=settings.receive_strategy,
            receivers=len(receivers),
            payment_seconds=settings.payment.seconds,
            visibility_timeout=self._config.visibility_timeout,
            max_receive_count=self._config.max_receive_count,
            order_state=self._store.stateful,
        )
        crashed: BaseException | None = None
        try:
            await asyncio.wait(
                {stop_waiter, *receivers, *renewals}, return_when=asyncio.FIRST_COMPLETED
            )
            # Receivers and renewals only end on stop; one that ended otherwise hit a bug. Stop
            # whole (and exit non-zero, so ECS replaces the task) rather than run on without.
            crashed = next((t.exception() for t in receivers if t.done() and t.exception()), None)
            if crashed is not None:
                log.error("receiver_crashed", error=repr(crashed))
            elif ended := [r for r in renewals if r.done()]:
                # Nothing would keep messages invisible or claims leased any more.
                crashed = ended[0].exception() or RuntimeError("renewal ended")
                log.error("renewal_crashed", error=repr(crashed))
        finally:
            await self._shutdown(receivers)
            background = [*renewals, alive, *([self._emptied] if self._emptied else [])]
            for task in background:
                task.cancel()
            await asyncio.gather(*background, stop_waiter, return_exceptions=True)
        self.stats.receive_calls = self._queue.receive_calls
        self.stats.delete_calls = self._queue.delete_calls
        if self._store.stateful:
            self.stats.state_batches = (
                self._store.write_calls + self._processing.settle_store.write_calls
            )
        log.info("worker_stopped", **self.stats.as_dict())
        if crashed is not None:
            raise crashed
        return self.stats

    async def _shutdown(self, receivers: Sequence[asyncio.Task[None]]) -> None:
        self.stop()
        # Messages received ahead of a free slot go back at once, for other workers to take.
        await self._settler.hand_back(self._capacity.take_ready())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_seconds
        # Receivers return as soon as their long poll is abandoned (per-task slots after the
        # message they hold); then work in flight gets what is left of the grace period. A
        # receiver may still start payments while it finishes, so look again until none is
        # left or the grace period is over.
        while pending := {t for t in (*receivers, *self._tasks) if not t.done()}:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            await asyncio.wait(pending, timeout=timeout)
        if pending:
            # Payments still running are cut off (their messages are handed back below);
            # retry loops (a paid-mark through an outage) settle what they hold, then go.
            for task in self._processing.charging:
                task.cancel()
            self._abandon.set()
            _, pending = await asyncio.wait(pending, timeout=SETTLE_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._abandon.set()
        # Whatever is still held was cut short: a payment cancelled at the deadline goes
        # back; a charge whose paid-mark never landed never does.
        held = list(self._holding.jobs.values())
        for job in held:
            if job.charged:
                await self._settler.settle(job, Unrecorded())
        await self._settler.hand_back([job for job in held if not job.charged])
        await self._queue.close()
        self._holding.jobs.clear()


@asynccontextmanager
async def open_worker(settings: WorkerSettings) -> AsyncIterator[Worker]:
    """A worker with its clients (one per service per process), closed when the block ends."""
    session = get_session()
    aws = settings.aws
    async with AsyncExitStack() as stack:
        sqs: SQSClient = await stack.enter_async_context(
            open_client(
                session,
                "sqs",
                aws,
                client_config(pool_size=settings.pool_size, read_timeout=settings.read_timeout),
            )
        )
        # One judge of permanent AWS errors for the process: SQS and DynamoDB alike.
        health = AwsHealth()
        store: OrderStore = NullStore()
        if settings.orders_table is not None:
            dynamodb = await stack.enter_async_context(
                open_client(
                    session,
                    "dynamodb",
                    aws,
                    client_config(pool_size=settings.state_pool_size, read_timeout=10),
                )
            )
            # No client waits on the worker's writes: a claim or paid-mark may wait a little
            # for others to share its call (fewer, fuller TransactWriteItems).
            store = OrderStore(
                dynamodb, settings.orders_table, fill_wait=STATE_FILL_WAIT, health=health
            )
        queue = OrderQueue(
            sqs,
            settings.queue_url,
            batched=settings.receive_strategy == "batched",
            health=health,
        )
        config = await queue.read_config()
        yield Worker(settings, queue, config, PaymentProcessor(settings.payment), store)

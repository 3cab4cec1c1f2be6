"""The worker: receive orders from SQS, pay each in its own asyncio task, delete when paid.

Two receive strategies share everything but the loop that feeds the slots:
- `per-task`: each of NUM_WORKERS tasks long-polls for one message, pays, deletes, repeats.
- `batched`: a few pollers receive up to min(10, free slots) at once, payments run as tasks,
  and deletes go out in batches of 10, so SQS requests per order fall toward 0.2.

Shutdown (stop(), or SIGTERM in __main__): pending long polls are abandoned at once, payments
in flight get `shutdown_grace_seconds` to finish and be deleted, and any message still held
after that is handed back to the queue (visibility 0) so another worker takes it immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from services.common.aws import client_config
from services.common.logging import get_logger
from services.common.messages import InvalidInput, decode_message
from services.common.metrics import ORDER_PAID, emf
from services.common.payment import PaymentProcessor

from .batcher import DeleteBatcher, DeleteFailed
from .settings import SQS_BATCH, WorkerSettings
from .stats import WorkerStats

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = get_logger()

# Backoff after a failed ReceiveMessage: jittered, doubling, capped so an outage costs little.
BACKOFF_BASE = 0.2
BACKOFF_CAP = 10.0


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


class Worker:
    def __init__(
        self, settings: WorkerSettings, sqs: SQSClient, payments: PaymentProcessor
    ) -> None:
        self.settings = settings
        self.stats = WorkerStats()
        self._sqs = sqs
        self._payments = payments
        self._stopping = asyncio.Event()
        self._slots = Slots(settings.num_workers)
        self._batcher = DeleteBatcher(sqs, settings.queue_url, self.stats)
        self._tasks: set[asyncio.Task[None]] = set()
        self._to_hand_back: list[str] = []

    def stop(self) -> None:
        """Ask the worker to stop; idempotent and safe to call from a signal handler."""
        self._stopping.set()
        self._slots.wake()

    async def run(self) -> WorkerStats:
        """Process messages until stop() (or, in burst mode, until the queue is empty)."""
        settings = self.settings
        stop_waiter = asyncio.create_task(self._stopping.wait())
        if settings.receive_strategy == "per-task":
            loops = [self._per_task_slot(stop_waiter) for _ in range(settings.num_workers)]
        else:
            loops = [self._batched_poller(stop_waiter) for _ in range(settings.receive_concurrency)]
        receivers = [asyncio.create_task(loop) for loop in loops]
        log.info(
            "worker_started",
            num_workers=settings.num_workers,
            strategy=settings.receive_strategy,
            receivers=len(receivers),
            payment_seconds=settings.payment_seconds,
        )
        try:
            await stop_waiter
        finally:
            await self._shutdown(receivers)
        log.info("worker_stopped", **self.stats.as_dict())
        return self.stats

    async def _shutdown(self, receivers: Sequence[asyncio.Task[None]]) -> None:
        self.stop()
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_grace_seconds
        # Receivers return as soon as their long poll is abandoned (per-task slots after the
        # payment they hold); then payments in flight get what is left of the grace period.
        pending = set(receivers) | self._tasks
        while pending:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            _, pending = await asyncio.wait(pending | self._tasks, timeout=timeout)
            if timeout == 0.0:
                break
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._batcher.close()
        held, self._to_hand_back = self._to_hand_back, []
        await self._hand_back(held)

    # -- receiving ---------------------------------------------------------------------------

    async def _receive(self, count: int, stop_waiter: asyncio.Task[bool]) -> list[MessageTypeDef]:
        """One ReceiveMessage, abandoned (and its catch handed back) if stop() comes first."""
        self.stats.receive_calls += 1
        call = asyncio.ensure_future(
            self._sqs.receive_message(
                QueueUrl=self.settings.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self.settings.wait_time_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        )
        try:
            await asyncio.wait({call, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, BotoCoreError, ClientError):
                    await call
        if call.cancelled():
            return []
        messages = call.result().get("Messages", [])
        if self._stopping.is_set():
            # The poll completed in the same instant as stop(): give its messages back.
            self._to_hand_back.extend(m["ReceiptHandle"] for m in messages)
            return []
        self.stats.received += len(messages)
        if not messages:
            self.stats.empty_receives += 1
            if self.settings.burst:
                self.stop()
        return messages

    async def _receive_with_backoff(
        self, count: int, stop_waiter: asyncio.Task[bool], failures: list[int]
    ) -> list[MessageTypeDef]:
        try:
            messages = await self._receive(count, stop_waiter)
        except (BotoCoreError, ClientError) as exc:
            failures[0] += 1
            self.stats.receive_errors += 1
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** failures[0]))
            log.warning(
                "receive_failed",
                error=type(exc).__name__,
                detail=str(exc),
                retry_in_s=round(delay, 3),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stop_waiter), delay)
            return []
        failures[0] = 0
        return messages

    async def _per_task_slot(self, stop_waiter: asyncio.Task[bool]) -> None:
        failures = [0]
        while not self._stopping.is_set():
            for message in await self._receive_with_backoff(1, stop_waiter, failures):
                if await self._pay(message):
                    await self._delete_one(message)

    async def _batched_poller(self, stop_waiter: asyncio.Task[bool]) -> None:
        failures = [0]
        while not self._stopping.is_set():
            reserved = await self._slots.acquire_up_to(SQS_BATCH, self._stopping)
            if not reserved:
                break
            messages = await self._receive_with_backoff(reserved, stop_waiter, failures)
            self._slots.release(reserved - len(messages))
            for message in messages:
                task = asyncio.create_task(self._pay_then_batch_delete(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    # -- processing --------------------------------------------------------------------------

    async def _pay(self, message: MessageTypeDef) -> bool:
        """Decode and pay one message; True when it is paid and may be deleted."""
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            order = decode_message(message["Body"])
        except InvalidInput as exc:
            self.stats.undecodable += 1
            log.warning(
                "message_undecodable",
                message_id=message["MessageId"],
                receive_count=receive_count,
                code=exc.code,
                reason=exc.message,
            )
            # Visible again at once: after maxReceiveCount receives SQS moves it to the DLQ,
            # instead of it sitting out a visibility timeout on every attempt.
            await self._hand_back([message["ReceiptHandle"]])
            return False
        started = time.time()
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            payment_ms = await self._payments.charge(order)
        except asyncio.CancelledError:
            # Cut short by shutdown: give the message back so the order is paid elsewhere.
            self._to_hand_back.append(message["ReceiptHandle"])
            raise
        finally:
            stats.in_flight -= 1
        stats.paid += 1
        log.info(
            "order_paid",
            order_id=order.order_id,
            payment_ms=round(payment_ms, 3),
            queue_ms=round(max(0.0, started - order.accepted_at) * 1000, 3),
            receive_count=receive_count,
            mode="async",
            **emf(ORDER_PAID),
        )
        return True

    async def _pay_then_batch_delete(self, message: MessageTypeDef) -> None:
        try:
            paid = await self._pay(message)
        finally:
            self._slots.release()
        if paid:
            try:
                await self._batcher.delete(message["ReceiptHandle"])
            except DeleteFailed as exc:
                self._delete_failed(message, exc)

    async def _delete_one(self, message: MessageTypeDef) -> None:
        self.stats.delete_calls += 1
        try:
            await self._sqs.delete_message(
                QueueUrl=self.settings.queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
        except (BotoCoreError, ClientError) as exc:
            self._delete_failed(message, exc)

    def _delete_failed(self, message: MessageTypeDef, exc: Exception) -> None:
        self.stats.delete_failures += 1
        log.error("delete_failed", message_id=message["MessageId"], detail=str(exc))

    async def _hand_back(self, receipt_handles: list[str]) -> None:
        """Make messages visible again at once (VisibilityTimeout 0), 10 per call."""
        for start in range(0, len(receipt_handles), SQS_BATCH):
            chunk = receipt_handles[start : start + SQS_BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": rh, "VisibilityTimeout": 0}
                for i, rh in enumerate(chunk)
            ]
            try:
                await self._sqs.change_message_visibility_batch(
                    QueueUrl=self.settings.queue_url,
                    Entries=entries,  # type: ignore[arg-type]
                )
            except (BotoCoreError, ClientError) as exc:
                # Not fatal: the messages reappear when their visibility timeout runs out.
                log.warning("hand_back_failed", count=len(chunk), detail=str(exc))
                continue
            self.stats.handed_back += len(chunk)


@asynccontextmanager
async def open_worker(settings: WorkerSettings) -> AsyncIterator[Worker]:
    """A worker with its own SQS client (one per process), closed when the block ends."""
    config = client_config(pool_size=settings.pool_size, read_timeout=settings.read_timeout)
    async with get_session().create_client(
        "sqs",
        region_name=settings.aws.region,
        endpoint_url=settings.aws.endpoint_url,
        config=config,
    ) as sqs:
        yield Worker(settings, sqs, PaymentProcessor(settings.payment_seconds))

"""The worker: receive orders from SQS, pay each in its own asyncio task, delete when paid.

Two receive strategies share everything but the loop that feeds the slots:
- `per-task`: each of NUM_WORKERS tasks long-polls for one message, pays, deletes, repeats.
- `batched`: a few pollers receive up to min(10, free slots) at once, payments run as tasks,
  and deletes go out in batches of 10, so SQS requests per order fall toward 0.2.

With ORDERS_TABLE set, each payment is claimed in DynamoDB first (see services/common/orders),
so a redelivered message for a paid order is deleted without paying again.

Failures: a declined payment marks the order failed and its message goes to the DLQ (made
visible at once until SQS's maxReceiveCount redrives it); a transient one is retried through
the message's visibility with a doubling, jittered delay; a message that cannot be decoded goes
to the DLQ the same way. SQS and DynamoDB errors never stop the worker.

Shutdown (stop(), or SIGTERM in __main__): pending long polls are abandoned at once, payments
in flight get `shutdown_grace_seconds` to finish and be deleted, and any message still held
after that is handed back to the queue (visibility 0) so another worker takes it immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from services.common.aws import client_config
from services.common.logging import get_logger
from services.common.messages import InvalidInput, OrderMessage, decode_message
from services.common.metrics import ORDER_PAID, emf
from services.common.orders import OrderRecord, OrderStore, StateUnavailable, Status
from services.common.payment import PaymentDeclined, PaymentProcessor, PaymentUnavailable

from .batcher import delete_batcher, paid_batcher
from .settings import SQS_BATCH, WorkerSettings
from .stats import WorkerStats

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = get_logger()

# Backoff after a failed ReceiveMessage: jittered, doubling, capped so an outage costs little.
BACKOFF_BASE = 0.2
BACKOFF_CAP = 10.0
# How long a stopping worker lets receives already under way come back before cutting them off.
RECEIVE_DRAIN_SECONDS = 1.0
# SQS's ceiling for a message's visibility timeout, and a sane cap for retry delays.
MAX_VISIBILITY = 43_200
RETRY_DELAY_CAP = 900


class QueueNotFound(Exception):
    """ORDER_QUEUE_URL names no queue this worker can read."""


@dataclass(frozen=True)
class QueueConfig:
    """What the worker needs to know of its queue, read once at start."""

    visibility_timeout: int
    max_receive_count: int | None


@dataclass
class Held:
    """A message this worker holds while paying it."""

    receipt_handle: str
    visible_until: float
    order_id: str | None = None
    claim_token: str | None = None


@dataclass
class Job:
    """A decoded (and, with order state, claimed) message on its way to being paid."""

    message: MessageTypeDef
    held: Held
    order: OrderMessage
    receive_count: int
    started: float = 0.0


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


async def read_queue_config(sqs: SQSClient, queue_url: str) -> QueueConfig:
    try:
        got = await sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
        )
    except ClientError as exc:
        raise QueueNotFound(f"ORDER_QUEUE_URL {queue_url!r}: {exc}") from None
    attributes = got.get("Attributes", {})
    redrive = attributes.get("RedrivePolicy")
    return QueueConfig(
        visibility_timeout=int(attributes.get("VisibilityTimeout", "30")),
        max_receive_count=int(json.loads(redrive)["maxReceiveCount"]) if redrive else None,
    )


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        sqs: SQSClient,
        payments: PaymentProcessor,
        queue: QueueConfig,
        store: OrderStore | None = None,
    ) -> None:
        self.settings = settings
        self.stats = WorkerStats()
        self._sqs = sqs
        self._payments = payments
        self._queue = queue
        self._store = store
        self._stopping = asyncio.Event()
        self._slots = Slots(settings.num_workers)
        self._deletes = delete_batcher(sqs, settings.queue_url, self.stats)
        # Batched strategy: paid-marks go 10 per DynamoDB transaction, like deletes per call.
        self._paid = (
            paid_batcher(store, self.stats)
            if store is not None and settings.receive_strategy == "batched"
            else None
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, Held] = {}
        self._to_hand_back: list[Held] = []

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
        heartbeat = asyncio.create_task(self._heartbeat())
        log.info(
            "worker_started",
            num_workers=settings.num_workers,
            strategy=settings.receive_strategy,
            receivers=len(receivers),
            payment_seconds=settings.payment.seconds,
            visibility_timeout=self._queue.visibility_timeout,
            max_receive_count=self._queue.max_receive_count,
            order_state=self._store is not None,
        )
        crashed: BaseException | None = None
        try:
            await asyncio.wait({stop_waiter, *receivers}, return_when=asyncio.FIRST_COMPLETED)
            # Receivers only end on stop; one that ended otherwise hit a bug. Stop whole (and
            # exit non-zero, so ECS replaces the task) rather than run on with fewer receivers.
            crashed = next((t.exception() for t in receivers if t.done() and t.exception()), None)
            if crashed is not None:
                log.error("receiver_crashed", error=repr(crashed))
        finally:
            await self._shutdown(receivers)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, stop_waiter, return_exceptions=True)
        log.info("worker_stopped", **self.stats.as_dict())
        if crashed is not None:
            raise crashed
        return self.stats

    async def _shutdown(self, receivers: Sequence[asyncio.Task[None]]) -> None:
        self.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_seconds
        # Receivers return as soon as their long poll is abandoned (per-task slots after the
        # payment they hold); then payments in flight get what is left of the grace period.
        # A receiver may still start payments while it finishes, so look again until none is
        # left or the grace period is over.
        while pending := {t for t in (*receivers, *self._tasks) if not t.done()}:
            timeout = deadline - loop.time()
            if timeout <= 0:
                break
            await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._paid is not None:
            await self._paid.close()
        await self._deletes.close()
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
            if not call.done():
                # Stopping. A poll the queue is answering right now would, if cut off, leave
                # its messages invisible for a whole visibility timeout: let it land (they are
                # handed back below). A poll still waiting on an empty queue is abandoned.
                await asyncio.wait({call}, timeout=RECEIVE_DRAIN_SECONDS)
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, BotoCoreError, ClientError):
                    await call
        if call.cancelled():
            return []
        messages = call.result().get("Messages", [])
        received_at = time.monotonic()
        self.stats.received += len(messages)
        if self._stopping.is_set():
            # The poll completed in the same instant as stop(): give its messages back.
            self._to_hand_back.extend(Held(m["ReceiptHandle"], received_at) for m in messages)
            return []
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
            messages = await self._receive_with_backoff(1, stop_waiter, failures)
            for job in await self._prepare(messages):
                payment_ms = await self._pay(job)
                if payment_ms is not None:
                    await self._finish(job, payment_ms)

    async def _batched_poller(self, stop_waiter: asyncio.Task[bool]) -> None:
        failures = [0]
        while not self._stopping.is_set():
            reserved = await self._slots.acquire_up_to(SQS_BATCH, self._stopping)
            if not reserved:
                break
            messages = await self._receive_with_backoff(reserved, stop_waiter, failures)
            jobs = await self._prepare(messages)
            self._slots.release(reserved - len(jobs))
            for job in jobs:
                task = asyncio.create_task(self._pay_in_slot(job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _pay_in_slot(self, job: Job) -> None:
        try:
            payment_ms = await self._pay(job)
        finally:
            # The slot is for paying: recording and deleting go on without holding it.
            self._slots.release()
        if payment_ms is not None:
            await self._finish(job, payment_ms)

    # -- processing --------------------------------------------------------------------------

    async def _prepare(self, messages: list[MessageTypeDef]) -> list[Job]:
        """Decode and claim received messages (one claim call for all); return those to pay."""
        jobs: list[Job] = []
        undecodable: list[Held] = []
        for message in messages:
            receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            held = Held(message["ReceiptHandle"], time.monotonic() + self._queue.visibility_timeout)
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
                undecodable.append(held)
                continue
            held.order_id = order.order_id
            jobs.append(Job(message, held, order, receive_count))
        if undecodable:
            # Visible again at once: after maxReceiveCount receives SQS moves each to the DLQ,
            # instead of it sitting out a visibility timeout on every attempt.
            await self._hand_back(undecodable)
        if self._store is None or not jobs:
            return jobs
        try:
            claims = await self._store.claim_many(
                [job.order for job in jobs], self.settings.lease_seconds
            )
        except StateUnavailable as exc:
            log.warning("state_unavailable", detail=str(exc), orders=len(jobs))
            for job in jobs:
                await self._retry_later(job.held, job.receive_count)
            return []
        self.stats.state_batches += 1
        ready = []
        for job, claim in zip(jobs, claims, strict=True):
            if claim.won:
                job.held.claim_token = claim.token
                ready.append(job)
            else:
                await self._claim_refused(job, claim.record)
        return ready

    async def _claim_refused(self, job: Job, record: OrderRecord | None) -> None:
        if record is not None and record.status == Status.PAID:
            # A redelivery of an order already paid: done, and nothing is charged again.
            self.stats.duplicates += 1
            log.info(
                "order_duplicate", order_id=job.order.order_id, receive_count=job.receive_count
            )
            await self._delete(job.message)
            return
        if record is not None and record.status == Status.FAILED:
            await self._hand_back([job.held])  # on its way to the DLQ
            return
        # Another worker holds a live claim: look again once its lease has run out.
        lease_left = (record.lease_until if record and record.lease_until else 0) - time.time()
        await self._set_visibility(job.held, max(1, min(MAX_VISIBILITY, int(lease_left) + 1)))
        self.stats.claims_lost += 1

    async def _pay(self, job: Job) -> float | None:
        """Charge the order; the payment's ms, or None when it failed (and was dealt with)."""
        order, held = job.order, job.held
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        job.started = time.time()
        self._held[held.receipt_handle] = held
        try:
            return await self._payments.charge(order, attempt=job.receive_count)
        except asyncio.CancelledError:
            # Cut short by shutdown: give the message back so the order is paid elsewhere.
            self._to_hand_back.append(held)
            raise
        except PaymentDeclined as exc:
            await self._fail(job, str(exc))
        except PaymentUnavailable as exc:
            limit = self._queue.max_receive_count
            if limit is not None and job.receive_count >= limit:
                await self._fail(job, f"gave up after {job.receive_count} attempts: {exc}")
            else:
                await self._retry_payment(job, str(exc))
        finally:
            stats.in_flight -= 1
            self._held.pop(held.receipt_handle, None)
        return None

    async def _finish(self, job: Job, payment_ms: float) -> None:
        """Record the payment, log it, and delete the message."""
        if not await self._record_paid(job, payment_ms):
            return
        self.stats.paid += 1
        log.info(
            "order_paid",
            order_id=job.order.order_id,
            payment_ms=round(payment_ms, 3),
            queue_ms=round(max(0.0, job.started - job.order.accepted_at) * 1000, 3),
            receive_count=job.receive_count,
            mode="async",
            **emf(ORDER_PAID),
        )
        await self._delete(job.message)

    async def _record_paid(self, job: Job, payment_ms: float) -> bool:
        token = job.held.claim_token
        if self._store is None or token is None:
            return True
        order_id = job.order.order_id
        for attempt in range(3):
            try:
                if self._paid is not None and attempt == 0:
                    held = await self._paid.submit((order_id, token, payment_ms))
                else:
                    held = await self._store.mark_paid(order_id, token, payment_ms)
            except StateUnavailable as exc:
                log.warning("state_unavailable", order_id=order_id, detail=str(exc))
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if not held:
                # Our lease ran out and another worker took the order over: it records it.
                log.error("claim_lost_after_payment", order_id=order_id)
            return True
        # Keep the message: it comes back, and the processor's idempotency key (the order_id)
        # makes the next charge a no-op at a real processor.
        log.error("payment_unrecorded", order_id=order_id)
        return False

    async def _fail(self, job: Job, reason: str) -> None:
        self.stats.failed += 1
        order_id = job.order.order_id
        log.warning(
            "order_failed", order_id=order_id, receive_count=job.receive_count, reason=reason
        )
        token = job.held.claim_token
        if self._store is not None and token is not None:
            with contextlib.suppress(StateUnavailable):
                await self._store.mark_failed(order_id, token, reason)
            job.held.claim_token = None
        await self._hand_back([job.held])  # maxReceiveCount then moves it to the DLQ

    async def _retry_payment(self, job: Job, reason: str) -> None:
        self.stats.payment_retries += 1
        order_id = job.order.order_id
        log.warning(
            "payment_retry", order_id=order_id, receive_count=job.receive_count, reason=reason
        )
        token = job.held.claim_token
        if self._store is not None and token is not None:
            with contextlib.suppress(StateUnavailable):
                await self._store.release(order_id, token, reason)
        await self._retry_later(job.held, job.receive_count)

    async def _retry_later(self, held: Held, receive_count: int) -> None:
        """Leave the message invisible for a doubling, jittered delay (SQS is the retry timer)."""
        ceiling = self.settings.retry_backoff_seconds * 2 ** (receive_count - 1)
        delay = int(random.uniform(ceiling / 2, ceiling))
        await self._set_visibility(held, min(RETRY_DELAY_CAP, delay))

    async def _delete(self, message: MessageTypeDef) -> None:
        receipt = message["ReceiptHandle"]
        if self.settings.receive_strategy == "batched":
            failure = await self._deletes.submit(receipt)
        else:
            self.stats.delete_calls += 1
            try:
                await self._sqs.delete_message(
                    QueueUrl=self.settings.queue_url, ReceiptHandle=receipt
                )
                failure = None
            except (BotoCoreError, ClientError) as exc:
                failure = str(exc)
        if failure is not None:
            self.stats.delete_failures += 1
            log.error("delete_failed", message_id=message["MessageId"], detail=failure)

    # -- visibility --------------------------------------------------------------------------

    async def _set_visibility(self, held: Held, seconds: int) -> None:
        try:
            await self._sqs.change_message_visibility(
                QueueUrl=self.settings.queue_url,
                ReceiptHandle=held.receipt_handle,
                VisibilityTimeout=seconds,
            )
        except (BotoCoreError, ClientError) as exc:
            # Not fatal: the message reappears when its current visibility timeout runs out.
            log.warning("visibility_change_failed", detail=str(exc))

    async def _change_visibility(self, held: Sequence[Held], seconds: int) -> int:
        """ChangeMessageVisibilityBatch, 10 per call; returns how many SQS accepted."""
        changed = 0
        for start in range(0, len(held), SQS_BATCH):
            chunk = held[start : start + SQS_BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": h.receipt_handle, "VisibilityTimeout": seconds}
                for i, h in enumerate(chunk)
            ]
            try:
                got = await self._sqs.change_message_visibility_batch(
                    QueueUrl=self.settings.queue_url,
                    Entries=entries,  # type: ignore[arg-type]
                )
            except (BotoCoreError, ClientError) as exc:
                log.warning("visibility_change_failed", count=len(chunk), detail=str(exc))
                continue
            changed += len(got.get("Successful", []))
        return changed

    async def _hand_back(self, held: Sequence[Held]) -> None:
        """Make messages visible again at once and give back any claims on their orders."""
        if self._store is not None:
            for h in held:
                if h.order_id and h.claim_token:
                    with contextlib.suppress(StateUnavailable):
                        await self._store.release(h.order_id, h.claim_token, "handed back")
        self.stats.handed_back += await self._change_visibility(held, 0)

    async def _heartbeat(self) -> None:
        """Extend the visibility of payments that outlive half their visibility timeout."""
        timeout = self._queue.visibility_timeout
        interval = max(0.5, timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            due = [h for h in self._held.values() if h.visible_until - now < timeout / 2]
            if not due:
                continue
            extended = await self._change_visibility(due, timeout)
            for h in due:
                h.visible_until = now + timeout
            self.stats.heartbeats += extended


@asynccontextmanager
async def open_worker(settings: WorkerSettings) -> AsyncIterator[Worker]:
    """A worker with its clients (one per service per process), closed when the block ends."""
    session = get_session()
    aws = settings.aws
    async with AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(
            session.create_client(
                "sqs",
                region_name=aws.region,
                endpoint_url=aws.endpoint_url,
                config=client_config(
                    pool_size=settings.pool_size, read_timeout=settings.read_timeout
                ),
            )
        )
        store = None
        if settings.orders_table is not None:
            dynamodb = await stack.enter_async_context(
                session.create_client(
                    "dynamodb",
                    region_name=aws.region,
                    endpoint_url=aws.endpoint_url,
                    config=client_config(pool_size=settings.state_pool_size, read_timeout=10),
                )
            )
            store = OrderStore(dynamodb, settings.orders_table)
        queue = await read_queue_config(sqs, settings.queue_url)
        yield Worker(settings, sqs, PaymentProcessor(settings.payment), queue, store)

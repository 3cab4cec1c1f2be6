"""The worker: receive orders from SQS, pay each in its own asyncio task, settle each message.

Two receive strategies share everything but the loop that feeds the slots:
- `per-task`: each of the NUM_WORKERS slots is a task: long-poll for one message, pay,
  settle, repeat.
- `batched`: a few pollers receive up to min(10, free slots) at once, payments run as tasks,
  and deletes go out in batches of 10, so SQS requests per order fall toward 0.2.

A message goes through three steps, and the last one is always `_settle`:
1. decode it and (with ORDERS_TABLE) claim its order in DynamoDB, one call per receive;
2. charge it, holding a payment slot;
3. record the outcome (paid, failed, released) in DynamoDB, and settle the message with the
   `Outcome` that processing returned (services/worker/outcomes.py).

Exactly once, under faults:
- Infrastructure errors (DynamoDB or SQS throttling, 5xx, timeouts) never spend a receive:
  the worker keeps the message, the heartbeat keeps it invisible, and the call is retried in
  process with capped, jittered backoff (services/common/retry.py). Only payment outcomes
  (a transient processor failure retried through the message's visibility) count toward the
  queue's maxReceiveCount.
- Every message held is kept invisible, and every claim renewed, by one heartbeat, until the
  message is settled: a charged order's lease cannot run out while its paid-mark is retried.
- A claim found lost after a charge is an error-level alert (`claim_lost_after_payment`),
  never an `order_paid`.
- Declined, out-of-retries and undecodable messages are moved to the dead-letter queue by the
  worker itself, with their reason as message attributes.

Shutdown (stop(), or SIGTERM in __main__): pending long polls are abandoned at once, work in
flight gets `shutdown_grace_seconds` to finish (payments, and the paid-marks and deletes after
them), and any message still held after that is handed back to the queue (visibility 0, claim
released) so another worker takes it immediately.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from aiobotocore.session import get_session

from services.common.aws import client_config
from services.common.awserrors import AwsHealth
from services.common.logging import get_logger
from services.common.messages import InvalidInput, OrderMessage, decode_message
from services.common.metrics import ORDER_PAID, emf
from services.common.orders import (
    TAKEOVER_GRACE_SECONDS,
    OrderRecord,
    OrderStore,
    StateRefused,
    StateUnavailable,
    Status,
)
from services.common.payment import PaymentDeclined, PaymentProcessor, PaymentUnavailable
from services.common.retry import Backoff, Stopped, retry, sleep_unless

from .liveness import Heartbeat, keep_alive
from .outcomes import (
    DeadLetter,
    Duplicate,
    HandBack,
    Keep,
    Outcome,
    Paid,
    RetryAfter,
    Unrecorded,
)
from .queue import OrderQueue, QueueConfig, QueueNotFound, QueueUnavailable, Received
from .settings import SQS_BATCH, WorkerSettings
from .stats import WorkerStats

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

__all__ = ["QueueNotFound", "Worker", "open_worker"]

log = get_logger()
T = TypeVar("T")

# Backoff after a failed ReceiveMessage: jittered, doubling, capped so an outage costs little.
RECEIVE_BACKOFF = Backoff(base=0.2, cap=10.0)
# Backoff of state writes and SQS settles retried in process: short, so work resumes soon
# after an outage ends.
STATE_BACKOFF = Backoff(base=0.1, cap=2.0)
# How long a claim or paid-mark may wait for others to share its DynamoDB call: a small part
# of any payment, and what lets batches fill past one receive's 10 messages.
STATE_FILL_WAIT = 0.02
# While the worker keeps up with the queue (a receive came back with fewer messages than it
# asked for), one poller receives at a time, at most once per this many seconds: the
# messages that arrive in between share one receive instead of each waking a parked poll.
# A small part of any payment; a full receive (a backlog) lifts it until one comes back short.
RECEIVE_FILL_WAIT = 0.05
# How long a stopping worker lets receives already under way come back before cutting them off.
RECEIVE_DRAIN_SECONDS = 1.0
# After the grace period, how long retry loops get to settle what they hold before cancelling.
SETTLE_SECONDS = 2.0
# SQS's ceiling for a message's visibility timeout (how long a charged but unrecorded order's
# message is hidden at shutdown), and a sane cap for retry delays.
MAX_VISIBILITY = 43_200
RETRY_DELAY_CAP = 900


@dataclass
class Job:
    """A received message on its way to being settled."""

    message: Received
    visible_until: float
    """Monotonic time at which SQS would make the message visible again."""
    order: OrderMessage | None = None
    claim_token: str | None = None
    lease_until: float = 0.0
    """Epoch time at which our claim's lease runs out: the `lease_until` we last wrote."""
    lease_lapsed: bool = False
    """The lease ran out before a renewal landed (logged once, as `lease_expired`)."""
    claim_lost: bool = False
    """A renewal found the claim taken over."""
    started: float = 0.0
    charged: bool = False


def _claim_token(receipt_handle: str) -> str:
    return hashlib.sha256(receipt_handle.encode()).hexdigest()[:32]


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
        self,
        settings: WorkerSettings,
        queue: OrderQueue,
        config: QueueConfig,
        payments: PaymentProcessor,
        store: OrderStore | None = None,
    ) -> None:
        self.settings = settings
        self.stats = queue.stats
        self._queue = queue
        self._config = config
        self._payments = payments
        self._store = store
        # Renewals travel on their own group commit: never queued behind paid-marks or claims.
        self._lease_store = store.batched(0.0) if store is not None else None
        # Set by stop(): take no more work. Set when the grace period is over: give up what
        # is still being retried and hand it back.
        self._stopping = asyncio.Event()
        self._abandon = asyncio.Event()
        self._slots = Slots(settings.slots)
        # Batched receives (see RECEIVE_FILL_WAIT): a backlog is assumed until a receive
        # comes back short; then pollers take turns, spaced.
        self._backlogged = True
        self._receive_turn = asyncio.Lock()
        self._next_receive = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._jobs: dict[str, Job] = {}
        # Tasks inside a charge right now: the ones cut off when the grace period is over.
        self._charging: set[asyncio.Task[object]] = set()

    def stop(self) -> None:
        """Ask the worker to stop; idempotent and safe to call from a signal handler."""
        self._stopping.set()
        self._slots.wake()

    async def run(self) -> WorkerStats:
        """Process messages until stop() (or, in burst mode, until the queue is empty)."""
        settings = self.settings
        stop_waiter = asyncio.create_task(self._stopping.wait())
        if settings.receive_strategy == "per-task":
            loops = [self._per_task_slot(stop_waiter) for _ in range(settings.slots)]
        else:
            loops = [self._batched_poller(stop_waiter) for _ in range(settings.receive_concurrency)]
        receivers = [asyncio.create_task(loop) for loop in loops]
        # Holding: visibility and leases, each its own task so neither waits on the other.
        beats = [asyncio.create_task(self._keep_invisible())]
        if self._lease_store is not None:
            beats.append(asyncio.create_task(self._keep_leased(self._lease_store)))
        # Liveness for the container health check: a file the event loop keeps touching.
        alive = asyncio.create_task(
            keep_alive(
                Heartbeat(settings.liveness.path),
                settings.liveness.interval_seconds,
                lambda: self._queue.health.healthy and not any(b.done() for b in beats),
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
            order_state=self._store is not None,
        )
        crashed: BaseException | None = None
        try:
            await asyncio.wait(
                {stop_waiter, *receivers, *beats}, return_when=asyncio.FIRST_COMPLETED
            )
            # Receivers and beats only end on stop; one that ended otherwise hit a bug. Stop
            # whole (and exit non-zero, so ECS replaces the task) rather than run on without.
            crashed = next((t.exception() for t in receivers if t.done() and t.exception()), None)
            if crashed is not None:
                log.error("receiver_crashed", error=repr(crashed))
            elif ended := [b for b in beats if b.done()]:
                # Nothing would keep messages invisible or claims leased any more.
                crashed = ended[0].exception() or RuntimeError("heartbeat ended")
                log.error("heartbeat_crashed", error=repr(crashed))
        finally:
            await self._shutdown(receivers)
            for task in (*beats, alive):
                task.cancel()
            await asyncio.gather(*beats, alive, stop_waiter, return_exceptions=True)
        if self._store is not None:
            self.stats.state_batches = self._store.write_calls
        log.info("worker_stopped", **self.stats.as_dict())
        if crashed is not None:
            raise crashed
        return self.stats

    async def _shutdown(self, receivers: Sequence[asyncio.Task[None]]) -> None:
        self.stop()
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
            for task in self._charging:
                task.cancel()
            self._abandon.set()
            _, pending = await asyncio.wait(pending, timeout=SETTLE_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._abandon.set()
        # Whatever is still held was cut short: a payment cancelled at the deadline goes
        # back; a charge whose paid-mark never landed never does.
        held = list(self._jobs.values())
        for job in held:
            if job.charged:
                await self._keep_unrecorded(job)
        await self._hand_back([job for job in held if not job.charged])
        await self._queue.close()
        self._jobs.clear()

    # -- receiving ---------------------------------------------------------------------------

    async def _receive(self, count: int, stop_waiter: asyncio.Task[bool]) -> list[Received]:
        """One ReceiveMessage, abandoned (and its catch handed back) if stop() comes first."""
        call = asyncio.ensure_future(self._queue.receive(count, self.settings.wait_time_seconds))
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
                with contextlib.suppress(asyncio.CancelledError, QueueUnavailable):
                    await call
        if call.cancelled():
            return []
        messages = call.result()
        self.stats.received += len(messages)
        if self._stopping.is_set():
            # The poll completed in the same instant as stop(): give its messages back.
            await self._hand_back([self._hold(m) for m in messages])
            return []
        if not messages:
            self.stats.empty_receives += 1
            if self.settings.burst:
                self.stop()
        return messages

    async def _receive_with_backoff(
        self, count: int, stop_waiter: asyncio.Task[bool], failures: list[int]
    ) -> list[Received]:
        try:
            messages = await self._receive(count, stop_waiter)
        except QueueUnavailable as exc:
            failures[0] += 1
            self.stats.receive_errors += 1
            delay = RECEIVE_BACKOFF.delay(failures[0])
            log.warning(
                "receive_failed",
                error=type(exc.__cause__ or exc).__name__,
                detail=str(exc),
                retry_in_s=round(delay, 3),
            )
            await sleep_unless(self._stopping, delay)
            return []
        failures[0] = 0
        return messages

    async def _receive_some(
        self, count: int, stop_waiter: asyncio.Task[bool], failures: list[int]
    ) -> list[Received]:
        """Up to `count` messages; spaced receives by one poller at a time unless backlogged."""
        if self._backlogged:
            messages = await self._receive_with_backoff(count, stop_waiter, failures)
        else:
            async with self._receive_turn:
                wait = self._next_receive - time.monotonic()
                if wait > 0 and await sleep_unless(self._stopping, wait):
                    return []
                messages = await self._receive_with_backoff(count, stop_waiter, failures)
                self._next_receive = time.monotonic() + RECEIVE_FILL_WAIT
        self._backlogged = len(messages) == count
        return messages

    async def _per_task_slot(self, stop_waiter: asyncio.Task[bool]) -> None:
        failures = [0]
        while not self._stopping.is_set():
            messages = await self._receive_with_backoff(1, stop_waiter, failures)
            for job in await self._prepare(messages):
                await self._settle(job, await self._pay(job, self._no_slot))

    async def _batched_poller(self, stop_waiter: asyncio.Task[bool]) -> None:
        failures = [0]
        while not self._stopping.is_set():
            reserved = await self._slots.acquire_up_to(SQS_BATCH, self._stopping)
            if not reserved:
                break
            messages = await self._receive_some(reserved, stop_waiter, failures)
            jobs = await self._prepare(messages)
            self._slots.release(reserved - len(jobs))
            for job in jobs:
                task = asyncio.create_task(self._pay_in_slot(job))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _pay_in_slot(self, job: Job) -> None:
        try:
            outcome = await self._pay(job, self._slots.release)
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
        await self._settle(job, outcome)

    @staticmethod
    def _no_slot() -> None:
        """Per-task slots are the tasks themselves: nothing to give back."""

    # -- processing --------------------------------------------------------------------------

    def _hold(self, message: Received) -> Job:
        """Start keeping `message` invisible (the heartbeat extends it) until it is settled."""
        job = Job(message, time.monotonic() + self._config.visibility_timeout)
        self._jobs[message.receipt_handle] = job
        return job

    async def _prepare(self, messages: list[Received]) -> list[Job]:
        """Decode and claim received messages (one claim call for all); return those to pay."""
        jobs: list[Job] = []
        for message in messages:
            job = self._hold(message)
            try:
                job.order = decode_message(message.body)
            except InvalidInput as exc:
                self.stats.undecodable += 1
                log.warning(
                    "message_undecodable",
                    message_id=message.message_id,
                    receive_count=message.receive_count,
                    code=exc.code,
                    reason=exc.message,
                )
                await self._settle(job, DeadLetter(f"{exc.code}: {exc.message}"))
                continue
            jobs.append(job)
        if self._store is None or not jobs:
            return jobs
        return await self._claim(jobs, self._store)

    async def _claim(self, jobs: list[Job], store: OrderStore) -> list[Job]:
        lease = self.settings.lease_seconds
        wanted = [(job.order, job.message.message_id) for job in jobs if job.order is not None]
        # One token per receive, the same on every retry: a retry after a lost answer
        # recognizes the claim its first try wrote (a new receive is a new claimant attempt).
        tokens = [_claim_token(job.message.receipt_handle) for job in jobs]
        try:
            claims = await self._retry_state(
                lambda: store.claim_many(wanted, lease, tokens), "claim", self._stopping, len(jobs)
            )
        except Stopped:
            for job in jobs:
                await self._settle(job, HandBack())
            return []
        ready = []
        for job, claim in zip(jobs, claims, strict=True):
            if claim.won:
                job.claim_token = claim.token
                job.lease_until = claim.lease_until
                ready.append(job)
            else:
                await self._settle(job, self._claim_refused(job, claim.record))
        return ready

    def _claim_refused(self, job: Job, record: OrderRecord | None) -> Outcome:
        if record is not None and record.status == Status.PAID:
            return Duplicate()
        if record is not None and record.status == Status.FAILED:
            # Failed orders belong in the DLQ: this copy goes there too, with the reason.
            return DeadLetter(record.failure_reason or "failed")
        # Another claimant holds it: look again once its lease (and, for anyone but the
        # claimant's own message, the takeover grace) has run out, not every second.
        self.stats.claims_lost += 1
        lease_left = (record.lease_until if record and record.lease_until else 0) - time.time()
        own = record is not None and record.claim_message == job.message.message_id
        if lease_left > 0 or own:
            # A live claimant renews or settles before then; its own message may take over.
            wait = max(0.0, lease_left)
        else:
            # Its claimant stopped renewing (dead, or cut off from DynamoDB while it still
            # records a charge): only its own message may take over before the grace is out.
            # Look again in long steps: the order may be settled meanwhile.
            grace_left = lease_left + TAKEOVER_GRACE_SECONDS
            wait = min(grace_left, 4 * self.settings.lease_seconds)
        if job.message.receive_count >= self._config.max_receive_count:
            # The next receive would be past maxReceiveCount: SQS would dead-letter it with no
            # reason. Do it here, saying why (its order is still held by another claimant).
            holder = record.claim_message if record else None
            return DeadLetter(
                f"still claimed by {holder} after {job.message.receive_count} receives"
            )
        return RetryAfter(max(1, min(RETRY_DELAY_CAP, int(wait) + 1)))

    async def _pay(self, job: Job, release_slot: Callable[[], None]) -> Outcome:
        """Charge the order holding a slot, then record what happened; return the outcome."""
        assert job.order is not None
        order = job.order
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        job.started = time.time()
        me = asyncio.current_task()
        assert me is not None
        self._charging.add(me)
        try:
            if not await self._lease_for_charge(job):
                # Nothing charged: the lease could not be made to outlast a charge.
                return self._no_lease(job)
            payment_ms = await self._payments.charge(
                order, attempt=job.message.receive_count, idempotency_key=order.order_id
            )
        except PaymentDeclined as exc:
            return await self._fail(job, str(exc))
        except PaymentUnavailable as exc:
            count = job.message.receive_count
            if count >= self._config.max_receive_count:
                reason = f"gave up after {count} attempts: {exc}"
                return await self._fail(job, reason, retryable=True)
            return await self._retry_payment(job, str(exc))
        finally:
            self._charging.discard(me)
            stats.in_flight -= 1
            # The slot is for paying: recording and settling go on without holding it.
            release_slot()
        job.charged = True
        return await self._record_paid(job, payment_ms)

    def _no_lease(self, job: Job) -> Outcome:
        if self._stopping.is_set():
            return HandBack()
        # Taken over: its message comes back when its visibility runs out; its claim decides.
        return Keep("claim lost before charge")

    async def _record_paid(self, job: Job, payment_ms: float) -> Outcome:
        store, token = self._store, job.claim_token
        if store is None or token is None:
            return Paid(payment_ms)
        assert job.order is not None
        order_id = job.order.order_id
        try:
            # Concurrent paid-marks share DynamoDB transactions (the store's group commit).
            still_ours = await self._retry_state(
                lambda: store.mark_paid(order_id, token, payment_ms),
                "mark_paid",
                self._abandon,
                order_id=order_id,
            )
        except Stopped:
            # Out of time with the charge unrecorded: shutdown keeps it (_keep_unrecorded).
            return Unrecorded()
        job.claim_token = None
        if not still_ours:
            # Our claim was taken over although we kept renewing it: never report this order
            # as paid by us; an operator must look at the ledger.
            self.stats.claims_lost_after_payment += 1
            log.error("claim_lost_after_payment", order_id=order_id)
            return Keep("claim lost after payment")
        return Paid(payment_ms)

    async def _fail(self, job: Job, reason: str, *, retryable: bool = False) -> Outcome:
        assert job.order is not None
        self.stats.failed += 1
        order_id = job.order.order_id
        log.warning(
            "order_failed",
            order_id=order_id,
            receive_count=job.message.receive_count,
            reason=reason,
        )
        store, token = self._store, job.claim_token
        if store is not None and token is not None:
            try:
                await self._retry_state(
                    lambda: store.mark_failed(order_id, token, reason, retryable=retryable),
                    "mark_failed",
                    self._abandon,
                    order_id=order_id,
                )
            except Stopped:
                return HandBack()  # nothing was charged: the next delivery decides again
            job.claim_token = None
        return DeadLetter(reason)

    async def _retry_payment(self, job: Job, reason: str) -> Outcome:
        assert job.order is not None
        self.stats.payment_retries += 1
        order_id = job.order.order_id
        count = job.message.receive_count
        log.warning("payment_retry", order_id=order_id, receive_count=count, reason=reason)
        await self._release(job, reason)
        ceiling = self.settings.retry_backoff_seconds * 2 ** (count - 1)
        return RetryAfter(min(RETRY_DELAY_CAP, int(random.uniform(ceiling / 2, ceiling))))

    async def _release(self, job: Job, reason: str) -> None:
        """Give the claim back, retried until shutdown; then the lease runs out by itself."""
        store, token = self._store, job.claim_token
        if store is None or token is None or job.order is None:
            return
        order_id = job.order.order_id
        job.claim_token = None
        with contextlib.suppress(StateUnavailable, Stopped):
            await self._retry_state(
                lambda: store.release(order_id, token, reason),
                "release",
                self._abandon,
                order_id=order_id,
            )

    async def _retry_state(
        self,
        call: Callable[[], Awaitable[T]],
        what: str,
        stop: asyncio.Event,
        orders: int = 1,
        *,
        order_id: str | None = None,
        attempts: int | None = None,
    ) -> T:
        """A DynamoDB call retried in process through an outage (never through the queue)."""

        def on_error(exc: BaseException, failures: int, delay: float) -> None:
            self.stats.state_retries += 1
            if isinstance(exc, StateRefused):
                return  # already an error line (aws_permanent_error) where it was refused
            log.warning(
                "state_unavailable",
                operation=what,
                order_id=order_id,
                orders=orders,
                failures=failures,
                retry_in_s=round(delay, 3),
                detail=str(exc),
            )

        return await retry(
            call,
            retry_on=(StateUnavailable,),
            stop=stop,
            on_error=on_error,
            backoff=STATE_BACKOFF,
            attempts=attempts,
        )

    # -- settling: the one place a message's fate is applied ----------------------------------

    async def _settle(self, job: Job, outcome: Outcome) -> None:
        message = job.message
        order_id = job.order.order_id if job.order is not None else None
        match outcome:
            case Paid(payment_ms):
                assert job.order is not None
                self.stats.paid += 1
                log.info(
                    "order_paid",
                    order_id=order_id,
                    payment_ms=round(payment_ms, 3),
                    queue_ms=round(max(0.0, job.started - job.order.accepted_at) * 1000, 3),
                    receive_count=message.receive_count,
                    mode="async",
                    **emf(ORDER_PAID),
                )
                await self._delete(job)
            case Duplicate():
                # A redelivery of an order already paid: done, and nothing is charged again.
                self.stats.duplicates += 1
                log.info("order_duplicate", order_id=order_id, receive_count=message.receive_count)
                await self._delete(job)
            case DeadLetter(reason):
                await self._dead_letter(job, reason, order_id)
            case RetryAfter(seconds):
                with contextlib.suppress(QueueUnavailable):
                    # If this fails the message reappears when its visibility runs out.
                    await self._queue.change_visibility([message.receipt_handle], seconds)
            case HandBack():
                await self._hand_back([job])
            case Unrecorded():
                await self._keep_unrecorded(job)
            case Keep(reason):
                log.info("message_kept", order_id=order_id, reason=reason)
        self._jobs.pop(message.receipt_handle, None)

    async def _delete(self, job: Job) -> None:
        message = job.message
        try:
            failure = await self._retry_queue(
                lambda: self._queue.delete(message.receipt_handle), "delete"
            )
        except Stopped:
            failure = "gave up at shutdown"
        if failure is not None:
            # It comes back, and its order's state makes the next receiver delete it.
            self.stats.delete_failures += 1
            log.error("delete_failed", message_id=message.message_id, detail=failure)

    async def _dead_letter(self, job: Job, reason: str, order_id: str | None) -> None:
        message = job.message
        try:
            await self._retry_queue(
                lambda: self._queue.dead_letter(message, reason, order_id), "dead_letter"
            )
        except Stopped:
            log.error("dead_letter_failed", message_id=message.message_id, order_id=order_id)
            return
        self.stats.dead_lettered += 1
        log.info(
            "message_dead_lettered",
            message_id=message.message_id,
            order_id=order_id,
            reason=reason,
        )

    async def _retry_queue(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        def on_error(exc: BaseException, failures: int, delay: float) -> None:
            log.warning(f"{what}_retry", failures=failures, detail=str(exc))

        return await retry(
            call,
            retry_on=(QueueUnavailable,),
            stop=self._abandon,
            on_error=on_error,
            backoff=STATE_BACKOFF,
        )

    async def _keep_unrecorded(self, job: Job) -> None:
        """A charge whose paid-mark never landed: keep claim and message as long as we can.

        Never released and never made visible: a redelivery would charge again. The message
        is hidden for as long as SQS allows, the lease gets one last renewal (both best
        effort, briefly), and the error line is what an operator reconciles from.
        """
        assert job.order is not None
        order = job.order
        self._jobs.pop(job.message.receipt_handle, None)
        log.error(
            "payment_unrecorded",
            order_id=order.order_id,
            amount=order.total,
            attempt=job.message.receive_count,
            message_id=job.message.message_id,
        )
        with contextlib.suppress(QueueUnavailable, TimeoutError):
            async with asyncio.timeout(SETTLE_SECONDS):
                await self._queue.change_visibility([job.message.receipt_handle], MAX_VISIBILITY)
        if self._lease_store is not None and job.claim_token is not None:
            with contextlib.suppress(StateUnavailable, TimeoutError):
                async with asyncio.timeout(SETTLE_SECONDS):
                    await self._lease_store.renew_until(
                        [(order.order_id, job.claim_token)], time.time() + MAX_VISIBILITY
                    )

    async def _hand_back(self, jobs: Sequence[Job]) -> None:
        """Make messages visible again at once and give back any claims on their orders."""
        if not jobs:
            return
        if self._store is not None:
            for job in jobs:
                if job.order is not None and job.claim_token is not None:
                    token, job.claim_token = job.claim_token, None
                    with contextlib.suppress(StateUnavailable):
                        await self._store.release(job.order.order_id, token, "handed back")
        with contextlib.suppress(QueueUnavailable):
            self.stats.handed_back += await self._queue.change_visibility(
                [job.message.receipt_handle for job in jobs], 0
            )
        for job in jobs:
            self._jobs.pop(job.message.receipt_handle, None)

    # -- holding: visibility and leases, each on its own deadline ------------------------

    def _beat_interval(self) -> float:
        return max(0.5, min(self._config.visibility_timeout, self.settings.lease_seconds) / 4)

    async def _keep_invisible(self) -> None:
        """Keep every held message invisible until it is settled; never waits on DynamoDB."""
        timeout = self._config.visibility_timeout
        interval = self._beat_interval()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            due = [j for j in self._jobs.values() if j.visible_until - now < timeout / 2]
            if due:
                # Due with at least timeout/2 left: a call cut off after one interval leaves
                # the next beat time to try again before any of them reappears.
                await self._extend_visibility(due, timeout, now, deadline=interval)

    async def _keep_leased(self, store: OrderStore) -> None:
        """Renew every claim held until it is settled; never holds up visibility extension."""
        lease = self.settings.lease_seconds
        interval = self._beat_interval()
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            renew = [
                j for j in self._jobs.values() if j.claim_token and j.lease_until - now < lease / 2
            ]
            for job in renew:
                if job.lease_until < now and not job.lease_lapsed:
                    # Past the lease we wrote: the claim may be taken over by our own message
                    # (if it reappeared). The slot does nothing that needs the lease now: it
                    # charges only after a renewal lands (see _lease_for_charge).
                    job.lease_lapsed = True
                    log.error(
                        "lease_expired",
                        order_id=job.order.order_id if job.order else None,
                        charged=job.charged,
                        expired_s_ago=round(now - job.lease_until, 3),
                    )
            if renew:
                # Due with lease/2 left; a renewal that has not landed after one interval is
                # given up (the next beat tries again) rather than queued behind a hung call.
                await self._renew_leases(renew, store, lease, deadline=interval)

    async def _extend_visibility(
        self, due: list[Job], seconds: int, now: float, *, deadline: float
    ) -> None:
        try:
            async with asyncio.timeout(deadline):
                extended = await self._queue.change_visibility_each(
                    [j.message.receipt_handle for j in due], seconds
                )
        except (QueueUnavailable, TimeoutError) as exc:
            # Not fatal yet: the next beat tries again while the messages are still hidden.
            log.warning("visibility_change_failed", count=len(due), detail=str(exc) or "timeout")
            return
        for job in due:
            # Only the entries SQS accepted: a failed entry is tried again next beat.
            if job.message.receipt_handle in extended:
                job.visible_until = now + seconds
        if len(extended) < len(due):
            log.warning("visibility_change_failed", count=len(due) - len(extended))
        self.stats.heartbeats += len(extended)

    async def _renew_leases(
        self, jobs: list[Job], store: OrderStore, lease: float, *, deadline: float
    ) -> int:
        """Renew the claims of `jobs` within `deadline` s; how many were renewed."""
        jobs = [j for j in jobs if j.order is not None and j.claim_token is not None]
        claims = [(j.order.order_id, j.claim_token) for j in jobs if j.order and j.claim_token]
        until = time.time() + lease
        try:
            async with asyncio.timeout(deadline):
                renewed = await store.renew_until(claims, until)
        except (StateUnavailable, TimeoutError) as exc:
            log.warning("lease_renewal_failed", count=len(claims), detail=str(exc) or "timeout")
            return 0
        count = 0
        for job, (order_id, token), still_ours in zip(jobs, claims, renewed, strict=True):
            if still_ours:
                # The lease end we wrote, not when the answer came back.
                job.lease_until = until
                job.lease_lapsed = False
                self.stats.lease_renewals += 1
                count += 1
            elif job.claim_token == token:
                # Not merely settled meanwhile (a paid-mark that landed first): really lost.
                job.claim_lost = True
                log.error("claim_lost", order_id=order_id)
        return count

    async def _lease_for_charge(self, job: Job) -> bool:
        """Make sure the claim's lease outlasts a whole charge; False if that cannot be had."""
        store = self._lease_store
        if store is None or job.claim_token is None:
            return True
        needed = self.settings.payment.timeout + self._beat_interval()
        lease = self.settings.lease_seconds
        failures = 0
        while job.lease_until - time.time() < needed:
            if self._stopping.is_set():
                return False
            if await self._renew_leases([job], store, lease, deadline=self._beat_interval()):
                return True
            if job.claim_token is None or job.claim_lost:
                return False
            failures += 1
            if await sleep_unless(self._stopping, STATE_BACKOFF.delay(failures)):
                return False
        return True


@asynccontextmanager
async def open_worker(settings: WorkerSettings) -> AsyncIterator[Worker]:
    """A worker with its clients (one per service per process), closed when the block ends."""
    session = get_session()
    aws = settings.aws
    async with AsyncExitStack() as stack:
        sqs: SQSClient = await stack.enter_async_context(
            session.create_client(
                "sqs",
                region_name=aws.region,
                endpoint_url=aws.endpoint_url,
                config=client_config(
                    pool_size=settings.pool_size, read_timeout=settings.read_timeout
                ),
            )
        )
        # One judge of permanent AWS errors for the process: SQS and DynamoDB alike.
        health = AwsHealth()
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
            # No client waits on the worker's writes: a claim or paid-mark may wait a little
            # for others to share its call (fewer, fuller TransactWriteItems).
            store = OrderStore(
                dynamodb, settings.orders_table, fill_wait=STATE_FILL_WAIT, health=health
            )
        queue = OrderQueue(
            sqs,
            settings.queue_url,
            WorkerStats(),
            batched=settings.receive_strategy == "batched",
            health=health,
        )
        config = await queue.read_config()
        yield Worker(settings, queue, config, PaymentProcessor(settings.payment), store)

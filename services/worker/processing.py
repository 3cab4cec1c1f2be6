"""Processing: decode, claim, charge, record. `process(job)` returns an `Outcome`.

A message goes through three steps, and what follows is always settling
(services/worker/settling.py), which alone applies the outcome to SQS; processing never
calls SQS:
1. decode it and (with ORDERS_TABLE) claim its order in DynamoDB, one call per receive;
2. charge it, holding a payment slot;
3. record the outcome (paid, failed, released) in DynamoDB, and return the `Outcome`.

Exactly once, under faults:
- Infrastructure errors (DynamoDB throttling, 5xx, timeouts) never spend a receive: the
  worker keeps the message, holding keeps it invisible, and the call is retried in process
  with capped, jittered backoff (services/common/retry.py). Only payment outcomes (a
  transient processor failure retried through the message's visibility) count toward the
  queue's maxReceiveCount.
- A charge starts only with a lease that outlasts it (holding renews it first if needed).
- A claim found lost after a charge is an error-level alert (`claim_lost_after_payment`),
  never an `order_paid`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.common.logging import get_logger
from services.common.retry import Stopped, retry
from services.domain.errors import (
    PaymentDeclined,
    PaymentUnavailable,
    StateRefused,
    StateUnavailable,
)
from services.domain.messages import InvalidInput, decode_message
from services.domain.orders import TAKEOVER_GRACE_SECONDS, OrderRecord, OrderStore, Status
from services.domain.payment import PaymentProcessor

from .holding import Holding, Job
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
from .queue import QueueConfig, Received
from .settings import WorkerSettings
from .stats import WorkerStats

log = get_logger()
T = TypeVar("T")

# A sane cap for retry delays (seconds a message stays invisible before it is tried again).
RETRY_DELAY_CAP = 900

Settle = Callable[[Job, Outcome], Awaitable[None]]


def _claim_token(receipt_handle: str) -> str:
    return hashlib.sha256(receipt_handle.encode()).hexdigest()[:32]


class Processor:
    def __init__(
        self,
        settings: WorkerSettings,
        config: QueueConfig,
        stats: WorkerStats,
        payments: PaymentProcessor,
        store: OrderStore,
        holding: Holding,
        settle: Settle,
        stopping: asyncio.Event,
        abandon: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.stats = stats
        self._config = config
        self._payments = payments
        self._store = store
        self._holding = holding
        # Messages refused before any charge (undecodable, claim refused) are settled at once.
        self._settle = settle
        # Set by stop(): take no more work. Set when the grace period is over: give up what
        # is still being retried.
        self._stopping = stopping
        self._abandon = abandon
        # Tasks inside a charge right now: the ones cut off when the grace period is over.
        self.charging: set[asyncio.Task[object]] = set()

    async def prepare(self, messages: list[Received]) -> list[Job]:
        """Decode and claim received messages (one claim call for all); return those to pay."""
        jobs: list[Job] = []
        for message in messages:
            job = self._holding.hold(message)
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
        if not jobs:
            return jobs
        return await self.claim(jobs)

    async def claim(self, jobs: list[Job]) -> list[Job]:
        store = self._store
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
            if claim.refused is not None:
                # DynamoDB will never take this one claim (a value it cannot hold): only its
                # own message goes to the DLQ, with the reason; the others are paid.
                await self._settle(job, DeadLetter(f"state_refused: {claim.refused}"))
            elif claim.won:
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
        self.stats.claims_refused += 1
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

    async def process(self, job: Job, release_slot: Callable[[], None]) -> Outcome:
        """Charge the order holding a slot, then record what happened; return the outcome."""
        assert job.order is not None
        order = job.order
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        job.started = time.time()
        me = asyncio.current_task()
        assert me is not None
        self.charging.add(me)
        try:
            if not await self._holding.lease_for_charge(job, self._stopping):
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
            self.charging.discard(me)
            stats.in_flight -= 1
            # The slot is for paying: recording and settling go on without holding it.
            release_slot()
        job.charged = True
        return await self.record_paid(job, payment_ms)

    def _no_lease(self, job: Job) -> Outcome:
        if self._stopping.is_set():
            return HandBack()
        # Taken over: its message comes back when its visibility runs out; its claim decides.
        return Keep("claim lost before charge")

    async def record_paid(self, job: Job, payment_ms: float) -> Outcome:
        store, token = self._store, job.claim_token
        if token is None:
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
            # Out of time with the charge unrecorded: settling keeps it (never handed back).
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
        if token is not None:
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
        if token is None or job.order is None:
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
            attempts=attempts,
        )

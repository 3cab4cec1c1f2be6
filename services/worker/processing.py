"""Processing: decode, claim, charge, record. `process(job)` returns an `Outcome`.

A message goes through two steps, and what follows is always settling
(services/worker/settling.py), which alone applies the outcome to SQS; processing never
calls SQS:
1. `prepare`: decode it and claim its order in DynamoDB, one call per receive;
2. `process`: pay the claimed order with the step the sync path uses too
   (services/domain/paying.py: charge holding a payment slot, then record paid, failed or
   released in DynamoDB), and turn what it returns into the message's `Outcome`.

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
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.adapters.transactions import MAX_TRANSACTION_WRITES
from services.common.logging import get_logger
from services.common.retry import Stopped, retry
from services.domain.errors import (
    StateRefused,
    StateUnavailable,
)
from services.domain.messages import InvalidInput, decode_message
from services.domain.orders import TAKEOVER_GRACE_SECONDS, OrderRecord, OrderStore, Status
from services.domain.paying import (
    Charged,
    Claimed,
    Declined,
    NotCharged,
    Unavailable,
    pay_claimed,
)
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

# How long a write no slot waits on may wait for others to share its DynamoDB call. Longer
# than the claims' STATE_FILL_WAIT (worker.py): at 480 orders/s its calls carry ~50 writes.
SETTLE_FILL_WAIT = 0.05

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
        # Writes no slot waits on (a charge's paid-mark, failure or release; the claims of
        # orders bound for the line) wait longer for others to share their call, in calls up
        # to DynamoDB's limit: fewer TransactWriteItems, each one's fixed cost shared wider.
        self.settle_store = store.batched(SETTLE_FILL_WAIT, MAX_TRANSACTION_WRITES)
        self._holding = holding
        # Messages refused before any charge (undecodable, claim refused) are settled at once.
        self._settle = settle
        # Set by stop(): take no more work. Set when the grace period is over: give up what
        # is still being retried.
        self._stopping = stopping
        self._abandon = abandon
        # Tasks inside a charge right now: the ones cut off when the grace period is over.
        self.charging: set[asyncio.Task[object]] = set()

    async def prepare(self, messages: list[Received], for_line: bool = False) -> list[Job]:
        """Decode and claim received messages (one claim call for all); return those to pay.

        `for_line`: they will wait in line for a slot. Their claims are leased for that wait
        as well (settings.line_lease_seconds), so a charge needs no renewal first, and they
        share the unhurried calls of the settling writes: no slot waits on them."""
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
        if for_line:
            return await self.claim(jobs, self.settings.line_lease_seconds, self.settle_store)
        return await self.claim(jobs, self.settings.lease_seconds, self._store)

    async def claim(self, jobs: list[Job], lease: float, store: OrderStore) -> list[Job]:
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
        """Pay the order holding a slot (services/domain/paying.py); return its outcome."""
        assert job.order is not None and job.claim_token is not None
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        job.started = time.time()
        me = asyncio.current_task()
        assert me is not None
        self.charging.add(me)

        def charge_over(charged: bool) -> None:
            job.charged = charged
            self.charging.discard(me)
            stats.in_flight -= 1
            # The slot is for paying: recording and settling go on without holding it.
            release_slot()

        def stop_renewing() -> None:
            job.claim_token = None

        count = job.message.receive_count
        claimed = Claimed(
            job.order,
            job.claim_token,
            attempt=count,
            retry_left=count < self._config.max_receive_count,
        )
        payment = await pay_claimed(
            claimed,
            self._payments,
            self.settle_store,
            self._record,
            ready=lambda: self._holding.lease_for_charge(job, self._stopping),
            charge_over=charge_over,
            giving_back=stop_renewing,
        )
        match payment:
            case NotCharged():
                if self._stopping.is_set():
                    return HandBack()
                # Taken over: its message comes back when its visibility runs out; its claim
                # decides.
                return Keep("claim lost before charge")
            case Charged():
                return self.record_paid(job, payment)
            case Declined(reason, recorded):
                stats.failed += 1
                if not recorded:
                    # Nothing was charged: handed back (its claim too), the next delivery
                    # decides again.
                    return HandBack()
                job.claim_token = None
                return DeadLetter(reason)
            case Unavailable():
                stats.payment_retries += 1
                ceiling = self.settings.retry_backoff_seconds * 2 ** (count - 1)
                return RetryAfter(min(RETRY_DELAY_CAP, int(random.uniform(ceiling / 2, ceiling))))

    def record_paid(self, job: Job, charged: Charged) -> Outcome:
        """What a charge's paid-mark means for its message."""
        if not charged.recorded:
            # Out of time with the charge unrecorded: settling keeps it (never handed back).
            return Unrecorded()
        job.claim_token = None
        if not charged.ours:
            # Never report this order as paid by us; an operator must look at the ledger.
            self.stats.claims_lost_after_payment += 1
            return Keep("claim lost after payment")
        return Paid(charged.payment_ms)

    async def _record(
        self, what: str, order_id: str, write: Callable[[], Awaitable[bool]]
    ) -> object:
        """The worker's state writes after a charge: retried in process until the grace
        period is over (then Stopped)."""
        return await self._retry_state(write, what, self._abandon, order_id=order_id)

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

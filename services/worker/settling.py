"""Settling: the one place a message's fate is applied.

Processing decides an `Outcome` (services/worker/outcomes.py); `Settler.settle` applies it
to SQS (delete, dead-letter, change visibility, hand back), counts it and logs it, and stops
holding the job. Receiving and shutdown hand messages back through `Settler.hand_back` too.

Settling never calls DynamoDB itself: where a fate also concerns the order's claim (a hand
back gives it back; an unrecorded charge keeps it longest), it asks holding to do that part,
in the same order as the SQS part always had (claim first for a hand back, after for an
unrecorded charge).

- Declined, out-of-retries and undecodable messages are moved to the dead-letter queue by the
  worker itself, with their reason as message attributes.
- SQS settles are retried in process through an outage until shutdown gives up on them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from services.common.logging import get_logger
from services.common.metrics import ORDER_PAID, emf
from services.common.retry import Stopped, retry

from .holding import MAX_VISIBILITY, SETTLE_SECONDS, Holding, Job
from .outcomes import DeadLetter, Duplicate, HandBack, Keep, Outcome, Paid, RetryAfter, Unrecorded
from .queue import OrderQueue, QueueUnavailable
from .stats import WorkerStats

log = get_logger()
T = TypeVar("T")


class Settler:
    def __init__(
        self, queue: OrderQueue, stats: WorkerStats, holding: Holding, abandon: asyncio.Event
    ) -> None:
        self.stats = stats
        self._queue = queue
        self._holding = holding
        # Set when the grace period is over: SQS calls still being retried give up.
        self._abandon = abandon

    async def settle(self, job: Job, outcome: Outcome) -> None:
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
                await self.hand_back([job])
            case Unrecorded():
                await self._keep_unrecorded(job)
            case Keep(reason):
                log.info("message_kept", order_id=order_id, reason=reason)
        self._holding.drop(job)

    async def hand_back(self, jobs: Sequence[Job]) -> None:
        """`HandBack` for several jobs at once: visible again in one call, claims given back."""
        if not jobs:
            return
        await self._holding.release_claims(jobs)
        with contextlib.suppress(QueueUnavailable):
            self.stats.handed_back += await self._queue.change_visibility(
                [job.message.receipt_handle for job in jobs], 0
            )
        for job in jobs:
            self._holding.drop(job)

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
        )

    async def _keep_unrecorded(self, job: Job) -> None:
        """A charge whose paid-mark never landed: keep claim and message as long as we can.

        Never released and never made visible: a redelivery would charge again. The message
        is hidden for as long as SQS allows, the lease gets one last renewal (both best
        effort, briefly), and the error line is what an operator reconciles from.
        """
        assert job.order is not None
        order = job.order
        self._holding.drop(job)
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
        await self._holding.keep_claim_unrecorded(job)

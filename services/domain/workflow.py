"""The order workflow behind both POST endpoints: register, publish or claim, charge, mark.

The handlers only answer what these methods return; what they raise is an order error
(services/domain/errors.py), mapped to HTTP in one table (services/api/errors.py). Every path
leaves the order in a state a client's retry (same Idempotency-Key, or same order_id, and
body) can resolve:

- async: a keyed order is registered `pending`, published, then marked `accepted`. A publish
  SNS refused is forgotten (the retry starts afresh); a publish that timed out may have gone
  through, so its pending record stays and the retry publishes again (the worker pays an
  order id once). Once SNS acknowledged, the order is queued and the answer is 202 at once:
  the accepted-mark is written after the answer, batched with other orders' marks (see
  ACCEPTED_FILL_WAIT), and a failed one is retried in the background (latewrites.py).
  Within this process, a GET or a retry of the order waits for its mark first.
- sync: the order is claimed (the claimant derived from its key or order id, so a retry of the
  request is the same claimant), then charged and marked by the step the worker uses too
  (services/domain/paying.py). A transient
  processor failure gives the claim back as `pending` (not shown, retryable); once charged,
  the answer is 200 `paid` and a failed paid-mark is retried in the background, while the
  claim stays closed to a retry (see the takeover rule in services/domain/orders.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from services.common.logging import get_logger
from services.domain.errors import (
    InProgress,
    KeyReused,
    PaymentDeclined,
    PaymentUnavailable,
    PublishAmbiguous,
    PublishError,
    StateUnavailable,
)
from services.domain.messages import OrderMessage, OrderRequest, encode_message
from services.domain.orders import OrderRecord, OrderStore, Status, request_hash
from services.domain.paying import (
    Charged,
    Claimed,
    Declined,
    NotCharged,
    Unavailable,
    pay_claimed,
)
from services.domain.payment import PaymentProcessor

from .latewrites import LateWrites

log = get_logger()

# How long an accepted-mark may wait for others to share its DynamoDB call. No client waits
# for it (the 202 is sent once SNS acknowledged), so it only delays when a GET served by
# another API process sees the order; at 120 orders/s it makes about 2.4 marks per call.
ACCEPTED_FILL_WAIT = 0.02

Publish = Callable[[str], Awaitable[object]]
"""Publishes one encoded order message; raises PublishFailed or PublishAmbiguous
(services/adapters/publisher.py)."""


@dataclass(frozen=True)
class Accepted:
    order_id: str
    total: float
    replayed: bool = False


@dataclass(frozen=True)
class PaidNow:
    order_id: str
    total: float
    payment_ms: float | None
    replayed: bool = False


def _age_seconds(iso: str) -> float:
    return time.time() - datetime.fromisoformat(iso).timestamp()


class OrderWorkflow:
    def __init__(
        self,
        store: OrderStore,
        publish: Publish,
        payments: PaymentProcessor,
        late_writes: LateWrites,
        *,
        publish_timeout: float,
    ) -> None:
        self._store = store
        self._publish = publish
        self._payments = payments
        self._late_writes = late_writes
        self._publish_timeout = publish_timeout
        # Accepted-marks share calls: a second path on the same client whose batches wait.
        self._marks = store.batched(ACCEPTED_FILL_WAIT)
        # Marks not yet written, by order id: what a GET or retry of the order waits for.
        self._marking: dict[str, asyncio.Task[object]] = {}

    async def _register(
        self,
        order: OrderMessage,
        wanted: OrderRequest,
        key: str | None,
        fingerprint: str,
    ) -> tuple[OrderMessage, OrderRecord | None]:
        """Record the order as pending, or find the order this request is a retry of;
        `fingerprint`: the request's (request_hash)."""
        store = self._store
        if key is not None:
            order_id, bound = await store.bind_idempotency_key(key, order.order_id, fingerprint)
            if bound != fingerprint:
                raise KeyReused("this Idempotency-Key was used with a different request")
            order = order.model_copy(update={"order_id": order_id})
        structlog.contextvars.bind_contextvars(order_id=order.order_id)
        existing = await store.create_pending(order, fingerprint)
        # An order id this API made for a key (the body named none) can only be the key's: the
        # key's fingerprint, checked above, is the proof. One the client named is checked
        # against the order's own (a worker's claim that recreated the item wrote the same).
        if (
            existing is not None
            and wanted.order_id is not None
            and existing.request_hash != fingerprint
        ):
            raise KeyReused("this order_id was used with a different request")
        return order, existing

    async def accept(self, wanted: OrderRequest, key: str | None, path: str) -> Accepted:
        """Queue an order: SNS acknowledged it when this returns."""
        order = OrderMessage.from_request(wanted)
        store = self._store
        # Only a request that names itself (a key, or its own order_id) can be a retry: only
        # those pay for the pending write that lets a retry find it. Others cost one write,
        # after SNS.
        keyed = wanted.order_id is not None or key is not None
        # A retry of a pending order whose earlier publish may have gone through: a definite
        # failure of this publish proves nothing about that one.
        earlier_in_doubt = False
        if keyed:
            fingerprint = request_hash(path, wanted)
            order, existing = await self._register(order, wanted, key, fingerprint)
            # Pending, but perhaps acknowledged by SNS here, its mark not yet written.
            if (
                existing is not None
                and existing.status == Status.PENDING
                and await self.marked(existing.order_id)
            ):
                existing = await store.get(existing.order_id) or existing
            if existing is not None and existing.status != Status.PENDING:
                log.info("order_replayed", status=str(existing.status))
                return Accepted(existing.order_id, existing.total, replayed=True)
            if (
                existing is not None
                and _age_seconds(existing.updated_at) < 2 * self._publish_timeout
            ):
                raise InProgress
            # An older pending order lost its publish, or its publish timed out and may have
            # gone through: publish (again). The worker pays an order id once.
            earlier_in_doubt = existing is not None
        structlog.contextvars.bind_contextvars(order_id=order.order_id)
        try:
            await self._publish(encode_message(order))
        except PublishError as exc:
            ambiguous = isinstance(exc, PublishAmbiguous)
            log.error("publish_failed", error=exc.code, ambiguous=ambiguous, detail=str(exc))
            if keyed and not ambiguous and not earlier_in_doubt:
                # Certainly not queued: a retry (same key or order_id) starts afresh. Kept when
                # an earlier attempt may have been: its fingerprint must stay for the retry.
                await store.forget_pending(order.order_id)
            raise
        self._mark_later(order, keyed, self._marks)
        log.info("order_accepted", total=order.total, items=len(order.items))
        return Accepted(order.order_id, order.total)

    def _mark_later(self, order: OrderMessage, keyed: bool, marks: OrderStore) -> None:
        """Write the accepted-mark after the answer; retried as a late write if it fails."""
        order_id = order.order_id
        task = asyncio.create_task(
            self._write_now_or_late(
                "mark_accepted",
                order_id,
                (lambda: marks.mark_accepted(order_id))
                if keyed
                else (lambda: marks.record_accepted(order)),
            )
        )
        self._marking[order_id] = task
        task.add_done_callback(lambda _: self._marking.pop(order_id, None))

    async def marked(self, order_id: str) -> bool:
        """Wait until this process's accepted-mark for `order_id` was tried; False if none."""
        task = self._marking.get(order_id)
        if task is None:
            return False
        # shield: a GET that gives up must not cancel the write.
        await asyncio.shield(task)
        return True

    async def close(self) -> None:
        """Wait for the accepted-marks still on their way (a failed one goes to late writes)."""
        while self._marking:
            await asyncio.gather(*self._marking.values(), return_exceptions=True)

    async def pay_now(self, wanted: OrderRequest, key: str | None, path: str) -> PaidNow:
        """Charge an order while the client waits; raises PaymentDeclined/PaymentUnavailable."""
        order = OrderMessage.from_request(wanted)
        store = self._store
        fingerprint = request_hash(path, wanted)
        order, existing = await self._register(order, wanted, key, fingerprint)
        if existing is not None and (answer := self._replayed(existing)) is not None:
            return answer
        lease = self._payments.settings.lease_seconds
        # Derived from the request, so a retry of it is the same claimant: once the lease of
        # an attempt whose answer was lost runs out, the retry takes over (not 10 min later).
        claimant = f"sync:key:{key}" if key else f"sync:order:{order.order_id}"
        claim = await store.claim(order, lease, claimant, fingerprint=fingerprint)
        if not claim.won:
            if claim.record is not None and (answer := self._replayed(claim.record)) is not None:
                return answer
            raise InProgress
        payment = await pay_claimed(
            Claimed(order, claim.token, release_to=Status.PENDING, mode="sync"),
            self._payments,
            store,
            self._write_now_or_late,
        )
        match payment:
            case Charged(payment_ms, ours=ours):
                # Charged is paid for the client, even where the mark lands late or the claim
                # was taken over (pay_claimed alerted, and no order_paid: as on the worker).
                if ours:
                    log.info(
                        "order_paid", mode="sync", payment_ms=round(payment_ms, 3), queue_ms=0.0
                    )
                return PaidNow(order.order_id, order.total, round(payment_ms, 3))
            case Declined(reason):
                raise PaymentDeclined(reason)
            case Unavailable(reason):
                # Given back as pending: not shown, and the client's retry claims it again.
                raise PaymentUnavailable(reason)
            case NotCharged():  # pragma: no cover - no `ready` check on this path
                raise InProgress

    def _replayed(self, record: OrderRecord) -> PaidNow | None:
        """The answer for an order already paid (a replay); raises for one already failed."""
        if record.status == Status.PAID:
            log.info("order_replayed", status=str(record.status))
            return PaidNow(record.order_id, record.total, record.payment_ms, replayed=True)
        if record.status == Status.FAILED:
            raise PaymentDeclined(record.failure_reason or "payment failed")
        return None

    async def _write_now_or_late(
        self, what: str, order_id: str, write: Callable[[], Awaitable[object]]
    ) -> object:
        """A state write after the outcome is decided: now if DynamoDB takes it, else late
        (retried in the background, which logs the failure by its kind; None here)."""
        try:
            return await write()
        except StateUnavailable as exc:
            self._late_writes.submit(what, order_id, write, exc)
            return None

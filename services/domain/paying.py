"""Paying a claimed order: charge it, then record what happened. One step for both paths.

The sync handler (services/domain/workflow.py) and the worker (services/worker/processing.py)
both call `pay_claimed` once their claim is won; they differ only in what they do with the
`Payment` it returns (an HTTP answer, or a message's outcome) and in how a state write that
DynamoDB does not take is retried (`RecordState`: in the background for the sync path, whose
client is waiting; in process until shutdown for the worker, which holds the message).

The policy, the same on both paths:
- declined: `order_failed` (warning), then marked failed;
- unavailable with a retry left (the client's, or the queue's next receive): `payment_retry`
  (warning), then the claim is given back;
- unavailable with no retry left: failed for good, as declined, but marked retryable (a redrive
  from the DLQ may pay it again);
- charged: marked paid; a claim found taken over meanwhile is an error-level alert
  (`claim_lost_after_payment`), never reported as paid by this claimant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.common.logging import get_logger
from services.common.retry import Stopped

from .errors import PaymentDeclined, PaymentUnavailable
from .messages import OrderMessage
from .orders import OrderStore, Status
from .payment import PaymentProcessor

log = get_logger()

RecordState = Callable[[str, str, Callable[[], Awaitable[bool]]], Awaitable[object]]
"""How a caller writes state once the outcome is decided: `(what, order_id, write)` returns the
write's answer, None where it will land later (a late write); raises Stopped where the caller
gave up (shutdown)."""


@dataclass(frozen=True)
class Claimed:
    """An order whose claim this caller won."""

    order: OrderMessage
    token: str
    attempt: int = 1
    """Which try of this order this is (the message's receive count; 1 for a sync request)."""
    retry_left: bool = True
    """Whether a transient processor failure may be tried again (else it fails for good)."""
    release_to: Status = Status.ACCEPTED
    """The state a claim given back returns to (sync: pending, hidden from a GET)."""
    mode: str = "async"


@dataclass(frozen=True)
class NotCharged:
    """Nothing charged: the lease could not be made to outlast a charge."""


@dataclass(frozen=True)
class Charged:
    payment_ms: float
    recorded: bool = True
    """False: the paid-mark had not landed when the caller gave up (never give the claim back)."""
    ours: bool = True
    """False: the claim was taken over although it was renewed; an operator must look."""


@dataclass(frozen=True)
class Declined:
    reason: str
    recorded: bool = True
    """False: the failed-mark had not landed when the caller gave up (nothing was charged)."""


@dataclass(frozen=True)
class Unavailable:
    """Not charged; the claim was given back (or its lease runs out by itself)."""

    reason: str


Payment = NotCharged | Charged | Declined | Unavailable


async def pay_claimed(
    claimed: Claimed,
    payments: PaymentProcessor,
    store: OrderStore,
    record: RecordState,
    *,
    ready: Callable[[], Awaitable[bool]] | None = None,
    charge_over: Callable[[bool], None] | None = None,
    giving_back: Callable[[], None] | None = None,
) -> Payment:
    """Charge `claimed.order` and record the outcome through `record`.

    `ready()`, if given, runs first and may refuse the charge (NotCharged). `charge_over(charged)`
    runs as soon as the charge is over, before any state write (the worker frees its payment
    slot there), whatever happened. `giving_back()` runs just before the claim is released (the
    worker stops renewing it there, so a renewal racing the release is not taken for a loss).
    """
    charged, payment_ms = False, 0.0
    declined: str | None = None
    unavailable: str | None = None
    try:
        if ready is not None and not await ready():
            return NotCharged()
        payment_ms = await payments.charge(
            claimed.order, attempt=claimed.attempt, idempotency_key=claimed.order.order_id
        )
        charged = True
    except PaymentDeclined as exc:
        declined = str(exc)
    except PaymentUnavailable as exc:
        unavailable = str(exc)
    finally:
        if charge_over is not None:
            charge_over(charged)
    if unavailable is not None and claimed.retry_left:
        if giving_back is not None:
            giving_back()
        return await _give_back(claimed, store, record, unavailable)
    if declined is not None:
        return await _fail(claimed, store, record, declined, retryable=False)
    if unavailable is not None:
        reason = f"gave up after {claimed.attempt} attempts: {unavailable}"
        return await _fail(claimed, store, record, reason, retryable=True)
    return await _mark_paid(claimed, store, record, payment_ms)


async def _give_back(
    claimed: Claimed, store: OrderStore, record: RecordState, reason: str
) -> Unavailable:
    order_id, token = claimed.order.order_id, claimed.token
    log.warning(
        "payment_retry",
        order_id=order_id,
        receive_count=claimed.attempt,
        reason=reason,
        mode=claimed.mode,
    )
    # Stopped: its lease runs out by itself.
    with contextlib.suppress(Stopped):
        await record(
            "release",
            order_id,
            lambda: store.release(order_id, token, reason, to=claimed.release_to),
        )
    return Unavailable(reason)


async def _fail(
    claimed: Claimed, store: OrderStore, record: RecordState, reason: str, *, retryable: bool
) -> Declined:
    order_id, token = claimed.order.order_id, claimed.token
    log.warning(
        "order_failed",
        order_id=order_id,
        receive_count=claimed.attempt,
        reason=reason,
        mode=claimed.mode,
    )
    try:
        await record(
            "mark_failed",
            order_id,
            lambda: store.mark_failed(order_id, token, reason, retryable=retryable),
        )
    except Stopped:
        return Declined(reason, recorded=False)
    return Declined(reason)


async def _mark_paid(
    claimed: Claimed, store: OrderStore, record: RecordState, payment_ms: float
) -> Charged:
    order_id, token = claimed.order.order_id, claimed.token
    try:
        # Concurrent paid-marks share DynamoDB transactions (the store's group commit).
        ours = await record(
            "mark_paid", order_id, lambda: store.mark_paid(order_id, token, payment_ms)
        )
    except Stopped:
        return Charged(payment_ms, recorded=False)
    if ours is False:
        log.error("claim_lost_after_payment", order_id=order_id, mode=claimed.mode)
        return Charged(payment_ms, ours=False)
    return Charged(payment_ms)

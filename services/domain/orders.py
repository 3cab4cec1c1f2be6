"""Order state and idempotency in DynamoDB: the store the workflow and the worker call.

What an item holds is services/domain/records.py; the conditional writes (the transitions,
and why two racing processes can never both win) are services/domain/transitions.py; the
writes are sent, sharing calls, by services/adapters/transactions.py. Without ORDERS_TABLE the
services run on a `NullStore`: the same calls, nothing kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.adapters.transactions import WRITE_BATCH, NullWriter, TransactionWriter
from services.common.awserrors import AwsHealth

from . import transitions
from .errors import StateRefused, StateUnavailable
from .messages import OrderMessage
from .records import (
    RETENTION_SECONDS,
    OrderRecord,
    Status,
    key_key,
    order_key,
    queued_fingerprint,
    record_of,
    request_hash,
)
from .transitions import TAKEOVER_GRACE_SECONDS

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = [
    "RETENTION_SECONDS",
    "TAKEOVER_GRACE_SECONDS",
    "Claim",
    "NullStore",
    "OrderRecord",
    "OrderStore",
    "Status",
    "request_hash",
]

# A refusal that is about one write (a value the table cannot hold), not about the table or
# the caller's rights: it fails only its own claim. Any other refusal fails the whole call.
_ONE_WRITE_REFUSALS = ("ValidationException",)


@dataclass(frozen=True)
class Claim:
    """The outcome of asking to pay an order."""

    won: bool
    token: str
    record: OrderRecord | None
    """The order as it stood when the claim was refused (None when won)."""
    lease_until: float = 0.0
    """The lease end this claim wrote (epoch seconds): what its holder may count on."""
    refused: str | None = None
    """Why DynamoDB will never take this claim (its error code), when it would not."""


class OrderStore:
    """Reads and conditional writes of order state; DynamoDB errors become StateUnavailable."""

    stateful = True
    """False for the NullStore: nothing is kept, so there is no lease to renew."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        concurrency: int = 4,
        fill_wait: float = 0.0,
        max_writes: int = WRITE_BATCH,
        health: AwsHealth | None = None,
    ) -> None:
        self._table = table
        # Group commit: every conditional write of this process goes through one path, so
        # concurrent requests (API) or payments (worker) share TransactWriteItems calls; a
        # lone write on an idle path is sent at once as a single PutItem/UpdateItem.
        self._writer = TransactionWriter(
            dynamodb,
            concurrency=concurrency,
            fill_wait=fill_wait,
            max_writes=max_writes,
            health=health,
        )
        self.health = self._writer.health

    def batched(self, fill_wait: float, max_writes: int = WRITE_BATCH) -> OrderStore:
        """A store on the same client and table whose writes wait up to `fill_wait` s to
        share a call (see GroupCommit), up to `max_writes` a call: for writes no client is
        waiting on."""
        return OrderStore(
            self._writer.db,
            self._table,
            fill_wait=fill_wait,
            max_writes=max_writes,
            health=self.health,
        )

    @property
    def write_calls(self) -> int:
        """DynamoDB calls that carried writes (each a batch of one or more)."""
        return self._writer.calls

    async def get(self, order_id: str) -> OrderRecord | None:
        got = await self._writer.call(
            "get_item", TableName=self._table, Key=order_key(order_id), ConsistentRead=True
        )
        return record_of(got["Item"]) if "Item" in got else None

    async def bind_idempotency_key(
        self, key: str, order_id: str, fingerprint: str
    ) -> tuple[str, str]:
        """Bind `key` to `order_id` unless bound; return the (order_id, fingerprint) it holds."""
        old = await self._writer.write(
            transitions.bind_key(self._table, key, order_id, fingerprint)
        )
        if old is None:
            return order_id, fingerprint
        if not old:
            got = await self._writer.call(
                "get_item", TableName=self._table, Key=key_key(key), ConsistentRead=True
            )
            old = got["Item"]
        return old["order_id"]["S"], old["request_hash"]["S"]

    async def create_pending(self, order: OrderMessage, fingerprint: str) -> OrderRecord | None:
        """Record a new order as pending; if the order_id exists, return it untouched instead."""
        old = await self._writer.write(transitions.create_pending(self._table, order, fingerprint))
        if old is None:
            return None
        return record_of(old) if old else await self.get(order.order_id)

    async def mark_accepted(self, order_id: str) -> bool:
        return await self._writer.write(transitions.mark_accepted(self._table, order_id)) is None

    async def record_accepted(self, order: OrderMessage) -> None:
        """Record an order SNS has acknowledged; a worker that got there first keeps its state."""
        await self._writer.write(transitions.record_accepted(self._table, order))

    async def forget_pending(self, order_id: str) -> None:
        """Remove an order whose publish failed, so nothing claims it was accepted."""
        # Already moved on, or unreachable: then it stays pending, which is never shown.
        with contextlib.suppress(StateUnavailable):
            await self._writer.write(transitions.forget_pending(self._table, order_id))

    async def claim(
        self,
        order: OrderMessage,
        lease_seconds: float,
        claimant: str,
        *,
        token: str | None = None,
        fingerprint: str | None = None,
    ) -> Claim:
        """Take the right to pay `order` for `lease_seconds`; creates the order if unknown.

        `token`: the same on every retry of one attempt to pay (the worker derives it from the
        receipt handle), so a retry after a lost answer recognizes the claim its first try
        wrote and wins it; random when not given. `fingerprint`: the request's, written when
        the claim creates the item (see transitions.claim)."""
        token = token or uuid.uuid4().hex
        now = time.time()
        old = await self._writer.write(
            transitions.claim(
                self._table,
                order,
                token,
                now + lease_seconds,
                claimant,
                now=now,
                fingerprint=fingerprint,
            )
        )
        if transitions.own_claim(old, token):
            # Ours already: count on the lease that attempt wrote, not this one's.
            assert old is not None
            return Claim(True, token, None, float(old.get("lease_until", {}).get("N", now)))
        return Claim(old is None, token, record_of(old) if old else None, now + lease_seconds)

    async def claim_many(
        self,
        wanted: list[tuple[OrderMessage, str]],
        lease_seconds: float,
        tokens: list[str] | None = None,
    ) -> list[Claim]:
        """Claim (order, claimant) pairs at once (they share calls); `tokens`: one per pair.

        A transaction may touch an item once, so an order_id repeated in the batch (a duplicate
        delivery) is claimed once; its twins are refused with what its own claim saw. These are
        queued orders: a claim that creates the item writes their queued_fingerprint. A claim
        DynamoDB will never take (a value it cannot hold) is refused alone; any other error
        fails the whole call (an outage, or a store-wide refusal such as AccessDenied).
        """
        first: dict[str, int] = {}
        for i, (order, _) in enumerate(wanted):
            first.setdefault(order.order_id, i)
        unique = sorted(first.values())
        answers = await asyncio.gather(
            *(
                self.claim(
                    wanted[i][0],
                    lease_seconds,
                    wanted[i][1],
                    token=tokens[i] if tokens else None,
                    fingerprint=queued_fingerprint(wanted[i][0]),
                )
                for i in unique
            ),
            return_exceptions=True,
        )
        claimed: dict[int, Claim] = {}
        for i, answer in zip(unique, answers, strict=True):
            if isinstance(answer, StateRefused) and answer.code in _ONE_WRITE_REFUSALS:
                claimed[i] = Claim(False, "", None, refused=answer.code)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                claimed[i] = answer
        return [
            claimed[i]
            if i == first[order.order_id]
            else Claim(False, "", claimed[first[order.order_id]].record)
            for i, (order, _) in enumerate(wanted)
        ]

    async def mark_paid(self, order_id: str, token: str, payment_ms: float) -> bool:
        """Record a payment; False where the claim was no longer held (it was taken over).

        True also where an earlier attempt of this very mark landed and its answer was lost."""
        old = await self._writer.write(
            transitions.mark_paid(self._table, order_id, token, payment_ms)
        )
        return transitions.settled_by(old, Status.PAID, token)

    async def mark_paid_many(self, paid: list[tuple[str, str, float]]) -> list[bool]:
        """Several paid-marks at once (they share calls), as mark_paid."""
        return list(await asyncio.gather(*(self.mark_paid(*p) for p in paid)))

    async def mark_failed(
        self, order_id: str, token: str, reason: str, *, retryable: bool = False
    ) -> bool:
        """Record a failed payment; `retryable`: a redrive from the DLQ may pay it again."""
        old = await self._writer.write(
            transitions.mark_failed(self._table, order_id, token, reason, retryable=retryable)
        )
        return transitions.settled_by(old, Status.FAILED, token)

    async def release(
        self,
        order_id: str,
        token: str,
        reason: str | None = None,
        *,
        to: Status = Status.ACCEPTED,
    ) -> bool:
        """Give a claim back (transient failure, shutdown): the next delivery may pay.

        /orders/sync gives it back as `pending`: nothing will deliver it again, its client was
        told to retry, and a pending order is not shown as accepted.
        """
        write = transitions.release(self._table, order_id, token, reason, to)
        return await self._writer.write(write) is None

    async def renew_many(self, claims: list[tuple[str, str]], lease_seconds: float) -> list[bool]:
        """Extend the leases of (order_id, token) claims; False where a claim is no longer held."""
        return await self.renew_until(claims, time.time() + lease_seconds)

    async def renew_until(self, claims: list[tuple[str, str]], until: float) -> list[bool]:
        """Set the leases of (order_id, token) claims to end at `until` (epoch seconds)."""
        writes = [
            transitions.renew(self._table, order_id, token, until) for order_id, token in claims
        ]
        answers = await asyncio.gather(*(self._writer.write(w) for w in writes))
        return [old is None for old in answers]


class NullStore(OrderStore):
    """Stateless mode (no ORDERS_TABLE): every transition applies, nothing is kept, every
    read finds nothing. Claims always win; nothing dedupes a retry or a redelivery."""

    stateful = False

    def __init__(self) -> None:
        self._table = ""
        self._writer = NullWriter()
        self.health = self._writer.health

    def batched(self, fill_wait: float, max_writes: int = WRITE_BATCH) -> OrderStore:
        return self

    async def claim(
        self,
        order: OrderMessage,
        lease_seconds: float,
        claimant: str,
        *,
        token: str | None = None,
        fingerprint: str | None = None,
    ) -> Claim:
        # Nothing kept, nothing to take over: a lease that never needs renewing.
        return Claim(True, token or uuid.uuid4().hex, None, math.inf)

"""Order state and idempotency in DynamoDB: one item per order, one per idempotency key.

Every state change is a conditional write, so two processes racing on one order (a client's
retry, a redelivered SQS message, a worker taking over from a dead one) can never both win:

    pending ──publish acked──▶ accepted ──claim──▶ paying ──▶ paid
       (API)                      ▲                  │ ╲
                                  └──transient error─┘  ╲──declined / out of retries──▶ failed

A claim is a lease (`lease_until`) held by one claimant (`claim_message`: the SQS message id
the worker is paying from, or a one-off id for /orders/sync). A live claimant renews its lease
until its paid-mark lands. A worker killed mid-payment stops keeping its message invisible, so
the *same* message comes back: its next receiver may take over once the lease has run out.
Anyone else (a duplicate copy of the message, a client's retry of /orders/sync) must wait
TAKEOVER_GRACE_SECONDS past the lease: after a long DynamoDB outage, the lease of a claimant
that already charged has run out while it is still alive and retrying its paid-mark, and only
the claimant's own message proves it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from services.common.awserrors import AwsHealth, error_code
from services.common.groupcommit import GroupCommit
from services.common.retry import Backoff

from .errors import StateRefused, StateUnavailable
from .messages import OrderMessage, OrderRequest

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

# Orders and idempotency keys expire from the table after this long (DynamoDB TTL).
RETENTION_SECONDS = 7 * 24 * 3600
# How long past its lease a claim stays closed to anyone but its own message (see above).
TAKEOVER_GRACE_SECONDS = 600.0


class Status(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    PAYING = "paying"
    PAID = "paid"
    FAILED = "failed"


@dataclass(frozen=True)
class OrderRecord:
    order_id: str
    status: Status
    total: float
    request_hash: str
    accepted_at: str
    updated_at: str
    paid_at: str | None = None
    failed_at: str | None = None
    failure_reason: str | None = None
    payment_ms: float | None = None
    payments: int = 0
    """How many times this order was charged: the exactly-once check counts it."""
    attempts: int = 0
    lease_until: float | None = None
    claim_message: str | None = None
    """Who holds the claim: the SQS message id it is paid from (or the sync request's id)."""

    def public(self) -> dict[str, Any]:
        """The order as GET /orders/{order_id} shows it (`paying` is still `accepted` outside)."""
        status = Status.ACCEPTED if self.status == Status.PAYING else self.status
        shown: dict[str, Any] = {
            "order_id": self.order_id,
            "status": str(status),
            "total": self.total,
            "accepted_at": self.accepted_at,
            "updated_at": self.updated_at,
        }
        for name in ("paid_at", "payment_ms", "failed_at", "failure_reason"):
            value = getattr(self, name)
            if value is not None:
                shown[name] = value
        return shown


def request_hash(path: str, request: OrderRequest) -> str:
    """Fingerprint of what a client asked for, to tell a retry from a different request."""
    canonical = orjson.dumps(
        {"path": path, "request": request.model_dump(mode="json")}, option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(canonical).hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _record(item: dict[str, Any]) -> OrderRecord:
    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    def number(name: str) -> float | None:
        return float(item[name]["N"]) if name in item else None

    return OrderRecord(
        # The key is on every item, whichever write made it.
        order_id=item["pk"]["S"].removeprefix("order#"),
        status=Status(item["status"]["S"]),
        total=float(item["total"]["N"]),
        request_hash=item.get("request_hash", {}).get("S", ""),
        accepted_at=text("accepted_at") or "",
        updated_at=text("updated_at") or "",
        paid_at=text("paid_at"),
        failed_at=text("failed_at"),
        failure_reason=text("failure_reason"),
        payment_ms=number("payment_ms"),
        payments=int(number("payments") or 0),
        attempts=int(number("attempts") or 0),
        lease_until=number("lease_until"),
        claim_message=text("claim_message"),
    )


def _order_key(order_id: str) -> dict[str, dict[str, str]]:
    return {"pk": _s(f"order#{order_id}")}


def _old_item(exc: ClientError) -> dict[str, Any] | None:
    """The item a failed condition saw (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""
    item: Any = exc.response.get("Item")
    return item if isinstance(item, dict) and item else None


def _write_key(write: Write) -> tuple[str, str]:
    """A transaction may touch an item once: writes to one item never share a call."""
    [request] = write.values()
    key = request["Key"] if "Key" in request else {"pk": request["Item"]["pk"]}
    return request["TableName"], key["pk"]["S"]


def _settled_by(old: dict[str, Any] | None, status: Status, token: str) -> bool:
    """A settling write applied: now, or by an earlier attempt whose answer was lost."""
    if old is None:
        return True
    return bool(
        old.get("status", {}).get("S") == status and old.get("settled_by", {}).get("S") == token
    )


def _own_claim(old: dict[str, Any] | None, token: str) -> bool:
    """The claim found is the one this very claimant wrote (an attempt whose answer was lost)."""
    return bool(
        old
        and old.get("status", {}).get("S") == Status.PAYING
        and old.get("claim_token", {}).get("S") == token
    )


def _conditional_failed(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


Update = dict[str, Any]
"""One UpdateItem request (TableName, Key, expressions), usable alone or in a transaction."""
Write = dict[str, dict[str, Any]]
"""One write as a TransactWriteItems entry: {"Put" | "Update" | "Delete": request}."""
_SINGLE = {"Put": "put_item", "Update": "update_item", "Delete": "delete_item"}
# Between rounds of a transaction whose writes conflicted or were throttled: short and jittered.
TRANSACT_BACKOFF = Backoff(base=0.02, cap=0.5)
# Writes made while a call is in flight share the next one, this many at most (DynamoDB
# takes up to 100 per transaction; a smaller batch keeps each call short).
WRITE_BATCH = 25


class _Cancelled(Exception):
    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__("transaction cancelled")
        self.reasons = reasons


@dataclass(frozen=True)
class Claim:
    """The outcome of asking to pay an order."""

    won: bool
    token: str
    record: OrderRecord | None
    """The order as it stood when the claim was refused (None when won)."""
    lease_until: float = 0.0
    """The lease end this claim wrote (epoch seconds): what its holder may count on."""


class OrderStore:
    """Reads and conditional writes of order state; DynamoDB errors become StateUnavailable."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        concurrency: int = 4,
        fill_wait: float = 0.0,
        health: AwsHealth | None = None,
    ) -> None:
        self._db = dynamodb
        self._table = table
        self.health = health or AwsHealth()
        # Group commit: every conditional write of this process goes through one path, so
        # concurrent requests (API) or payments (worker) share TransactWriteItems calls; a
        # lone write on an idle path is sent at once as a single PutItem/UpdateItem.
        self._writes: GroupCommit[Write, dict[str, Any] | None] = GroupCommit(
            self._send_writes,
            max_items=WRITE_BATCH,
            key_of=_write_key,
            concurrency=concurrency,
            fill_wait=fill_wait,
        )

    def batched(self, fill_wait: float) -> OrderStore:
        """A store on the same client and table whose writes wait up to `fill_wait` s to
        share a call (see GroupCommit): for writes no client is waiting on."""
        return OrderStore(self._db, self._table, fill_wait=fill_wait, health=self.health)

    @property
    def write_calls(self) -> int:
        """DynamoDB calls that carried writes (each a batch of one or more)."""
        return self._writes.stats.calls

    async def _call(self, operation: str, *, table: bool = True, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB call; a refused condition stays a ClientError, a permanent error is
        StateRefused (logged and counted by the store's AwsHealth), all else is an outage."""
        if table:
            kwargs["TableName"] = self._table
        try:
            result: dict[str, Any] = await getattr(self._db, operation)(**kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                self.health.succeeded()  # DynamoDB answered: the table is usable
                raise
            if self.health.failed("dynamodb", operation, exc):
                raise StateRefused(f"{operation}: {exc}", error_code(exc) or "") from exc
            raise StateUnavailable(f"{operation}: {exc}") from exc
        except BotoCoreError as exc:
            raise StateUnavailable(f"{operation}: {exc}") from exc
        self.health.succeeded()
        return result

    async def get(self, order_id: str) -> OrderRecord | None:
        got = await self._call("get_item", Key=_order_key(order_id), ConsistentRead=True)
        return _record(got["Item"]) if "Item" in got else None

    async def _put_new(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """Put `item` unless its key exists: None when put, else the item found ({} if unsaid)."""
        return await self._write(
            {
                "Put": {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            }
        )

    async def bind_idempotency_key(
        self, key: str, order_id: str, fingerprint: str
    ) -> tuple[str, str]:
        """Bind `key` to `order_id` unless bound; return the (order_id, fingerprint) it holds."""
        item = {
            "pk": _s(f"idem#{key}"),
            "order_id": _s(order_id),
            "request_hash": _s(fingerprint),
            "expires_at": _n(int(time.time()) + RETENTION_SECONDS),
        }
        old = await self._put_new(item)
        if old is None:
            return order_id, fingerprint
        if not old:
            key_item = {"pk": _s(f"idem#{key}")}
            old = (await self._call("get_item", Key=key_item, ConsistentRead=True))["Item"]
        return old["order_id"]["S"], old["request_hash"]["S"]

    async def create_pending(self, order: OrderMessage, fingerprint: str) -> OrderRecord | None:
        """Record a new order as pending; if the order_id exists, return it untouched instead."""
        now = _now_iso()
        item = {
            **_order_key(order.order_id),
            "order_id": _s(order.order_id),
            "status": _s(Status.PENDING),
            "total": _n(order.total),
            "customer_id": _s(str(order.customer_id)),
            "request_hash": _s(fingerprint),
            "accepted_at": _s(now),
            "updated_at": _s(now),
            "payments": _n(0),
            "attempts": _n(0),
            "expires_at": _n(int(time.time()) + RETENTION_SECONDS),
        }
        old = await self._put_new(item)
        if old is None:
            return None
        return _record(old) if old else await self.get(order.order_id)

    async def _update(self, order_id: str, update: str, condition: str, **values: Any) -> bool:
        """One conditional update; False when the condition did not hold."""
        applied = await self._write(
            {
                "Update": {
                    "TableName": self._table,
                    "Key": _order_key(order_id),
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {f":{k}": v for k, v in values.items()},
                }
            }
        )
        return applied is None

    async def mark_accepted(self, order_id: str) -> bool:
        return await self._update(
            order_id,
            "SET #s = :accepted, updated_at = :now",
            "#s = :pending",
            accepted=_s(Status.ACCEPTED),
            pending=_s(Status.PENDING),
            now=_s(_now_iso()),
        )

    async def record_accepted(self, order: OrderMessage) -> None:
        """Record an order SNS has acknowledged; a worker that got there first keeps its state."""
        now = _now_iso()
        update = {
            "TableName": self._table,
            "Key": _order_key(order.order_id),
            "UpdateExpression": (
                "SET #s = if_not_exists(#s, :accepted), order_id = :order_id, "
                "#t = if_not_exists(#t, :total), customer_id = :customer, "
                "accepted_at = if_not_exists(accepted_at, :now), "
                "updated_at = if_not_exists(updated_at, :now), "
                "expires_at = if_not_exists(expires_at, :expires)"
            ),
            "ExpressionAttributeNames": {"#s": "status", "#t": "total"},
            "ExpressionAttributeValues": {
                ":accepted": _s(Status.ACCEPTED),
                ":order_id": _s(order.order_id),
                ":total": _n(order.total),
                ":customer": _s(str(order.customer_id)),
                ":now": _s(now),
                ":expires": _n(int(time.time()) + RETENTION_SECONDS),
            },
        }
        await self._write({"Update": update})

    async def forget_pending(self, order_id: str) -> None:
        """Remove an order whose publish failed, so nothing claims it was accepted."""
        # Already moved on, or unreachable: then it stays pending, which is never shown.
        with contextlib.suppress(StateUnavailable):
            await self._write(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": _order_key(order_id),
                        "ConditionExpression": "#s = :pending",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":pending": _s(Status.PENDING)},
                    }
                }
            )

    def _claim_update(
        self,
        order: OrderMessage,
        token: str,
        lease_seconds: float,
        claimant: str,
        now: float | None = None,
    ) -> Update:
        now = time.time() if now is None else now
        return {
            "TableName": self._table,
            "Key": _order_key(order.order_id),
            "UpdateExpression": (
                "SET #s = :paying, claim_token = :token, lease_until = :lease, "
                "claim_message = :claimant, "
                "updated_at = :now_iso, order_id = :order_id, "
                "#t = if_not_exists(#t, :total), "
                "accepted_at = if_not_exists(accepted_at, :now_iso), "
                "expires_at = if_not_exists(expires_at, :expires) "
                "REMOVE retryable_failure "
                "ADD attempts :one"
            ),
            # Unknown (the API's write was lost), not yet claimed, or its claimant stopped: the
            # lease ran out and its own message came back, or the lease ran out long ago.
            "ConditionExpression": (
                "attribute_not_exists(pk) OR #s IN (:pending, :accepted) "
                "OR (#s = :paying AND lease_until < :now AND claim_message = :claimant) "
                "OR (#s = :paying AND lease_until < :stale) "
                # Failed for a reason that may pass (processor unavailable, out of retries)
                # and moved back from the DLQ: paid now. A declined order stays failed.
                "OR (#s = :failed AND retryable_failure = :yes)"
            ),
            "ExpressionAttributeNames": {"#s": "status", "#t": "total"},
            "ExpressionAttributeValues": {
                ":paying": _s(Status.PAYING),
                ":pending": _s(Status.PENDING),
                ":accepted": _s(Status.ACCEPTED),
                ":token": _s(token),
                ":lease": _n(now + lease_seconds),
                ":now": _n(now),
                ":stale": _n(now - TAKEOVER_GRACE_SECONDS),
                ":claimant": _s(claimant),
                ":failed": _s(Status.FAILED),
                ":yes": {"BOOL": True},
                ":now_iso": _s(_now_iso()),
                ":order_id": _s(order.order_id),
                ":total": _n(order.total),
                ":expires": _n(int(now) + RETENTION_SECONDS),
                ":one": _n(1),
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _paid_update(self, order_id: str, token: str, payment_ms: float) -> Update:
        now = _now_iso()
        return {
            "TableName": self._table,
            "Key": _order_key(order_id),
            "UpdateExpression": (
                "SET #s = :paid, paid_at = :now, updated_at = :now, payment_ms = :ms, "
                "settled_by = :token "
                "REMOVE claim_token, lease_until, claim_message ADD payments :one"
            ),
            "ConditionExpression": "#s = :paying AND claim_token = :token",
            # A retry after a lost answer sees what its first attempt wrote (settled_by).
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":paid": _s(Status.PAID),
                ":now": _s(now),
                ":ms": _n(round(payment_ms, 3)),
                ":one": _n(1),
                ":paying": _s(Status.PAYING),
                ":token": _s(token),
            },
        }

    async def _write(self, write: Write) -> dict[str, Any] | None:
        """One conditional write; None when applied, else the item the condition saw ({})."""
        return await self._writes.submit(write)

    async def _send_writes(self, writes: list[Write]) -> list[dict[str, Any] | Exception | None]:
        """Writes in one call: a single request alone, several in one TransactWriteItems.

        A transaction is all or nothing, so when some conditions fail the others are sent
        again without them; every round settles at least one write. Each write is judged
        alone: its caller gets None (applied) or the item its condition saw.
        """
        if len(writes) == 1:
            return [await self._send_one(writes[0])]
        results: list[dict[str, Any] | Exception | None] = [None] * len(writes)
        todo = list(range(len(writes)))
        for round_ in range(len(writes) + 3):
            if not todo:
                break
            try:
                await self._call_transact([writes[i] for i in todo])
                return results
            except StateRefused:
                # One write DynamoDB will never take (a number out of range...) fails the
                # whole transaction: settle each alone, so it fails only its own caller.
                for i in todo:
                    results[i] = await self._send_alone(writes[i])
                return results
            except _Cancelled as cancelled:
                retry = []
                for i, reason in zip(todo, cancelled.reasons, strict=True):
                    if reason.get("Code") == "ConditionalCheckFailed":
                        results[i] = reason.get("Item") or {}
                    else:
                        retry.append(i)  # applied nothing; conflicts and throttles go again
                todo = retry
                if todo:
                    # Conflicts and throttling: go again after a jittered pause, not at once.
                    await asyncio.sleep(TRANSACT_BACKOFF.delay(round_))
        if todo:
            raise StateUnavailable("transaction kept being cancelled")
        return results

    async def _send_alone(self, write: Write) -> dict[str, Any] | Exception | None:
        try:
            return await self._send_one(write)
        except StateUnavailable as exc:
            return exc

    async def _send_one(self, write: Write) -> dict[str, Any] | None:
        [(kind, request)] = write.items()
        try:
            await self._call(_SINGLE[kind], table=False, **request)
        except ClientError as exc:
            return _old_item(exc) or {}
        return None

    async def _call_transact(self, writes: list[Write]) -> None:
        try:
            await self._call("transact_write_items", table=False, TransactItems=writes)
        except ClientError as exc:
            reasons: Any = exc.response.get("CancellationReasons", [])
            raise _Cancelled(list(reasons)) from None

    async def _write_all(self, updates: list[Update]) -> list[dict[str, Any] | None]:
        """Several updates at once: submitted together, so they share calls."""
        return list(await asyncio.gather(*(self._write({"Update": u}) for u in updates)))

    async def claim(self, order: OrderMessage, lease_seconds: float, claimant: str) -> Claim:
        """Take the right to pay `order` for `lease_seconds`; creates the order if unknown."""
        return (await self.claim_many([(order, claimant)], lease_seconds))[0]

    async def claim_many(
        self,
        wanted: list[tuple[OrderMessage, str]],
        lease_seconds: float,
        tokens: list[str] | None = None,
    ) -> list[Claim]:
        """Claim several (order, claimant) pairs in one call.

        A transaction may touch an item once, so an order_id repeated in the batch (a duplicate
        delivery) is claimed once; its twins are refused with what its own claim saw.
        `tokens`: one per pair, the same on every retry of one attempt to pay (the worker
        derives it from the receipt handle), so a retry after a lost answer recognizes the
        claim its first try wrote and wins it; random when not given.
        """
        orders = [order for order, _ in wanted]
        first: dict[str, int] = {}
        for i, order in enumerate(orders):
            first.setdefault(order.order_id, i)
        unique = sorted(first.values())
        tokens_of = {i: tokens[i] if tokens else uuid.uuid4().hex for i in unique}
        now = time.time()
        updates = [
            self._claim_update(orders[i], tokens_of[i], lease_seconds, wanted[i][1], now)
            for i in unique
        ]
        won: dict[int, Claim] = {}
        for i, old in zip(unique, await self._write_all(updates), strict=True):
            token = tokens_of[i]
            if _own_claim(old, token):
                # Ours already: count on the lease that attempt wrote, not this one's.
                assert old is not None
                lease_until = float(old.get("lease_until", {}).get("N", now))
                won[i] = Claim(True, token, None, lease_until)
            else:
                record = _record(old) if old else None
                won[i] = Claim(old is None, token, record, now + lease_seconds)
        claims = []
        for i, order in enumerate(orders):
            j = first[order.order_id]
            claims.append(won[j] if i == j else Claim(False, "", won[j].record))
        return claims

    async def mark_paid(self, order_id: str, token: str, payment_ms: float) -> bool:
        return (await self.mark_paid_many([(order_id, token, payment_ms)]))[0]

    async def mark_paid_many(self, paid: list[tuple[str, str, float]]) -> list[bool]:
        """Record payments; False where the claim was no longer held (it was taken over).

        True also where an earlier attempt of this very mark landed and its answer was lost."""
        updates = [self._paid_update(*p) for p in paid]
        olds = await self._write_all(updates)
        return [_settled_by(old, Status.PAID, p[1]) for old, p in zip(olds, paid, strict=True)]

    async def mark_failed(
        self, order_id: str, token: str, reason: str, *, retryable: bool = False
    ) -> bool:
        """Record a failed payment; `retryable`: a redrive from the DLQ may pay it again."""
        now = _now_iso()
        update: Update = {
            "TableName": self._table,
            "Key": _order_key(order_id),
            "UpdateExpression": (
                "SET #s = :failed, failed_at = :now, updated_at = :now, failure_reason = :reason, "
                "settled_by = :token, retryable_failure = :retryable "
                "REMOVE claim_token, lease_until, claim_message"
            ),
            "ConditionExpression": "#s = :paying AND claim_token = :token",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":failed": _s(Status.FAILED),
                ":now": _s(now),
                ":reason": _s(reason[:500]),
                ":paying": _s(Status.PAYING),
                ":token": _s(token),
                ":retryable": {"BOOL": retryable},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        old = await self._write({"Update": update})
        return _settled_by(old, Status.FAILED, token)

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
        update = "SET #s = :to, updated_at = :now REMOVE claim_token, lease_until, claim_message"
        values: dict[str, Any] = {
            "to": _s(to),
            "now": _s(_now_iso()),
            "paying": _s(Status.PAYING),
            "token": _s(token),
        }
        if reason:
            update = update.replace("REMOVE", ", last_error = :reason REMOVE")
            values["reason"] = _s(reason[:500])
        return await self._update(
            order_id, update, "#s = :paying AND claim_token = :token", **values
        )

    def _renew_update(self, order_id: str, token: str, until: float) -> Update:
        return {
            "TableName": self._table,
            "Key": _order_key(order_id),
            "UpdateExpression": "SET lease_until = :lease",
            "ConditionExpression": "#s = :paying AND claim_token = :token",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":lease": _n(until),
                ":paying": _s(Status.PAYING),
                ":token": _s(token),
            },
        }

    async def renew_many(self, claims: list[tuple[str, str]], lease_seconds: float) -> list[bool]:
        """Extend the leases of (order_id, token) claims; False where a claim is no longer held."""
        return await self.renew_until(claims, time.time() + lease_seconds)

    async def renew_until(self, claims: list[tuple[str, str]], until: float) -> list[bool]:
        """Set the leases of (order_id, token) claims to end at `until` (epoch seconds)."""
        updates = [self._renew_update(order_id, token, until) for order_id, token in claims]
        return [old is None for old in await self._write_all(updates)]

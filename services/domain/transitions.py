"""The order's state transitions, each one conditional write built in one style.

Every state change is a conditional write, so two processes racing on one order (a client's
retry, a redelivered SQS message, a worker taking over from a dead one) can never both win:

    pending ──publish acked──▶ accepted ──claim──▶ paying ──▶ paid
       (API)                      ▲                  │ ╲
                                  └──transient error─┘  ╲──declined / out of retries──▶ failed

A claim is a lease (`lease_until`) held by one claimant (`claim_message`: the SQS message id
the worker is paying from, or an id derived from the request for /orders/sync). A live
claimant renews its lease until its paid-mark lands. A worker killed mid-payment stops keeping
its message invisible, so the *same* message comes back: its next receiver may take over once
the lease has run out. Anyone else (a duplicate copy of the message, a client's retry of
/orders/sync) must wait TAKEOVER_GRACE_SECONDS past the lease: after a long DynamoDB outage,
the lease of a claimant that already charged has run out while it is still alive and retrying
its paid-mark, and only the claimant's own message proves it stopped.

Each builder returns one `Write` (a TransactWriteItems entry, sent alone or in a shared
transaction by services/adapters/transactions.py); `update()` is the one way an update is
spelled: clauses as lists, values by name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .messages import OrderMessage
from .records import RETENTION_SECONDS, Item, Status, key_key, n, now_iso, order_key, s

# How long past its lease a claim stays closed to anyone but its own message (see above).
TAKEOVER_GRACE_SECONDS = 600.0

Write = dict[str, dict[str, Any]]
"""One write as a TransactWriteItems entry: {"Put" | "Update" | "Delete": request}."""

_STATUS = {"#s": "status"}
# The condition every write by a claim's holder carries: the claim is still its own.
_HELD = "#s = :paying AND claim_token = :token"
_RELEASE_CLAIM = ("claim_token", "lease_until", "claim_message")


def update(
    table: str,
    key: Item,
    *,
    set_: Sequence[str],
    condition: str | None = None,
    remove: Sequence[str] = (),
    add: Sequence[str] = (),
    values: Mapping[str, Any],
    names: Mapping[str, str] = _STATUS,
    return_old: bool = False,
) -> Write:
    """One UpdateItem: `values` by name (":name" in the expressions); with `return_old`, a
    refused condition answers the item it saw (what a retry after a lost answer needs)."""
    expression = "SET " + ", ".join(set_)
    if remove:
        expression += " REMOVE " + ", ".join(remove)
    if add:
        expression += " ADD " + ", ".join(add)
    request: dict[str, Any] = {
        "TableName": table,
        "Key": key,
        "UpdateExpression": expression,
        "ExpressionAttributeNames": dict(names),
        "ExpressionAttributeValues": {f":{k}": v for k, v in values.items()},
    }
    if condition is not None:
        request["ConditionExpression"] = condition
    if return_old:
        request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return {"Update": request}


def put_new(table: str, item: Item) -> Write:
    """Put `item` unless its key exists; a refusal answers the item found."""
    return {
        "Put": {
            "TableName": table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def bind_key(table: str, key: str, order_id: str, fingerprint: str) -> Write:
    """An idempotency key bound to its order and the fingerprint of its request."""
    return put_new(
        table,
        {
            **key_key(key),
            "order_id": s(order_id),
            "request_hash": s(fingerprint),
            "expires_at": n(int(time.time()) + RETENTION_SECONDS),
        },
    )


def create_pending(table: str, order: OrderMessage, fingerprint: str) -> Write:
    """A new order as pending (a keyed order, before its publish)."""
    now = now_iso()
    return put_new(
        table,
        {
            **order_key(order.order_id),
            "order_id": s(order.order_id),
            "status": s(Status.PENDING),
            "total": n(order.total),
            "customer_id": s(str(order.customer_id)),
            "request_hash": s(fingerprint),
            "accepted_at": s(now),
            "updated_at": s(now),
            "payments": n(0),
            "attempts": n(0),
            "expires_at": n(int(time.time()) + RETENTION_SECONDS),
        },
    )


def forget_pending(table: str, order_id: str) -> Write:
    """Remove an order whose publish failed, unless it moved on."""
    return {
        "Delete": {
            "TableName": table,
            "Key": order_key(order_id),
            "ConditionExpression": "#s = :pending",
            "ExpressionAttributeNames": dict(_STATUS),
            "ExpressionAttributeValues": {":pending": s(Status.PENDING)},
        }
    }


def mark_accepted(table: str, order_id: str) -> Write:
    """pending -> accepted, once SNS acknowledged a keyed order."""
    return update(
        table,
        order_key(order_id),
        set_=["#s = :accepted", "updated_at = :now"],
        condition="#s = :pending",
        values={
            "accepted": s(Status.ACCEPTED),
            "pending": s(Status.PENDING),
            "now": s(now_iso()),
        },
    )


def record_accepted(table: str, order: OrderMessage) -> Write:
    """An order SNS acknowledged (unkeyed: no pending item); a worker that got there first
    keeps its state."""
    now = now_iso()
    return update(
        table,
        order_key(order.order_id),
        set_=[
            "#s = if_not_exists(#s, :accepted)",
            "order_id = :order_id",
            "#t = if_not_exists(#t, :total)",
            "customer_id = :customer",
            "accepted_at = if_not_exists(accepted_at, :now)",
            "updated_at = if_not_exists(updated_at, :now)",
            "expires_at = if_not_exists(expires_at, :expires)",
        ],
        names={**_STATUS, "#t": "total"},
        values={
            "accepted": s(Status.ACCEPTED),
            "order_id": s(order.order_id),
            "total": n(order.total),
            "customer": s(str(order.customer_id)),
            "now": s(now),
            "expires": n(int(time.time()) + RETENTION_SECONDS),
        },
    )


# Unknown (the API's write was lost), not yet claimed, or its claimant stopped: the lease ran
# out and its own message came back, or the lease ran out long ago.
_CLAIMABLE = (
    "attribute_not_exists(pk) OR #s IN (:pending, :accepted) "
    "OR (#s = :paying AND lease_until < :now AND claim_message = :claimant) "
    "OR (#s = :paying AND lease_until < :stale) "
    # Failed for a reason that may pass (processor unavailable, out of retries) and moved back
    # from the DLQ: paid now. A declined order stays failed.
    "OR (#s = :failed AND retryable_failure = :yes)"
)


def claim(
    table: str,
    order: OrderMessage,
    token: str,
    lease_until: float,
    claimant: str,
    *,
    now: float,
    fingerprint: str | None = None,
) -> Write:
    """Take the right to pay `order` until `lease_until`; creates the order if unknown.

    `fingerprint`: the request's (when the claimant knows it), written by a claim that
    creates the item, so a client's honest retry is not told its key was reused."""
    set_ = [
        "#s = :paying",
        "claim_token = :token",
        "lease_until = :lease",
        "claim_message = :claimant",
        "updated_at = :now_iso",
        "order_id = :order_id",
        "#t = if_not_exists(#t, :total)",
        "accepted_at = if_not_exists(accepted_at, :now_iso)",
        "expires_at = if_not_exists(expires_at, :expires)",
    ]
    values: dict[str, Any] = {
        "paying": s(Status.PAYING),
        "pending": s(Status.PENDING),
        "accepted": s(Status.ACCEPTED),
        "token": s(token),
        "lease": n(lease_until),
        "now": n(now),
        "stale": n(now - TAKEOVER_GRACE_SECONDS),
        "claimant": s(claimant),
        "failed": s(Status.FAILED),
        "yes": {"BOOL": True},
        "now_iso": s(now_iso()),
        "order_id": s(order.order_id),
        "total": n(order.total),
        "expires": n(int(now) + RETENTION_SECONDS),
        "one": n(1),
    }
    if fingerprint:
        set_.append("request_hash = if_not_exists(request_hash, :hash)")
        values["hash"] = s(fingerprint)
    return update(
        table,
        order_key(order.order_id),
        set_=set_,
        remove=["retryable_failure"],
        add=["attempts :one"],
        condition=_CLAIMABLE,
        names={**_STATUS, "#t": "total"},
        values=values,
        return_old=True,
    )


def mark_paid(table: str, order_id: str, token: str, payment_ms: float) -> Write:
    """paying -> paid, by the claim's holder."""
    now = now_iso()
    return update(
        table,
        order_key(order_id),
        set_=[
            "#s = :paid",
            "paid_at = :now",
            "updated_at = :now",
            "payment_ms = :ms",
            "settled_by = :token",
        ],
        remove=_RELEASE_CLAIM,
        add=["payments :one"],
        condition=_HELD,
        values={
            "paid": s(Status.PAID),
            "now": s(now),
            "ms": n(round(payment_ms, 3)),
            "one": n(1),
            "paying": s(Status.PAYING),
            "token": s(token),
        },
        # A retry after a lost answer sees what its first attempt wrote (settled_by).
        return_old=True,
    )


def mark_failed(table: str, order_id: str, token: str, reason: str, *, retryable: bool) -> Write:
    """paying -> failed; `retryable`: a redrive from the DLQ may pay it again."""
    now = now_iso()
    return update(
        table,
        order_key(order_id),
        set_=[
            "#s = :failed",
            "failed_at = :now",
            "updated_at = :now",
            "failure_reason = :reason",
            "settled_by = :token",
            "retryable_failure = :retryable",
        ],
        remove=_RELEASE_CLAIM,
        condition=_HELD,
        values={
            "failed": s(Status.FAILED),
            "now": s(now),
            "reason": s(reason[:500]),
            "paying": s(Status.PAYING),
            "token": s(token),
            "retryable": {"BOOL": retryable},
        },
        return_old=True,
    )


def release(table: str, order_id: str, token: str, reason: str | None, to: Status) -> Write:
    """paying -> `to` (a claim given back), noting why when said."""
    set_ = ["#s = :to", "updated_at = :now"]
    values: dict[str, Any] = {
        "to": s(to),
        "now": s(now_iso()),
        "paying": s(Status.PAYING),
        "token": s(token),
    }
    if reason:
        set_.append("last_error = :reason")
        values["reason"] = s(reason[:500])
    return update(
        table,
        order_key(order_id),
        set_=set_,
        remove=_RELEASE_CLAIM,
        condition=_HELD,
        values=values,
    )


def renew(table: str, order_id: str, token: str, until: float) -> Write:
    """A held claim's lease moved to end at `until` (epoch seconds)."""
    return update(
        table,
        order_key(order_id),
        set_=["lease_until = :lease"],
        condition=_HELD,
        values={"lease": n(until), "paying": s(Status.PAYING), "token": s(token)},
    )


def settled_by(old: Item | None, status: Status, token: str) -> bool:
    """A settling write applied: now, or by an earlier attempt whose answer was lost."""
    if old is None:
        return True
    return bool(
        old.get("status", {}).get("S") == status and old.get("settled_by", {}).get("S") == token
    )


def own_claim(old: Item | None, token: str) -> bool:
    """The claim found is the one this very claimant wrote (an attempt whose answer was lost)."""
    return bool(
        old
        and old.get("status", {}).get("S") == Status.PAYING
        and old.get("claim_token", {}).get("S") == token
    )

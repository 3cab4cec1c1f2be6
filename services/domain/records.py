"""The order item and its codec: what one DynamoDB item of the orders table holds.

Two kinds of item share the table: one per order (`order#<id>`, read back as an OrderRecord)
and one per idempotency key (`idem#<key>`). The transitions that write them are in
services/domain/transitions.py; the store that sends them is services/domain/orders.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from .messages import OrderMessage, OrderRequest

# Orders and idempotency keys expire from the table after this long (DynamoDB TTL).
RETENTION_SECONDS = 7 * 24 * 3600

Item = dict[str, Any]
"""One DynamoDB item in its wire shape: {"name": {"S" | "N" | "BOOL": value}}."""


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


# Only POST /orders/async publishes: a queued order was asked for there.
ASYNC_PATH = "/orders/async"


def queued_fingerprint(order: OrderMessage) -> str:
    """The fingerprint of the /orders/async request that names this order's id: what a
    client that chose its order_id sent (the message carries all of it). A claim that creates
    the item writes it, so that client's honest retry still matches."""
    request = OrderRequest(
        order_id=order.order_id, customer_id=order.customer_id, items=order.items
    )
    return request_hash(ASYNC_PATH, request)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def s(value: str) -> dict[str, str]:
    """A string attribute value."""
    return {"S": value}


def n(value: float) -> dict[str, str]:
    """A number attribute value (DynamoDB carries numbers as text)."""
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def order_key(order_id: str) -> Item:
    return {"pk": s(f"order#{order_id}")}


def key_key(key: str) -> Item:
    """The item of an idempotency key."""
    return {"pk": s(f"idem#{key}")}


def record_of(item: Item) -> OrderRecord:
    """An order item as read back (GetItem, or the ALL_OLD of a refused condition)."""

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

"""Every expression the services send takes the patches' fast paths, not moto's fallback.

The side-by-side tests prove the answers equal stock moto's whichever path ran; this pins
down that the services' own expressions are the ones compiled, so a change to an
expression in `services/domain/transitions.py` that falls off the fast path is noticed here.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from localaws import dynamodb_expressions, dynamodb_update
from services.domain.messages import OrderItem, OrderMessage
from services.domain.orders import OrderStore


class _Capture:
    """A DynamoDB client that keeps every request and answers as if every write applied."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __getattr__(self, operation: str) -> Any:
        async def call(**kwargs: Any) -> dict[str, Any]:
            if operation == "transact_write_items":
                self.requests.extend(next(iter(i.values())) for i in kwargs["TransactItems"])
            else:
                self.requests.append(kwargs)
            return {}

        return call


async def _requests() -> list[dict[str, Any]]:
    db = _Capture()
    store = OrderStore(db, "orders", concurrency=1)  # type: ignore[arg-type]
    orders = [
        OrderMessage(
            order_id=f"00000000-0000-0000-0000-00000000000{n}",
            customer_id=1,
            items=(OrderItem(product_id="p", quantity=1, price=1.5),),
            total=1.5,
            accepted_at=0.0,
        )
        for n in range(3)
    ]
    await store.create_pending(orders[0], "h")
    await store.bind_idempotency_key("k", orders[0].order_id, "h")
    await store.mark_accepted(orders[0].order_id)
    await store.record_accepted(orders[0])
    await store.forget_pending(orders[0].order_id)
    await store.claim_many([(o, "m") for o in orders], 30)
    await store.claim(orders[0], 30, "m")
    await store.renew_many([(o.order_id, "t") for o in orders], 30)
    await store.mark_paid_many([(o.order_id, "t", 1.0) for o in orders])
    await store.mark_failed(orders[0].order_id, "t", "declined")
    await store.release(orders[0].order_id, "t")
    await store.release(orders[0].order_id, "t", "timeout")
    return db.requests


async def test_services_expressions_compile() -> None:
    table = types.SimpleNamespace(table_key_attrs=["pk"])
    requests = await _requests()
    updates = [r for r in requests if "UpdateExpression" in r]
    conditions = [r for r in requests if "ConditionExpression" in r]
    assert len(updates) >= 7 and len(conditions) >= 9
    for r in updates:
        names = r.get("ExpressionAttributeNames", {})
        assert dynamodb_update._plan(r["UpdateExpression"], names, table) is not None, r
    for r in conditions:
        names = r.get("ExpressionAttributeNames")
        template = dynamodb_expressions._template(r["ConditionExpression"], names)
        assert template is not None, r["ConditionExpression"]
        assert template.bind(r.get("ExpressionAttributeValues", {})) is not None


@pytest.mark.parametrize(
    "expression",
    [
        "SET a.b = :v",
        "SET a = a + :v",
        "SET a = list_append(a, :v)",
        "DELETE s :v",
        "SET a[0] = :v",
        "SET status = :v",
    ],
)
def test_other_forms_stay_with_moto(expression: str) -> None:
    table = types.SimpleNamespace(table_key_attrs=["pk"])
    assert dynamodb_update._plan(expression, {}, table) is None

"""The patched launcher answers every DynamoDB call the services make exactly as stock moto.

Each scenario runs against both servers at once (real subprocesses over HTTP) and records
every answer, errors with their `CancellationReasons` and `Item`; the transcripts must match
step for step, and each ends with a scan of the whole table, so a write that answered alike
but stored something else still fails. The first scenario drives the services' own
`OrderStore` (so its exact expressions and options) through a recording client; the others
cover every value type, the expression forms the patches compile and those they leave to
moto, and the errors a bad request gets.
"""

from __future__ import annotations

import asyncio
import types
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.domain import orders, transitions
from services.domain.messages import OrderItem, OrderMessage
from services.domain.orders import OrderStore

from .clients import Clients
from .transcript import Transcript

Scenario = Callable[[Clients, Transcript, str], Awaitable[None]]
NOW = 1_800_000_000.25


class _Recording:
    """A DynamoDB client that records every answer (and error) in a transcript."""

    def __init__(self, db: Any, t: Transcript) -> None:
        self._db, self._t = db, t

    def __getattr__(self, operation: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._db, operation)

        async def call(**kwargs: Any) -> Any:
            label = f"{operation} {kwargs.get('UpdateExpression', '')}"
            return await self._t.step(label.strip(), method(**kwargs), reraise=True)

        return call


async def _table(c: Clients, name: str, *, gsi: bool = False) -> None:
    spec: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if gsi:
        spec["AttributeDefinitions"].append({"AttributeName": "gk", "AttributeType": "S"})
        spec["GlobalSecondaryIndexes"] = [
            {
                "IndexName": "by-gk",
                "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ]
    await c.dynamodb.create_table(**spec)


async def _scan(c: Clients, t: Transcript, name: str) -> list[dict[str, Any]]:
    got = await c.dynamodb.scan(TableName=name, ConsistentRead=True)
    items = sorted(got["Items"], key=lambda i: str(i["pk"]))
    t.note("table at end", items)
    return items


def _order(n: int, total: float = 19.98) -> OrderMessage:
    # The same ids on both servers, so both scans list the items in the same order.
    return OrderMessage(
        order_id=str(uuid.UUID(int=n)),
        customer_id=7,
        items=(OrderItem(product_id="sku-1", quantity=2, price=total / 2),),
        total=total,
        accepted_at=NOW,
    )


async def order_store(c: Clients, t: Transcript, name: str) -> None:
    await _table(c, name)
    # One write in flight at a time: both servers see the same calls, in the same order.
    store = OrderStore(_Recording(c.dynamodb, t), name, concurrency=1)  # type: ignore[arg-type]
    a, b, d, e, f = (_order(n) for n in range(1, 6))
    pending = _order(6, total=0.0)
    assert await store.create_pending(a, "hash-a") is None
    again = await store.create_pending(a, "hash-a")  # refused: ALL_OLD brings the item back
    assert again is not None and again.status == "pending"
    assert await store.bind_idempotency_key("key-1", a.order_id, "hash-a") == (
        a.order_id,
        "hash-a",
    )
    assert await store.bind_idempotency_key("key-1", b.order_id, "other") == (
        a.order_id,
        "hash-a",
    )
    assert await store.mark_accepted(a.order_id)
    assert not await store.mark_accepted(a.order_id)  # no longer pending
    await store.record_accepted(b)  # a new item, every if_not_exists taking its value
    await store.record_accepted(a)  # an existing one, every if_not_exists keeping its own
    await store.create_pending(pending, "hash-p")
    await store.forget_pending(pending.order_id)  # deleted
    await store.forget_pending(a.order_id)  # refused (accepted), quietly
    claims = await store.claim_many([(o, f"m-{o.order_id}") for o in (a, b, d, a)], 30)
    assert [c.won for c in claims] == [True, True, True, False]
    # a is being paid: refused with the item (ALL_OLD), e alone is sent again and wins.
    again_claims = await store.claim_many([(a, "m-a"), (e, "m-e")], 30)
    assert [c.won for c in again_claims] == [False, True]
    assert again_claims[0].record is not None and again_claims[0].record.status == "paying"
    paid = await store.mark_paid_many(
        [(a.order_id, claims[0].token, 3001.5), (b.order_id, "not-the-token", 1.0)]
    )
    assert paid == [True, False]
    assert await store.mark_paid(b.order_id, claims[1].token, 2999.999)
    assert await store.mark_failed(d.order_id, claims[2].token, "declined")
    assert await store.release(e.order_id, again_claims[1].token, "processor timeout")
    taken = await store.claim(e, -1, "m-e")  # its lease has already run out
    assert taken.won
    assert (await store.claim(e, 30, "m-e")).won  # its own message back: taken over
    assert not (await store.claim(e, 30, "m-other")).won  # another message: refused
    assert await store.renew_many([(e.order_id, "wrong")], 30) == [False]
    assert (await store.claim(f, 30, "m-f")).won
    assert not (await store.claim(a, 30, "m-a")).won  # paid
    for o in (a, b, d, e, f, pending):
        record = await store.get(o.order_id)
        t.note(f"get {o.order_id}", record.public() if record else None)
    items = await _scan(c, t, name)
    paid_a = next(i for i in items if i["pk"]["S"] == f"order#{a.order_id}")
    assert paid_a["status"] == {"S": "paid"} and paid_a["payments"] == {"N": "1"}
    assert "claim_token" not in paid_a and paid_a["attempts"] == {"N": "1"}


VALUES: dict[str, Any] = {
    "s": {"S": "héllo ✓"},
    "empty": {"S": ""},
    "n_int": {"N": "42"},
    "n_float": {"N": "19.98"},
    "n_tiny": {"N": "1E-130"},
    "n_big": {"N": "18446744073709551615"},
    "n_neg": {"N": "-0.5"},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "null": {"NULL": True},
    "list": {"L": [{"S": "a"}, {"N": "1"}, {"M": {"x": {"BOOL": True}}}]},
    "map": {"M": {"k": {"S": "v"}, "n": {"N": "2.5"}, "l": {"L": []}}},
    "ss": {"SS": ["b", "a"]},
    "ns": {"NS": ["1", "2.5"]},
    "bin": {"B": b"\x00\x01binary"},
    "bs": {"BS": [b"\x01", b"\x02"]},
}


async def value_types(c: Clients, t: Transcript, name: str) -> None:
    await _table(c, name)
    db = c.dynamodb
    key = {"pk": {"S": "all"}}
    await t.step("put all types", db.put_item(TableName=name, Item={**key, **VALUES}))
    got = await t.step("get", db.get_item(TableName=name, Key=key, ConsistentRead=True))
    assert got["Item"]["bin"] == {"B": b"\x00\x01binary"}
    await t.step(
        "get projected",
        db.get_item(
            TableName=name,
            Key=key,
            ProjectionExpression="#s, n_float, map.k, #l[1]",
            ExpressionAttributeNames={"#s": "s", "#l": "list"},
        ),
    )
    # Every type written again through UpdateItem, one placeholder each.
    names = sorted(VALUES)
    await t.step(
        "set every type",
        db.update_item(
            TableName=name,
            Key={"pk": {"S": "set"}},
            UpdateExpression="SET " + ", ".join(f"{n}_2 = :{n}" for n in names),
            ExpressionAttributeValues={f":{n}": VALUES[n] for n in names},
            ReturnValues="ALL_NEW",
        ),
    )
    for rv in ("NONE", "ALL_OLD", "UPDATED_OLD", "UPDATED_NEW", "ALL_NEW"):
        await t.step(
            f"add and set, {rv}",
            db.update_item(
                TableName=name,
                Key=key,
                UpdateExpression="SET s = :v, #n = if_not_exists(#n, :z) ADD n_float :d, fresh :d",
                ExpressionAttributeNames={"#n": "n_int"},
                ExpressionAttributeValues={":v": {"S": rv}, ":z": {"N": "0"}, ":d": {"N": "0.01"}},
                ReturnValues=rv,
            ),
        )
    await t.step(
        "if_not_exists of another attribute, one value twice, remove present and absent",
        db.update_item(
            TableName=name,
            Key=key,
            UpdateExpression="SET copy = if_not_exists(map, :v), other = if_not_exists(nope, :v), "
            "again = :v REMOVE yes, never_there, #b",
            ExpressionAttributeNames={"#b": "bin"},
            ExpressionAttributeValues={":v": {"S": "dflt"}},
            ReturnValues="UPDATED_NEW",
        ),
    )
    # Forms moto keeps for itself: set ADD and DELETE, list_append, nested paths, arithmetic.
    await t.step(
        "left to moto",
        db.update_item(
            TableName=name,
            Key=key,
            UpdateExpression="SET #l = list_append(#l, :more), map.k = :v, n_neg = n_neg + :one "
            "ADD ss :moress DELETE ns :gone",
            ExpressionAttributeNames={"#l": "list"},
            ExpressionAttributeValues={
                ":more": {"L": [{"S": "z"}]},
                ":v": {"S": "nested"},
                ":one": {"N": "1"},
                ":moress": {"SS": ["c"]},
                ":gone": {"NS": ["1"]},
            },
            ReturnValues="ALL_NEW",
        ),
    )
    await t.step("delete, ALL_OLD", db.delete_item(TableName=name, Key=key, ReturnValues="ALL_OLD"))
    await t.step("delete absent", db.delete_item(TableName=name, Key=key, ReturnValues="ALL_OLD"))
    await _scan(c, t, name)


async def conditions(c: Clients, t: Transcript, name: str) -> None:
    await _table(c, name)
    db = c.dynamodb
    key = {"pk": {"S": "c"}}
    item = {**key, "status": {"S": "paying"}, "lease": {"N": "10.5"}, "tags": {"SS": ["x"]}}
    await db.put_item(TableName=name, Item=item)
    names = {"#s": "status"}
    for label, condition, values in (
        ("in", "#s IN (:a, :b, :c)", {":a": "pending", ":b": "paying", ":c": "paid"}),
        ("not in", "#s IN (:a, :b)", {":a": "pending", ":b": "accepted"}),
        (
            "or and parens",
            "attribute_not_exists(pk) OR (#s = :a AND lease < :b)",
            {":a": "paying", ":b": "11"},
        ),
        (
            "lease not out",
            "attribute_not_exists(pk) OR (#s = :a AND lease < :b)",
            {":a": "paying", ":b": "9"},
        ),
        ("not", "NOT #s = :a", {":a": "paid"}),
        (
            "functions",
            "begins_with(#s, :a) AND contains(tags, :b) AND size(#s) > :c",
            {":a": "pay", ":b": "x", ":c": "3"},
        ),
        ("between", "lease BETWEEN :a AND :b", {":a": "10", ":b": "11"}),
        ("ne", "#s <> :a", {":a": "paying"}),
    ):
        typed = {k: {"N": v} if v[0].isdigit() else {"S": v} for k, v in values.items()}
        for rv in ("ALL_OLD", "NONE"):
            await t.step(
                f"update if {label}, {rv}",
                db.update_item(
                    TableName=name,
                    Key=key,
                    UpdateExpression="ADD n :one",
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={**typed, ":one": {"N": "1"}},
                    ReturnValuesOnConditionCheckFailure=rv,
                ),
            )
            await t.step(
                f"delete if {label}, {rv}",
                db.delete_item(
                    TableName=name,
                    Key={"pk": {"S": "absent"}},
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=typed,
                    ReturnValuesOnConditionCheckFailure=rv,
                ),
            )
    for rv in ("ALL_OLD", "NONE"):
        await t.step(
            f"put if new, {rv}",
            db.put_item(
                TableName=name,
                Item={**key, "x": {"S": "y"}},
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure=rv,
            ),
        )
        await t.step(
            f"update absent item, {rv}",
            db.update_item(
                TableName=name,
                Key={"pk": {"S": "nobody"}},
                UpdateExpression="SET #s = :a",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":a": {"S": "x"}},
                ReturnValuesOnConditionCheckFailure=rv,
            ),
        )
    await _scan(c, t, name)


def _update(name: str, expression: str, **extra: Any) -> Any:
    return {"TableName": name, "Key": {"pk": {"S": "e"}}, "UpdateExpression": expression, **extra}


async def errors(c: Clients, t: Transcript, name: str) -> None:
    await _table(c, name, gsi=True)
    db = c.dynamodb
    await db.put_item(TableName=name, Item={"pk": {"S": "e"}, "word": {"S": "w"}, "n": {"N": "1"}})
    v = {":v": {"S": "x"}}
    for label, request in (
        ("syntax", _update(name, "SET = :v", ExpressionAttributeValues=v)),
        ("empty", _update(name, "  ", ExpressionAttributeValues=v)),
        ("name undefined", _update(name, "SET #u = :v", ExpressionAttributeValues=v)),
        ("value undefined", _update(name, "SET a = :missing", ExpressionAttributeValues=v)),
        ("no values at all", _update(name, "SET a = :v")),
        ("empty values", _update(name, "SET a = :v", ExpressionAttributeValues={})),
        (
            "name unused",
            _update(
                name,
                "SET a = :v",
                ExpressionAttributeNames={"#x": "x"},
                ExpressionAttributeValues=v,
            ),
        ),
        (
            "value unused",
            _update(name, "SET a = :v", ExpressionAttributeValues={**v, ":w": v[":v"]}),
        ),
        ("reserved word", _update(name, "SET status = :v", ExpressionAttributeValues=v)),
        ("hash key", _update(name, "SET pk = :v", ExpressionAttributeValues=v)),
        (
            "hash key by name",
            _update(
                name,
                "SET #p = :v",
                ExpressionAttributeNames={"#p": "pk"},
                ExpressionAttributeValues=v,
            ),
        ),
        (
            "hash key in if_not_exists",
            _update(name, "SET a = if_not_exists(pk, :v)", ExpressionAttributeValues=v),
        ),
        ("same path twice", _update(name, "SET a = :v, a = :v", ExpressionAttributeValues=v)),
        ("two SET clauses", _update(name, "SET a = :v SET b = :v", ExpressionAttributeValues=v)),
        (
            "index key empty",
            _update(name, "SET gk = :e", ExpressionAttributeValues={":e": {"S": ""}}),
        ),
        (
            "index key wrong type",
            _update(name, "SET gk = :n", ExpressionAttributeValues={":n": {"N": "1"}}),
        ),
        # SET runs, then ADD fails: the item keeps the SET, on both servers alike.
        (
            "add to a string",
            _update(
                name,
                "SET a = :v ADD word :one",
                ExpressionAttributeValues={**v, ":one": {"N": "1"}},
            ),
        ),
        ("add a string", _update(name, "SET b = :v ADD n :v", ExpressionAttributeValues=v)),
        (
            "too large",
            _update(
                name, "SET big = :big", ExpressionAttributeValues={":big": {"S": "x" * 410_000}}
            ),
        ),
        (
            "bad condition",
            _update(
                name, "SET a = :v", ConditionExpression="a = = :v", ExpressionAttributeValues=v
            ),
        ),
        (
            "condition value undefined",
            _update(
                name, "SET a = :v", ConditionExpression="a = :nope", ExpressionAttributeValues=v
            ),
        ),
        (
            "missing table",
            {**_update(name, "SET a = :v", ExpressionAttributeValues=v), "TableName": f"{name}-no"},
        ),
        (
            "wrong key",
            {**_update(name, "SET a = :v", ExpressionAttributeValues=v), "Key": {"id": {"S": "e"}}},
        ),
    ):
        await t.step(label, db.update_item(**request))
    # moto's 400 KB check counts what the item holds before each write: replacing a value
    # and then adding another must be judged on the sizes at each step.
    big = {f":{n}": {"S": n * 150_000} for n in "xyz"}
    for label, expression in (
        ("one big value", "SET a = :x"),
        ("replace it, then add one: fits", "SET a = :y, b = :z"),
        ("a third one: too large", "SET c = :x"),
        ("remove one, then add: fits", "REMOVE a SET c = :x"),
    ):
        names = [p for p in big if p in expression]
        await t.step(
            label,
            db.update_item(
                **_update(name, expression),
                ExpressionAttributeValues={p: big[p] for p in names},
                ReturnValues="UPDATED_NEW",
            ),
        )
        got = await db.get_item(TableName=name, Key={"pk": {"S": "e"}}, ConsistentRead=True)
        t.note(f"{label}: sizes", {k: len(next(iter(v.values()))) for k, v in got["Item"].items()})
    await t.step(
        "put with unused name",
        db.put_item(
            TableName=name,
            Item={"pk": {"S": "p"}},
            ConditionExpression="attribute_not_exists(pk)",
            ExpressionAttributeNames={"#x": "x"},
        ),
    )
    await t.step(
        "delete with bad condition",
        db.delete_item(
            TableName=name, Key={"pk": {"S": "e"}}, ConditionExpression="attribute_exists("
        ),
    )
    await _scan(c, t, name)


def _tx_update(name: str, key: str, condition: str, **values: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": name,
            "Key": {"pk": {"S": key}},
            "UpdateExpression": "SET #s = :to, updated = :to ADD attempts :one REMOVE token",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                **{f":{k}": {"S": v} for k, v in values.items()},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


async def transactions(c: Clients, t: Transcript, name: str) -> None:
    await _table(c, name)
    db = c.dynamodb
    for k, status in (("a", "paid"), ("b", "accepted"), ("c", "accepted")):
        item = {"pk": {"S": k}, "status": {"S": status}, "token": {"S": "t"}}
        await db.put_item(TableName=name, Item=item)
    ok = "attribute_not_exists(pk) OR #s IN (:from, :alt)"
    put = {
        "Put": {
            "TableName": name,
            "Item": {"pk": {"S": "p"}, "n": {"N": "1.5"}, "l": {"L": [{"NULL": True}]}},
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    delete = {
        "Delete": {
            "TableName": name,
            "Key": {"pk": {"S": "c"}},
            "ConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s": {"S": "accepted"}},
        }
    }
    check = {
        "ConditionCheck": {
            "TableName": name,
            "Key": {"pk": {"S": "a"}},
            "ConditionExpression": "#s = :s",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s": {"S": "paid"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    steps: list[tuple[str, list[dict[str, Any]]]] = [
        # a is paid: cancelled with a's item; b before it and new before and after roll back.
        (
            "one refused",
            [
                _tx_update(name, "b", ok, to="paying", **{"from": "accepted", "alt": "pending"}),
                _tx_update(name, "new1", ok, to="paying", **{"from": "accepted", "alt": "pending"}),
                _tx_update(name, "a", ok, to="paying", **{"from": "accepted", "alt": "pending"}),
                _tx_update(name, "new2", ok, to="paying", **{"from": "accepted", "alt": "pending"}),
            ],
        ),
        (
            "all kinds",
            [
                _tx_update(name, "b", ok, to="paying", **{"from": "accepted", "alt": "pending"}),
                put,
                delete,
                check,
            ],
        ),
        ("put again refused", [put]),
        ("same item twice", [check, {**check}]),
        (
            "value undefined",
            [_tx_update(name, "b", "#s = :nope", to="x")],
        ),
        ("missing table", [{**put, "Put": {**put["Put"], "TableName": f"{name}-no"}}]),
    ]
    for label, items in steps:
        await t.step(label, db.transact_write_items(TransactItems=items))
        await _scan(c, t, name)


async def batches(c: Clients, t: Transcript, name: str) -> None:
    await _table(c, name)
    db = c.dynamodb
    puts = [
        {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "v": {"N": str(i)}, "m": VALUES["map"]}}}
        for i in range(12)
    ]
    await t.step("write", db.batch_write_item(RequestItems={name: puts}))
    mixed = [
        {"DeleteRequest": {"Key": {"pk": {"S": "k0"}}}},
        {"PutRequest": {"Item": {"pk": {"S": "k1"}, "v": {"S": "over"}}}},
    ]
    await t.step("put and delete", db.batch_write_item(RequestItems={name: mixed}))
    dup = [{"DeleteRequest": {"Key": {"pk": {"S": "k2"}}}}] * 2
    await t.step("duplicate", db.batch_write_item(RequestItems={name: dup}))
    keys = [{"pk": {"S": f"k{i}"}} for i in (0, 1, 2, 5, 99)]
    got = await t.step(
        "get", db.batch_get_item(RequestItems={name: {"Keys": keys, "ConsistentRead": True}})
    )
    got["Responses"][name].sort(key=lambda i: i["pk"]["S"])
    t.note("got sorted", got["Responses"])
    projected = await t.step(
        "get projected",
        db.batch_get_item(
            RequestItems={
                name: {
                    "Keys": keys[:3],
                    "ProjectionExpression": "pk, #v, m.k",
                    "ExpressionAttributeNames": {"#v": "v"},
                }
            }
        ),
    )
    projected["Responses"][name].sort(key=lambda i: i["pk"]["S"])
    t.note("projected sorted", projected["Responses"])
    await t.step(
        "get duplicate keys", db.batch_get_item(RequestItems={name: {"Keys": keys[:1] * 2}})
    )
    await _scan(c, t, name)


SCENARIOS: list[Scenario] = [order_store, value_types, conditions, errors, transactions, batches]


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The order store's clock stands still, so both servers are sent the same values."""
    clock = types.SimpleNamespace(time=lambda: NOW)
    monkeypatch.setattr(orders, "time", clock)
    monkeypatch.setattr(transitions, "time", clock)
    monkeypatch.setattr(transitions, "now_iso", lambda: "2027-01-15T08:00:00.250Z")


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_dynamodb_answers_like_stock(
    scenario: Scenario, patched: Clients, stock: Clients
) -> None:
    name = f"eq-{scenario.__name__}-{uuid.uuid4().hex[:8]}"
    ours, theirs = Transcript(patched.endpoint), Transcript(stock.endpoint)
    await asyncio.gather(scenario(patched, ours, name), scenario(stock, theirs, name))
    assert len(ours.steps) == len(theirs.steps)
    for (label, got), (_, want) in zip(ours.steps, theirs.steps, strict=True):
        assert got == want, f"step {label!r} differs from stock moto"

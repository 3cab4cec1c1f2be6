"""A message the table cannot store is dead-lettered at once, and never holds up the others."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.topology import Topology
from services.common.settings import AwsSettings
from services.domain.errors import StateRefused
from services.domain.messages import (
    InvalidInput,
    OrderMessage,
    decode_message,
    encode_message,
)
from services.domain.orders import OrderStore, Status
from services.worker.worker import open_worker

from ..helpers import new_order, queue_counts, worker_settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sqs import SQSClient


def with_total(order: OrderMessage, total: float) -> str:
    """The order as another producer might send it: a total DynamoDB cannot hold."""
    body = orjson.loads(encode_message(order))
    body["total"] = total
    return orjson.dumps(body).decode()


@pytest.mark.parametrize("total", [1e200, 1e-140])
def test_a_total_dynamodb_cannot_store_is_an_invalid_message(total: float) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_message(with_total(new_order(), total))
    assert caught.value.code == "invalid_message" and caught.value.field == "total"


async def test_a_bad_message_in_a_batch_of_good_ones_is_dead_lettered_at_once(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    good = [new_order() for _ in range(8)]
    bad = [new_order(), new_order()]
    entries = [encode_message(o) for o in good[:4]]
    entries += [with_total(bad[0], 1e200), with_total(bad[1], 1e-140)]
    entries += [encode_message(o) for o in good[4:]]
    await sqs.send_message_batch(
        QueueUrl=topology.queue_url,
        Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(entries)],
    )
    with capture_logs() as logs:
        async with open_worker(worker_settings(aws, topology, burst=True)) as worker:
            await asyncio.wait_for(worker.run(), 60)
    assert charges(logs) == {o.order_id: 1 for o in good}
    for order in good:
        record = await store.get(order.order_id)
        assert record is not None and record.status == Status.PAID
    dead = [e for e in logs if e["event"] == "message_dead_lettered"]
    assert len(dead) == 2 and all(e["reason"].startswith("invalid_message") for e in dead)
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)
    got = await sqs.receive_message(
        QueueUrl=topology.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )
    reasons = [m["MessageAttributes"]["failure_reason"]["StringValue"] for m in got["Messages"]]
    assert len(reasons) == 2 and all(r.startswith("invalid_message") for r in reasons)


async def test_a_write_dynamodb_refuses_fails_only_its_own_caller_in_a_transaction(
    dynamodb: DynamoDBClient, topology: Topology
) -> None:
    # Writes that wait to share a call go out as one TransactWriteItems.
    store = OrderStore(dynamodb, topology.table, fill_wait=0.2)
    good = new_order()
    # An item past DynamoDB's 400 KB: a ValidationException, for the whole transaction.
    bad = good.model_copy(update={"order_id": new_order().order_id, "customer_id": "x" * 500_000})
    results: Any = await asyncio.gather(
        store.record_accepted(good), store.record_accepted(bad), return_exceptions=True
    )
    assert results[0] is None, results
    assert isinstance(results[1], StateRefused) and results[1].code == "ValidationException"
    record = await store.get(good.order_id)
    assert record is not None and record.status == Status.ACCEPTED


# The local AWS's item size limit (moto's 405,000 bytes of names and values; DynamoDB's is
# 400 KB): an item at its edge takes no claim (a ValidationException).
ITEM_LIMIT = 405_000


async def put_at_size_limit(dynamodb: DynamoDBClient, table: str, order: OrderMessage) -> None:
    """The order's item, padded (by another writer) to just under DynamoDB's size limit: every
    claim of it makes the item larger than DynamoDB takes, however often it is retried."""
    base = {
        "pk": {"S": f"order#{order.order_id}"},
        "status": {"S": "accepted"},
        "total": {"N": str(order.total)},
    }
    used = sum(len(k) + len(next(iter(v.values()))) for k, v in base.items()) + len("pad")
    item: dict[str, Any] = {**base, "pad": {"S": "x" * (ITEM_LIMIT - used - 16)}}
    await dynamodb.put_item(TableName=table, Item=item)


async def test_a_claim_dynamodb_refuses_fails_only_its_own_claim(
    dynamodb: DynamoDBClient, topology: Topology
) -> None:
    # Claims that wait to share a call go out as one TransactWriteItems.
    store = OrderStore(dynamodb, topology.table, fill_wait=0.2)
    good = [new_order() for _ in range(3)]
    bad = new_order()
    await put_at_size_limit(dynamodb, topology.table, bad)
    wanted = [(o, f"m-{i}") for i, o in enumerate([good[0], bad, *good[1:]])]
    claims = await store.claim_many(wanted, 60)
    assert [c.won for c in claims] == [True, False, True, True]
    assert claims[1].refused == "ValidationException"
    for order in good:
        record = await store.get(order.order_id)
        assert record is not None and record.status == Status.PAYING


async def test_a_message_whose_claim_dynamodb_refuses_is_dead_lettered_alone(
    aws: AwsSettings,
    sqs: SQSClient,
    dynamodb: DynamoDBClient,
    topology: Topology,
    store: OrderStore,
) -> None:
    good = [new_order() for _ in range(6)]
    bad = new_order()
    await put_at_size_limit(dynamodb, topology.table, bad)
    orders = [*good[:3], bad, *good[3:]]
    await sqs.send_message_batch(
        QueueUrl=topology.queue_url,
        Entries=[{"Id": str(i), "MessageBody": encode_message(o)} for i, o in enumerate(orders)],
    )
    with capture_logs() as logs:
        async with open_worker(worker_settings(aws, topology, burst=True)) as worker:
            await asyncio.wait_for(worker.run(), 60)
    assert charges(logs) == {o.order_id: 1 for o in good}
    dead = [e for e in logs if e["event"] == "message_dead_lettered"]
    assert len(dead) == 1 and dead[0]["reason"] == "state_refused: ValidationException", dead
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)

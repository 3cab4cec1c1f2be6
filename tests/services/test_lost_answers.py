"""Writes that DynamoDB applied but whose answer was lost (chaos `lost_answer` rules).

A retry must recognize what its first attempt wrote: its own claim, its own paid-mark. Every
verdict on charges comes from the payment processor's ledger (`payment_charged` lines).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.topology import Topology
from services.common.settings import AwsSettings
from services.domain.messages import OrderMessage, OrderRequest, encode_message
from services.domain.orders import OrderStore, Status
from services.domain.payment import PaymentSettings
from services.worker.worker import open_worker

from ..helpers import order_body, queue_counts, until, worker_settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from types_aiobotocore_sqs import SQSClient

# UpdateItem (a lone claim, paid-mark or release) is applied, then answered with a 500.
UPDATE_ANSWER_LOST = [
    {
        "service": "dynamodb",
        "operation": "UpdateItem",
        "lost_answer": True,
        "error": {"statusCode": 500, "code": "InternalServerError"},
    }
]


def status_is(store: OrderStore, order_id: str, status: Status) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        record = await store.get(order_id)
        return record is not None and record.status == status

    return check


async def _pay_one(
    aws: AwsSettings,
    sqs: SQSClient,
    topology: Topology,
    store: OrderStore,
    chaos: Any,
    *,
    lose: str,
    customer: object = 42,
) -> list[MutableMapping[str, Any]]:
    """Pay one order, the answers of its `lose` write ("claim", "paid", "release") lost."""
    order = OrderMessage.from_request(OrderRequest.model_validate(order_body(customer_id=customer)))
    payment = PaymentSettings(seconds=1, timeout=5)
    settings = worker_settings(aws, topology, slots=1, payment=payment)
    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            if lose == "claim":
                await chaos(UPDATE_ANSWER_LOST)
                await sqs.send_message(
                    QueueUrl=topology.queue_url, MessageBody=encode_message(order)
                )
                await until(status_is(store, order.order_id, Status.PAYING))
            else:
                await sqs.send_message(
                    QueueUrl=topology.queue_url, MessageBody=encode_message(order)
                )
                await until(status_is(store, order.order_id, Status.PAYING))
                await chaos(UPDATE_ANSWER_LOST)
                moved_to = Status.PAID if lose == "paid" else Status.ACCEPTED
                await until(status_is(store, order.order_id, moved_to))
            # The write landed; its answer was lost. From now on DynamoDB answers again.
            await chaos([])
            await until(status_is(store, order.order_id, Status.PAID))
            await until(lambda: _drained(sqs, topology))
            worker.stop()
            await running
    assert charges(logs) == {order.order_id: 1}
    assert not [e for e in logs if e["event"] == "claim_lost_after_payment"]
    return logs


async def test_a_claim_whose_answer_was_lost_is_recognized_by_its_retry(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    logs = await _pay_one(aws, sqs, topology, store, chaos, lose="claim")
    # Won by the retry on the same receive: no receive spent waiting out its own lease.
    assert [e["receive_count"] for e in logs if e["event"] == "order_paid"] == [1]


async def test_a_paid_mark_whose_answer_was_lost_is_recognized_by_its_retry(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    logs = await _pay_one(aws, sqs, topology, store, chaos, lose="paid")
    assert [e["receive_count"] for e in logs if e["event"] == "order_paid"] == [1]


async def test_a_release_whose_answer_was_lost_still_pays_once(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    # flaky@test fails its first attempt: the claim is released, then paid on redelivery.
    logs = await _pay_one(aws, sqs, topology, store, chaos, lose="release", customer="flaky@test")
    assert [e["receive_count"] for e in logs if e["event"] == "order_paid"] == [2]


async def _drained(sqs: SQSClient, topology: Topology) -> bool:
    return await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_a_duplicate_copy_whose_claimant_was_killed_waits_instead_of_spinning(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    order = OrderMessage.from_request(OrderRequest.model_validate(order_body()))
    body = encode_message(order)
    await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=body)
    # A worker received the order's message, claimed it, and was killed (kill -9): its
    # message comes back once its visibility runs out, its lease runs out by itself.
    got = await sqs.receive_message(
        QueueUrl=topology.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=8
    )
    [first] = got["Messages"]
    claim = await store.claim(order, lease_seconds=5, claimant=first["MessageId"])
    assert claim.won
    # A duplicate copy of the same order (SNS delivers at least once) is in the queue too.
    await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=body)
    with capture_logs() as logs:
        async with open_worker(worker_settings(aws, topology)) as worker:
            running = asyncio.create_task(worker.run())
            # The killed claimant's own message takes the order over once the lease is out.
            await until(status_is(store, order.order_id, Status.PAID), timeout=90)
            # The copy waits out lease and takeover grace, hidden: not back every second.
            await until(lambda: _only_hidden(sqs, topology, 1))
            worker.stop()
            stats = await running
    # The copy was refused while the lease held, then once it had run out, and then hidden
    # for a long step (the grace): not back every second.
    assert stats.claims_refused <= 2
    assert charges(logs) == {order.order_id: 1}
    # No receive spent without a reason: nothing was dead-lettered (least of all silently).
    assert (await queue_counts(sqs, topology.dlq_url))[0] == 0
    paid = [e for e in logs if e["event"] == "order_paid"]
    assert [e["receive_count"] for e in paid] == [2]


async def _only_hidden(sqs: SQSClient, topology: Topology, hidden: int) -> bool:
    return await queue_counts(sqs, topology.queue_url) == (0, hidden)

"""Moving dead-lettered orders back from the DLQ: a retryable failure is paid (once), a decline
stays failed. Charges are counted from the processor's ledger (`payment_charged` lines)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.topology import Topology
from services.common.settings import AwsSettings
from services.domain.messages import OrderMessage, OrderRequest, encode_message
from services.domain.orders import OrderStore, Status
from services.domain.payment import PaymentSettings
from services.worker.worker import open_worker

from ..helpers import order_body, queue_counts, worker_settings

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


def new_order(customer: object) -> OrderMessage:
    return OrderMessage.from_request(OrderRequest.model_validate(order_body(customer_id=customer)))


async def _redrive(sqs: SQSClient, topology: Topology) -> int:
    """What StartMessageMoveTask does: every DLQ message back to its source queue."""
    moved = 0
    while True:
        got = await sqs.receive_message(QueueUrl=topology.dlq_url, MaxNumberOfMessages=10)
        if not got.get("Messages"):
            return moved
        for message in got["Messages"]:
            await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=message["Body"])
            await sqs.delete_message(
                QueueUrl=topology.dlq_url, ReceiptHandle=message["ReceiptHandle"]
            )
            moved += 1


async def test_a_redriven_out_of_retries_order_is_paid_once_and_a_decline_stays_failed(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    retryable, declined = new_order(42), new_order("decline@test")
    for order in (retryable, declined):
        await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))
    # The processor is down: every attempt fails until the worker gives up (5 receives).
    down = PaymentSettings(seconds=0.05, timeout=5, failure_rate=1.0)
    async with open_worker(worker_settings(aws, topology, payment=down, burst=True)) as worker:
        await asyncio.wait_for(worker.run(), 60)
    for order in (retryable, declined):
        record = await store.get(order.order_id)
        assert record is not None and record.status == Status.FAILED
    assert (await queue_counts(sqs, topology.dlq_url))[0] == 2
    # The processor is back; an operator moves the DLQ's messages back.
    assert await _redrive(sqs, topology) == 2
    with capture_logs() as logs:
        async with open_worker(worker_settings(aws, topology, burst=True)) as worker:
            await asyncio.wait_for(worker.run(), 60)
    assert charges(logs) == {retryable.order_id: 1}
    # A decline is final: the redriven one never reaches the processor again (its own record).
    assert not [e for e in logs if e["event"] == "payment_declined"]
    paid = await store.get(retryable.order_id)
    assert paid is not None and paid.status == Status.PAID
    failed = await store.get(declined.order_id)
    assert failed is not None and failed.status == Status.FAILED
    assert failed.failure_reason == "card declined"
    # The declined order went back to the DLQ, with its reason.
    dead = [e for e in logs if e["event"] == "message_dead_lettered"]
    assert [(e["order_id"], e["reason"]) for e in dead] == [(declined.order_id, "card declined")]
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)

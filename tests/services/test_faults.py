"""Faults the worker turns into "paid exactly once, or in the DLQ with a reason"."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.topology import Topology, create_topology, ensure_table
from services.common.settings import AwsSettings
from services.domain.messages import OrderMessage, encode_message
from services.domain.orders import OrderStore, Status
from services.domain.payment import PaymentSettings
from services.worker.worker import open_worker

from ..helpers import new_order, queue_counts, unique_names, worker_settings
from .test_worker import run_burst

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sqs import SQSClient


async def send(sqs: SQSClient, queue_url: str, order: OrderMessage, copies: int = 1) -> None:
    for _ in range(copies):
        await sqs.send_message(QueueUrl=queue_url, MessageBody=encode_message(order))


async def run_until(worker_cm: Any, done: Any, timeout: float = 60) -> tuple[Any, list[Any]]:
    """Run a worker until `done()` (an async predicate) holds; return its stats and logs."""
    with capture_logs() as logs:
        async with worker_cm as worker:
            running = asyncio.create_task(worker.run())
            try:
                async with asyncio.timeout(timeout):
                    while not await done():
                        assert not running.done(), running
                        await asyncio.sleep(0.2)
            finally:
                worker.stop()
                stats = await running
    return stats, logs


async def dlq_bodies(sqs: SQSClient, topology: Topology) -> list[str]:
    got = await sqs.receive_message(QueueUrl=topology.dlq_url, MaxNumberOfMessages=10)
    return [m["Body"] for m in got.get("Messages", [])]


async def test_redelivery_of_a_paid_order_is_deleted_without_paying(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    order = new_order()
    await send(sqs, topology.queue_url, order)
    _, first = await run_burst(aws, topology)
    # SQS delivers at least once: the same message again, three times.
    await send(sqs, topology.queue_url, order, copies=3)
    stats, logs = await run_burst(aws, topology)
    assert stats.paid == 0
    assert stats.duplicates == 3
    # The processor's own ledger: charged by the first run, never again.
    assert charges([*first, *logs]) == {order.order_id: 1}
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_concurrent_duplicate_deliveries_pay_once(
    aws: AwsSettings, sqs: SQSClient, store: OrderStore, topology: Topology
) -> None:
    order = new_order()
    await send(sqs, topology.queue_url, order, copies=4)
    # A short payment timeout keeps the claim's lease short, so the losers retry soon.
    settings = worker_settings(
        aws, topology, payment=PaymentSettings(seconds=0.5, timeout=1), slots=10
    )

    async def drained() -> bool:
        return await queue_counts(sqs, topology.queue_url) == (0, 0)

    stats, logs = await run_until(open_worker(settings), drained)
    assert charges(logs) == {order.order_id: 1}
    assert stats.duplicates == 3
    record = await store.get(order.order_id)
    assert record is not None and record.status == Status.PAID


async def test_declined_payment_fails_the_order_and_dead_letters_it(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    order = new_order(customer_id="decline@test")
    await send(sqs, topology.queue_url, order)
    settings = worker_settings(aws, topology)

    async def dead_lettered() -> bool:
        return (await queue_counts(sqs, topology.dlq_url))[0] == 1

    _stats, logs = await run_until(open_worker(settings), dead_lettered)
    [failed] = [e for e in logs if e["event"] == "order_failed"]
    assert failed["order_id"] == order.order_id
    assert failed["reason"] == "card declined"
    record = await store.get(order.order_id)
    assert record is not None
    assert (record.status, record.failure_reason) == (Status.FAILED, "card declined")
    assert charges(logs) == {}
    assert await dlq_bodies(sqs, topology) == [encode_message(order)]
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_transient_failure_is_retried_then_paid(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    order = new_order(customer_id="flaky@test")
    await send(sqs, topology.queue_url, order)

    async def paid() -> bool:
        record = await store.get(order.order_id)
        return record is not None and record.status == Status.PAID

    _stats, logs = await run_until(open_worker(worker_settings(aws, topology)), paid)
    [retry] = [e for e in logs if e["event"] == "payment_retry"]
    assert retry["receive_count"] == 1
    [done] = [e for e in logs if e["event"] == "order_paid"]
    assert done["receive_count"] == 2
    assert charges(logs) == {order.order_id: 1}
    record = await store.get(order.order_id)
    assert record is not None and record.attempts == 2


async def test_persistent_transient_failures_end_in_the_dlq(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    unavailable = new_order(customer_id="unavailable@test")
    hanging = new_order(customer_id="timeout@test")
    await send(sqs, topology.queue_url, unavailable)
    await send(sqs, topology.queue_url, hanging)
    settings = worker_settings(aws, topology, payment=PaymentSettings(seconds=0.05, timeout=0.3))

    async def dead_lettered() -> bool:
        return (await queue_counts(sqs, topology.dlq_url))[0] == 2

    stats, _logs = await run_until(open_worker(settings), dead_lettered)
    assert stats.paid == 0
    assert stats.payment_retries == 2 * 4  # maxReceiveCount 5: four retries, then it gives up
    for order, why in ((unavailable, "unavailable"), (hanging, "timed out")):
        record = await store.get(order.order_id)
        assert record is not None and record.status == Status.FAILED
        assert record.failure_reason is not None and why in record.failure_reason
        assert record.failure_reason.startswith("gave up after 5 attempts")


async def test_worker_rides_out_a_dynamodb_outage(
    aws: AwsSettings,
    dynamodb: DynamoDBClient,
    sqs: SQSClient,
    topology: Topology,
    store: OrderStore,
) -> None:
    order = new_order()
    await dynamodb.delete_table(TableName=topology.table)  # the state store is gone
    await send(sqs, topology.queue_url, order)
    settings = worker_settings(aws, topology, retry_backoff_seconds=1)

    polls: list[int] = []

    async def paid() -> bool:
        polls.append(1)
        if len(polls) < 10:  # the first two seconds without the table
            return False
        if len(polls) == 10:
            await ensure_table(dynamodb, topology.table)
        record = await store.get(order.order_id)
        return record is not None and record.status == Status.PAID

    stats, logs = await run_until(open_worker(settings), paid)
    assert stats.paid == 1
    # A missing table is permanent (a setting, not an outage): loud, yet still ridden out.
    assert any(
        e["event"] == "aws_permanent_error" and e["code"] == "ResourceNotFoundException"
        for e in logs
    )
    assert charges(logs) == {order.order_id: 1}


async def test_worker_survives_sqs_errors_and_backs_off(aws: AwsSettings, sqs: SQSClient) -> None:
    topology = await create_topology(aws, unique_names())
    settings = worker_settings(aws, topology, slots=2)
    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            await asyncio.sleep(0.3)
            await sqs.delete_queue(QueueUrl=topology.queue_url)  # every receive now fails
            await asyncio.sleep(2)
            assert not running.done()
            worker.stop()
            stats = await running
    failures = [e for e in logs if e["event"] == "receive_failed"]
    assert failures and stats.receive_errors == len(failures)
    # Backing off: far fewer attempts than a tight loop would make in two seconds.
    assert len(failures) < 40
    assert all(0 <= e["retry_in_s"] <= 10 for e in failures)


async def test_a_slow_payment_stays_invisible_without_extensions(
    aws: AwsSettings, sqs: SQSClient
) -> None:
    # Queue visibility 2 s, payment 5 s: the receive itself hides the message for a whole
    # lease (timeout + margin), so it never reappears mid-payment and needs no extension.
    # (Extensions of messages held past that, through an outage: test_outages.py.)
    topology = await create_topology(aws, unique_names(visibility_timeout=2))
    order = new_order()
    await send(sqs, topology.queue_url, order)
    settings = worker_settings(aws, topology, payment=PaymentSettings(seconds=5, timeout=10))
    stolen: list[str] = []

    async def rival() -> None:
        # A second consumer polling the queue the whole time must never see the message.
        while True:
            got = await sqs.receive_message(
                QueueUrl=topology.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            stolen.extend(m["Body"] for m in got.get("Messages", []))

    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            while not worker.stats.in_flight:
                await asyncio.sleep(0.05)
            other = asyncio.create_task(rival())
            while not worker.stats.paid:
                await asyncio.sleep(0.1)
            other.cancel()
            worker.stop()
            stats = await running
    assert stolen == []
    assert stats.visibility_extensions == 0
    assert charges(logs) == {order.order_id: 1}

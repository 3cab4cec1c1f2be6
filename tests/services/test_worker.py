"""The worker against a real (local) SQS: both strategies, concurrency, deletes, poison messages."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.topology import Topology
from localaws.client import counts_between, request_counts
from services.common.settings import AwsSettings
from services.domain.messages import OrderMessage, OrderRequest, encode_message
from services.domain.payment import PaymentSettings
from services.worker.queue import OrderQueue
from services.worker.settings import WorkerSettings
from services.worker.worker import open_worker

from ..helpers import order_body, queue_counts, worker_settings

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sns.type_defs import PublishBatchRequestEntryTypeDef
    from types_aiobotocore_sqs import SQSClient

STRATEGIES = ["per-task", "batched"]


async def publish_orders(sns: SNSClient, topology: Topology, count: int) -> set[str]:
    """Publish `count` valid orders through SNS, as the API does; return their ids."""
    ids: set[str] = set()
    for start in range(0, count, 10):
        entries: list[PublishBatchRequestEntryTypeDef] = []
        for i in range(start, min(count, start + 10)):
            message = OrderMessage.from_request(OrderRequest.model_validate(order_body()))
            ids.add(message.order_id)
            entries.append({"Id": str(i), "Message": encode_message(message)})
        await sns.publish_batch(TopicArn=topology.topic_arn, PublishBatchRequestEntries=entries)
    return ids


async def run_burst(aws: AwsSettings, topology: Topology, **overrides: Any) -> Any:
    """Run a worker until the queue is empty; return its stats and the log events it wrote."""
    settings = worker_settings(aws, topology, burst=True, **overrides)
    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            stats = await asyncio.wait_for(worker.run(), timeout=60)
    return stats, logs


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_every_order_is_paid_once_and_deleted(
    aws: AwsSettings, sns: SNSClient, sqs: SQSClient, topology: Topology, strategy: str
) -> None:
    ids = await publish_orders(sns, topology, 25)
    stats, logs = await run_burst(aws, topology, receive_strategy=strategy, slots=10)

    paid = [e for e in logs if e["event"] == "order_paid"]
    assert sorted(e["order_id"] for e in paid) == sorted(ids)
    for event in paid:
        assert event["payment_ms"] >= 200
        assert event["queue_ms"] >= 0
        assert event["receive_count"] == 1
    assert stats.paid == 25
    assert stats.delete_failures == 0
    # Deleted, not merely hidden: nothing visible and nothing in flight.
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_concurrency_reaches_the_slot_count_exactly(
    aws: AwsSettings, sns: SNSClient, topology: Topology, strategy: str
) -> None:
    await publish_orders(sns, topology, 60)
    # Long enough payments that every slot fills before the first one frees.
    stats, _ = await run_burst(
        aws,
        topology,
        receive_strategy=strategy,
        slots=25,
        payment=PaymentSettings(seconds=1.0, timeout=5),
    )
    assert stats.paid == 60
    assert stats.max_in_flight == 25


async def test_batched_needs_far_fewer_requests_than_per_task(
    aws: AwsSettings, sns: SNSClient, topology: Topology
) -> None:
    await publish_orders(sns, topology, 40)
    stats, _ = await run_burst(aws, topology, receive_strategy="batched", slots=40)
    assert stats.paid == 40
    # How full each batch gets depends on timing; that batches hold many does not.
    assert stats.receive_calls <= 40 / 2
    assert stats.delete_calls <= 40 / 2
    assert stats.sqs_requests / stats.paid < 1


def test_a_batched_worker_holds_twice_its_slots_by_default() -> None:
    def held(**env: str) -> int:
        return WorkerSettings.from_env({"ORDER_QUEUE_URL": "q", "NUM_WORKERS": "100"} | env).held

    assert held() == 200
    assert held(RECEIVE_PREFETCH="0") == 100
    assert held(RECEIVE_PREFETCH="7") == 107
    # Per-task slots each hold their own message: nothing is received ahead.
    assert held(RECEIVE_STRATEGY="per-task") == 100


async def test_orders_waiting_in_line_are_claimed_for_their_wait(
    aws: AwsSettings, sns: SNSClient, topology: Topology
) -> None:
    ids = await publish_orders(sns, topology, 4)
    # 2 slots and 2 in line; the 2 in line wait a 3 s payment, more than half the lease's
    # margin (2.5 s): claimed for the usual lease (timeout 4 + margin 5 s), each would need a
    # renewal before its charge.
    stats, logs = await run_burst(
        aws, topology, slots=2, prefetch=2, payment=PaymentSettings(seconds=3.0, timeout=4)
    )
    assert charges(logs) == dict.fromkeys(ids, 1)
    assert stats.max_in_flight == 2
    assert stats.lease_renewals == 0


async def test_a_burst_worker_pays_its_line_before_it_stops(
    aws: AwsSettings, sns: SNSClient, sqs: SQSClient, topology: Topology
) -> None:
    ids = await publish_orders(sns, topology, 3)
    # 1 slot, room for 3 more in line: the line holds 2 when a receive (no long poll) finds
    # the queue empty. Those 2 are paid here, not handed back as at a SIGTERM.
    stats, logs = await run_burst(
        aws, topology, slots=1, prefetch=3, wait_time_seconds=0, payment=PaymentSettings(0.5)
    )
    assert charges(logs) == dict.fromkeys(ids, 1)
    assert (stats.paid, stats.handed_back) == (3, 0)
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_a_trickle_of_orders_shares_receives(
    aws: AwsSettings, endpoint: str, sqs: SQSClient, topology: Topology
) -> None:
    # One message every 10 ms: four pollers parked in long polls would each wake for one.
    sent = 30
    settings = worker_settings(aws, topology, slots=40, wait_time_seconds=5)
    assert settings.receive_concurrency == 4
    async with open_worker(settings) as worker:
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.3)  # every poller is parked
        before = await request_counts(endpoint)
        for _ in range(sent):
            order = OrderMessage.from_request(OrderRequest.model_validate(order_body()))
            await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))
            await asyncio.sleep(0.01)
        async with asyncio.timeout(20):
            while worker.stats.paid < sent:
                await asyncio.sleep(0.05)
        made = counts_between(before, await request_counts(endpoint))
        worker.stop()
        await asyncio.wait_for(running, timeout=10)
    # Counted by the local AWS: the messages that arrived between two receives shared one.
    assert made["sqs"]["ReceiveMessage"] <= sent / 2
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_queue_deletes_ten_per_call(sqs: SQSClient, topology: Topology) -> None:
    for i in range(25):
        await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=str(i))
    handles: list[str] = []
    while len(handles) < 25:
        got = await sqs.receive_message(QueueUrl=topology.queue_url, MaxNumberOfMessages=10)
        handles += [m["ReceiptHandle"] for m in got.get("Messages", [])]
    queue = OrderQueue(sqs, topology.queue_url, batched=True)
    results = await asyncio.gather(*(queue.delete(h) for h in handles))
    await queue.close()
    assert results == [None] * 25
    assert queue.delete_calls == 3  # 10 + 10 at once, the last 5 after the linger
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_per_task_makes_a_request_per_receive_and_delete(
    aws: AwsSettings, sns: SNSClient, topology: Topology
) -> None:
    await publish_orders(sns, topology, 20)
    stats, _ = await run_burst(aws, topology, receive_strategy="per-task", slots=5)
    assert stats.paid == 20
    assert stats.delete_calls == 20
    assert stats.sqs_requests / stats.paid >= 2


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_undecodable_message_goes_to_dlq_and_worker_goes_on(
    aws: AwsSettings, sns: SNSClient, sqs: SQSClient, topology: Topology, strategy: str
) -> None:
    await sqs.send_message(QueueUrl=topology.queue_url, MessageBody="{not an order")
    await sqs.send_message(QueueUrl=topology.queue_url, MessageBody='{"v": 99}')
    ids = await publish_orders(sns, topology, 3)

    settings = worker_settings(aws, topology, receive_strategy=strategy, slots=4)
    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            # Handed back at once, each poison message is received maxReceiveCount times
            # and then moved to the DLQ by SQS itself.
            for _ in range(100):
                visible, in_flight = await queue_counts(sqs, topology.queue_url)
                dlq = await queue_counts(sqs, topology.dlq_url)
                if (visible, in_flight, dlq[0]) == (0, 0, 2):
                    break
                await asyncio.sleep(0.2)
            worker.stop()
            stats = await running

    assert not running.exception()
    assert {e["order_id"] for e in logs if e["event"] == "order_paid"} == ids
    undecodable = [e for e in logs if e["event"] == "message_undecodable"]
    assert {e["code"] for e in undecodable} == {"invalid_json", "unsupported_version"}
    assert stats.undecodable == len(undecodable) >= 2
    got = await sqs.receive_message(QueueUrl=topology.dlq_url, MaxNumberOfMessages=10)
    assert sorted(m["Body"] for m in got["Messages"]) == ['{"v": 99}', "{not an order"]


async def test_stop_abandons_long_polls_at_once(aws: AwsSettings, topology: Topology) -> None:
    settings = worker_settings(aws, topology, wait_time_seconds=20, slots=30)
    async with open_worker(settings) as worker:
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)  # every receiver is now inside a 20 s long poll
        worker.stop()
        # Far less than the 20 s poll: stop does not wait for pending receives.
        stats = await asyncio.wait_for(running, timeout=5)
    assert stats.receive_calls >= 1
    assert stats.paid == 0


async def test_batched_claims_and_paid_marks_share_dynamodb_calls(
    aws: AwsSettings, sns: SNSClient, topology: Topology, store: Any
) -> None:
    ids = await publish_orders(sns, topology, 40)
    stats, _ = await run_burst(aws, topology, receive_strategy="batched", slots=40)
    assert stats.paid == 40
    # One claim call per receive and one transaction per batch of paid-marks, not two per order.
    assert stats.state_batches <= 40 / 2
    for order_id in ids:
        record = await store.get(order_id)
        assert record.status == "paid" and record.payments == 1


async def test_paid_marks_made_together_share_calls_of_up_to_100(
    aws: AwsSettings, topology: Topology, store: Any
) -> None:
    """No slot waits on a paid-mark: the worker sends them 100 to a TransactWriteItems, the
    most DynamoDB takes, counted by the local AWS."""
    assert aws.endpoint_url is not None
    orders = [
        OrderMessage.from_request(OrderRequest.model_validate(order_body())) for _ in range(150)
    ]
    claims = await store.claim_many([(o, f"message-{i}") for i, o in enumerate(orders)], 60)
    async with open_worker(worker_settings(aws, topology)) as worker:
        settling = worker._processing.settle_store
        before = await request_counts(aws.endpoint_url)
        marked = await asyncio.gather(
            *(
                settling.mark_paid(o.order_id, c.token, 1.0)
                for o, c in zip(orders, claims, strict=True)
            )
        )
        made = counts_between(before, await request_counts(aws.endpoint_url))
    assert all(marked)
    assert made["dynamodb"] == {"TransactWriteItems": 2}
    for order in orders:
        assert (await store.get(order.order_id)).status == "paid"


async def test_a_crashed_receiver_stops_the_worker_loudly(
    aws: AwsSettings, sns: SNSClient, topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish_orders(sns, topology, 3)

    async def broken(messages: Any, for_line: bool = False) -> Any:
        raise RuntimeError("a bug in the receive path")

    settings = worker_settings(aws, topology)
    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            monkeypatch.setattr(worker._processing, "prepare", broken)
            # Not a silent worker with fewer receivers: run() ends and says why.
            with pytest.raises(RuntimeError, match="a bug in the receive path"):
                await asyncio.wait_for(worker.run(), timeout=30)
    assert [e["event"] for e in logs if e["event"] in ("receiver_crashed", "worker_stopped")] == [
        "receiver_crashed",
        "worker_stopped",
    ]

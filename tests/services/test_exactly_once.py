"""Exactly once: no order charged twice or left without a final state.

Charges are counted from the payment processor's own ledger lines (`payment_charged`), never
from the order record the code under test writes.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.follow import run_to_exit
from devstack.topology import Topology
from services.common.settings import AwsSettings
from services.domain.messages import encode_message
from services.domain.orders import OrderStore, Status
from services.worker.worker import open_worker

from ..helpers import new_order, order_body, queue_counts, service_env, worker_settings
from .test_faults import run_until

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient
    from types_aiobotocore_sqs import SQSClient


async def test_worker_refuses_a_queue_without_a_redrive_policy(
    aws: AwsSettings, sqs: SQSClient
) -> None:
    # Without a dead-letter queue a declined order would come back forever.
    url = (await sqs.create_queue(QueueName=f"bare-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
    code, err = await run_to_exit("services.worker", service_env(aws, ORDER_QUEUE_URL=url))
    assert code == 2
    [line] = err.strip().splitlines()
    assert "redrive policy" in line and url in line


async def test_only_the_claimants_own_message_takes_over_an_expired_lease(
    store: OrderStore,
) -> None:
    order = new_order()
    first = await store.claim(order, lease_seconds=0.2, claimant="message-1")
    assert first.won
    await asyncio.sleep(0.5)  # the lease has run out
    # A duplicate copy (another message id) may not: the claimant may still be alive,
    # retrying its paid-mark after a charge.
    copy = await store.claim(order, lease_seconds=5, claimant="message-2")
    assert not copy.won
    assert copy.record is not None and copy.record.status == Status.PAYING
    # The claimant's own message coming back proves the claimant stopped renewing its lease.
    again = await store.claim(order, lease_seconds=5, claimant="message-1")
    assert again.won
    # And a live lease is closed even to its own message.
    assert not (await store.claim(order, lease_seconds=5, claimant="message-1")).won


async def test_a_renewed_lease_stays_closed_and_a_lost_claim_cannot_renew(
    store: OrderStore,
) -> None:
    order = new_order()
    claim = await store.claim(order, lease_seconds=0.3, claimant="m")
    assert await store.renew_many([(order.order_id, claim.token)], lease_seconds=30) == [True]
    await asyncio.sleep(0.5)
    assert not (await store.claim(order, lease_seconds=5, claimant="m")).won
    assert await store.renew_many([(order.order_id, "someone-else")], lease_seconds=30) == [False]


async def test_declined_order_is_dead_lettered_at_once_with_its_reason(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    order = new_order(customer_id="decline@test")
    await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))

    async def dead_lettered() -> bool:
        return (await queue_counts(sqs, topology.dlq_url))[0] == 1

    stats, logs = await run_until(open_worker(worker_settings(aws, topology)), dead_lettered)
    got = await sqs.receive_message(
        QueueUrl=topology.dlq_url,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )
    [parked] = got["Messages"]
    attributes = parked["MessageAttributes"]
    assert attributes["failure_reason"]["StringValue"] == "card declined"
    assert attributes["order_id"]["StringValue"] == order.order_id
    assert attributes["receive_count"]["StringValue"] == "1"  # moved by the worker, not redrive
    assert stats.dead_lettered == 1
    assert charges(logs) == {}
    record = await store.get(order.order_id)
    assert record is not None and record.status == Status.FAILED
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_sync_transient_failure_is_not_shown_and_a_retry_can_claim_it(
    api: TestClient[Any, Any], store: OrderStore
) -> None:
    order_id = str(uuid.uuid4())
    body = order_body(order_id=order_id, customer_id="unavailable@test")
    with capture_logs() as logs:
        first = await api.post("/orders/sync", json=body)
        assert first.status == 503
        # Not `accepted` forever: the client was told to retry, so it is not shown at all.
        assert (await api.get(f"/orders/{order_id}")).status == 404
        record = await store.get(order_id)
        assert record is not None and record.status == Status.PENDING
        # The retry is not refused as in progress: it claims the order and tries again.
        again = await api.post("/orders/sync", json=body)
        assert again.status == 503
    tried = [e for e in logs if e["event"] == "payment_unavailable" and "attempt" in e]
    assert len(tried) == 2
    assert charges(logs) == {}

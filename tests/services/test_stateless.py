"""Stateless mode (no ORDERS_TABLE): the services run their one path over a NullStore.

Nothing is kept, so nothing dedupes: every order is charged and answered, GET finds nothing.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.topology import Topology
from services.api.app import create_app
from services.common.settings import AwsSettings
from services.domain.messages import encode_message

from ..helpers import api_settings, new_order, order_body, queue_counts
from .test_worker import run_burst

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


async def test_a_stateless_worker_pays_every_message_and_deletes_it(
    aws: AwsSettings, sqs: SQSClient, topology: Topology
) -> None:
    orders = [new_order() for _ in range(6)]
    await sqs.send_message_batch(
        QueueUrl=topology.queue_url,
        Entries=[{"Id": str(i), "MessageBody": encode_message(o)} for i, o in enumerate(orders)],
    )
    stats, logs = await run_burst(aws, topology, orders_table=None)
    assert charges(logs) == {o.order_id: 1 for o in orders}
    assert stats.paid == len(orders) and stats.lease_renewals == 0
    [started] = [e for e in logs if e["event"] == "worker_started"]
    assert started["order_state"] is False
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_a_stateless_api_answers_both_endpoints_and_finds_nothing(
    aws: AwsSettings, sqs: SQSClient, topology: Topology
) -> None:
    settings = api_settings(aws, topology, orders_table=None)
    client: TestClient[Any, Any]
    with capture_logs() as logs:
        async with TestClient(TestServer(create_app(settings))) as client:
            key = {"Idempotency-Key": str(uuid.uuid4())}
            resp = await client.post("/orders/sync", json=order_body(), headers=key)
            paid = await resp.json()
            assert resp.status == 200 and paid["status"] == "paid", paid
            resp = await client.post("/orders/async", json=order_body(), headers=key)
            queued = await resp.json()
            assert resp.status == 202, queued
            resp = await client.get(f"/orders/{queued['order_id']}")
            assert resp.status == 404
    assert charges(logs) == {paid["order_id"]: 1}
    assert await queue_counts(sqs, topology.queue_url) == (1, 0)

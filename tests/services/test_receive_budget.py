"""Every receive spent has a reason; SQS's and SNS's permanent errors are loud; a sync
request's retry is the same claimant as the attempt whose answer was lost.

Charges are counted from the payment processor's ledger (`payment_charged` lines).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.topology import MAX_RECEIVE_COUNT, Topology
from services.api.app import create_app
from services.common.settings import AwsSettings
from services.domain.messages import encode_message
from services.domain.orders import OrderStore
from services.domain.payment import PaymentSettings
from services.worker.liveness import LivenessSettings
from services.worker.worker import open_worker

from ..helpers import (
    all_paid,
    api_settings,
    beating,
    new_order,
    not_beating,
    order_body,
    queue_counts,
    until,
    worker_settings,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


async def test_a_copy_still_claimed_is_dead_lettered_with_its_reason_before_sqs_would(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    order = new_order()
    # Another claimant holds the order, and will for longer than this test runs.
    held = await store.claim(order, 600, claimant="another-message")
    assert held.won
    await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))
    # Spend every receive but the last, as consumers that crashed before settling would.
    for _ in range(MAX_RECEIVE_COUNT - 1):
        got = await sqs.receive_message(
            QueueUrl=topology.queue_url, WaitTimeSeconds=5, VisibilityTimeout=0
        )
        assert len(got.get("Messages", [])) == 1
    with capture_logs() as logs:
        async with open_worker(worker_settings(aws, topology)) as worker:
            running = asyncio.create_task(worker.run())
            # The last receive: retried later, SQS would dead-letter it with no reason.
            await until(lambda: _in_dlq(sqs, topology))
            worker.stop()
            await running
    dead = await sqs.receive_message(
        QueueUrl=topology.dlq_url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    [message] = dead["Messages"]
    attributes = message["MessageAttributes"]
    assert "still claimed by another-message" in attributes["failure_reason"]["StringValue"]
    assert attributes["receive_count"]["StringValue"] == str(MAX_RECEIVE_COUNT)
    assert attributes["order_id"]["StringValue"] == order.order_id
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)
    assert charges(logs) == {}  # never charged: the claim was someone else's


async def _in_dlq(sqs: SQSClient, topology: Topology) -> bool:
    return await queue_counts(sqs, topology.dlq_url) != (0, 0)


SQS_DENIED = {"statusCode": 403, "code": "AccessDenied", "message": "not authorized"}


async def test_access_denied_on_sqs_fails_the_worker_liveness_check(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, chaos: Any, tmp_path: Path
) -> None:
    order = new_order()
    beat = tmp_path / "worker.heartbeat"
    liveness = LivenessSettings(path=beat, interval_seconds=0.05, max_age_seconds=1)
    settings = worker_settings(aws, topology, liveness=liveness)
    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            await until(lambda: beating(beat))
            await chaos([{"service": "sqs", "operation": "ReceiveMessage", "error": SQS_DENIED}])
            await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))
            # Denied for good, not an outage to wait out quietly: the container check fails.
            await until(lambda: not_beating(beat))
            await chaos([])
            await until(lambda: _charged(logs, order.order_id))
            await until(lambda: beating(beat))
            worker.stop()
            await running
    denied = [e for e in logs if e["event"] == "aws_permanent_error"]
    assert denied and all(e["log_level"] == "error" for e in denied)
    assert {(e["aws_service"], e["operation"], e["code"]) for e in denied} == {
        ("sqs", "ReceiveMessage", "AccessDenied")
    }
    assert charges(logs) == {order.order_id: 1}


async def test_authorization_error_on_sns_is_loud_and_makes_the_api_unhealthy(
    aws: AwsSettings, topology: Topology, chaos: Any
) -> None:
    refused = {"statusCode": 403, "code": "AuthorizationError", "message": "not authorized"}
    async with TestClient(TestServer(create_app(api_settings(aws, topology)))) as api:
        assert (await api.get("/health")).status == 200
        await chaos([{"service": "sns", "operation": "PublishBatch", "error": refused}])
        with capture_logs() as logs:
            for _ in range(3):
                headers = {"Idempotency-Key": str(uuid.uuid4())}
                resp = await api.post("/orders/async", json=order_body(), headers=headers)
                # Not queued, and said so: never a 202.
                assert resp.status >= 500, await resp.text()
                assert "error" in await resp.json()
            health = await api.get("/health")
            assert health.status == 503, await health.text()
        denied = [e for e in logs if e["event"] == "aws_permanent_error"]
        assert denied and all(e["log_level"] == "error" for e in denied)
        assert {(e["aws_service"], e["code"]) for e in denied} == {("sns", "AuthorizationError")}
        await chaos([])
        resp = await api.post("/orders/async", json=order_body())
        assert resp.status == 202
        assert (await api.get("/health")).status == 200


async def test_a_sync_retry_after_a_lost_claim_answer_is_the_same_claimant(
    aws: AwsSettings, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    # The claim's lease is the payment timeout plus 5 s: short here, so the test waits it out.
    payment = PaymentSettings(seconds=0.2, timeout=1)
    key = str(uuid.uuid4())
    headers = {"Idempotency-Key": key}
    lost = {"statusCode": 500, "code": "InternalServerError", "message": "lost"}
    async with TestClient(
        TestServer(create_app(api_settings(aws, topology, payment=payment)))
    ) as api:
        with capture_logs() as logs:
            # The claim is written, its answer lost: the client sees an outage and retries.
            await chaos(
                [
                    {
                        "service": "dynamodb",
                        "operation": "UpdateItem",
                        "lost_answer": True,
                        "error": lost,
                    }
                ]
            )
            first = await api.post("/orders/sync", json=order_body(), headers=headers)
            assert first.status == 503, await first.text()
            await chaos([])
            paid: dict[str, Any] = {}

            async def retried_to_paid() -> bool:
                resp = await api.post("/orders/sync", json=order_body(), headers=headers)
                # In progress (409) while the lost attempt's lease runs, then paid by the retry:
                # its claimant is derived from the key, so it takes over its own claim once the
                # lease is out, not after the takeover grace (10 minutes) a stranger waits.
                assert resp.status in (200, 409), await resp.text()
                paid.update(await resp.json())
                return resp.status == 200

            await until(retried_to_paid, timeout=30, interval=0.5)
        order_id = paid["order_id"]
        assert await all_paid(store, {order_id})
        assert charges(logs) == {order_id: 1}


async def _charged(logs: list[Any], order_id: str) -> bool:
    return charges(logs).get(order_id, 0) >= 1

"""Outages injected into the local AWS (its chaos API), against the real worker and API.

Every verdict on charges comes from the payment processor's ledger (`payment_charged` lines),
never from the order record: the record is what the code under test writes.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.follow import ServiceProcess, api_process
from devstack.topology import Topology
from services.api.app import create_app
from services.common.settings import AwsSettings
from services.domain.messages import encode_message
from services.domain.orders import OrderStore, Status
from services.domain.payment import PaymentSettings
from services.worker.worker import Worker, open_worker

from ..helpers import (
    all_paid,
    api_settings,
    new_order,
    order_body,
    queue_counts,
    service_env,
    until,
    worker_settings,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

DYNAMODB_DOWN = [
    {"service": "dynamodb", "error": {"statusCode": 503, "code": "ServiceUnavailable"}}
]


def dynamodb_failing(*operations: str) -> list[dict[str, Any]]:
    error = {"statusCode": 500, "code": "InternalServerError"}
    return [{"service": "dynamodb", "operation": op, "error": error} for op in operations]


async def running_worker(worker: Worker) -> asyncio.Task[Any]:
    return asyncio.create_task(worker.run())


@pytest.mark.slow
async def test_a_long_dynamodb_outage_spends_no_receive_and_charges_once(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    orders = [new_order() for _ in range(6)]
    await chaos(DYNAMODB_DOWN)
    for order in orders:
        await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))
    # Visibility 30 s, max receives 5: an outage longer than a visibility timeout, with
    # immediate retries, is what used to dead-letter accepted orders.
    settings = worker_settings(aws, topology, retry_backoff_seconds=0)
    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            running = await running_worker(worker)
            await asyncio.sleep(35)
            assert (await queue_counts(sqs, topology.dlq_url))[0] == 0
            await chaos([])
            ids = {o.order_id for o in orders}
            await until(lambda: all_paid(store, ids))
            await until(lambda: _drained(sqs, topology))
            worker.stop()
            stats = await running
    assert charges(logs) == dict.fromkeys(ids, 1)
    # Held through the outage, not handed back: each was received once and paid.
    assert {e["receive_count"] for e in logs if e["event"] == "order_paid"} == {1}
    assert stats.state_retries > 0 and stats.dead_lettered == 0
    assert (await queue_counts(sqs, topology.dlq_url))[0] == 0


async def _queued(sqs: SQSClient, topology: Topology) -> bool:
    return (await queue_counts(sqs, topology.queue_url))[0] > 0


async def _drained(sqs: SQSClient, topology: Topology) -> bool:
    return await queue_counts(sqs, topology.queue_url) == (0, 0)


@pytest.mark.slow
async def test_a_paid_mark_failing_past_the_lease_with_a_duplicate_charges_once(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    order = new_order()
    body = encode_message(order)
    await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=body)
    # Lease = payment timeout + 5 s = 7 s; the writes after the charge fail for 10 s.
    settings = worker_settings(aws, topology, payment=PaymentSettings(seconds=1, timeout=2))
    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            running = await running_worker(worker)
            await until(lambda: _charging(worker))
            await chaos(dynamodb_failing("UpdateItem", "TransactWriteItems"))
            # A duplicate delivery (another SQS message of the same order) arrives meanwhile.
            await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=body)
            await asyncio.sleep(10)
            await chaos([])
            await until(lambda: all_paid(store, {order.order_id}))
            await until(lambda: _drained(sqs, topology))
            worker.stop()
            await running
    assert charges(logs) == {order.order_id: 1}
    events = [e["event"] for e in logs]
    assert "claim_lost_after_payment" not in events and "payment_unrecorded" not in events
    assert events.count("order_paid") == 1 and events.count("order_duplicate") == 1


async def _charging(worker: Worker) -> bool:
    return worker.stats.in_flight > 0


async def test_sync_answers_paid_after_a_charge_even_when_the_mark_fails(
    aws: AwsSettings, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    settings = api_settings(aws, topology, payment=PaymentSettings(seconds=1, timeout=5))
    order_id = str(uuid.uuid4())
    body = order_body(order_id=order_id)
    with capture_logs() as logs:
        async with TestClient(TestServer(create_app(settings))) as api:
            answer = asyncio.create_task(api.post("/orders/sync", json=body))

            async def claimed() -> bool:
                record = await store.get(order_id)
                return record is not None and record.status == Status.PAYING

            await until(claimed)
            await chaos(dynamodb_failing("UpdateItem"))
            resp = await answer
            assert resp.status == 200
            assert (await resp.json())["status"] == "paid"
            await chaos([])
            # The mark is settled in the background once DynamoDB answers again.
            await until(lambda: all_paid(store, {order_id}), timeout=20)
            # A retry is answered from the record, without charging again.
            again = await api.post("/orders/sync", json=body)
            assert again.status == 200
    assert charges(logs) == {order_id: 1}


async def test_an_ambiguous_publish_keeps_the_order_and_an_honest_retry_gets_202(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    settings = api_settings(aws, topology, publish_timeout=0.5)
    order_id = str(uuid.uuid4())
    body = order_body(order_id=order_id)
    async with TestClient(TestServer(create_app(settings))) as api:
        # SNS publishes, but answers after the API stopped waiting.
        await chaos([{"service": "sns", "operation": "PublishBatch", "latency_ms": 1500}])
        first = await api.post("/orders/async", json=body)
        assert first.status == 503
        # Not "could not be queued": it was, and will be paid.
        assert "may have been queued" in (await first.json())["error"]["message"]
        await chaos([])
        record = await store.get(order_id)
        assert record is not None and record.request_hash  # the fingerprint is kept
        await asyncio.sleep(1.2)  # past 2 x the publish timeout: no longer "in progress"
        again = await api.post("/orders/async", json=body)
        assert again.status == 202, await again.text()
        assert (await again.json())["order_id"] == order_id
    with capture_logs() as logs:
        async with open_worker(worker_settings(aws, topology, burst=True)) as worker:
            await asyncio.wait_for(worker.run(), 60)
    # Two messages for one order (the late one and the retry): charged once.
    assert charges(logs) == {order_id: 1}
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_an_ambiguous_publish_then_a_definite_failure_keeps_the_fingerprint(
    aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    settings = api_settings(aws, topology, publish_timeout=0.5)
    order_id = str(uuid.uuid4())
    body = order_body(order_id=order_id)
    async with TestClient(TestServer(create_app(settings))) as api:
        # 1. SNS publishes, but its answer is lost (a 500 instead): ambiguous.
        lost = {"statusCode": 500, "code": "InternalError"}
        await chaos(
            [{"service": "sns", "operation": "PublishBatch", "lost_answer": True, "error": lost}]
        )
        assert (await api.post("/orders/async", json=body)).status == 503
        # 2. The client's retry, once no longer "in progress", is refused by SNS outright.
        refused = {"statusCode": 400, "code": "InvalidParameter"}
        await chaos([{"service": "sns", "operation": "PublishBatch", "error": refused}])

        async def retried() -> bool:
            resp = await api.post("/orders/async", json=body)
            return (
                resp.status == 503 and (await resp.json())["error"]["code"] == "queue_unavailable"
            )

        await until(retried, timeout=20)
        await chaos([])
        # 3. The first publish did go through: a worker pays the order.
        await until(lambda: _queued(sqs, topology), timeout=20)
        with capture_logs() as logs:
            async with open_worker(worker_settings(aws, topology, burst=True)) as worker:
                await asyncio.wait_for(worker.run(), 60)
        assert charges(logs) == {order_id: 1}
        # 4. The client's next honest retry learns it was paid: not a 422.
        again = await api.post("/orders/async", json=body)
        assert again.status == 202, await again.text()
        assert (await again.json())["order_id"] == order_id


async def test_an_order_sns_acknowledged_is_shown_accepted_without_a_worker(
    api_client_factory: Any, topology: Topology, store: OrderStore, chaos: Any
) -> None:
    order_id = str(uuid.uuid4())
    async with api_client_factory() as api:
        await chaos(dynamodb_failing("UpdateItem"))
        resp = await api.post("/orders/async", json=order_body(order_id=order_id))
        assert resp.status == 202  # SNS acknowledged: durably queued
        await chaos([])

        async def shown() -> bool:
            got = await api.get(f"/orders/{order_id}")
            return got.status == 200 and bool((await got.json())["status"] == "accepted")

        # No worker runs: the API itself settles the mark once DynamoDB answers again.
        await until(shown, timeout=20)


@pytest.fixture
def api_client_factory(aws: AwsSettings, topology: Topology) -> Any:
    def make() -> TestClient[Any, Any]:
        return TestClient(TestServer(create_app(api_settings(aws, topology))))

    return make


@pytest.mark.slow
async def test_a_60s_dynamodb_outage_under_load_ends_with_every_202_paid_once(
    aws: AwsSettings,
    sqs: SQSClient,
    topology: Topology,
    store: OrderStore,
    chaos: Any,
    unused_tcp_port: int,
) -> None:
    """10 orders/s, half keyed, through the real API and worker processes; DynamoDB down 60 s."""
    worker_env = service_env(
        aws,
        ORDER_QUEUE_URL=topology.queue_url,
        ORDERS_TABLE=topology.table,
        NUM_WORKERS="50",
        PAYMENT_SECONDS="1",
        WAIT_TIME_SECONDS="2",
    )
    worker = await ServiceProcess("services.worker", worker_env).start()
    accepted: set[str] = set()
    answers: list[int] = []
    try:
        async with api_process(aws, topology, unused_tcp_port, PAYMENT_SECONDS="1") as (api, url):
            async with aiohttp.ClientSession() as http:

                async def one(i: int) -> None:
                    body = order_body(order_id=str(uuid.uuid4())) if i % 2 else order_body()
                    async with http.post(f"{url}/orders/async", json=body) as resp:
                        answers.append(resp.status)
                        if resp.status == 202:
                            accepted.add((await resp.json())["order_id"])

                async def load(seconds: float) -> None:
                    sent = []
                    for i in range(int(seconds * 10)):
                        sent.append(asyncio.create_task(one(i)))
                        await asyncio.sleep(0.1)
                    await asyncio.gather(*sent)

                await load(5)
                await chaos(DYNAMODB_DOWN)
                await load(60)
                await chaos([])
                await load(5)
            await until(lambda: all_paid(store, accepted), timeout=120)
            await until(lambda: _drained(sqs, topology), timeout=60)
        worker.signal(signal.SIGTERM)
        assert await worker.wait(timeout=60) == 0
    finally:
        await worker.stop()
    # Keyed orders were refused (503) while their pending write could not land; unkeyed ones
    # were accepted on SNS's word alone. Every 202 ends paid, charged exactly once.
    assert answers.count(202) == len(accepted) and 503 in answers
    ledger = charges([*worker.events, *api.events])
    assert ledger == dict.fromkeys(accepted, 1)
    assert (await queue_counts(sqs, topology.dlq_url))[0] == 0

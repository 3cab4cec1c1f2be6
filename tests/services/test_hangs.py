"""DynamoDB that hangs instead of failing, against real worker processes sharing one queue.

Every verdict on charges comes from the payment processor's ledger (`payment_charged` lines of
every process), never from the order record or `order_paid` lines.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bench.harness.ledger import Ledger, charges
from devstack.follow import ServiceProcess
from devstack.topology import Topology, create_topology, unique_names
from services.common.settings import AwsSettings
from services.domain.messages import OrderMessage, encode_message
from services.domain.orders import OrderStore, Status

from ..helpers import all_paid, new_order, queue_counts, service_env, until

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sqs import SQSClient

# Past the worker's DynamoDB read timeout (10 s) on every attempt: calls hang, then time out.
DYNAMODB_HANGS = [{"service": "dynamodb", "latency_ms": 60_000}]


def worker_env(aws: AwsSettings, topology: Topology, beat: Path, **extra: str) -> dict[str, str]:
    return service_env(
        aws,
        ORDER_QUEUE_URL=topology.queue_url,
        ORDERS_TABLE=topology.table,
        NUM_WORKERS="10",
        PAYMENT_SECONDS="3",
        PAYMENT_TIMEOUT_SECONDS="5",  # a 10 s lease, renewed once 5 s are left
        WAIT_TIME_SECONDS="1",
        HEARTBEAT_FILE=str(beat),
        **extra,
    )


@pytest.mark.slow
async def test_a_dynamodb_hang_while_paying_charges_each_order_once_with_two_workers(
    aws: AwsSettings, sqs: SQSClient, dynamodb: DynamoDBClient, chaos: Any, tmp_path: Path
) -> None:
    # A 10 s visibility timeout: visibility renewal stuck behind a hung lease renewal (3 attempts of
    # 10 s) lets messages reappear mid-outage, and the other worker takes them over.
    topology = await create_topology(aws, unique_names(visibility_timeout=10))
    store = OrderStore(dynamodb, topology.table)
    orders = [new_order() for _ in range(10)]
    workers = [
        ServiceProcess("services.worker", worker_env(aws, topology, tmp_path / f"w{i}.beat"))
        for i in range(2)
    ]
    try:
        await workers[0].start()
        for order in orders:
            await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))
        # Once some are claimed and being charged, DynamoDB hangs (their paid-marks and lease
        # renewals with it), and a second worker, idle, polls the same queue: any message the
        # first lets reappear, it receives.
        await until(lambda: _paying(store, orders, at_least=3))
        await chaos(DYNAMODB_HANGS)
        await workers[1].start()
        # The hang outlasts the client's 10 s attempts and twice the visibility timeout
        # (the fault's length, not a proof).
        await asyncio.sleep(25)
        await chaos([])
        ids = {o.order_id for o in orders}
        await until(lambda: all_paid(store, ids), timeout=180)
        await until(lambda: _drained(sqs, topology), timeout=60)
        for worker in workers:
            worker.signal(signal.SIGTERM)
        for worker in workers:
            assert await worker.wait(timeout=60) == 0
    finally:
        for worker in workers:
            await worker.stop()
    ledger = Ledger.of(*(charges(w.events) for w in workers)).per_order
    assert ledger == dict.fromkeys(ids, 1), {k: n for k, n in ledger.items() if n != 1}
    events = [e for w in workers for e in w.events]
    assert not [e for e in events if e["event"] == "claim_lost_after_payment"]
    # Each order was sent once and its holder lived: no message reappeared (kept invisible
    # through the hang), so none was received twice.
    assert not [e for e in events if e["event"] == "order_duplicate"]
    assert {e["receive_count"] for e in events if e["event"] == "order_paid"} == {1}
    assert (await queue_counts(sqs, topology.dlq_url))[0] == 0


async def _paying(store: OrderStore, orders: list[OrderMessage], at_least: int) -> bool:
    records = [await store.get(o.order_id) for o in orders]
    return sum(1 for r in records if r is not None and r.status == Status.PAYING) >= at_least


async def _drained(sqs: SQSClient, topology: Topology) -> bool:
    return await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_sigterm_while_dynamodb_hangs_after_charges_keeps_claims_and_messages(
    aws: AwsSettings,
    sqs: SQSClient,
    topology: Topology,
    store: OrderStore,
    chaos: Any,
    tmp_path: Path,
) -> None:
    orders = [new_order() for _ in range(3)]
    env = worker_env(aws, topology, tmp_path / "w.beat", SHUTDOWN_GRACE_SECONDS="1")
    worker = ServiceProcess("services.worker", env)
    try:
        await worker.start()
        for order in orders:
            await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))
        # Claimed and being charged: DynamoDB hangs, so their paid-marks cannot land.
        await until(lambda: _paying(store, orders, at_least=3))
        await chaos(DYNAMODB_HANGS)
        await worker.wait_for(lambda e: e["event"] == "payment_charged", count=3)
        worker.signal(signal.SIGTERM)
        assert await worker.wait(timeout=90) == 0
    finally:
        await worker.stop()
    await chaos([])
    ids = {o.order_id for o in orders}
    unrecorded = [e for e in worker.events if e["event"] == "payment_unrecorded"]
    assert {e["order_id"] for e in unrecorded} == ids
    assert all(e["level"] == "error" and e["amount"] > 0 and e["attempt"] == 1 for e in unrecorded)
    # Nothing handed back: the messages stay hidden and the claims are not released, so no
    # other worker charges these orders again.
    assert await queue_counts(sqs, topology.queue_url) == (0, 3)
    for order_id in ids:
        record = await store.get(order_id)
        assert record is not None and record.status == Status.PAYING
    assert charges(worker.events) == dict.fromkeys(ids, 1)

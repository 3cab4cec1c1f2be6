"""Real worker processes stopped the hard way (kill -9) and the ECS way (SIGTERM under load)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from typing import TYPE_CHECKING

from bench.harness.ledger import charges
from devstack.follow import ServiceProcess
from devstack.topology import Topology, create_topology
from services.common.settings import AwsSettings
from services.domain.orders import OrderStore, Status

from ..helpers import queue_counts, service_env, unique_names
from .test_worker import publish_orders

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


def worker_env(aws: AwsSettings, topology: Topology, **extra: str) -> dict[str, str]:
    defaults = {"WAIT_TIME_SECONDS": "1", "RETRY_BACKOFF_SECONDS": "0"}
    return service_env(
        aws,
        ORDER_QUEUE_URL=topology.queue_url,
        ORDERS_TABLE=topology.table,
        **(defaults | extra),
    )


async def all_paid(store: OrderStore, ids: set[str], timeout: float = 90) -> None:
    async with asyncio.timeout(timeout):
        while True:
            records = [await store.get(order_id) for order_id in ids]
            if all(r is not None and r.status == Status.PAID for r in records):
                return
            await asyncio.sleep(0.5)


async def pay_the_rest(env: dict[str, str], **extra: str) -> ServiceProcess:
    """A second worker, in burst mode, paying whatever the first one left in the queue."""
    rest = await ServiceProcess("services.worker", env | {"BURST": "1"} | extra).start()
    try:
        assert await rest.wait(timeout=60) == 0
    finally:
        await rest.stop()
    return rest


def paid_counts(*workers: ServiceProcess) -> Counter[str]:
    # The processor's own ledger (payment_charged), never the order_paid lines.
    return Counter(
        e["order_id"] for w in workers for e in w.events if e["event"] == "payment_charged"
    )


async def test_kill_9_mid_payment_loses_nothing_and_pays_once(
    aws: AwsSettings, sns: SNSClient, sqs: SQSClient, dynamodb: DynamoDBClient
) -> None:
    topology = await create_topology(aws, unique_names(visibility_timeout=3))
    store = OrderStore(dynamodb, topology.table)
    env = worker_env(
        aws, topology, NUM_WORKERS="10", PAYMENT_SECONDS="1", PAYMENT_TIMEOUT_SECONDS="2"
    )
    ids = await publish_orders(sns, topology, 30)
    first = await ServiceProcess("services.worker", env).start()
    second = ServiceProcess("services.worker", env)
    try:
        # Some orders paid, ten more mid-payment: then the process dies without a word.
        await first.wait_for(lambda e: e["event"] == "order_paid", count=5)
        # Then half a payment later, when the next wave is mid-charge (1 s payments).
        started = len([e for e in first.events if e["event"] == "payment_charged"])
        await first.wait_for(lambda e: e["event"] == "payment_charged", count=started + 1)
        await asyncio.sleep(0.5)
        first.signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        assert not any(e["event"] == "worker_stopped" for e in first.events)
        # The messages it held come back after their visibility timeout, and the claims it
        # left behind expire with their lease: the next worker pays every remaining order.
        await second.start()
        await all_paid(store, ids)
        await asyncio.sleep(1)  # let its last deletes land
        second.signal(signal.SIGTERM)
        assert await second.wait() == 0
    finally:
        await first.stop()
        await second.stop()
    # The processor's ledger, across both processes: every order charged exactly once.
    assert charges([*first.events, *second.events]) == dict.fromkeys(ids, 1)
    for order_id in ids:
        record = await store.get(order_id)
        assert record is not None and record.status == Status.PAID
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_sigterm_under_load_finishes_payments_and_loses_nothing(
    aws: AwsSettings, sns: SNSClient, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    env = worker_env(
        aws,
        topology,
        NUM_WORKERS="20",
        PAYMENT_SECONDS="1",
        SHUTDOWN_GRACE_SECONDS="5",
        WAIT_TIME_SECONDS="20",
    )
    ids = await publish_orders(sns, topology, 60)
    worker = await ServiceProcess("services.worker", env).start()
    try:
        await worker.wait_for(lambda e: e["event"] == "order_paid", count=20)
        worker.signal(signal.SIGTERM)
        assert await worker.wait(timeout=15) == 0
    finally:
        await worker.stop()
    stopped = worker.events[-1]
    assert stopped["event"] == "worker_stopped"
    assert stopped["paid"] >= 20
    # Payments in flight finished within the grace; what was received but not started
    # (polls that landed as the signal came) went straight back to the queue.
    assert stopped["received"] == stopped["paid"] + stopped["handed_back"], str(stopped)
    # Nothing is left invisible: what was paid is deleted, the rest was never taken.
    visible, in_flight = await queue_counts(sqs, topology.queue_url)
    assert in_flight == 0
    assert visible == 60 - stopped["paid"], str(stopped)

    rest = await pay_the_rest(env, WAIT_TIME_SECONDS="1")
    counts = paid_counts(worker, rest)
    assert set(counts) == ids and max(counts.values()) == 1
    assert charges([*worker.events, *rest.events]) == dict.fromkeys(ids, 1)
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_sigterm_with_short_grace_hands_payments_back(
    aws: AwsSettings, sns: SNSClient, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    env = worker_env(
        aws,
        topology,
        NUM_WORKERS="10",
        PAYMENT_SECONDS="3",
        SHUTDOWN_GRACE_SECONDS="0.5",
    )
    ids = await publish_orders(sns, topology, 10)
    worker = await ServiceProcess("services.worker", env).start()
    try:
        await worker.wait_for(lambda e: e["event"] == "worker_started")
        for _ in range(100):
            if (await queue_counts(sqs, topology.queue_url))[1] == 10:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # the payments are under way, and far from done
        worker.signal(signal.SIGTERM)
        assert await worker.wait(timeout=10) == 0
    finally:
        await worker.stop()
    stopped = worker.events[-1]
    assert (stopped["paid"], stopped["handed_back"]) == (0, 10)
    # Handed back, not stuck: all ten are visible again at once, and their claims released.
    assert await queue_counts(sqs, topology.queue_url) == (10, 0)
    for order_id in ids:
        record = await store.get(order_id)
        assert record is not None and record.status == Status.ACCEPTED

    rest = await pay_the_rest(env, PAYMENT_SECONDS="0.2")
    assert set(paid_counts(rest)) == ids
    # Cut off mid-charge: the first worker charged nothing, the second each order once.
    assert charges([*worker.events, *rest.events]) == dict.fromkeys(ids, 1)


async def test_prefetched_orders_wait_for_a_slot_and_go_back_at_sigterm(
    aws: AwsSettings, sns: SNSClient, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    env = worker_env(
        aws,
        topology,
        NUM_WORKERS="5",
        RECEIVE_PREFETCH="5",
        PAYMENT_SECONDS="5",
        SHUTDOWN_GRACE_SECONDS="10",
    )
    ids = await publish_orders(sns, topology, 20)
    worker = await ServiceProcess("services.worker", env).start()
    try:
        await worker.wait_for(lambda e: e["event"] == "worker_started")
        # It holds its 5 slots' messages and 5 more, ready next; never more than that.
        held = []
        for _ in range(15):
            held.append((await queue_counts(sqs, topology.queue_url))[1])
            await asyncio.sleep(0.1)
        assert max(held) == 10, held
        worker.signal(signal.SIGTERM)
        # The 5 waiting go back at once, while the 5 payments (5 s each) are still under way.
        for _ in range(20):
            if await queue_counts(sqs, topology.queue_url) == (15, 5):
                break
            await asyncio.sleep(0.1)
        assert await queue_counts(sqs, topology.queue_url) == (15, 5)
        assert await worker.wait(timeout=20) == 0
    finally:
        await worker.stop()
    stopped = worker.events[-1]
    # The 5 payments under way finished; the 5 waiting for a slot went back at once, unpaid.
    assert stopped["max_in_flight"] == 5, str(stopped)
    assert (stopped["paid"], stopped["handed_back"]) == (5, 5), str(stopped)
    assert await queue_counts(sqs, topology.queue_url) == (15, 0)
    # Their claims were given back (orders never received have no record yet).
    unpaid = [await store.get(order_id) for order_id in ids - set(paid_counts(worker))]
    statuses = Counter(None if r is None else r.status for r in unpaid)
    assert statuses == {Status.ACCEPTED: 5, None: 10}, statuses

    rest = await pay_the_rest(env, PAYMENT_SECONDS="0.2")
    assert charges([*worker.events, *rest.events]) == dict.fromkeys(ids, 1)
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)

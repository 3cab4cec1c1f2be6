"""Publisher: group-committed PublishBatch against the local AWS, and its two failure kinds."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import get_session

from devstack.env import CLIENT_CREDENTIALS
from devstack.topology import Topology
from services.adapters.publisher import MAX_BATCH_BYTES, Publisher
from services.common.aws import client_config
from services.domain.errors import PublishAmbiguous, PublishFailed

from ..helpers import REGION

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

# Over SNS's 256 KiB per message (moto counts characters: ASCII keeps both counts equal).
OVERSIZE = "x" * (MAX_BATCH_BYTES + 1)


async def drain(sqs: SQSClient, queue_url: str) -> list[str]:
    """Every message body in the queue, deleting as it goes, until a receive finds none."""
    bodies: list[str] = []
    while True:
        got = await sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        messages = got.get("Messages", [])
        if not messages:
            return bodies
        bodies += [m["Body"] for m in messages]
        await sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def messages(count: int) -> list[str]:
    return [f'{{"n": {i}, "id": "{uuid.uuid4()}"}}' for i in range(count)]


async def publish_all(publisher: Publisher, bodies: list[str]) -> list[Any]:
    return await asyncio.gather(*(publisher.publish(b) for b in bodies), return_exceptions=True)


async def test_concurrent_publishes_share_batches_and_each_lands_once(
    sns: SNSClient, sqs: SQSClient, topology: Topology
) -> None:
    publisher = Publisher(sns, topology.topic_arn, timeout=10, concurrency=1)
    first = messages(1)
    rest = messages(24)
    # One publish goes out alone; the 24 that arrive while it is in flight share batches.
    lone = asyncio.create_task(publisher.publish(first[0]))
    while publisher.stats.calls == 0:
        await asyncio.sleep(0)
    ids = [await lone, *await publish_all(publisher, rest)]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == 25
    assert publisher.stats.calls == 4  # [1], [10], [10], [4]
    assert publisher.stats.largest_batch == 10
    landed = await drain(sqs, topology.queue_url)
    assert sorted(landed) == sorted(first + rest)
    await publisher.close()


async def test_a_lone_publish_is_one_call(
    sns: SNSClient, sqs: SQSClient, topology: Topology
) -> None:
    publisher = Publisher(sns, topology.topic_arn, timeout=10)
    body = messages(1)[0]
    assert await publisher.publish(body)
    assert (publisher.stats.calls, publisher.stats.entries) == (1, 1)
    assert await drain(sqs, topology.queue_url) == [body]


async def test_the_byte_limit_splits_batches(
    sns: SNSClient, sqs: SQSClient, topology: Topology
) -> None:
    publisher = Publisher(sns, topology.topic_arn, timeout=10)
    # Four messages of 100 KiB: three do not fit under 256 KiB, so 2 + 2.
    big = [f"{i}" + "y" * 100_000 for i in range(4)]
    ids = await publish_all(publisher, big)
    assert all(isinstance(i, str) for i in ids)
    assert publisher.stats.calls == 2
    assert sorted(await drain(sqs, topology.queue_url)) == sorted(big)


async def test_an_oversize_message_fails_definitely_and_alone(
    sns: SNSClient, sqs: SQSClient, topology: Topology
) -> None:
    publisher = Publisher(sns, topology.topic_arn, timeout=10)
    small = messages(3)
    results = await publish_all(publisher, [small[0], OVERSIZE, small[1], small[2]])
    bad = results[1]
    assert isinstance(bad, PublishFailed) and not isinstance(bad, PublishAmbiguous)
    assert all(isinstance(r, str) for i, r in enumerate(results) if i != 1)
    assert sorted(await drain(sqs, topology.queue_url)) == sorted(small)


async def test_one_failed_entry_in_a_shared_batch_fails_only_its_caller(
    sns: SNSClient, sqs: SQSClient, topology: Topology
) -> None:
    # A byte limit above SNS's lets the oversize message share a batch with the others, so
    # SNS (here the local AWS) answers that entry's failure inside a successful call.
    publisher = Publisher(sns, topology.topic_arn, timeout=10, max_batch_bytes=4 * MAX_BATCH_BYTES)
    small = messages(4)
    results = await publish_all(publisher, [small[0], small[1], OVERSIZE, small[2], small[3]])
    assert publisher.stats.calls == 1
    bad = results[2]
    assert isinstance(bad, PublishFailed) and not isinstance(bad, PublishAmbiguous)
    assert bad.code == "InvalidParameter"
    ok = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(r, str) for r in ok) and len(set(ok)) == 4
    assert sorted(await drain(sqs, topology.queue_url)) == sorted(small)


async def test_an_unknown_topic_fails_every_entry_definitely(
    sns: SNSClient, topology: Topology
) -> None:
    missing = topology.topic_arn + "-missing"
    publisher = Publisher(sns, missing, timeout=10)
    results = await publish_all(publisher, messages(3))
    for result in results:
        assert isinstance(result, PublishFailed) and not isinstance(result, PublishAmbiguous)
        assert result.code == "NotFound"
    # Each caller gets an exception of its own.
    assert len({id(r) for r in results}) == 3


async def test_a_closed_publisher_refuses(sns: SNSClient, topology: Topology) -> None:
    publisher = Publisher(sns, topology.topic_arn, timeout=10)
    await publisher.close()
    with pytest.raises(PublishFailed) as failed:
        await publisher.publish("late")
    assert failed.value.code == "Closed"


# Faults: an SNS endpoint that refuses connections, never answers, or hangs up.


@contextlib.asynccontextmanager
async def sns_at(endpoint: str, max_attempts: int = 3) -> AsyncIterator[SNSClient]:
    async with get_session().create_client(
        "sns",
        region_name=REGION,
        endpoint_url=endpoint,
        **CLIENT_CREDENTIALS,
        config=client_config(pool_size=20, read_timeout=30, max_attempts=max_attempts),
    ) as client:
        yield client


@contextlib.asynccontextmanager
async def fake_sns(behaviour: str) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback server that reads each request and then hangs ("silent") or hangs up."""
    requests: list[bytes] = []
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.read(65536))
        if behaviour == "hang-up":
            writer.close()
        else:
            held.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_sns_is_a_definite_failure() -> None:
    async with sns_at(f"http://127.0.0.1:{closed_port()}", max_attempts=2) as sns:
        publisher = Publisher(sns, "arn:aws:sns:us-east-1:123456789012:t", timeout=10)
        with pytest.raises(PublishFailed) as failed:
            await publisher.publish("hello")
    assert not isinstance(failed.value, PublishAmbiguous)
    assert failed.value.code == "EndpointConnectionError"


async def test_no_answer_after_sending_is_ambiguous_and_a_never_sent_entry_is_not() -> None:
    async with fake_sns("silent") as (endpoint, requests), sns_at(endpoint) as sns:
        publisher = Publisher(
            sns, "arn:aws:sns:us-east-1:123456789012:t", timeout=0.5, concurrency=1
        )
        first = asyncio.create_task(publisher.publish("m0"))
        while not requests:
            await asyncio.sleep(0.01)
        # Half a timeout later, so the first call's end (and the next batch leaving) comes
        # well before these callers give up: ten more fill the next batch, which also hangs,
        # and the eleventh never leaves.
        await asyncio.sleep(0.25)
        later = [asyncio.create_task(publisher.publish(f"m{i}")) for i in range(1, 12)]
        results = await asyncio.gather(first, *later, return_exceptions=True)
    assert all(isinstance(r, PublishAmbiguous) for r in results[:11])
    last = results[11]
    assert isinstance(last, PublishFailed) and not isinstance(last, PublishAmbiguous)
    assert publisher.stats.entries == 11


async def test_a_connection_lost_after_sending_is_ambiguous() -> None:
    async with fake_sns("hang-up") as (endpoint, requests), sns_at(endpoint) as sns:
        publisher = Publisher(sns, "arn:aws:sns:us-east-1:123456789012:t", timeout=10)
        results = await publish_all(publisher, ["a", "b"])
    assert requests, "the request reached the server"
    assert all(isinstance(r, PublishAmbiguous) for r in results)

"""The local AWS's control endpoints over HTTP: the request counter (and fault injection).

A server of their own (not the session's), so counts and rules never leak into other tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiobotocore.session import get_session

from localaws.client import request_counts
from localaws.process import local_aws_process
from services.common.aws import client_config

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


@dataclass(frozen=True)
class Aws:
    endpoint: str
    sqs: SQSClient
    sns: SNSClient
    dynamodb: DynamoDBClient


@pytest.fixture(scope="module")
def own_endpoint() -> Iterator[str]:
    with local_aws_process() as url:
        yield url


@pytest.fixture(scope="module")
async def aws(own_endpoint: str) -> AsyncIterator[Aws]:
    # max_attempts=1: botocore's standard mode retries 5xx and throttling, and these tests
    # assert on what one call sees.
    config = client_config(pool_size=10, read_timeout=30, max_attempts=1)
    kwargs: dict[str, Any] = {
        "region_name": "us-east-1",
        "endpoint_url": own_endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "config": config,
    }
    session = get_session()
    async with AsyncExitStack() as stack:
        yield Aws(
            own_endpoint,
            await stack.enter_async_context(session.create_client("sqs", **kwargs)),
            await stack.enter_async_context(session.create_client("sns", **kwargs)),
            await stack.enter_async_context(session.create_client("dynamodb", **kwargs)),
        )


def _delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, int]:
    """Per "service.Operation", what changed between two snapshots."""
    changed = {}
    for service, ops in after.items():
        for op, n in ops.items():
            if n != before.get(service, {}).get(op, 0):
                changed[f"{service}.{op}"] = n - before.get(service, {}).get(op, 0)
    return changed


async def test_requests_are_counted_by_service_and_operation(aws: Aws) -> None:
    before = await request_counts(aws.endpoint)
    url = (await aws.sqs.create_queue(QueueName=f"count-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
    topic = (await aws.sns.create_topic(Name=f"count-{uuid.uuid4().hex[:8]}"))["TopicArn"]
    for _ in range(3):
        await aws.sns.publish(TopicArn=topic, Message="x")
    await aws.dynamodb.list_tables()
    # A long poll that parks on the empty queue and runs again when the message lands.
    poll = asyncio.create_task(aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10))
    await asyncio.sleep(0.5)
    assert not poll.done()
    await aws.sqs.send_message(QueueUrl=url, MessageBody="wake")
    assert [m["Body"] for m in (await poll)["Messages"]] == ["wake"]
    after = await request_counts(aws.endpoint)
    assert _delta(after, before) == {
        "sqs.CreateQueue": 1,
        "sqs.SendMessage": 1,
        "sqs.ReceiveMessage": 1,
        "sns.CreateTopic": 1,
        "sns.Publish": 3,
        "dynamodb.ListTables": 1,
    }


async def test_query_protocol_requests_are_counted_by_action(aws: Aws) -> None:
    before = await request_counts(aws.endpoint)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/"
        "aws4_request, SignedHeaders=host, Signature=0",
    }
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(
                aws.endpoint, data="Action=ListQueues&Version=2012-11-05", headers=headers
            ) as response:
                assert response.status == 200
    assert _delta(await request_counts(aws.endpoint), before) == {"sqs.ListQueues": 2}


async def test_the_counter_answers_only_get(aws: Aws) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{aws.endpoint}/_localaws/requests") as response,
    ):
        assert response.status == 405
        assert response.headers["Allow"] == "GET"
        assert (await response.json())["error"]["code"] == "method_not_allowed"

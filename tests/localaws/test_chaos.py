"""The local AWS's control endpoints over HTTP: the request counter and fault injection.

A server of their own (not the session's), so counts and rules never leak into other tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

import aiohttp
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from devstack.env import client_args
from devstack.local_aws import local_aws_process
from localaws.client import (
    ControlError,
    counts_between,
    faults,
    get_faults,
    request_counts,
    set_faults,
)
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
    # botocore's standard mode retries 5xx and throttling, and these tests assert on what
    # one call sees. max_attempts counts retries (botocore adds the first attempt): 0.
    config = client_config(pool_size=10, read_timeout=30, max_attempts=1)
    kwargs = client_args(own_endpoint, config)
    session = get_session()
    async with AsyncExitStack() as stack:
        yield Aws(
            own_endpoint,
            await stack.enter_async_context(session.create_client("sqs", **kwargs)),
            await stack.enter_async_context(session.create_client("sns", **kwargs)),
            await stack.enter_async_context(session.create_client("dynamodb", **kwargs)),
        )


def _delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, int]:
    """Per "service.Operation", the requests made between two snapshots."""
    made = counts_between(before, after)
    return {f"{service}.{op}": n for service, ops in made.items() for op, n in ops.items()}


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
        # botocore writes Action first; other clients need not.
        for form in (
            "Action=ListQueues&Version=2012-11-05",
            "Version=2012-11-05&Action=ListQueues",
        ):
            async with http.post(aws.endpoint, data=form, headers=headers) as response:
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


# --- fault injection -------------------------------------------------------------------


async def _table(aws: Aws) -> str:
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    await aws.dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def _rule(service: str, status: int, code: str, **more: Any) -> dict[str, Any]:
    return {"service": service, "error": {"statusCode": status, "code": code}, **more}


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "ServiceUnavailable"), (400, "ProvisionedThroughputExceededException")],
)
async def test_dynamodb_call_fails_with_the_injected_error(
    aws: Aws, status: int, code: str
) -> None:
    table = await _table(aws)
    before = await request_counts(aws.endpoint)
    async with faults(aws.endpoint, [_rule("dynamodb", status, code, operation="PutItem")]):
        with pytest.raises(ClientError) as caught:
            await aws.dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    _assert_error(caught.value, status, code)
    # Answered by the rule, not by moto: one attempt, nothing written.
    assert _delta(await request_counts(aws.endpoint), before) == {"dynamodb.PutItem": 1}
    assert "Item" not in await aws.dynamodb.get_item(TableName=table, Key={"pk": {"S": "a"}})


async def test_a_lost_answer_applies_the_call_and_answers_the_error(aws: Aws) -> None:
    table = await _table(aws)
    rule = _rule("dynamodb", 400, "ThrottlingException", operation="PutItem", lost_answer=True)
    async with faults(aws.endpoint, [rule]) as held:
        assert held[0]["lost_answer"] is True
        with pytest.raises(ClientError) as caught:
            await aws.dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    _assert_error(caught.value, 400, "ThrottlingException")
    # Served by moto all the same: the item is there.
    assert "Item" in await aws.dynamodb.get_item(TableName=table, Key={"pk": {"S": "a"}})


async def test_a_lost_answer_needs_an_error(aws: Aws) -> None:
    with pytest.raises(Exception, match="lost_answer"):
        await set_faults(
            aws.endpoint, [{"service": "dynamodb", "lost_answer": True, "latency_ms": 1}]
        )


async def test_a_modelled_dynamodb_error_raises_its_own_exception_class(aws: Aws) -> None:
    code = "ProvisionedThroughputExceededException"
    async with faults(aws.endpoint, [_rule("dynamodb", 400, code)]):
        with pytest.raises(aws.dynamodb.exceptions.ProvisionedThroughputExceededException):
            await aws.dynamodb.list_tables()


@pytest.mark.parametrize(
    ("status", "code"), [(503, "ServiceUnavailable"), (400, "RequestThrottled")]
)
async def test_sqs_call_fails_with_the_injected_error(aws: Aws, status: int, code: str) -> None:
    url = (await aws.sqs.create_queue(QueueName=f"chaos-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
    before = await request_counts(aws.endpoint)
    async with faults(aws.endpoint, [_rule("sqs", status, code, operation="SendMessage")]):
        with pytest.raises(ClientError) as caught:
            await aws.sqs.send_message(QueueUrl=url, MessageBody="lost")
    _assert_error(caught.value, status, code)
    assert _delta(await request_counts(aws.endpoint), before) == {"sqs.SendMessage": 1}
    assert "Messages" not in await aws.sqs.receive_message(QueueUrl=url)


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (400, "Throttling")])
async def test_sns_call_fails_with_the_injected_error(aws: Aws, status: int, code: str) -> None:
    topic = (await aws.sns.create_topic(Name=f"chaos-{uuid.uuid4().hex[:8]}"))["TopicArn"]
    before = await request_counts(aws.endpoint)
    async with faults(aws.endpoint, [_rule("sns", status, code, operation="Publish")]):
        with pytest.raises(ClientError) as caught:
            await aws.sns.publish(TopicArn=topic, Message="lost")
    _assert_error(caught.value, status, code)
    assert _delta(await request_counts(aws.endpoint), before) == {"sns.Publish": 1}


def _assert_error(error: ClientError, status: int, code: str) -> None:
    assert error.response["Error"]["Code"] == code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == status


async def test_a_query_protocol_client_gets_an_xml_error(aws: Aws) -> None:
    # SQS's older clients speak the query protocol: the error must come back as XML.
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/"
        "aws4_request, SignedHeaders=host, Signature=0",
    }
    async with (
        faults(aws.endpoint, [_rule("sqs", 503, "ServiceUnavailable")]),
        aiohttp.ClientSession() as http,
        http.post(aws.endpoint, data="Action=ListQueues", headers=headers) as response,
    ):
        assert response.status == 503
        root = ElementTree.fromstring(await response.read())
    namespace = root.tag.partition("}")[0] + "}"
    assert root.tag == f"{namespace}ErrorResponse"
    assert root.findtext(f"{namespace}Error/{namespace}Code") == "ServiceUnavailable"
    assert root.findtext(f"{namespace}Error/{namespace}Type") == "Receiver"


async def test_only_the_named_operation_fails(aws: Aws) -> None:
    table = await _table(aws)
    key = {"pk": {"S": "k"}}
    async with faults(
        aws.endpoint, [_rule("dynamodb", 503, "ServiceUnavailable", operation="UpdateItem")]
    ):
        await aws.dynamodb.put_item(TableName=table, Item=key)
        assert (await aws.dynamodb.get_item(TableName=table, Key=key))["Item"] == key
        with pytest.raises(ClientError):
            await aws.dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET v = :v",
                ExpressionAttributeValues={":v": {"N": "1"}},
            )
        await aws.sqs.list_queues()  # another service entirely


async def test_only_the_named_region_fails(aws: Aws) -> None:
    config = client_config(pool_size=2, read_timeout=30, max_attempts=1)
    async with (
        faults(aws.endpoint, [_rule("sqs", 503, "ServiceUnavailable", region="eu-west-1")]),
        get_session().create_client(
            "sqs", **client_args(aws.endpoint, config, region="eu-west-1")
        ) as europe,
    ):
        await aws.sqs.list_queues()  # us-east-1
        with pytest.raises(ClientError):
            await europe.list_queues()


async def test_probability_zero_never_fires(aws: Aws) -> None:
    async with faults(aws.endpoint, [_rule("sqs", 503, "ServiceUnavailable", probability=0)]):
        for _ in range(100):
            await aws.sqs.list_queues()


async def test_probability_is_drawn_per_call(aws: Aws) -> None:
    failed = 0
    async with faults(aws.endpoint, [_rule("sqs", 503, "ServiceUnavailable", probability=0.5)]):
        for _ in range(200):
            try:
                await aws.sqs.list_queues()
            except ClientError:
                failed += 1
    # Both outcomes: all-or-nothing would take a 2**-199 chance.
    assert 0 < failed < 200


async def test_latency_delays_one_call_while_others_are_answered(aws: Aws) -> None:
    url = (await aws.sqs.create_queue(QueueName=f"chaos-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
    slow_rule = {"service": "sqs", "operation": "SendMessage", "latency_ms": 1500}
    async with faults(aws.endpoint, [slow_rule]):
        slow = asyncio.create_task(aws.sqs.send_message(QueueUrl=url, MessageBody="late"))
        await asyncio.sleep(0.2)  # the send has reached the server and is sleeping there
        # Other services, and other SQS operations, are answered meanwhile.
        await aws.dynamodb.list_tables()
        await aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        assert not slow.done()
        assert "Messages" not in await aws.sqs.receive_message(QueueUrl=url)
        sent = await slow  # then served normally
    got = await aws.sqs.receive_message(QueueUrl=url)
    assert [(m["MessageId"], m["Body"]) for m in got["Messages"]] == [(sent["MessageId"], "late")]


async def test_latency_then_error(aws: Aws) -> None:
    rule = _rule("sns", 503, "ServiceUnavailable", operation="ListTopics", latency_ms=1000)
    async with faults(aws.endpoint, [rule]):
        slow = asyncio.create_task(aws.sns.list_topics())
        await asyncio.sleep(0.2)
        await aws.sqs.list_queues()
        assert not slow.done()
        with pytest.raises(ClientError) as caught:
            await slow
    _assert_error(caught.value, 503, "ServiceUnavailable")


# --- the rules endpoint ----------------------------------------------------------------


async def _post(endpoint: str, body: bytes, path: str = "/_localaws/chaos/faults") -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(endpoint + path, data=body) as response,
    ):
        return response.status, response.content_type, await response.json()


async def test_get_lists_the_rules_with_their_defaults_and_empty_clears(aws: Aws) -> None:
    rules: list[dict[str, Any]] = [
        {"service": "dynamodb", "operation": "UpdateItem", "error": {}},
        {"service": "sns", "region": "us-east-1", "probability": 0.25, "latency_ms": 50},
    ]
    expected = [
        {
            "service": "dynamodb",
            "operation": "UpdateItem",
            "probability": 1.0,
            "error": {
                "statusCode": 503,
                "code": "ServiceUnavailable",
                "message": "injected by a localaws fault rule",
            },
        },
        {"service": "sns", "region": "us-east-1", "probability": 0.25, "latency_ms": 50},
    ]
    assert await set_faults(aws.endpoint, rules) == expected
    assert await get_faults(aws.endpoint) == expected
    assert await set_faults(aws.endpoint, []) == []
    assert await get_faults(aws.endpoint) == []


async def test_localstack_path_and_verbs(aws: Aws) -> None:
    one, two = _rule("sqs", 503, "A"), _rule("sns", 503, "B")
    async with aiohttp.ClientSession() as http:
        url = f"{aws.endpoint}/_localstack/chaos/faults"
        async with http.post(url, json=[one]) as response:
            assert response.status == 200
        async with http.patch(url, json=[two]) as response:
            assert [r["error"]["code"] for r in await response.json()] == ["A", "B"]
        async with http.delete(url, json=[one]) as response:
            assert [r["error"]["code"] for r in await response.json()] == ["B"]
        async with http.put(url, json=[]) as response:
            assert response.status == 405
            assert (await response.json())["error"]["code"] == "method_not_allowed"
    assert [r["error"]["code"] for r in await get_faults(aws.endpoint)] == ["B"]
    await set_faults(aws.endpoint, [])


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        (b"not json", "invalid_json", ""),
        (b'{"service": "sqs"}', "invalid_rule", "list"),
        (b'[{"service": "s3", "latency_ms": 1}]', "invalid_rule", "[0].service"),
        (b'[{"latency_ms": 1}]', "invalid_rule", "[0].service"),
        (b'[{"service": "sqs", "latency_ms": 1, "when": "now"}]', "invalid_rule", "'when'"),
        (b'[{"service": "sqs", "probability": "1", "error": {}}]', "invalid_rule", "probability"),
        (b'[{"service": "sqs", "probability": true, "error": {}}]', "invalid_rule", "probability"),
        (b'[{"service": "sqs", "probability": 1.5, "error": {}}]', "invalid_rule", "probability"),
        (b'[{"service": "sqs", "latency_ms": -1}]', "invalid_rule", "latency_ms"),
        (b'[{"service": "sqs", "operation": "", "error": {}}]', "invalid_rule", "operation"),
        (b'[{"service": "sqs", "region": 1, "error": {}}]', "invalid_rule", "region"),
        (b'[{"service": "sqs", "error": {"statusCode": 200}}]', "invalid_rule", "statusCode"),
        (b'[{"service": "sqs", "error": {"statusCode": 503.0}}]', "invalid_rule", "statusCode"),
        (b'[{"service": "sqs", "error": {"code": "a\\nb"}}]', "invalid_rule", "code"),
        (b'[{"service": "sqs", "error": {"Code": "X"}}]', "invalid_rule", "'Code'"),
        (b'[{"service": "sqs", "error": "503"}]', "invalid_rule", "[0].error"),
        (b'[{"service": "sqs"}]', "invalid_rule", "[0]"),
        (b'[{"service": "sqs", "error": {}}, 3]', "invalid_rule", "[1]"),
    ],
)
async def test_a_bad_rule_list_is_refused_and_changes_nothing(
    aws: Aws, body: bytes, code: str, names: str
) -> None:
    async with faults(aws.endpoint, [_rule("sqs", 503, "Kept", probability=0)]) as kept:
        status, content_type, answer = await _post(aws.endpoint, body)
        assert status == 400
        assert content_type == "application/json"
        assert answer["error"]["code"] == code
        assert names in answer["error"]["message"]
        assert await get_faults(aws.endpoint) == kept


async def test_the_context_manager_clears_the_rules_when_the_block_fails(aws: Aws) -> None:
    with pytest.raises(RuntimeError):
        async with faults(aws.endpoint, [_rule("sqs", 503, "ServiceUnavailable")]):
            raise RuntimeError("the test failed")
    assert await get_faults(aws.endpoint) == []
    await aws.sqs.list_queues()


async def test_set_faults_raises_on_a_refused_list(aws: Aws) -> None:
    with pytest.raises(ControlError, match="invalid_rule"):
        await set_faults(aws.endpoint, [{"service": "s3", "error": {}}])

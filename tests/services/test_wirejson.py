"""Direct JSON bodies (services/common/wirejson.py): the same request as botocore's model walk.

Every request shape the services send over DynamoDB and SQS is serialized both ways and must
agree: the same method, path and headers, and bodies equal as JSON. A request the model would
convert (a blob given as text, bytes, a datetime) must go the model's way.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import botocore.session
import orjson
import pytest
from aiobotocore.session import get_session

from devstack.env import CLIENT_CREDENTIALS
from services.common import wirejson
from services.common.aws import client_config, open_client
from services.common.settings import AwsSettings
from services.domain import transitions as t
from services.domain.messages import OrderMessage
from services.domain.records import Status

from ..helpers import REGION

ORDER = OrderMessage(
    order_id="0f8fad5b-d9cb-469f-a165-70867728950e",
    customer_id="c-ü-1",  # not ASCII: botocore escapes it, orjson writes UTF-8; equal as JSON
    items=({"product_id": "p1", "quantity": 2, "price": 9.99},),
    total=19.98,
    accepted_at=1_700_000_000.5,
)
NOW = time.time()


def _writes() -> Iterator[tuple[str, t.Write]]:
    table, oid = "orders", ORDER.order_id
    yield "claim", t.claim(table, ORDER, "tok", NOW + 60, "msg-1", now=NOW)
    yield "claim+fingerprint", t.claim(table, ORDER, "tok", NOW + 60, "m", now=NOW, fingerprint="f")
    yield "mark_paid", t.mark_paid(table, oid, "tok", 3000.125)
    yield "mark_failed", t.mark_failed(table, oid, "tok", "declined", retryable=False)
    yield "release", t.release(table, oid, "tok", "unavailable", Status.ACCEPTED)
    yield "renew", t.renew(table, oid, "tok", NOW + 120)
    yield "bind_key", t.bind_key(table, "key-1", oid, "f")
    yield "create_pending", t.create_pending(table, ORDER, "f")
    yield "forget_pending", t.forget_pending(table, oid)
    yield "mark_accepted", t.mark_accepted(table, oid)
    yield "record_accepted", t.record_accepted(table, ORDER)


WRITES = dict(_writes())
QUEUE = "http://127.0.0.1:1/123456789012/orders"
SQS_REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "receive": (
        "ReceiveMessage",
        {
            "QueueUrl": QUEUE,
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": 20,
            "VisibilityTimeout": 30,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        },
    ),
    "delete batch": (
        "DeleteMessageBatch",
        {"QueueUrl": QUEUE, "Entries": [{"Id": "0", "ReceiptHandle": "rh-0"}]},
    ),
    "visibility batch": (
        "ChangeMessageVisibilityBatch",
        {
            "QueueUrl": QUEUE,
            "Entries": [{"Id": "0", "ReceiptHandle": "r", "VisibilityTimeout": 60}],
        },
    ),
    "dead letter": (
        "SendMessage",
        {
            "QueueUrl": QUEUE,
            "MessageBody": "{}",
            "MessageAttributes": {"failure_reason": {"DataType": "String", "StringValue": "x"}},
        },
    ),
}


def _client(service: str, *, lean: bool = True) -> Any:
    return botocore.session.get_session().create_client(
        service,
        region_name=REGION,
        endpoint_url="http://127.0.0.1:1",
        config=client_config(pool_size=1, read_timeout=1, lean=lean),
        **CLIENT_CREDENTIALS,
    )


def _both(client: Any, operation: str, params: dict[str, Any]) -> tuple[Any, Any, int]:
    """The model's request and DirectJSON's (each the TypeError class if it raised one), and
    how many requests DirectJSON wrote directly."""
    model = client._serializer
    direct = wirejson.DirectJSON(model)
    op = client.meta.service_model.operation_model(operation)

    def serialized(serializer: Any) -> Any:
        try:
            return serializer.serialize_to_request(params, op)
        except TypeError as exc:  # json.dumps cannot write it: the same error both ways
            return type(exc)

    return serialized(model), serialized(direct), direct.direct


def _assert_same(expected: dict[str, Any], got: dict[str, Any]) -> None:
    assert orjson.loads(got.pop("body")) == orjson.loads(expected.pop("body"))
    assert got == expected


@pytest.mark.parametrize("name", list(WRITES))
def test_each_write_alone_and_in_a_transaction_is_the_same_request(name: str) -> None:
    dynamodb = _client("dynamodb")
    [(kind, request)] = WRITES[name].items()
    single = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}[kind]
    for operation, params in (
        (single, request),
        ("TransactWriteItems", {"TransactItems": list(WRITES.values())}),
    ):
        expected, got, direct = _both(dynamodb, operation, params)
        _assert_same(expected, got)
        assert direct == 1, f"{operation} went the model's way"


@pytest.mark.parametrize("name", list(SQS_REQUESTS))
def test_the_workers_sqs_requests_are_the_same(name: str) -> None:
    operation, params = SQS_REQUESTS[name]
    expected, got, direct = _both(_client("sqs"), operation, params)
    _assert_same(expected, got)
    assert direct == 1


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        # A blob given as text: the model base64-encodes it.
        ("PutItem", {"TableName": "t", "Item": {"pk": {"S": "a"}, "b": {"B": "raw text"}}}),
        ("PutItem", {"TableName": "t", "Item": {"pk": {"S": "a"}, "b": {"BS": ["x", "y"]}}}),
        ("PutItem", {"TableName": "t", "Item": {"pk": {"S": "a"}, "b": {"B": b"\x00\xff"}}}),
        # Values orjson would write differently make it refuse.
        ("PutItem", {"TableName": "t", "Item": {"pk": {"S": datetime.datetime.now()}}}),
        ("PutItem", {"TableName": "t", "Item": {"pk": {"N": 2**70}}}),
    ],
    ids=["blob as text", "blob set as text", "bytes", "datetime", "big int"],
)
def test_what_the_model_would_convert_goes_the_models_way(
    operation: str, params: dict[str, Any]
) -> None:
    expected, got, direct = _both(_client("dynamodb"), operation, params)
    assert got == expected
    assert direct == 0


def test_operations_with_timestamps_or_floats_always_go_the_models_way() -> None:
    dynamodb = _client("dynamodb")
    direct = wirejson.DirectJSON(dynamodb._serializer)
    model = dynamodb.meta.service_model
    # ListBackups has timestamp members; UpdateTableReplicaAutoScaling a double.
    for name in ("ListBackups", "UpdateTableReplicaAutoScaling"):
        assert direct._plan(model.operation_model(name)) is None
    assert direct._plan(model.operation_model("TransactWriteItems")) == frozenset(
        {b'"B":', b'"BS":'}
    )


def test_install_takes_only_lean_json_clients() -> None:
    assert isinstance(wirejson.install(_client("dynamodb")), wirejson.DirectJSON)
    assert isinstance(wirejson.install(_client("sqs")), wirejson.DirectJSON)
    assert wirejson.install(_client("sns")) is None  # the query protocol
    assert wirejson.install(_client("dynamodb", lean=False)) is None  # validating: the model's way


async def test_the_services_clients_send_direct_bodies_that_aws_takes(aws: AwsSettings) -> None:
    """Through open_client, as the services make theirs: the local AWS takes the writes."""
    table = f"wire-{time.time_ns()}"
    config = client_config(pool_size=2, read_timeout=10)
    async with open_client(get_session(), "dynamodb", aws, config) as dynamodb:
        await dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        now = time.time()
        claim = t.claim(table, ORDER, "tok", now + 60, "msg-1", now=now, fingerprint="ü-1")
        await dynamodb.transact_write_items(TransactItems=[claim])
        await dynamodb.transact_write_items(
            TransactItems=[t.mark_paid(table, ORDER.order_id, "tok", 3000.0)]
        )
        got = await dynamodb.get_item(TableName=table, Key={"pk": claim["Update"]["Key"]["pk"]})
        assert got["Item"]["status"] == {"S": "paid"}
        assert got["Item"]["request_hash"] == {"S": "ü-1"}  # UTF-8 on the wire, read back
        assert dynamodb._serializer.direct >= 3

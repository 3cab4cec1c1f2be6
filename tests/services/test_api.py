"""The API contract, against the real app on a socket and a real (local) SNS/SQS."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from devstack.topology import Topology
from services.api.app import create_app
from services.common.settings import AwsSettings
from services.domain.messages import decode_message

from ..helpers import api_settings, order_body, queue_counts

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

Client = TestClient[Any, Any]


async def _receive_all(sqs: SQSClient, queue_url: str) -> list[str]:
    got = await sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [m["Body"] for m in got.get("Messages", [])]


async def _error(resp: Any, status: int, code: str) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    assert message
    return message


async def test_async_order_is_queued_before_202(
    api: Client, sqs: SQSClient, topology: Topology
) -> None:
    resp = await api.post("/orders/async", json=order_body())
    assert resp.status == 202
    body = await resp.json()
    assert body["status"] == "accepted"
    assert body["total"] == 20.0
    assert resp.headers["Location"] == f"/orders/{body['order_id']}"
    uuid.UUID(body["order_id"])

    # The 202 came after SNS acknowledged, and raw delivery put the order JSON on the queue.
    [raw] = await _receive_all(sqs, topology.queue_url)
    message = decode_message(raw)
    assert message.order_id == body["order_id"]
    assert message.total == 20.0
    assert message.customer_id == 42
    assert len(message.items) == 2


async def test_client_order_id_is_kept(api: Client, sqs: SQSClient, topology: Topology) -> None:
    order_id = str(uuid.uuid4())
    resp = await api.post("/orders/async", json=order_body(order_id=order_id, customer_id="c-7"))
    assert resp.status == 202
    assert (await resp.json())["order_id"] == order_id
    [raw] = await _receive_all(sqs, topology.queue_url)
    assert decode_message(raw).customer_id == "c-7"


async def test_sync_order_pays_inline(api: Client, sqs: SQSClient, topology: Topology) -> None:
    resp = await api.post("/orders/sync", json=order_body())
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "paid"
    assert body["total"] == 20.0
    assert body["payment_ms"] >= 200  # the processor's configured 0.2 s, awaited
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_health_needs_no_aws(api: Client) -> None:
    resp = await api.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


ITEM = {"product_id": "p", "quantity": 1, "price": 1.0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": [ITEM]}, "customer_id"),
        ({"customer_id": 0, "items": [ITEM]}, "customer_id"),
        ({"customer_id": True, "items": [ITEM]}, "customer_id"),
        ({"customer_id": "", "items": [ITEM]}, "customer_id"),
        ({"customer_id": "x" * 65, "items": [ITEM]}, "customer_id"),
        ({"customer_id": 1.5, "items": [ITEM]}, "customer_id"),
        ({"customer_id": 10**30, "items": [ITEM]}, "customer_id"),
        ({"customer_id": 1, "items": [ITEM | {"quantity": 10**30}]}, "items[0].quantity"),
        ({"customer_id": 1}, "items"),
        ({"customer_id": 1, "items": []}, "items"),
        ({"customer_id": 1, "items": [ITEM] * 101}, "items"),
        ({"customer_id": 1, "items": {"a": 1}}, "items"),
        ({"customer_id": 1, "items": [ITEM | {"quantity": 0}]}, "items[0].quantity"),
        ({"customer_id": 1, "items": [ITEM | {"quantity": 1001}]}, "items[0].quantity"),
        ({"customer_id": 1, "items": [ITEM | {"quantity": True}]}, "items[0].quantity"),
        ({"customer_id": 1, "items": [ITEM | {"quantity": 2.0}]}, "items[0].quantity"),
        ({"customer_id": 1, "items": [ITEM, ITEM | {"price": -1}]}, "items[1].price"),
        ({"customer_id": 1, "items": [ITEM | {"price": 1e6 + 1}]}, "items[0].price"),
        ({"customer_id": 1, "items": [ITEM | {"price": False}]}, "items[0].price"),
        ({"customer_id": 1, "items": [ITEM | {"price": "1"}]}, "items[0].price"),
        ({"customer_id": 1, "items": [ITEM | {"product_id": ""}]}, "items[0].product_id"),
        ({"customer_id": 1, "items": [ITEM | {"product_id": "p" * 65}]}, "items[0].product_id"),
        ({"customer_id": 1, "items": [{"quantity": 1, "price": 1}]}, "items[0].product_id"),
        ({"customer_id": 1, "items": [ITEM | {"colour": "red"}]}, "items[0].colour"),
        ({"customer_id": 1, "items": [ITEM], "coupon": "x"}, "coupon"),
        ({"order_id": "not-a-uuid", "customer_id": 1, "items": [ITEM]}, "order_id"),
        ({"order_id": 7, "customer_id": 1, "items": [ITEM]}, "order_id"),
    ],
)
@pytest.mark.parametrize("path", ["/orders/async", "/orders/sync"])
async def test_schema_violations_name_the_field(
    api: Client, sqs: SQSClient, topology: Topology, path: str, body: Any, field: str
) -> None:
    # stdlib json: it writes the 30-digit integers that orjson refuses to.
    data = json.dumps(body).encode()
    resp = await api.post(path, data=data, headers={"Content-Type": "application/json"})
    message = await _error(resp, 400, "invalid_order")
    assert message.startswith(f"{field}:"), message
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


# Numbers, encodings and nesting at their edges: test_hostile.py, against the API's process.
@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b'{"customer_id": NaN, "items": []}',
        b'{"customer_id": 1e400, "items": []}',
    ],
)
async def test_malformed_json_is_400(api: Client, raw: bytes) -> None:
    resp = await api.post("/orders/async", data=raw, headers={"Content-Type": "application/json"})
    await _error(resp, 400, "invalid_json")


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"order"', b"null"])
async def test_non_object_body_is_400(api: Client, raw: bytes) -> None:
    resp = await api.post("/orders/async", data=raw, headers={"Content-Type": "application/json"})
    assert (await _error(resp, 400, "invalid_order")).startswith("body")


async def test_an_oversize_body_is_413_and_publishes_nothing(
    api: Client, sqs: SQSClient, topology: Topology
) -> None:
    # The limit's exact edge, compressed bodies and Content-Type: test_hostile.py.
    big = order_body(customer_id="c", items=[ITEM | {"product_id": "p" * 64}] * 100)
    padding = b" " * (64 * 1024)
    resp = await api.post(
        "/orders/async",
        data=orjson.dumps(big) + padding,
        headers={"Content-Type": "application/json"},
    )
    await _error(resp, 413, "payload_too_large")

    async def chunks() -> Any:
        # No Content-Length: the limit must hold for a streamed body too.
        for _ in range(80):
            yield b" " * 1024

    resp = await api.post(
        "/orders/async", data=chunks(), headers={"Content-Type": "application/json"}
    )
    await _error(resp, 413, "payload_too_large")
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_unknown_path_and_method_are_json(api: Client) -> None:
    await _error(await api.get("/nowhere"), 404, "not_found")
    resp = await api.get("/orders/async")
    await _error(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]


async def test_sns_rejecting_publish_gives_503(
    aws: AwsSettings, topology: Topology, sqs: SQSClient, sns: Any
) -> None:
    app = create_app(api_settings(aws, topology))
    async with TestClient(TestServer(app)) as client:
        # The topic disappears while the API runs: every publish is refused from then on.
        await sns.delete_topic(TopicArn=topology.topic_arn)
        order_id = str(uuid.uuid4())
        resp = await client.post("/orders/async", json=order_body(order_id=order_id))
        await _error(resp, 503, "queue_unavailable")
        assert resp.headers["Retry-After"].isdigit()
        # Never acknowledged, so never accepted: the order is unknown.
        await _error(await client.get(f"/orders/{order_id}"), 404, "not_found")
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


@pytest.mark.parametrize(
    ("table", "key", "code"),
    [
        (None, None, "queue_unavailable"),
        ("orders", None, "queue_unavailable"),  # unkeyed orders publish first
        ("orders", "k-1", "state_unavailable"),  # keyed ones are recorded pending first
    ],
)
async def test_unreachable_aws_gives_503(
    aws: AwsSettings,
    topology: Topology,
    unused_tcp_port: int,
    table: str | None,
    key: str | None,
    code: str,
) -> None:
    # Nothing listens on this port: every connection is refused, SNS's and DynamoDB's alike.
    dead = AwsSettings(region=aws.region, endpoint_url=f"http://127.0.0.1:{unused_tcp_port}")
    settings = api_settings(dead, topology, publish_timeout=2.0, orders_table=table)
    headers = {"Idempotency-Key": key} if key else {}
    async with TestClient(TestServer(create_app(settings))) as client:
        resp = await client.post("/orders/async", json=order_body(), headers=headers)
        await _error(resp, 503, code)
        assert resp.headers["Retry-After"].isdigit()

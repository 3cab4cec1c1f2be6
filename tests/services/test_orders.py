"""Order state through the API: GET /orders/{id}, Idempotency-Key, double-submit storms."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.topology import Topology, ensure_table
from localaws.client import counts_between, request_counts
from services.api.app import create_app
from services.common.settings import AwsSettings
from services.domain.messages import OrderItem, OrderMessage
from services.domain.orders import OrderStore, Status

from ..helpers import api_settings, order_body, queue_counts
from .test_worker import run_burst

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sqs import SQSClient

Client = TestClient[Any, Any]


async def _post(api: Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    resp = await api.post(path, json=body, headers=headers)
    return resp.status, await resp.json(), resp.headers


async def test_order_status_goes_from_accepted_to_paid(
    api: Client, aws: AwsSettings, topology: Topology
) -> None:
    status, body, _ = await _post(api, "/orders/async", order_body())
    assert status == 202
    resp = await api.get(f"/orders/{body['order_id']}")
    assert resp.status == 200
    shown = await resp.json()
    assert shown["status"] == "accepted"
    assert shown["total"] == body["total"]
    assert shown["accepted_at"].endswith("Z")

    await run_burst(aws, topology)
    shown = await (await api.get(f"/orders/{body['order_id']}")).json()
    assert shown["status"] == "paid"
    assert shown["paid_at"] >= shown["accepted_at"]
    assert shown["payment_ms"] >= 200


async def test_unknown_order_is_404_json(api: Client) -> None:
    resp = await api.get(f"/orders/{uuid.uuid4()}")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await api.get("/orders/not-a-uuid")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_same_key_same_body_replays_the_first_answer(
    api: Client, sqs: SQSClient, topology: Topology
) -> None:
    key = f"checkout-{uuid.uuid4()}"
    first = await _post(api, "/orders/async", order_body(), key)
    second = await _post(api, "/orders/async", order_body(), key)
    assert first[0] == second[0] == 202
    assert first[1] == second[1]
    assert first[2]["Location"] == second[2]["Location"]
    # Published once: the retry added nothing to the queue.
    assert await queue_counts(sqs, topology.queue_url) == (1, 0)


async def test_same_key_other_body_is_422(api: Client, sqs: SQSClient, topology: Topology) -> None:
    key = str(uuid.uuid4())
    assert (await _post(api, "/orders/async", order_body(), key))[0] == 202
    status, body, _ = await _post(api, "/orders/async", order_body(customer_id=7), key)
    assert status == 422
    assert body["error"]["code"] == "idempotency_key_reused"
    # The key is bound to its endpoint too: the same body on /orders/sync is another request.
    status, body, _ = await _post(api, "/orders/sync", order_body(), key)
    assert status == 422
    assert await queue_counts(sqs, topology.queue_url) == (1, 0)


async def test_client_order_id_is_an_idempotency_key(
    api: Client, sqs: SQSClient, topology: Topology
) -> None:
    order_id = str(uuid.uuid4())
    first = await _post(api, "/orders/async", order_body(order_id=order_id))
    again = await _post(api, "/orders/async", order_body(order_id=order_id))
    assert first[0] == again[0] == 202
    assert first[1] == again[1]
    status, body, _ = await _post(
        api, "/orders/async", order_body(order_id=order_id, customer_id=9)
    )
    assert status == 422
    assert body["error"]["code"] == "idempotency_key_reused"
    assert await queue_counts(sqs, topology.queue_url) == (1, 0)


async def test_double_submit_storm_with_key_makes_one_order(
    api: Client, aws: AwsSettings, sqs: SQSClient, topology: Topology, store: OrderStore
) -> None:
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(_post(api, "/orders/async", order_body(), key) for _ in range(20))
    )
    # Concurrent twins of a request still in flight are told so (409 + Retry-After) ...
    for status, body, headers in answers:
        assert status in (202, 409), body
        if status == 409:
            assert body["error"]["code"] == "request_in_progress"
            assert headers["Retry-After"].isdigit()
    accepted = {body["order_id"] for status, body, _ in answers if status == 202}
    assert len(accepted) == 1
    # ... and once it is done, every retry gets the first answer.
    retry = await _post(api, "/orders/async", order_body(), key)
    assert retry[0] == 202
    assert retry[1]["order_id"] in accepted

    _stats, logs = await run_burst(aws, topology)
    [order_id] = accepted
    assert charges(logs) == {order_id: 1}
    record = await store.get(order_id)
    assert record is not None and record.status == Status.PAID
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_double_submit_storm_without_key_pays_each_order_once(
    api: Client, aws: AwsSettings, topology: Topology, store: OrderStore
) -> None:
    # Nothing ties these requests together, so each is its own order: none lost, none twice.
    answers = await asyncio.gather(*(_post(api, "/orders/async", order_body()) for _ in range(15)))
    assert {status for status, _, _ in answers} == {202}
    ids = {body["order_id"] for _, body, _ in answers}
    assert len(ids) == 15
    _stats, logs = await run_burst(aws, topology)
    assert charges(logs) == dict.fromkeys(ids, 1)


async def test_sync_retry_returns_the_first_payment(api: Client, store: OrderStore) -> None:
    key = str(uuid.uuid4())
    with capture_logs() as logs:
        first = await _post(api, "/orders/sync", order_body(), key)
        again = await _post(api, "/orders/sync", order_body(), key)
    assert first[0] == again[0] == 200
    assert first[1] == again[1]
    assert charges(logs) == {first[1]["order_id"]: 1}


async def test_sync_declined_payment_is_402_and_failed(api: Client) -> None:
    order_id = str(uuid.uuid4())
    body = order_body(order_id=order_id, customer_id="decline@test")
    status, answer, _ = await _post(api, "/orders/sync", body)
    assert status == 402
    assert answer["error"]["code"] == "payment_declined"
    shown = await (await api.get(f"/orders/{order_id}")).json()
    assert shown["status"] == "failed"
    assert shown["failure_reason"] == "card declined"
    # A retry of the same order is told the same, without charging again.
    assert (await _post(api, "/orders/sync", body))[0] == 402


async def test_sync_processor_outage_is_503_and_retryable(api: Client) -> None:
    body = order_body(order_id=str(uuid.uuid4()), customer_id="flaky@test")
    status, answer, headers = await _post(api, "/orders/sync", body)
    assert status == 503
    assert answer["error"]["code"] == "payment_unavailable"
    assert headers["Retry-After"].isdigit()


async def test_idempotency_key_must_be_printable_ascii(api: Client) -> None:
    for key in ("", "x" * 256, "naïve", "with space"):
        resp = await api.post("/orders/async", json=order_body(), headers={"Idempotency-Key": key})
        assert resp.status == 400, key
        assert (await resp.json())["error"]["code"] == "invalid_idempotency_key"


async def test_state_outage_after_publish_still_accepts_and_the_worker_records_it(
    api: Client, aws: AwsSettings, dynamodb: Any, topology: Topology, store: OrderStore
) -> None:
    await dynamodb.delete_table(TableName=topology.table)
    status, body, _ = await _post(api, "/orders/async", order_body())
    # SNS acknowledged it, so it is durably queued: a 202, even with the state store down.
    assert status == 202
    await ensure_table(dynamodb, topology.table)
    _stats, logs = await run_burst(aws, topology)
    assert charges(logs) == {body["order_id"]: 1}
    record = await store.get(body["order_id"])
    assert record is not None and record.status == Status.PAID


async def test_accepted_marks_share_calls_and_land_before_the_api_stops(
    aws: AwsSettings, endpoint: str, topology: Topology, store: OrderStore
) -> None:
    # One client, one order after another (nothing concurrent at the API): still, the marks
    # written after the 202s share DynamoDB calls, counted by the local AWS itself.
    orders = 10
    before = await request_counts(endpoint)
    async with TestClient(TestServer(create_app(api_settings(aws, topology)))) as api:
        ids = []
        for i in range(orders):
            keyed = {"order_id": str(uuid.uuid4())} if i % 2 else {}
            status, body, _ = await _post(api, "/orders/async", order_body(**keyed))
            assert status == 202
            ids.append(body["order_id"])
    # Closing the API waited for every mark.
    for order_id in ids:
        record = await store.get(order_id)
        assert record is not None and record.status == Status.ACCEPTED
    dynamodb = counts_between(before, await request_counts(endpoint))["dynamodb"]
    # The five keyed orders' pending writes go alone (the client waits for each); the marks
    # of all ten share fewer calls than there are orders.
    assert dynamodb["PutItem"] == orders // 2
    marks = dynamodb.get("UpdateItem", 0) + dynamodb.get("TransactWriteItems", 0)
    assert dynamodb.get("TransactWriteItems", 0) >= 1
    assert marks < orders


@pytest.mark.parametrize("named", [False, True], ids=["key", "order_id"])
async def test_an_honest_retry_matches_an_order_a_claim_recreated(
    api: Client, dynamodb: DynamoDBClient, topology: Topology, store: OrderStore, named: bool
) -> None:
    key = None if named else f"checkout-{uuid.uuid4()}"
    body = order_body(order_id=str(uuid.uuid4())) if named else order_body()
    status, first, _ = await _post(api, "/orders/async", body, key)
    assert status == 202
    order_id = first["order_id"]
    record = await store.get(order_id)
    assert record is not None
    message = OrderMessage(
        order_id=order_id,
        customer_id=body["customer_id"],
        items=tuple(OrderItem(**i) for i in body["items"]),
        total=first["total"],
        accepted_at=0.0,
    )
    # The item gone (a retry's definite publish failure forgot its pending record) and made
    # again by a worker's claim of the message an earlier, ambiguous publish did queue.
    await dynamodb.delete_item(TableName=topology.table, Key={"pk": {"S": f"order#{order_id}"}})
    [claim] = await store.claim_many([(message, "m-1")], 60)
    assert claim.won
    status, again, _ = await _post(api, "/orders/async", body, key)
    assert status == 202, again
    assert again["order_id"] == order_id

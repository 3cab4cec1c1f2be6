"""A permanent AWS error (access denied) is loud and makes the service unhealthy, not quiet.

The local AWS answers every DynamoDB call with AccessDeniedException (a chaos rule, rendered
as AWS renders it: HTTP 400, `__type` ...#AccessDeniedException). The worker and the API must
log it at error level with service, operation and code, and fail their liveness checks (the
worker's heartbeat file, the API's /health), then recover once the calls are allowed again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from botocore.exceptions import ClientError, ConnectTimeoutError
from structlog.testing import capture_logs

from bench.harness.ledger import charges
from devstack.topology import Topology
from services.api.app import create_app
from services.common.awserrors import AwsHealth, is_permanent
from services.common.settings import AwsSettings
from services.domain.messages import OrderMessage, OrderRequest, encode_message
from services.domain.orders import OrderStore, Status
from services.worker.liveness import LivenessSettings
from services.worker.worker import open_worker

from ..helpers import (
    api_settings,
    beating,
    not_beating,
    order_body,
    queue_counts,
    until,
    worker_settings,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

DENIED = {"statusCode": 400, "code": "AccessDeniedException", "message": "not authorized"}


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "x"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "UpdateItem")


@pytest.mark.parametrize(
    ("code", "status", "permanent"),
    [
        ("AccessDeniedException", 400, True),
        ("AccessDenied", 403, True),  # SQS's query-compatible code
        ("AuthorizationError", 403, True),  # SNS
        ("KMSAccessDeniedException", 400, True),
        ("KMS.DisabledException", 400, True),
        ("ResourceNotFoundException", 400, True),
        ("ValidationException", 400, True),
        ("UnrecognizedClientException", 400, True),
        ("ProvisionedThroughputExceededException", 400, False),
        ("ThrottlingException", 400, False),
        ("RequestLimitExceeded", 400, False),
        ("InternalServerError", 500, False),
        ("ServiceUnavailable", 503, False),
    ],
)
def test_errors_are_classified_at_the_boundary(code: str, status: int, permanent: bool) -> None:
    assert is_permanent(_client_error(code, status)) is permanent


def test_connection_errors_are_transient_and_a_success_resets_the_run() -> None:
    assert not is_permanent(ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"))
    health = AwsHealth(threshold=2)
    denied = _client_error("AccessDeniedException", 400)
    assert health.failed("dynamodb", "UpdateItem", denied) and health.healthy
    health.succeeded("dynamodb")
    health.failed("dynamodb", "UpdateItem", denied)
    assert health.healthy
    health.failed("dynamodb", "UpdateItem", denied)
    assert not health.healthy and health.permanent_errors == 3


def test_a_success_of_another_call_does_not_hide_a_denied_one() -> None:
    # The API writes DynamoDB fine while every publish is denied: unhealthy all the same.
    health = AwsHealth(threshold=2)
    refused = _client_error("AuthorizationError", 403)
    for _ in range(2):
        health.succeeded("dynamodb")
        health.failed("sns", "PublishBatch", refused)
    assert not health.healthy and health.in_a_row == 2


async def test_access_denied_on_dynamodb_fails_the_worker_liveness_check(
    aws: AwsSettings,
    sqs: SQSClient,
    topology: Topology,
    store: OrderStore,
    chaos: Any,
    tmp_path: Path,
) -> None:
    order = OrderMessage.from_request(OrderRequest.model_validate(order_body()))
    beat = tmp_path / "worker.heartbeat"
    liveness = LivenessSettings(path=beat, interval_seconds=0.05, max_age_seconds=1)
    settings = worker_settings(aws, topology, liveness=liveness)
    await chaos([{"service": "dynamodb", "error": DENIED}])
    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            running = asyncio.create_task(worker.run())
            await until(lambda: beating(beat))
            await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))
            # Denied for good: the heartbeat file goes, so the container check fails.
            await until(lambda: not_beating(beat))
            await chaos([])
            # Allowed again: the order is paid once and the worker is live again.
            await until(lambda: _paid(store, order.order_id))
            await until(lambda: beating(beat))
            worker.stop()
            await running
    denied = [e for e in logs if e["event"] == "aws_permanent_error"]
    assert denied and all(e["log_level"] == "error" for e in denied)
    refused = {(e["aws_service"], e["code"]) for e in denied}
    assert refused == {("dynamodb", "AccessDeniedException")}
    assert "UpdateItem" in {e["operation"] for e in denied}
    assert any(e["event"] == "liveness_failed" for e in logs)
    assert charges(logs) == {order.order_id: 1}


async def test_access_denied_on_dynamodb_makes_the_api_unhealthy(
    aws: AwsSettings, topology: Topology, chaos: Any
) -> None:
    async with TestClient(TestServer(create_app(api_settings(aws, topology)))) as api:
        assert (await api.get("/health")).status == 200
        await chaos([{"service": "dynamodb", "error": DENIED}])
        with capture_logs() as logs:
            for _ in range(3):
                headers = {"Idempotency-Key": str(uuid.uuid4())}
                resp = await api.post("/orders/async", json=order_body(), headers=headers)
                # Our setting or our bug, not an outage to retry through.
                assert resp.status == 500, await resp.text()
                assert (await resp.json())["error"]["code"] == "state_refused"
            health = await api.get("/health")
            assert health.status == 503, await health.text()
        assert any(
            e["event"] == "aws_permanent_error"
            and e["log_level"] == "error"
            and e["code"] == "AccessDeniedException"
            for e in logs
        )
        await chaos([])
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        resp = await api.post("/orders/async", json=order_body(), headers=headers)
        assert resp.status == 202
        assert (await api.get("/health")).status == 200


async def test_a_refused_late_mark_is_an_error_paced_slowly_and_makes_the_api_unhealthy(
    aws: AwsSettings, topology: Topology, chaos: Any
) -> None:
    # Issue 20: under AccessDenied the background accepted-marks were retried as an outage,
    # a state_unavailable warning every few hundred ms per order, and nothing at error.
    async with TestClient(TestServer(create_app(api_settings(aws, topology)))) as api:
        await chaos([{"service": "dynamodb", "error": DENIED}])
        with capture_logs() as logs:
            # No key, no order_id: nothing is read before SNS, so the 202 goes out and only
            # the accepted-mark written after it is refused.
            resp = await api.post("/orders/async", json=order_body())
            assert resp.status == 202, await resp.text()
            order_id = (await resp.json())["order_id"]

            def refused() -> list[MutableMapping[str, Any]]:
                return [e for e in logs if e["event"] == "late_write_refused"]

            async def refused_thrice() -> bool:
                return len(refused()) >= 3

            await until(refused_thrice, timeout=30)
            # Counted toward the API's health like any refused call.
            health = await api.get("/health")
            assert health.status == 503, await health.text()
            await chaos([])

            async def shown() -> bool:
                got = await api.get(f"/orders/{order_id}")
                return got.status == 200 and bool((await got.json())["status"] == "accepted")

            # Still retried (slowly): once allowed, the mark lands and the API is healthy.
            await until(shown, timeout=30)
            assert (await api.get("/health")).status == 200
    lines = refused()
    # One error line per failed attempt, each with the order, AWS's code, and a wait that
    # is not a spin (REFUSED_BACKOFF waits at least 1 s).
    assert [e["failures"] for e in lines] == list(range(1, len(lines) + 1))
    assert all(e["log_level"] == "error" for e in lines)
    assert {(e["operation"], e["order_id"], e["code"]) for e in lines} == {
        ("mark_accepted", order_id, "AccessDeniedException")
    }
    assert all(e["retry_in_s"] >= 1 for e in lines)
    assert not [e for e in logs if e["event"] == "state_unavailable"]
    assert any(e["event"] == "aws_permanent_error" for e in logs)
    assert any(e["event"] == "late_write_landed" for e in logs)


async def _paid(store: OrderStore, order_id: str) -> bool:
    record = await store.get(order_id)
    return record is not None and record.status == Status.PAID


async def test_a_renewal_that_dies_stops_the_worker_with_an_error(
    aws: AwsSettings, topology: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beat = tmp_path / "worker.heartbeat"
    liveness = LivenessSettings(path=beat, interval_seconds=0.05, max_age_seconds=1)
    settings = worker_settings(aws, topology, liveness=liveness)

    async def broken(*_: object) -> None:
        raise RuntimeError("visibility extension broke")

    with capture_logs() as logs:
        async with open_worker(settings) as worker:
            # Nothing would keep held messages invisible: the worker must not run on.
            monkeypatch.setattr(worker._holding, "keep_invisible", broken)
            with pytest.raises(RuntimeError, match="visibility extension broke"):
                await asyncio.wait_for(worker.run(), 30)
    assert any(e["event"] == "renewal_crashed" and e["log_level"] == "error" for e in logs)


async def test_a_payment_task_that_crashes_after_the_charge_keeps_its_message(
    aws: AwsSettings,
    sqs: SQSClient,
    topology: Topology,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = OrderMessage.from_request(OrderRequest.model_validate(order_body()))
    await sqs.send_message(QueueUrl=topology.queue_url, MessageBody=encode_message(order))

    def broken(*_: object) -> None:
        raise RuntimeError("a bug after the charge")

    with capture_logs() as logs:
        async with open_worker(worker_settings(aws, topology)) as worker:
            monkeypatch.setattr(worker._processing, "record_paid", broken)
            running = asyncio.create_task(worker.run())

            async def kept() -> bool:
                return any(e["event"] == "payment_unrecorded" for e in logs)

            await until(kept)
            # Not held for the life of the process, and not handed back: hidden.
            assert not worker._holding.jobs
            assert await queue_counts(sqs, topology.queue_url) == (0, 1)
            worker.stop()
            await running
    assert [e["event"] for e in logs if e["log_level"] == "error"][:2] == [
        "payment_crashed",
        "payment_unrecorded",
    ]
    assert charges(logs) == {order.order_id: 1}

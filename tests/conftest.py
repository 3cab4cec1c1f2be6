"""Fixtures: one local AWS (a moto server on loopback) per session, a fresh topology per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import get_session
from aiohttp.test_utils import TestClient, TestServer

# Re-exported for the tests: (visible, in flight) on a queue, the same helper the bench uses.
from bench.queue import queue_counts as queue_counts
from localaws.process import FAKE_CREDENTIALS, local_aws_process
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.common.aws import client_config
from services.common.orders import OrderStore
from services.common.payment import PaymentSettings
from services.common.settings import AwsSettings
from services.common.topology import Topology, TopologyNames, create_topology
from services.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _isolated_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> None:
    isolate_aws_env(monkeypatch, tmp_path_factory)


def isolate_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> None:
    # A developer's ~/.aws or AWS_* variables must never steer a test toward a real account.
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    empty = tmp_path_factory.getbasetemp() / "aws-empty"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    """The local AWS, started once per test session on a free loopback port."""
    with local_aws_process() as url:
        yield url


@pytest.fixture(scope="session")
def aws(endpoint: str) -> AwsSettings:
    return AwsSettings(region=REGION, endpoint_url=endpoint)


def service_env(aws: AwsSettings, **extra: str) -> dict[str, str]:
    """An environment for a service subprocess pointed at the local AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS)
    env.update({"AWS_DEFAULT_REGION": aws.region, "AWS_ENDPOINT_URL": aws.endpoint_url or ""})
    env.update(extra)
    return env


@asynccontextmanager
async def aws_client(aws: AwsSettings, service: str) -> AsyncIterator[Any]:
    """A test's own client of the local AWS (the services open theirs themselves)."""
    async with get_session().create_client(
        service,
        region_name=aws.region,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=client_config(pool_size=20, read_timeout=30),
    ) as client:
        yield client


@pytest.fixture(scope="session")
async def sqs(aws: AwsSettings) -> AsyncIterator[SQSClient]:
    async with aws_client(aws, "sqs") as client:
        yield client


@pytest.fixture(scope="session")
async def sns(aws: AwsSettings) -> AsyncIterator[SNSClient]:
    async with aws_client(aws, "sns") as client:
        yield client


@pytest.fixture(scope="session")
async def dynamodb(aws: AwsSettings) -> AsyncIterator[DynamoDBClient]:
    async with aws_client(aws, "dynamodb") as client:
        yield client


@pytest.fixture
def store(dynamodb: DynamoDBClient, topology: Topology) -> OrderStore:
    """This test's order state, read directly from DynamoDB."""
    return OrderStore(dynamodb, topology.table)


def unique_names(visibility_timeout: int = 30) -> TopologyNames:
    suffix = uuid.uuid4().hex[:10]
    return TopologyNames(
        topic=f"orders-{suffix}",
        queue=f"orders-{suffix}",
        dlq=f"orders-dlq-{suffix}",
        table=f"orders-{suffix}",
        visibility_timeout=visibility_timeout,
    )


@pytest.fixture
async def topology(aws: AwsSettings) -> Topology:
    """A fresh topic, queue and DLQ for each test, so tests never see each other's orders."""
    return await create_topology(aws, unique_names())


def api_settings(aws: AwsSettings, topology: Topology, **overrides: Any) -> ApiSettings:
    fields: dict[str, Any] = {
        "topic_arn": topology.topic_arn,
        "aws": aws,
        "orders_table": topology.table,
        "payment": PaymentSettings(seconds=0.2, timeout=5),
    }
    return ApiSettings(**(fields | overrides))


def worker_settings(aws: AwsSettings, topology: Topology, **overrides: Any) -> WorkerSettings:
    fields: dict[str, Any] = {
        "queue_url": topology.queue_url,
        "aws": aws,
        "slots": 10,
        "orders_table": topology.table,
        "payment": PaymentSettings(seconds=0.2, timeout=5),
        "retry_backoff_seconds": 0,
        "wait_time_seconds": 1,
        "shutdown_grace_seconds": 5,
    }
    return WorkerSettings(**(fields | overrides))


@pytest.fixture
async def api(aws: AwsSettings, topology: Topology) -> AsyncIterator[TestClient[Any, Any]]:
    """The real aiohttp app on a real loopback socket, publishing to this test's topic."""
    async with TestClient(TestServer(create_app(api_settings(aws, topology)))) as client:
        yield client


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": 42,
        "items": [
            {"product_id": "sku-1", "quantity": 2, "price": 9.99},
            {"product_id": "sku-2", "quantity": 1, "price": 0.02},
        ],
    }
    return body | overrides

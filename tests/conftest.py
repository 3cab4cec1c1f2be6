"""Fixtures: one local AWS (a moto server on loopback) per session, a fresh topology per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from devstack.env import REGION
from devstack.local_aws import local_aws_process
from devstack.topology import Topology, create_topology, unique_names
from localaws.client import set_faults
from services.api.app import create_app
from services.common.settings import AwsSettings
from services.domain.orders import OrderStore

from .helpers import api_settings, aws_client, isolate_aws_env

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


@pytest.fixture(autouse=True)
def _isolated_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_aws_env(monkeypatch)


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    """The local AWS, started once per test session on a free loopback port."""
    with local_aws_process() as url:
        yield url


@pytest.fixture
async def chaos(endpoint: str) -> AsyncIterator[Callable[[list[dict[str, Any]]], Awaitable[None]]]:
    """Set fault rules on the local AWS for this test; cleared afterwards, whatever happens."""

    async def install(rules: list[dict[str, Any]]) -> None:
        await set_faults(endpoint, rules)

    try:
        yield install
    finally:
        await set_faults(endpoint, [])


@pytest.fixture(scope="session")
def aws(endpoint: str) -> AwsSettings:
    return AwsSettings(region=REGION, endpoint_url=endpoint)


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


@pytest.fixture
async def topology(aws: AwsSettings) -> Topology:
    """A fresh topic, queue and DLQ for each test, so tests never see each other's orders."""
    return await create_topology(aws, unique_names())


@pytest.fixture
async def api(aws: AwsSettings, topology: Topology) -> AsyncIterator[TestClient[Any, Any]]:
    """The real aiohttp app on a real loopback socket, publishing to this test's topic."""
    async with TestClient(TestServer(create_app(api_settings(aws, topology)))) as client:
        yield client

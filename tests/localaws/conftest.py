"""Two local AWS servers side by side: the patched launcher (the session `endpoint`) and
stock moto (`--stock`), each a real subprocess reached over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from aiobotocore.session import get_session

from localaws.process import local_aws_process
from services.common.aws import client_config

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


@dataclass(frozen=True)
class Clients:
    endpoint: str
    sqs: SQSClient
    sns: SNSClient
    dynamodb: DynamoDBClient


@pytest.fixture(scope="session")
def stock_endpoint() -> Iterator[str]:
    with local_aws_process(extra_args=("--stock",)) as url:
        yield url


async def open_clients(stack: AsyncExitStack, endpoint: str, pool_size: int = 20) -> Clients:
    session = get_session()
    config = client_config(pool_size=pool_size, read_timeout=30, max_attempts=1)
    kwargs = {
        "region_name": "us-east-1",
        "endpoint_url": endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "config": config,
    }
    sqs = await stack.enter_async_context(session.create_client("sqs", **kwargs))
    sns = await stack.enter_async_context(session.create_client("sns", **kwargs))
    dynamodb = await stack.enter_async_context(session.create_client("dynamodb", **kwargs))
    return Clients(endpoint, sqs, sns, dynamodb)


@pytest.fixture(scope="session")
async def patched(endpoint: str) -> AsyncIterator[Clients]:
    async with AsyncExitStack() as stack:
        yield await open_clients(stack, endpoint)


@pytest.fixture(scope="session")
async def stock(stock_endpoint: str) -> AsyncIterator[Clients]:
    async with AsyncExitStack() as stack:
        yield await open_clients(stack, stock_endpoint)

"""A client per service on one local AWS: the patched server's or stock moto's."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiobotocore.session import get_session

from devstack.env import CLIENT_CREDENTIALS, REGION
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


async def open_clients(stack: AsyncExitStack, endpoint: str, pool_size: int = 20) -> Clients:
    session = get_session()
    config = client_config(pool_size=pool_size, read_timeout=30, max_attempts=1)
    kwargs = {
        "region_name": REGION,
        "endpoint_url": endpoint,
        **CLIENT_CREDENTIALS,
        "config": config,
    }
    sqs = await stack.enter_async_context(session.create_client("sqs", **kwargs))
    sns = await stack.enter_async_context(session.create_client("sns", **kwargs))
    dynamodb = await stack.enter_async_context(session.create_client("dynamodb", **kwargs))
    return Clients(endpoint, sqs, sns, dynamodb)

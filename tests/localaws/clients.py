"""A client per service on one local AWS: the patched server's or stock moto's."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiobotocore.session import get_session

from devstack.env import client_args
from services.common.aws import client_config


@dataclass(frozen=True)
class Clients:
    """Untyped clients on purpose: these tests send what the stubs refuse (invalid attribute
    names, odd values) to check that both servers answer it alike."""

    endpoint: str
    sqs: Any
    sns: Any
    dynamodb: Any


async def open_clients(stack: AsyncExitStack, endpoint: str, pool_size: int = 20) -> Clients:
    session = get_session()
    config = client_config(pool_size=pool_size, read_timeout=30, max_attempts=1)
    kwargs = client_args(endpoint, config)
    sqs = await stack.enter_async_context(session.create_client("sqs", **kwargs))
    sns = await stack.enter_async_context(session.create_client("sns", **kwargs))
    dynamodb = await stack.enter_async_context(session.create_client("dynamodb", **kwargs))
    return Clients(endpoint, sqs, sns, dynamodb)

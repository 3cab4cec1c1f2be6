"""What the tests share besides fixtures: settings, an order body, clients, the environment.

Tests import these from here, never from conftest (pytest's own module). Nothing here needs
the bench: the harness (local AWS, topology, processes) is `devstack`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from devstack.env import REGION, aws_variables, client_args, service_env
from devstack.topology import Topology, queue_counts, unique_names
from services.api.settings import ApiSettings
from services.common.aws import client_config
from services.common.settings import AwsSettings
from services.domain.messages import OrderMessage, OrderRequest
from services.domain.orders import OrderStore, Status
from services.domain.payment import PaymentSettings
from services.worker.liveness import age_seconds
from services.worker.settings import WorkerSettings

__all__ = [
    "REGION",
    "all_paid",
    "api_settings",
    "aws_client",
    "isolate_aws_env",
    "new_order",
    "order_body",
    "queue_counts",
    "service_env",
    "unique_names",
    "until",
    "worker_settings",
]


def isolate_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop every AWS_* variable and set fake credentials, undone when `monkeypatch` is."""
    # A developer's ~/.aws or AWS_* variables must never steer a test toward a real account.
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in aws_variables(REGION).items():
        monkeypatch.setenv(name, value)


@asynccontextmanager
async def aws_client(aws: AwsSettings, service: str) -> AsyncIterator[Any]:
    """A test's own client of the local AWS (the services open theirs themselves)."""
    # Any: `service` is a plain string, not one of the stubs' per-service literals.
    session: Any = get_session()
    config = client_config(pool_size=20, read_timeout=30)
    async with session.create_client(
        service, **client_args(aws.endpoint_url, config, aws.region)
    ) as client:
        yield client


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


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": 42,
        "items": [
            {"product_id": "sku-1", "quantity": 2, "price": 9.99},
            {"product_id": "sku-2", "quantity": 1, "price": 0.02},
        ],
    }
    return body | overrides


async def until(
    check: Callable[[], Awaitable[bool]], timeout: float = 60, interval: float = 0.05
) -> None:
    """Wait until `check()` holds: a condition polled with a deadline, never a fixed sleep."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(interval)


def new_order(**overrides: Any) -> OrderMessage:
    """An order as the API accepts it (`order_body` with `overrides`)."""
    return OrderMessage.from_request(OrderRequest.model_validate(order_body(**overrides)))


async def all_paid(store: OrderStore, ids: set[str]) -> bool:
    """Whether every order in `ids` is recorded as paid."""
    for order_id in ids:
        record = await store.get(order_id)
        if record is None or record.status != Status.PAID:
            return False
    return True


async def beating(path: Path) -> bool:
    """Whether the worker's liveness file was touched within the last second."""
    age = age_seconds(path)
    return age is not None and age < 1


async def not_beating(path: Path) -> bool:
    """Whether the worker removed its liveness file (its container check fails)."""
    return age_seconds(path) is None

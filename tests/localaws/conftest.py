"""Two local AWS servers side by side: the patched launcher (the session `endpoint`) and
stock moto (`--stock`), each a real subprocess reached over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import pytest

from devstack.local_aws import local_aws_process

from .clients import Clients, open_clients

if TYPE_CHECKING:
    pass


@pytest.fixture(scope="session")
def stock_endpoint() -> Iterator[str]:
    with local_aws_process(extra_args=("--stock",)) as url:
        yield url


@pytest.fixture(scope="session")
async def patched(endpoint: str) -> AsyncIterator[Clients]:
    async with AsyncExitStack() as stack:
        yield await open_clients(stack, endpoint)


@pytest.fixture(scope="session")
async def stock(stock_endpoint: str) -> AsyncIterator[Clients]:
    async with AsyncExitStack() as stack:
        yield await open_clients(stack, stock_endpoint)

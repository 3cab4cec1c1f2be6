"""The API as a real `python -m services.api` process against the local AWS (contract tests)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from services.common.settings import AwsSettings
from services.common.topology import Topology

from .conftest import service_env
from .processes import ServiceProcess


@asynccontextmanager
async def api_process(
    aws: AwsSettings, topology: Topology, port: int, **env: str
) -> AsyncIterator[tuple[ServiceProcess, str]]:
    """Run the API with order state on `port`; yield it and its base URL once it answers."""
    settings = {
        "ORDER_TOPIC_ARN": topology.topic_arn,
        "ORDERS_TABLE": topology.table,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PAYMENT_SECONDS": "0.01",
    }
    api = await ServiceProcess("services.api", service_env(aws, **(settings | env))).start()
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            if not await until_healthy(http, url):
                raise AssertionError(f"the API never answered; stderr: {api.stderr[-2000:]!r}")
        yield api, url
        api.signal(signal.SIGTERM)
        assert await api.wait(timeout=30) == 0, api.stderr[-2000:]
    finally:
        await api.stop()


async def until_healthy(http: aiohttp.ClientSession, url: str, tries: int = 100) -> bool:
    """Poll the API's /health until it answers 200; False if it never did."""
    for _ in range(tries):
        try:
            async with http.get(f"{url}/health") as resp:
                if resp.status == 200:
                    return True
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)
    return False


def statuses(api: ServiceProcess) -> list[int]:
    """The status of every request the API has logged so far."""
    return [e["status"] for e in api.events if e["event"] == "http_request"]

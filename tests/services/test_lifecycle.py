"""The services as real processes: startup, bad settings, orders end to end, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import aiohttp
import pytest

from devstack.follow import ServiceProcess, run_to_exit, wait_healthy
from devstack.topology import Topology
from services.common.settings import AwsSettings

from ..helpers import order_body, queue_counts, service_env
from .test_worker import publish_orders

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient


@pytest.mark.parametrize(
    ("module", "env", "setting"),
    [
        ("services.worker", {}, "ORDER_QUEUE_URL"),
        ("services.worker", {"ORDER_QUEUE_URL": "q", "NUM_WORKERS": "many"}, "NUM_WORKERS"),
        ("services.worker", {"ORDER_QUEUE_URL": "q", "NUM_WORKERS": "0"}, "NUM_WORKERS"),
        ("services.worker", {"ORDER_QUEUE_URL": "q", "RECEIVE_STRATEGY": "x"}, "RECEIVE_STRATEGY"),
        ("services.worker", {"ORDER_QUEUE_URL": "q", "RECEIVE_PREFETCH": "-1"}, "RECEIVE_PREFETCH"),
        ("services.worker", {"ORDER_QUEUE_URL": "q", "PAYMENT_SECONDS": "nan"}, "PAYMENT_SECONDS"),
        (
            "services.worker",
            {"ORDER_QUEUE_URL": "q", "WAIT_TIME_SECONDS": "21"},
            "WAIT_TIME_SECONDS",
        ),
        ("services.api", {}, "ORDER_TOPIC_ARN"),
        ("services.api", {"ORDER_TOPIC_ARN": "t", "PORT": "99999"}, "PORT"),
        (
            "services.api",
            {"ORDER_TOPIC_ARN": "t", "AWS_ENDPOINT_URL": "localhost"},
            "AWS_ENDPOINT_URL",
        ),
        ("services.api", {"ORDER_TOPIC_ARN": "t", "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
async def test_bad_setting_is_one_clear_line_and_nonzero_exit(
    aws: AwsSettings, module: str, env: dict[str, str], setting: str
) -> None:
    base = service_env(aws)
    base.pop("AWS_ENDPOINT_URL")
    code, stderr = await run_to_exit(module, base | env)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert setting in lines[0]


async def test_worker_process_pays_then_stops_cleanly_on_sigterm(
    aws: AwsSettings, sns: SNSClient, sqs: SQSClient, topology: Topology
) -> None:
    env = service_env(
        aws,
        ORDER_QUEUE_URL=topology.queue_url,
        NUM_WORKERS="5",
        PAYMENT_SECONDS="0.3",
        WAIT_TIME_SECONDS="20",
    )
    worker = await ServiceProcess("services.worker", env).start()
    try:
        await worker.wait_for(lambda e: e["event"] == "worker_started")
        ids = await publish_orders(sns, topology, 3)
        paid = await worker.wait_for(lambda e: e["event"] == "order_paid", count=3)
        assert {e["order_id"] for e in paid} == ids
        assert all(e["service"] == "worker" for e in paid)
        worker.signal(signal.SIGTERM)
        # The pending 20 s long polls are abandoned, not waited out.
        assert await worker.wait(timeout=10) == 0
    finally:
        await worker.stop()
    stopped = worker.events[-1]
    assert stopped["event"] == "worker_stopped"
    assert stopped["paid"] == 3
    assert await queue_counts(sqs, topology.queue_url) == (0, 0)


async def test_api_process_serves_and_stops_on_sigterm(
    aws: AwsSettings, topology: Topology, unused_tcp_port: int
) -> None:
    env = service_env(
        aws, ORDER_TOPIC_ARN=topology.topic_arn, PORT=str(unused_tcp_port), HOST="127.0.0.1"
    )
    api = await ServiceProcess("services.api", env).start()
    try:
        await api.wait_for(lambda e: e["event"] == "api_starting")
        url = f"http://127.0.0.1:{unused_tcp_port}"
        await wait_healthy(api, url, tries=50)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{url}/orders/async", json=order_body()) as resp,
        ):
            assert resp.status == 202
            order_id = (await resp.json())["order_id"]
        [accepted] = await api.wait_for(lambda e: e["event"] == "order_accepted")
        assert accepted["order_id"] == order_id
        api.signal(signal.SIGTERM)
        assert await api.wait(timeout=15) == 0
    finally:
        await api.stop()
    requests = [e for e in api.events if e["event"] == "http_request"]
    assert {(e["path"], e["status"]) for e in requests} >= {("/orders/async", 202)}


async def test_make_run_stack_serves_an_order_end_to_end(unused_tcp_port: int) -> None:
    """What `make run` starts: the local AWS, the topology, the API and a worker, one stream."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"LOCALAWS_PORT": "0", "PORT": str(unused_tcp_port), "PAYMENT_SECONDS": "0.5"}
    env["DASHBOARD_PORT"] = "0"
    stack = await ServiceProcess("devstack", env).start()
    try:
        await stack.wait_for(lambda e: e["event"] == "stack_ready")
        await stack.wait_for(lambda e: e["event"] == "worker_started")
        url = f"http://127.0.0.1:{unused_tcp_port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.post(f"{url}/orders/async", json=order_body()) as resp:
                        assert resp.status == 202
                        order_id = (await resp.json())["order_id"]
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        [paid] = await stack.wait_for(
            lambda e: e["event"] == "order_paid" and e.get("order_id") == order_id
        )
        assert paid["service"] == "worker"
        stack.signal(signal.SIGINT)
        assert await stack.wait(timeout=30) == 0
    finally:
        await stack.stop()
    assert stack.events[-1]["event"] == "stack_stopped"
    services = {e.get("service") for e in stack.events}
    assert {"stack", "api", "worker"} <= services


async def test_api_drains_in_flight_requests_on_sigterm(
    aws: AwsSettings, topology: Topology, unused_tcp_port: int
) -> None:
    env = service_env(
        aws,
        ORDER_TOPIC_ARN=topology.topic_arn,
        ORDERS_TABLE=topology.table,
        PORT=str(unused_tcp_port),
        HOST="127.0.0.1",
        PAYMENT_SECONDS="2",
        SHUTDOWN_TIMEOUT_SECONDS="10",
    )
    api = await ServiceProcess("services.api", env).start()
    url = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        await wait_healthy(api, url)
        async with aiohttp.ClientSession() as http:
            # A sync payment is under way when ECS sends SIGTERM ...
            slow = asyncio.create_task(http.post(f"{url}/orders/sync", json=order_body()))
            await asyncio.sleep(0.5)
            api.signal(signal.SIGTERM)
            # ... it still gets its answer, and the process then exits cleanly.
            resp = await slow
            assert resp.status == 200
            assert (await resp.json())["status"] == "paid"
        assert await api.wait(timeout=15) == 0
    finally:
        await api.stop()


@pytest.mark.parametrize(
    ("setting", "wrong"),
    [
        ("ORDER_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:no-such-topic"),
        ("ORDERS_TABLE", "no-such-table"),
    ],
)
async def test_api_refuses_to_start_on_a_missing_topic_or_table(
    aws: AwsSettings, topology: Topology, unused_tcp_port: int, setting: str, wrong: str
) -> None:
    env = service_env(
        aws,
        ORDER_TOPIC_ARN=topology.topic_arn,
        ORDERS_TABLE=topology.table,
        PORT=str(unused_tcp_port),
        HOST="127.0.0.1",
    )
    code, stderr = await run_to_exit("services.api", env | {setting: wrong})
    assert code == 2
    [line] = stderr.strip().splitlines()
    assert line.startswith(f"api: {setting} ") and wrong in line

"""One order's life through the real API and worker processes, started from their images' CMDs.

Used against the topology Terraform made (test_terraform_local_aws) and against a fresh one
(test_observability): the log lines it returns are what the queries and EMF are checked against.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from services.common.settings import AwsSettings

from ..helpers import order_body, service_env
from .images import BuiltImage, Service

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

POISON = "this is not an order"
DECLINED_CUSTOMER = "decline@test"
"""The fake payment processor declines this customer's payments (services/domain/payment.py)."""


@dataclass
class Outcome:
    order_id: str
    exit_codes: dict[str, int]
    dead_letters: list[str]
    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def all_lines(self) -> list[dict[str, Any]]:
        return [line for lines in self.lines.values() for line in lines]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(url: str, http: aiohttp.ClientSession, within: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            async with http.get(f"{url}/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.1)


async def _drain(sqs: SQSClient, queue_url: str, within: float, count: int = 1) -> list[str]:
    """The bodies on the queue once `count` came (or whatever came within `within`)."""
    deadline = asyncio.get_running_loop().time() + within
    bodies: list[str] = []
    while len(bodies) < count and asyncio.get_running_loop().time() < deadline:
        got = await sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        bodies += [m["Body"] for m in got.get("Messages", [])]
    return bodies


def service_envs(
    aws: AwsSettings,
    port: int,
    *,
    topic_arn: str,
    queue_url: str,
    extra_env: dict[str, str] | None = None,
    api_extra: dict[str, str] | None = None,
    worker_extra: dict[str, str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """The API's and the worker's variables on one topology; `*_extra` win over the defaults."""
    base = service_env(aws, **(extra_env or {}))
    api_env = {
        **base,
        "ORDER_TOPIC_ARN": topic_arn,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        **(api_extra or {}),
    }
    worker_env = {
        **base,
        "ORDER_QUEUE_URL": queue_url,
        "NUM_WORKERS": "4",
        "PAYMENT_SECONDS": "0.2",
        "WAIT_TIME_SECONDS": "1",
        "SHUTDOWN_GRACE_SECONDS": "5",
        **(worker_extra or {}),
    }
    return api_env, worker_env


async def order_journey(
    aws: AwsSettings,
    sns: SNSClient,
    sqs: SQSClient,
    *,
    topic_arn: str,
    queue_url: str,
    dlq_url: str,
    tmp: Path,
    images: dict[str, BuiltImage],
    extra_env: dict[str, str] | None = None,
    api_extra: dict[str, str] | None = None,
    worker_extra: dict[str, str] | None = None,
    decline: bool = False,
) -> Outcome:
    """Pay one order, reject one bad request, dead-letter one poisoned message; stop both.

    `api_extra`/`worker_extra`: one service's own variables (its task role's credentials);
    `decline`: also order one whose payment is declined, which the worker dead-letters.
    """
    port = free_port()
    api_env, worker_env = service_envs(
        aws,
        port,
        topic_arn=topic_arn,
        queue_url=queue_url,
        extra_env=extra_env,
        api_extra=api_extra,
        worker_extra=worker_extra,
    )
    url = f"http://127.0.0.1:{port}"
    with (
        Service(images["api"], api_env, tmp) as api,
        Service(images["worker"], worker_env, tmp) as worker,
    ):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(url, http)
            async with http.post(f"{url}/orders/async", json=order_body()) as resp:
                assert resp.status == 202, await resp.text()
                order_id = (await resp.json())["order_id"]
            async with http.post(f"{url}/orders/async", json={"customer_id": 1}) as resp:
                assert resp.status == 400, await resp.text()
            declined_id = None
            if decline:
                body = order_body(customer_id=DECLINED_CUSTOMER)
                async with http.post(f"{url}/orders/async", json=body) as resp:
                    assert resp.status == 202, await resp.text()
                    declined_id = (await resp.json())["order_id"]
        await sns.publish(TopicArn=topic_arn, Message=POISON)

        paid = await worker.wait_for(
            lambda line: line.get("event") == "order_paid" and line.get("order_id") == order_id
        )
        assert paid["mode"] == "async"
        # The worker moves the undecodable poison to the dead-letter queue itself, with why.
        await worker.wait_for(
            lambda line: (
                line.get("event") == "message_dead_lettered" and line.get("order_id") is None
            ),
            within=60,
        )
        if declined_id is not None:
            await worker.wait_for(
                lambda line: (
                    line.get("event") == "message_dead_lettered"
                    and line.get("order_id") == declined_id
                ),
                within=60,
            )
        dead = await _drain(sqs, dlq_url, within=30, count=2 if decline else 1)
        codes = {"api": api.terminate(), "worker": worker.terminate()}
        return Outcome(order_id, codes, dead, {"api": api.lines, "worker": worker.lines})

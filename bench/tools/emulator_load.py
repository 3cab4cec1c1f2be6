"""What `bench.tools.emulator` measures on one local AWS server: call costs, ceiling, idle polls."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlsplit

from aiobotocore.session import get_session

from devstack.env import client_args
from devstack.topology import TopologyNames, ensure_topology
from services.common.aws import client_config

from ..harness.procstat import live_cpu_seconds, rss_mb, thread_count

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sns.type_defs import PublishBatchRequestEntryTypeDef
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        DeleteMessageBatchRequestEntryTypeDef,
        ReceiveMessageResultTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

# An order as the API publishes it, so every call carries a realistic body.
BODY = (
    '{"v":1,"order_id":"%s","customer_id":42,"items":[{"product_id":"sku-1","quantity":2,'
    '"price":9.99},{"product_id":"sku-2","quantity":1,"price":0.02}],"created_at":"2026-11-25T16:00:00Z"}'
)
OPS = ("publish", "publish-batch", "receive-10", "delete-batch")


class CallCost(TypedDict):
    """One call's round trip at one backlog."""

    median_ms: float
    p90_ms: float
    n: int


class Ceiling(TypedDict):
    """Messages per second through publish-batch -> receive-10 -> delete-batch."""

    seconds: float
    publishers: int
    consumers: int
    backlog_before: int
    backlog_after: int
    published_per_s: float
    deleted_per_s: float
    messages_per_s: float
    """Through the whole pipeline: no faster than its slower half."""
    server_cpu_percent: float
    client_cpu_percent: float
    messages_per_server_cpu_s: float | None
    """What the server could carry with one core to itself (None: it used no CPU)."""


class HeldPolls(TypedDict):
    """Long polls held on an empty queue, and the server's CPU meanwhile."""

    polls: int
    seconds_to_send_all: float
    answered_during_window: int
    answered_after_one_send: int
    window_s: float
    cpu_percent_of_one_core: float
    server_threads: int
    server_rss_mib: float


class IdlePolls(HeldPolls):
    cpu_percent_idle_without_polls: float
    """The server's CPU before any poll: what the polls add is the difference."""


@dataclass(frozen=True)
class Aws:
    sqs: SQSClient
    sns: SNSClient


@dataclass(frozen=True)
class Pipeline:
    """A topic fanned out to a queue with raw delivery."""

    topic_arn: str
    queue_url: str


@asynccontextmanager
async def clients(endpoint: str, pool_size: int) -> AsyncIterator[Aws]:
    session = get_session()
    # One attempt: a retried call would hide a slow or failed one inside a sample.
    config = client_config(pool_size=pool_size, read_timeout=120, max_attempts=1)
    kwargs = client_args(endpoint, config)
    async with (
        session.create_client("sqs", **kwargs) as sqs,
        session.create_client("sns", **kwargs) as sns,
    ):
        yield Aws(sqs, sns)


async def pipeline(aws: Aws) -> Pipeline:
    """The services' own topology (raw delivery, DLQ, redrive, queue policy), fresh names."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    names = TopologyNames(topic=name, queue=name, dlq=f"{name}-dlq", visibility_timeout=300)
    topology = await ensure_topology(aws.sns, aws.sqs, names)
    return Pipeline(topology.topic_arn, topology.queue_url)


def _entries(count: int) -> list[SendMessageBatchRequestEntryTypeDef]:
    return [{"Id": str(i), "MessageBody": BODY % uuid.uuid4()} for i in range(count)]


def _publish_entries() -> list[PublishBatchRequestEntryTypeDef]:
    return [{"Id": str(i), "Message": BODY % uuid.uuid4()} for i in range(10)]


def _handles(got: ReceiveMessageResultTypeDef) -> list[DeleteMessageBatchRequestEntryTypeDef]:
    return [
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
        for i, m in enumerate(got.get("Messages", []))
    ]


async def backlog(aws: Aws, p: Pipeline) -> int:
    got = await aws.sqs.get_queue_attributes(
        QueueUrl=p.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(got["Attributes"]["ApproximateNumberOfMessages"])


async def fill(aws: Aws, p: Pipeline, target: int) -> float:
    """Send straight to the queue (cheapest) until it holds `target`; seconds it took."""
    started = time.perf_counter()
    missing = target - await backlog(aws, p)
    while missing > 0:
        batch = min(10, missing)
        await aws.sqs.send_message_batch(QueueUrl=p.queue_url, Entries=_entries(batch))
        missing -= batch
    return time.perf_counter() - started


async def _timed(call: Awaitable[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    answer = await call
    return (time.perf_counter() - started) * 1000, answer


def summary(samples: list[float]) -> CallCost:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))], 2),
        "n": len(ordered),
    }


async def _round(aws: Aws, p: Pipeline) -> dict[str, float]:
    """One call of each kind; 11 messages in, 10 out, so the backlog hovers where it is."""
    took: dict[str, float] = {}
    took["publish"], _ = await _timed(
        aws.sns.publish(TopicArn=p.topic_arn, Message=BODY % uuid.uuid4())
    )
    took["publish-batch"], _ = await _timed(
        aws.sns.publish_batch(TopicArn=p.topic_arn, PublishBatchRequestEntries=_publish_entries())
    )
    # WaitTimeSeconds 0: the queue's default is a 20 s long poll.
    took["receive-10"], got = await _timed(
        aws.sqs.receive_message(QueueUrl=p.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    )
    took["delete-batch"], _ = await _timed(
        aws.sqs.delete_message_batch(QueueUrl=p.queue_url, Entries=_handles(got))
    )
    return took


async def call_costs(
    aws: Aws, pipes: dict[int, Pipeline], rounds: int, budget_s: float, warmup: int = 2
) -> dict[str, dict[str, CallCost]]:
    """Round trip of each call, one at a time, per backlog: {backlog: {call: summary}}.

    Rounds go over every backlog in turn, so that whatever else the machine is doing at
    a moment slows all backlogs alike. The first `warmup` rounds are not counted; after
    `budget_s` seconds of counted rounds it stops (after 3 at least).
    """
    took: dict[int, dict[str, list[float]]] = {n: {op: [] for op in OPS} for n in pipes}
    deadline = float("inf")
    for done in range(warmup + rounds):
        if done == warmup:
            deadline = time.monotonic() + budget_s
        for n, p in pipes.items():
            for op, ms in (await _round(aws, p)).items():
                if done >= warmup:
                    took[n][op].append(ms)
        if done >= warmup + 2 and time.monotonic() > deadline:
            break
    return {str(n): {op: summary(v) for op, v in ops.items()} for n, ops in took.items()}


async def ceiling(
    aws: Aws, p: Pipeline, pid: int, seconds: float, publishers: int, consumers: int
) -> Ceiling:
    """Messages per second through publish-batch -> receive-10 -> delete-batch, all at once.

    Also the CPU the server and this client spent: on a busy machine the rate says how
    much CPU we got, while CPU per message says what the server needs.
    """
    before = await backlog(aws, p)
    stop = time.monotonic() + seconds
    published = deleted = 0

    async def publish() -> None:
        nonlocal published
        while time.monotonic() < stop:
            await aws.sns.publish_batch(
                TopicArn=p.topic_arn, PublishBatchRequestEntries=_publish_entries()
            )
            published += 10

    async def consume() -> None:
        nonlocal deleted
        while time.monotonic() < stop:
            got = await aws.sqs.receive_message(
                QueueUrl=p.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            handles = _handles(got)
            if handles:
                await aws.sqs.delete_message_batch(QueueUrl=p.queue_url, Entries=handles)
                deleted += len(handles)

    started, server_cpu, client_cpu = time.monotonic(), live_cpu_seconds(pid), time.process_time()
    await asyncio.gather(
        *(publish() for _ in range(publishers)), *(consume() for _ in range(consumers))
    )
    elapsed = time.monotonic() - started
    server_cpu, client_cpu = live_cpu_seconds(pid) - server_cpu, time.process_time() - client_cpu
    through = min(published, deleted)
    return {
        "seconds": round(elapsed, 2),
        "publishers": publishers,
        "consumers": consumers,
        "backlog_before": before,
        "backlog_after": await backlog(aws, p),
        "published_per_s": round(published / elapsed, 1),
        "deleted_per_s": round(deleted / elapsed, 1),
        # Through the whole pipeline: no faster than its slower half.
        "messages_per_s": round(through / elapsed, 1),
        "server_cpu_percent": round(100 * server_cpu / elapsed, 1),
        "client_cpu_percent": round(100 * client_cpu / elapsed, 1),
        # What the server could carry with one core to itself.
        "messages_per_server_cpu_s": round(through / server_cpu, 1) if server_cpu else None,
    }


def sqs_query_request(netloc: str, form: str) -> bytes:
    """A raw SQS query-protocol POST (moto reads the credential scope, not the signature)."""
    return (
        f"POST / HTTP/1.1\r\nHost: {netloc}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=0\r\n"
        f"Content-Length: {len(form)}\r\n\r\n{form}"
    ).encode()


async def idle_polls(endpoint: str, pid: int, polls: int, window: float) -> IdlePolls:
    """Server CPU while `polls` long polls wait on an empty queue (20 s waits, none ends).

    Raw sockets, not aiobotocore: the bench knows each request has been written before
    the window opens, and its own CPU stays out of the way.
    """
    idle_before = live_cpu_seconds(pid)
    await asyncio.sleep(1.0)
    idle_cpu = live_cpu_seconds(pid) - idle_before
    async with clients(endpoint, pool_size=2) as aws:
        url = (await aws.sqs.create_queue(QueueName=f"idle-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        result = await _hold(endpoint, pid, url, polls, window, aws)
    return {**result, "cpu_percent_idle_without_polls": round(100 * idle_cpu, 2)}


async def _hold(
    endpoint: str, pid: int, url: str, polls: int, window: float, aws: Aws
) -> HeldPolls:
    host, port = urlsplit(endpoint).hostname, urlsplit(endpoint).port
    request = sqs_query_request(
        urlsplit(endpoint).netloc,
        f"Action=ReceiveMessage&QueueUrl={url}&MaxNumberOfMessages=10&WaitTimeSeconds=20",
    )
    connecting = asyncio.Semaphore(100)  # stock moto listens with a backlog of 128

    async def poll() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with connecting:
            reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        return reader, writer

    started = time.monotonic()
    streams = await asyncio.gather(*(poll() for _ in range(polls)))
    sent_s = time.monotonic() - started
    # A poll counts as answered once its first response byte arrives.
    firsts = [asyncio.create_task(reader.read(1)) for reader, _ in streams]
    # Every request is written; give the server a moment to read and park the last ones.
    await asyncio.sleep(2.0)
    before, started = live_cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(window)
    used, elapsed = live_cpu_seconds(pid) - before, time.monotonic() - started
    answered = sum(1 for first in firsts if first.done() and first.result())
    # The server is running: both answer (0 would show a reader that could not).
    threads, rss = thread_count(pid) or 0, rss_mb(pid) or 0.0
    # Proof they were waiting: one message sent now answers exactly one of them.
    await aws.sqs.send_message(QueueUrl=url, MessageBody=BODY % uuid.uuid4())
    await asyncio.wait(firsts, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.sleep(0.5)
    answered_after_send = sum(1 for first in firsts if first.done() and first.result())
    for first in firsts:
        first.cancel()
    for _, writer in streams:
        writer.close()
    return {
        "polls": polls,
        "seconds_to_send_all": round(sent_s, 2),
        "answered_during_window": answered,
        "answered_after_one_send": answered_after_send,
        "window_s": round(elapsed, 2),
        "cpu_percent_of_one_core": round(100 * used / elapsed, 2),
        "server_threads": threads,
        "server_rss_mib": round(rss, 1),
    }

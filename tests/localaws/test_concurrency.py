"""The patched server under concurrent clients: no message handed out twice, long polls
parked and woken correctly, many of them at once, over keep-alive connections."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

from bench.tools.emulator_load import sqs_query_request

from .clients import Clients, open_clients


async def _queue(c: Clients, **attributes: str) -> str:
    name = f"conc-{uuid.uuid4().hex[:10]}"
    url: str = (await c.sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    return url


async def _send(c: Clients, url: str, count: int) -> None:
    for start in range(0, count, 10):
        entries = [
            {"Id": str(i), "MessageBody": f"m{i}"} for i in range(start, min(start + 10, count))
        ]
        got = await c.sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not got.get("Failed")


async def _drain(c: Clients, url: str, wait: int, seen: Counter[str]) -> None:
    """Receive (and keep, undeleted) until a receive comes back empty."""
    while True:
        got = await c.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        )
        if not got.get("Messages"):
            return
        seen.update(m["MessageId"] for m in got["Messages"])


async def test_concurrent_receivers_never_share_a_message(patched: Clients) -> None:
    url = await _queue(patched, VisibilityTimeout="120")
    await _send(patched, url, 400)
    seen: Counter[str] = Counter()
    await asyncio.gather(*(_drain(patched, url, 0, seen) for _ in range(20)))
    assert len(seen) == 400
    assert seen.most_common(1)[0][1] == 1


async def test_parked_polls_share_new_messages_exactly_once(patched: Clients) -> None:
    url = await _queue(patched, VisibilityTimeout="120")
    seen: Counter[str] = Counter()
    receivers = [asyncio.create_task(_drain(patched, url, 2, seen)) for _ in range(15)]
    await asyncio.sleep(0.3)  # let them park on the empty queue
    await _send(patched, url, 150)
    await asyncio.gather(*receivers)
    assert len(seen) == 150
    assert seen.most_common(1)[0][1] == 1


async def test_thousand_parked_polls_at_once(endpoint: str) -> None:
    async with AsyncExitStack() as stack:
        c = await open_clients(stack, endpoint, pool_size=1100)
        url = await _queue(c, VisibilityTimeout="120")
        polls = [
            asyncio.create_task(
                c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=5)
            )
            for _ in range(1000)
        ]
        await asyncio.sleep(1.0)
        assert not any(p.done() for p in polls), "a poll answered before anything was sent"
        await _send(c, url, 25)
        answers = await asyncio.gather(*polls)
    ids = Counter(m["MessageId"] for a in answers for m in a.get("Messages", []))
    assert len(ids) == 25
    assert ids.most_common(1)[0][1] == 1
    assert sum(1 for a in answers if not a.get("Messages")) == 975


async def test_parked_poll_gets_a_message_whose_visibility_ran_out(patched: Clients) -> None:
    url = await _queue(patched)
    await patched.sqs.send_message(QueueUrl=url, MessageBody="again")
    first = await patched.sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)
    assert len(first["Messages"]) == 1
    second = await patched.sqs.receive_message(
        QueueUrl=url, WaitTimeSeconds=5, AttributeNames=["ApproximateReceiveCount"]
    )
    assert [m["Body"] for m in second["Messages"]] == ["again"]
    assert second["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"


async def test_parked_poll_gets_a_delayed_message(patched: Clients) -> None:
    url = await _queue(patched)
    await patched.sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)
    got = await patched.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)
    assert [m["Body"] for m in got["Messages"]] == ["later"]


async def test_long_poll_on_an_empty_queue_answers_empty(patched: Clients) -> None:
    url = await _queue(patched, ReceiveMessageWaitTimeSeconds="1")
    got = await patched.sqs.receive_message(QueueUrl=url)  # waits the queue's default 1 s
    assert "Messages" not in got


async def test_connections_are_kept_alive(endpoint: str) -> None:
    # Two requests on one TCP connection: stock moto's server closes it after the first.
    parts = urlsplit(endpoint)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    request = sqs_query_request(parts.netloc, "Action=ListQueues&Version=x.y")
    try:
        for _ in range(2):
            writer.write(request)
            status = await reader.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            headers = {}
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            assert headers.get("connection", "keep-alive").lower() != "close"
            await reader.readexactly(int(headers["content-length"]))
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_poll_whose_client_hung_up_takes_no_message(patched: Clients) -> None:
    url = await _queue(patched, VisibilityTimeout="120")
    parts = urlsplit(patched.endpoint)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    body = f"Action=ReceiveMessage&QueueUrl={url}&WaitTimeSeconds=10"
    writer.write(sqs_query_request(parts.netloc, body))
    await writer.drain()
    await asyncio.sleep(0.5)  # parked at the server
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.3)
    await patched.sqs.send_message(QueueUrl=url, MessageBody="for a live client")
    got = await patched.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2)
    assert [m["Body"] for m in got.get("Messages", [])] == ["for a live client"]


async def test_a_poll_parked_before_a_purge_gets_the_next_message(patched: Clients) -> None:
    url = await _queue(patched)
    await patched.sqs.send_message(QueueUrl=url, MessageBody="purged")
    await patched.sqs.receive_message(QueueUrl=url)  # in flight, then purged
    poll = asyncio.create_task(patched.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10))
    await asyncio.sleep(0.3)
    await patched.sqs.purge_queue(QueueUrl=url)
    await patched.sqs.send_message(QueueUrl=url, MessageBody="after purge")
    got = await poll  # woken by the send; a stale wait would end empty after 10 s
    assert [m["Body"] for m in got["Messages"]] == ["after purge"]

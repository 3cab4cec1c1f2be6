"""The patched launcher answers every SQS/SNS call exactly as stock moto does.

Each scenario runs against both servers at once (real subprocesses over HTTP) and records
every answer; the two transcripts must match step for step. The asserts inside the
scenarios pin down the behaviour itself, so two servers that were wrong alike still fail.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .clients import Clients
from .transcript import Transcript

COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]

Scenario = Callable[[Clients, Transcript, str], Awaitable[None]]


async def _queue(c: Clients, name: str, **attributes: str) -> str:
    url: str = (await c.sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]
    return url


async def _counts(c: Clients, t: Transcript, url: str, label: str) -> dict[str, int]:
    got = await t.step(label, c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=COUNTS))
    return {k: int(v) for k, v in got["Attributes"].items()}


def _bodies(answer: dict[str, Any]) -> list[str]:
    return [m["Body"] for m in answer.get("Messages", [])]


async def visibility(c: Clients, t: Transcript, name: str) -> None:
    url = await _queue(c, name, VisibilityTimeout="1")
    for body in ("a", "b", "c"):
        await t.step(f"send {body}", c.sqs.send_message(QueueUrl=url, MessageBody=body))
    first = await t.step(
        "receive 2",
        c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, AttributeNames=["All"]),
    )
    assert _bodies(first) == ["a", "b"]
    assert await _counts(c, t, url, "counts") == dict(zip(COUNTS, (1, 2, 0), strict=True))
    assert _bodies(await t.step("rest", c.sqs.receive_message(QueueUrl=url))) == ["c"]
    assert _bodies(await t.step("none", c.sqs.receive_message(QueueUrl=url))) == []
    handle = first["Messages"][0]["ReceiptHandle"]
    await t.step(
        "release a",
        c.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0),
    )
    again = await t.step(
        "a again",
        c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]),
    )
    assert _bodies(again) == ["a"]
    assert again["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"
    await asyncio.sleep(1.3)
    back = await t.step(
        "timed out",
        c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]),
    )
    assert _bodies(back) == ["a", "b", "c"]
    await t.step(
        "old handle still changes visibility",
        c.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=5),
    )
    await t.step(
        "past 12 hours since sent",
        c.sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=43199
        ),
    )
    assert t.steps[-1][1]["error"] == "InvalidParameterValue"
    await _counts(c, t, url, "counts at end")


async def redrive(c: Clients, t: Transcript, name: str) -> None:
    dlq = await _queue(c, f"{name}-dlq")
    dlq_arn = (await c.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = await _queue(c, name, RedrivePolicy=policy)
    await t.step("attrs", c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))
    for body in ("x", "y"):
        await t.step(f"send {body}", c.sqs.send_message(QueueUrl=url, MessageBody=body))
    for attempt in range(3):
        await t.step(
            f"receive {attempt}",
            c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0),
        )
    got = await t.step(
        "dead letters",
        c.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, AttributeNames=["All"]),
    )
    assert _bodies(got) == ["x", "y"]
    await _counts(c, t, url, "source counts")
    await _counts(c, t, dlq, "dlq counts")
    await t.step("sources", c.sqs.list_dead_letter_source_queues(QueueUrl=dlq))
    handle = got["Messages"][0]["ReceiptHandle"]
    await t.step("delete dead", c.sqs.delete_message(QueueUrl=dlq, ReceiptHandle=handle))
    await _counts(c, t, dlq, "dlq counts after delete")


async def delays(c: Clients, t: Transcript, name: str) -> None:
    url = await _queue(c, name, DelaySeconds="1")
    await t.step("send queue delay", c.sqs.send_message(QueueUrl=url, MessageBody="q"))
    await t.step("send no delay", c.sqs.send_message(QueueUrl=url, MessageBody="n", DelaySeconds=0))
    await t.step("send 2s", c.sqs.send_message(QueueUrl=url, MessageBody="l", DelaySeconds=2))
    await t.step("send 901s", c.sqs.send_message(QueueUrl=url, MessageBody="bad", DelaySeconds=901))
    assert await _counts(c, t, url, "counts") == dict(zip(COUNTS, (1, 0, 2), strict=True))
    assert _bodies(await t.step("ready now", c.sqs.receive_message(QueueUrl=url))) == ["n"]
    await asyncio.sleep(1.2)
    assert _bodies(
        await t.step("after 1s", c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10))
    ) == ["q"]
    await asyncio.sleep(1.0)
    await _counts(c, t, url, "counts after 2s")
    assert _bodies(
        await t.step("after 2s", c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10))
    ) == ["l"]


async def batches(c: Clients, t: Transcript, name: str) -> None:
    url = await _queue(c, name)
    sent = await t.step(
        "send batch, one bad delay",
        c.sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "one", "MessageBody": "1"},
                {"Id": "two", "MessageBody": "2", "DelaySeconds": 901},
                {
                    "Id": "three",
                    "MessageBody": "3",
                    "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}},
                },
            ],
        ),
    )
    assert [e["Id"] for e in sent["Failed"]] == ["two"]
    await t.step(
        "duplicate ids",
        c.sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}],
        ),
    )
    got = await t.step(
        "receive",
        c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]),
    )
    handles = [m["ReceiptHandle"] for m in got["Messages"]]
    await t.step(
        "visibility batch",
        c.sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "ok", "ReceiptHandle": handles[0], "VisibilityTimeout": 0},
                {"Id": "bogus", "ReceiptHandle": "not-a-handle", "VisibilityTimeout": 0},
                {"Id": "toolong", "ReceiptHandle": handles[1], "VisibilityTimeout": 50000},
            ],
        ),
    )
    deleted = await t.step(
        "delete batch, one bogus",
        c.sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": "d1", "ReceiptHandle": handles[1]},
                {"Id": "d2", "ReceiptHandle": "not-a-handle"},
            ],
        ),
    )
    assert [e["Id"] for e in deleted["Failed"]] == ["d2"]
    await t.step("delete again", c.sqs.delete_message(QueueUrl=url, ReceiptHandle=handles[1]))
    await t.step("delete bogus", c.sqs.delete_message(QueueUrl=url, ReceiptHandle="nope"))
    await _counts(c, t, url, "counts")


async def attributes(c: Clients, t: Transcript, name: str) -> None:
    url = await _queue(c, name, VisibilityTimeout="45", MaximumMessageSize="2048")
    await t.step("all", c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))
    await t.step(
        "some, with duplicates",
        c.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["VisibilityTimeout", "Policy", "VisibilityTimeout", "QueueArn"],
        ),
    )
    await t.step("none", c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[]))
    await t.step("invalid", c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nope"]))
    await t.step("too big", c.sqs.send_message(QueueUrl=url, MessageBody="x" * 3000))
    await t.step(
        "set", c.sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "60"})
    )
    for i in range(5):
        await c.sqs.send_message(QueueUrl=url, MessageBody=str(i))
    await c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2)
    got = await t.step(
        "all after", c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    )
    assert got["Attributes"]["ApproximateNumberOfMessages"] == "3"
    await t.step("purge", c.sqs.purge_queue(QueueUrl=url))
    await _counts(c, t, url, "after purge")
    await t.step("missing queue", c.sqs.receive_message(QueueUrl=f"{url}-missing"))


async def fifo(c: Clients, t: Transcript, name: str) -> None:
    url = await _queue(c, f"{name}.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    await t.step("attrs", c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))
    for body, group in (("a1", "a"), ("a1", "a"), ("a2", "a"), ("b1", "b")):
        await t.step(
            f"send {body}",
            c.sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group),
        )
    await t.step("no group", c.sqs.send_message(QueueUrl=url, MessageBody="z"))
    first = await t.step("receive 1", c.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1))
    assert _bodies(first) == ["a1"]
    assert _bodies(await t.step("next group", c.sqs.receive_message(QueueUrl=url))) == ["b1"]
    assert _bodies(await t.step("groups busy", c.sqs.receive_message(QueueUrl=url))) == []
    handle = first["Messages"][0]["ReceiptHandle"]
    await t.step("delete a1", c.sqs.delete_message(QueueUrl=url, ReceiptHandle=handle))
    assert _bodies(await t.step("a2", c.sqs.receive_message(QueueUrl=url))) == ["a2"]
    await _counts(c, t, url, "counts")


async def sns_to_sqs(c: Clients, t: Transcript, name: str) -> None:
    topic = (await c.sns.create_topic(Name=name))["TopicArn"]
    raw, wrapped = await _queue(c, f"{name}-raw"), await _queue(c, f"{name}-env")
    for url, is_raw in ((raw, "true"), (wrapped, "false")):
        arn = (await c.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        sub = await c.sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=arn, ReturnSubscriptionArn=True
        )
        await c.sns.set_subscription_attributes(
            SubscriptionArn=sub["SubscriptionArn"],
            AttributeName="RawMessageDelivery",
            AttributeValue=is_raw,
        )
    attrs = {"kind": {"DataType": "String", "StringValue": "order"}}
    await t.step(
        "publish", c.sns.publish(TopicArn=topic, Message='{"n": 0}', MessageAttributes=attrs)
    )
    await t.step(
        "publish batch",
        c.sns.publish_batch(
            TopicArn=topic,
            PublishBatchRequestEntries=[
                {"Id": f"e{i}", "Message": f'{{"n": {i}}}'} for i in range(1, 4)
            ],
        ),
    )
    got = await t.step(
        "raw",
        c.sqs.receive_message(QueueUrl=raw, MaxNumberOfMessages=10, MessageAttributeNames=["All"]),
    )
    assert _bodies(got) == ['{"n": 0}', '{"n": 1}', '{"n": 2}', '{"n": 3}']
    assert got["Messages"][0]["MessageAttributes"]["kind"]["StringValue"] == "order"
    env = await t.step("enveloped", c.sqs.receive_message(QueueUrl=wrapped, MaxNumberOfMessages=10))
    assert json.loads(env["Messages"][0]["Body"])["Message"] == '{"n": 0}'


SCENARIOS: list[Scenario] = [visibility, redrive, delays, batches, attributes, fifo, sns_to_sqs]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_patched_answers_like_stock(
    scenario: Scenario, patched: Clients, stock: Clients
) -> None:
    name = f"eq-{scenario.__name__}-{uuid.uuid4().hex[:8]}"
    ours, theirs = Transcript(patched.endpoint), Transcript(stock.endpoint)
    await asyncio.gather(scenario(patched, ours, name), scenario(stock, theirs, name))
    assert len(ours.steps) == len(theirs.steps)
    for (label, got), (_, want) in zip(ours.steps, theirs.steps, strict=True):
        assert got == want, f"step {label!r} differs from stock moto"

"""The worker's one door to SQS: receive, delete, change visibility, dead-letter.

The worker loop never builds an SQS request itself. botocore's errors are mapped here, once:
callers catch QueueUnavailable (an outage: retry in process) and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from services.common.awserrors import AwsHealth
from services.common.groupcommit import GroupCommit

from .settings import SQS_BATCH

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


class QueueNotFound(Exception):
    """ORDER_QUEUE_URL names no queue this worker can use as it is (a setting, not an outage)."""


class QueueUnavailable(Exception):
    """SQS could not be reached or refused the call: retry later."""


class QueueRefused(QueueUnavailable):
    """SQS refused the call for a reason retrying cannot fix (access denied, KMS, no such
    queue): logged at error and counted (services/common/awserrors.py)."""


@dataclass(frozen=True)
class QueueConfig:
    """What the worker needs to know of its queue, read once at start."""

    visibility_timeout: int
    max_receive_count: int
    dlq_url: str


@dataclass(frozen=True)
class Received:
    """One received message."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    visibility: int
    """Seconds the receive asked SQS to hide it for (see Holding.receive_visibility)."""


class OrderQueue:
    """The order queue and its dead-letter queue, as the worker uses them."""

    def __init__(
        self,
        sqs: SQSClient,
        url: str,
        *,
        batched: bool,
        health: AwsHealth | None = None,
    ) -> None:
        self._sqs = sqs
        self.health = health or AwsHealth()
        self.url = url
        self._batched = batched
        # Counted here, where the calls are made; the worker copies them into its stats.
        self.receive_calls = 0
        self.delete_calls = 0
        # Deletes share DeleteMessageBatch calls: nobody waits on a delete, so a batch may
        # wait up to 50 ms to fill (arrivals x round trip alone would make batches of 1-2).
        self._deletes: GroupCommit[str, str | None] = GroupCommit(
            self._delete_batch, max_items=SQS_BATCH, concurrency=2, fill_wait=0.05
        )
        self.config: QueueConfig | None = None

    def _unavailable(self, operation: str, exc: Exception) -> QueueUnavailable:
        """The error callers see: QueueRefused for a permanent one (logged here), else an outage."""
        if self.health.failed("sqs", operation, exc):
            return QueueRefused(f"{operation}: {exc}")
        return QueueUnavailable(f"{operation}: {exc}")

    async def read_config(self) -> QueueConfig:
        """Read the queue's visibility timeout and dead-letter queue; refuse a queue without."""
        try:
            got = await self._sqs.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
            )
        except ClientError as exc:
            raise QueueNotFound(f"ORDER_QUEUE_URL {self.url!r}: {exc}") from None
        attributes = got.get("Attributes", {})
        redrive = attributes.get("RedrivePolicy")
        if not redrive:
            # Without one, a message that can never be paid would come back forever.
            raise QueueNotFound(
                f"ORDER_QUEUE_URL {self.url!r} has no redrive policy: give it a dead-letter "
                "queue (RedrivePolicy with deadLetterTargetArn and maxReceiveCount)"
            )
        policy = json.loads(redrive)
        # arn:aws:sqs:REGION:ACCOUNT:NAME
        *_, account, name = str(policy["deadLetterTargetArn"]).split(":")
        try:
            dlq = await self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
        except ClientError as exc:
            raise QueueNotFound(f"the dead-letter queue {name!r} of {self.url!r}: {exc}") from None
        self.config = QueueConfig(
            visibility_timeout=int(attributes.get("VisibilityTimeout", "30")),
            max_receive_count=int(policy["maxReceiveCount"]),
            dlq_url=dlq["QueueUrl"],
        )
        return self.config

    async def receive(self, count: int, wait_seconds: int, visibility: int) -> list[Received]:
        """Up to `count` messages, each hidden for `visibility` s from now."""
        self.receive_calls += 1
        try:
            got = await self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("ReceiveMessage", exc) from exc
        self.health.succeeded("sqs")
        return [
            Received(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                visibility=visibility,
            )
            for m in got.get("Messages", [])
        ]

    async def delete(self, receipt_handle: str) -> str | None:
        """Delete one message; None, or SQS's reason when it refused this one (stale handle)."""
        if self._batched:
            return await self._deletes.submit(receipt_handle)
        self.delete_calls += 1
        try:
            await self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "").startswith("ReceiptHandle"):
                return str(exc)
            raise self._unavailable("DeleteMessage", exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("DeleteMessage", exc) from exc
        self.health.succeeded("sqs")
        return None

    async def _delete_batch(self, receipts: list[str]) -> list[str | None]:
        self.delete_calls += 1
        entries = [{"Id": str(i), "ReceiptHandle": rh} for i, rh in enumerate(receipts)]
        try:
            response = await self._sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=entries,  # type: ignore[arg-type]
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("DeleteMessageBatch", exc) from exc
        self.health.succeeded("sqs")
        failed = {f["Id"]: f.get("Message", f["Code"]) for f in response.get("Failed", [])}
        return [failed.get(str(i)) for i in range(len(receipts))]

    async def change_visibility(self, receipts: Sequence[str], seconds: int) -> int:
        """ChangeMessageVisibilityBatch, 10 per call; how many SQS accepted.

        Raises QueueUnavailable only when no call got through.
        """
        return len(await self.change_visibility_each(receipts, seconds))

    async def change_visibility_each(self, receipts: Sequence[str], seconds: int) -> set[str]:
        """ChangeMessageVisibilityBatch, 10 per call; the receipt handles SQS accepted.

        Raises QueueUnavailable only when no call got through.
        """
        changed: set[str] = set()
        error: QueueUnavailable | None = None
        for start in range(0, len(receipts), SQS_BATCH):
            chunk = receipts[start : start + SQS_BATCH]
            entries = [
                {"Id": str(i), "ReceiptHandle": rh, "VisibilityTimeout": seconds}
                for i, rh in enumerate(chunk)
            ]
            try:
                got = await self._sqs.change_message_visibility_batch(
                    QueueUrl=self.url,
                    Entries=entries,  # type: ignore[arg-type]
                )
            except (BotoCoreError, ClientError) as exc:
                error = self._unavailable("ChangeMessageVisibilityBatch", exc)
                continue
            self.health.succeeded("sqs")
            changed.update(chunk[int(ok["Id"])] for ok in got.get("Successful", []))
        if error is not None and not changed:
            raise error
        return changed

    async def dead_letter(self, message: Received, reason: str, order_id: str | None) -> None:
        """Move a message to the dead-letter queue with its reason, then delete it here."""
        assert self.config is not None, "read_config() first"
        attributes = {
            "failure_reason": {"DataType": "String", "StringValue": reason[:1000] or "unknown"},
            "source_message_id": {"DataType": "String", "StringValue": message.message_id},
            "receive_count": {"DataType": "Number", "StringValue": str(message.receive_count)},
        }
        if order_id:
            attributes["order_id"] = {"DataType": "String", "StringValue": order_id}
        try:
            await self._sqs.send_message(
                QueueUrl=self.config.dlq_url,
                MessageBody=message.body,
                MessageAttributes=attributes,  # type: ignore[arg-type]
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("SendMessage (dead-letter queue)", exc) from exc
        self.health.succeeded("sqs")
        # Sent first, deleted second: a failure in between leaves a copy here, which comes
        # back and is dead-lettered again, rather than an order in neither queue.
        await self.delete(message.receipt_handle)

    async def close(self) -> None:
        await self._deletes.close()

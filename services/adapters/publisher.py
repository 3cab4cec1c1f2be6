"""Order messages to SNS through group commit: concurrent publishes share one PublishBatch.

Each publish is answered from its own batch entry: SNS's message id, or that entry's error.
Errors come in two sibling kinds (services/domain/errors.py), because the API's promise (a
202 only for a queued order, and a retry never queues it twice unnoticed) depends on which:

- `PublishFailed`: definitely not published. SNS answered an error for the entry or the call
  (a 4xx), or no request ever reached it (the connection was refused, the entry never left).
- `PublishAmbiguous`: it may have been published. A request went out and no answer came back
  (timeout, connection lost), SNS answered a 5xx, or an earlier attempt of the same call
  (botocore retries) ended that way.

The kind is judged per attempt, from botocore's own events on the client, so a retried call
that ends in a clean 4xx is still ambiguous if an earlier attempt timed out after sending.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as ConnectError

from services.common.awserrors import AwsHealth
from services.common.groupcommit import GroupCommit, GroupCommitClosed, GroupCommitStats
from services.domain.errors import PublishAmbiguous, PublishError, PublishFailed

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sns.type_defs import PublishBatchRequestEntryTypeDef

# SNS's limits for one PublishBatch: 10 entries, 256 KiB of messages in all.
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 262_144


@dataclass(slots=True, eq=False)
class _Entry:
    message: str
    size: int
    sent: bool = False
    """Set once the entry's batch is handed to SNS: a timeout after that is ambiguous."""


@dataclass(slots=True)
class _Attempts:
    """What the attempts of one PublishBatch call showed (filled by the client's events)."""

    in_doubt: bool = False
    """A request went out and its attempt has not ended yet."""
    ambiguous: bool = False
    """Some attempt ended without a definite answer."""


_attempts: ContextVar[_Attempts | None] = ContextVar("publish_attempts", default=None)


def _request_sent(**_: Any) -> None:
    attempts = _attempts.get()
    if attempts is not None:
        attempts.in_doubt = True


def _attempt_ended(
    response: tuple[Any, dict[str, Any]] | None = None,
    caught_exception: BaseException | None = None,
    **_: Any,
) -> None:
    attempts = _attempts.get()
    if attempts is None:
        return
    if caught_exception is not None:
        # Only a failure to connect proves the request never reached SNS.
        definite = isinstance(caught_exception, ConnectError)
    else:
        definite = response is not None and response[0].status_code < 500
    attempts.ambiguous |= not definite
    attempts.in_doubt = False


def _describe(exc: BaseException) -> tuple[str, str]:
    """(detail, code) of a whole call's failure."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        return f"{code}: {error.get('Message', '')}", code
    if isinstance(exc, TimeoutError):
        return "no answer from SNS in time", "Timeout"
    return str(exc) or type(exc).__name__, type(exc).__name__


@dataclass(eq=False)
class Publisher:
    """Publishes messages to one topic; concurrent publishes share PublishBatch calls.

    timeout: seconds a publish may take in all, waiting for its batch included; also the
        bound on each PublishBatch call.
    concurrency: PublishBatch calls in flight at once.
    linger: see GroupCommit (0: a batch leaves as soon as a call slot is free).
    """

    sns: SNSClient
    topic_arn: str
    timeout: float
    concurrency: int = 2
    linger: float = 0.0
    max_batch_bytes: int = MAX_BATCH_BYTES
    health: AwsHealth = field(default_factory=AwsHealth)
    """Where a permanent SNS error (denied, KMS, no such topic) is logged and counted."""
    _commit: GroupCommit[_Entry, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        events = self.sns.meta.events
        # unique_id: several publishers on one client register each handler once.
        events.register(
            "before-send.sns.PublishBatch", _request_sent, unique_id="orderflow-publish-sent"
        )
        events.register(
            "needs-retry.sns.PublishBatch", _attempt_ended, unique_id="orderflow-publish-ended"
        )
        self._commit = GroupCommit(
            self._send,
            max_items=MAX_BATCH_ENTRIES,
            max_bytes=self.max_batch_bytes,
            size_of=lambda entry: entry.size,
            concurrency=self.concurrency,
            linger=self.linger,
        )

    @property
    def stats(self) -> GroupCommitStats:
        """PublishBatch calls made and messages they carried."""
        return self._commit.stats

    async def publish(self, message: str) -> str:
        """Publish `message` and return SNS's message id; raise PublishFailed/PublishAmbiguous."""
        entry = _Entry(message, len(message.encode()))
        try:
            async with asyncio.timeout(self.timeout):
                return await self._commit.submit(entry)
        except TimeoutError:
            detail = f"no answer from SNS within {self.timeout:g} s"
            if entry.sent:
                raise PublishAmbiguous(detail, "Timeout") from None
            raise PublishFailed(f"{detail}; the message was never sent", "Timeout") from None
        except GroupCommitClosed:
            raise PublishFailed("the publisher is closed", "Closed") from None

    async def close(self) -> None:
        """Refuse new publishes and wait for those in flight."""
        await self._commit.close()

    async def _send(self, batch: list[_Entry]) -> list[str | PublishError]:
        entries: list[PublishBatchRequestEntryTypeDef] = [
            {"Id": str(i), "Message": entry.message} for i, entry in enumerate(batch)
        ]
        for entry in batch:
            entry.sent = True
        attempts = _Attempts()
        token = _attempts.set(attempts)
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.sns.publish_batch(
                    TopicArn=self.topic_arn, PublishBatchRequestEntries=entries
                )
        except (BotoCoreError, ClientError, TimeoutError) as exc:
            self.health.failed("sns", "PublishBatch", exc)
            kind = PublishAmbiguous if attempts.ambiguous or attempts.in_doubt else PublishFailed
            detail, code = _describe(exc)
            return [kind(detail, code) for _ in batch]
        finally:
            _attempts.reset(token)
        self.health.succeeded("sns")
        # A clean answer after an ambiguous attempt: a failed entry may still have been
        # published by the attempt whose answer was lost.
        failed_kind = PublishAmbiguous if attempts.ambiguous else PublishFailed
        results: dict[str, str | PublishError] = {
            ok["Id"]: ok["MessageId"] for ok in response.get("Successful", []) if "MessageId" in ok
        }
        for bad in response.get("Failed", []):
            code = bad.get("Code", "Failed")
            results[bad["Id"]] = failed_kind(f"{code}: {bad.get('Message', '')}", code)
        return [
            results.get(str(i))
            or PublishAmbiguous("SNS answered nothing for this entry", "NoAnswer")
            for i in range(len(batch))
        ]

"""Conditional writes to DynamoDB through group commit: concurrent writes share one call.

Beside the SNS publisher on purpose: both are AWS writers that batch concurrent callers
through one GroupCommit and answer each caller from its own entry (here: None when applied,
else the item its condition saw), and both classify AWS's errors once (awserrors.py). The
domain (services/domain) builds the writes and reads the answers; this module only sends.
A lone write on an idle path goes out at once as a single PutItem/UpdateItem/DeleteItem;
writes made while a call is in flight share the next TransactWriteItems.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from services.common.awserrors import AwsHealth, error_code
from services.common.groupcommit import GroupCommit
from services.common.retry import Backoff
from services.domain.errors import StateRefused, StateUnavailable
from services.domain.records import Item
from services.domain.transitions import Write

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

_SINGLE = {"Put": "put_item", "Update": "update_item", "Delete": "delete_item"}
# Between rounds of a transaction whose writes conflicted or were throttled: short and jittered.
TRANSACT_BACKOFF = Backoff(base=0.02, cap=0.5)
# Writes made while a call is in flight share the next one, this many at most (DynamoDB
# takes up to 100 per transaction; a smaller batch keeps each call short).
WRITE_BATCH = 25
# DynamoDB's own limit on the writes of one TransactWriteItems.
MAX_TRANSACTION_WRITES = 100

Answer = Item | None
"""A write's answer: None when applied, else the item its condition saw ({} if unsaid)."""


class _Cancelled(Exception):
    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__("transaction cancelled")
        self.reasons = reasons


def _conditional_failed(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code")
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")


def _old_item(exc: ClientError) -> Item | None:
    """The item a failed condition saw (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""
    item: Any = exc.response.get("Item")
    return item if isinstance(item, dict) and item else None


def _write_key(write: Write) -> tuple[str, str]:
    """A transaction may touch an item once: writes to one item never share a call."""
    [request] = write.values()
    key = request["Key"] if "Key" in request else {"pk": request["Item"]["pk"]}
    return request["TableName"], key["pk"]["S"]


class TransactionWriter:
    """DynamoDB calls with errors classified once: a refused condition is an answer, a
    permanent error StateRefused (logged and counted by `health`), all else StateUnavailable."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        *,
        concurrency: int = 4,
        fill_wait: float = 0.0,
        max_writes: int = WRITE_BATCH,
        health: AwsHealth | None = None,
    ) -> None:
        self.db = dynamodb
        self.health = health or AwsHealth()
        if not 1 <= max_writes <= MAX_TRANSACTION_WRITES:
            raise ValueError(f"max_writes must be between 1 and {MAX_TRANSACTION_WRITES}")
        self._writes: GroupCommit[Write, Answer] = GroupCommit(
            self._send_writes,
            max_items=max_writes,
            key_of=_write_key,
            concurrency=concurrency,
            fill_wait=fill_wait,
        )

    @property
    def calls(self) -> int:
        """DynamoDB calls that carried writes (each a batch of one or more)."""
        return self._writes.stats.calls

    async def write(self, write: Write) -> Answer:
        """One conditional write, sharing a call with those made meanwhile."""
        return await self._writes.submit(write)

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One DynamoDB call; a refused condition stays a ClientError."""
        try:
            result: dict[str, Any] = await getattr(self.db, operation)(**kwargs)
        except ClientError as exc:
            if _conditional_failed(exc):
                self.health.succeeded("dynamodb")  # DynamoDB answered: the table is usable
                raise
            if self.health.failed("dynamodb", operation, exc):
                raise StateRefused(f"{operation}: {exc}", error_code(exc) or "") from exc
            raise StateUnavailable(f"{operation}: {exc}") from exc
        except BotoCoreError as exc:
            raise StateUnavailable(f"{operation}: {exc}") from exc
        self.health.succeeded("dynamodb")
        return result

    async def _send_writes(self, writes: list[Write]) -> list[Answer | Exception]:
        """Writes in one call: a single request alone, several in one TransactWriteItems.

        A transaction is all or nothing, so when some conditions fail the others are sent
        again without them; every round settles at least one write. Each write is judged
        alone: its caller gets None (applied) or the item its condition saw.
        """
        if len(writes) == 1:
            return [await self._send_one(writes[0])]
        results: list[Answer | Exception] = [None] * len(writes)
        todo = list(range(len(writes)))
        for round_ in range(len(writes) + 3):
            if not todo:
                break
            try:
                await self._call_transact([writes[i] for i in todo])
                return results
            except StateRefused:
                # One write DynamoDB will never take (a number out of range...) fails the
                # whole transaction: settle each alone, so it fails only its own caller.
                for i in todo:
                    results[i] = await self._send_alone(writes[i])
                return results
            except _Cancelled as cancelled:
                retry = []
                for i, reason in zip(todo, cancelled.reasons, strict=True):
                    if reason.get("Code") == "ConditionalCheckFailed":
                        results[i] = reason.get("Item") or {}
                    else:
                        retry.append(i)  # applied nothing; conflicts and throttles go again
                todo = retry
                if todo:
                    # Conflicts and throttling: go again after a jittered pause, not at once.
                    await asyncio.sleep(TRANSACT_BACKOFF.delay(round_))
        if todo:
            raise StateUnavailable("transaction kept being cancelled")
        return results

    async def _send_alone(self, write: Write) -> Answer | Exception:
        try:
            return await self._send_one(write)
        except StateUnavailable as exc:
            return exc

    async def _send_one(self, write: Write) -> Answer:
        [(kind, request)] = write.items()
        try:
            await self.call(_SINGLE[kind], **request)
        except ClientError as exc:
            return _old_item(exc) or {}
        return None

    async def _call_transact(self, writes: list[Write]) -> None:
        try:
            await self.call("transact_write_items", TransactItems=writes)
        except ClientError as exc:
            reasons: Any = exc.response.get("CancellationReasons", [])
            raise _Cancelled(list(reasons)) from None


class NullWriter(TransactionWriter):
    """Stateless mode (no ORDERS_TABLE): every write applies and nothing is kept, so every
    read finds nothing. The domain runs its one path over it, with no `if store` branches."""

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # never called

    async def write(self, write: Write) -> Answer:
        return None

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        return {}

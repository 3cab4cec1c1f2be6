"""DeleteMessageBatch with up to 10 receipts per call, flushed when full or after a short linger."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .settings import SQS_BATCH
from .stats import WorkerStats

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


class DeleteFailed(Exception):
    """SQS did not delete the message; it will be delivered again after its visibility timeout."""


class DeleteBatcher:
    """Collects deletes from many payment tasks into DeleteMessageBatch calls."""

    def __init__(
        self, sqs: SQSClient, queue_url: str, stats: WorkerStats, linger: float = 0.05
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._stats = stats
        # A short linger fills batches at saturation and costs a payment slot nothing:
        # the slot is already free while its delete waits here.
        self._linger = linger
        self._pending: list[tuple[str, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def delete(self, receipt_handle: str) -> None:
        """Delete one message; returns once SQS confirmed, raises DeleteFailed otherwise."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append((receipt_handle, future))
        if len(self._pending) >= SQS_BATCH:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._flush)
        await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[:SQS_BATCH], self._pending[SQS_BATCH:]
            task = asyncio.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, asyncio.Future[None]]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": rh} for i, (rh, _) in enumerate(batch)]
        self._stats.delete_calls += 1
        try:
            response = await self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=entries,  # type: ignore[arg-type]
            )
        except (BotoCoreError, ClientError) as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(DeleteFailed(str(exc)))
            return
        failed = {f["Id"]: f.get("Message", f["Code"]) for f in response.get("Failed", [])}
        for i, (_, future) in enumerate(batch):
            if future.done():
                continue
            if str(i) in failed:
                future.set_exception(DeleteFailed(failed[str(i)]))
            else:
                future.set_result(None)

    async def close(self) -> None:
        """Send whatever is pending and wait for every batch in flight."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

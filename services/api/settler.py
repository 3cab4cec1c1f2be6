"""State writes that must land after the answer was sent, retried in the background.

After SNS acknowledged an order, or the processor charged one, the customer's answer no longer
depends on DynamoDB: a failed write is handed here and retried (capped, jittered backoff) until
it lands or the API shuts down, instead of turning a done deal into a 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from services.common.logging import get_logger
from services.common.retry import Stopped, retry
from services.domain.errors import StateUnavailable

log = get_logger()


class Settler:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, what: str, order_id: str, call: Callable[[], Awaitable[object]]) -> None:
        """Retry `call` in the background until it lands."""
        task = asyncio.create_task(self._settle(what, order_id, call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(
        self, what: str, order_id: str, call: Callable[[], Awaitable[object]]
    ) -> None:
        def on_error(exc: BaseException, failures: int, delay: float) -> None:
            log.warning(
                "state_unavailable",
                operation=what,
                order_id=order_id,
                failures=failures,
                retry_in_s=round(delay, 3),
                detail=str(exc),
            )

        try:
            await retry(call, retry_on=(StateUnavailable,), stop=self._stop, on_error=on_error)
        except Stopped:
            log.error("state_unsettled", operation=what, order_id=order_id)
            return
        log.info("state_settled", operation=what, order_id=order_id)

    async def close(self, grace: float) -> None:
        """Give writes still retrying `grace` seconds to land, then stop them."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

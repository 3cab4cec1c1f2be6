"""Late writes: state writes that must land after the answer was sent, retried in the background.

After SNS acknowledged an order, or the processor charged one, the customer's answer no longer
depends on DynamoDB: a failed write is handed here and retried until it lands or the API shuts
down, instead of turning a done deal into a 503.

- An outage (`StateUnavailable`: throttling, 5xx, timeouts) is retried on a short, capped,
  jittered backoff and logged at warning (`state_unavailable`), so writes land soon after it.
- A refusal (`StateRefused`: access denied, KMS, a missing table) is not an outage: the store
  already logged it as `aws_permanent_error` and counted it toward the API's /health (its
  AwsHealth), and here it is an error line per failed attempt (`late_write_refused`, with the
  order) retried on a slow backoff (REFUSED_BACKOFF), because only a fix of the setting lets
  it land and a retry at full speed would only flood the logs and the table.

Either way the mark keeps being retried until the API stops; then it is given up
(`late_write_abandoned`, error). An accepted-mark given up costs only what a GET shows: the
order is queued, and the worker's claim writes its item and pays it all the same. A paid- or
failed-mark given up leaves the order `paying` under a lease that runs out, and the takeover
rule (services/domain/orders.py) keeps it from being charged again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from services.common.logging import get_logger
from services.common.retry import Backoff, Stopped, retry
from services.domain.errors import StateRefused, StateUnavailable

log = get_logger()

# An outage's pace: writes land soon after it ends.
OUTAGE_BACKOFF = Backoff()
# A refusal's pace: at least 1 s, doubling to at least 30 s (equal jitter), so a denied table
# costs a few calls per order a minute, not one every few hundred milliseconds.
REFUSED_BACKOFF = Backoff(base=1.0, cap=60.0, equal_jitter=True)


def _backoff(exc: BaseException) -> Backoff:
    return REFUSED_BACKOFF if isinstance(exc, StateRefused) else OUTAGE_BACKOFF


class LateWrites:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(
        self,
        what: str,
        order_id: str,
        call: Callable[[], Awaitable[object]],
        failed: StateUnavailable,
    ) -> None:
        """Retry `call`, whose first attempt ended in `failed`, in the background until it lands."""
        task = asyncio.create_task(self._land(what, order_id, call, failed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _land(
        self,
        what: str,
        order_id: str,
        call: Callable[[], Awaitable[object]],
        failed: StateUnavailable,
    ) -> None:
        def on_error(exc: BaseException, failures: int, delay: float) -> None:
            fields = {
                "operation": what,
                "order_id": order_id,
                "failures": failures,
                "retry_in_s": round(delay, 3),
                "detail": str(exc),
            }
            if isinstance(exc, StateRefused):
                log.error("late_write_refused", code=exc.code, **fields)
            else:
                log.warning("state_unavailable", **fields)

        attempts = 0

        async def attempt() -> object:
            # The first attempt is the one that failed before the write was handed here.
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise failed
            return await call()

        try:
            await retry(
                attempt,
                retry_on=(StateUnavailable,),
                stop=self._stop,
                on_error=on_error,
                backoff=_backoff,
            )
        except Stopped:
            log.error("late_write_abandoned", operation=what, order_id=order_id)
            return
        log.info("late_write_landed", operation=what, order_id=order_id)

    async def close(self, grace: float) -> None:
        """Give writes still retrying `grace` seconds to land, then stop them."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        self._stop.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

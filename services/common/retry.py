"""Retrying a call through an outage: capped, jittered, doubling backoff that a stop cuts short.

Infrastructure errors (DynamoDB or SQS throttling, 5xx, timeouts) are retried in the process
that holds the work, never by handing the work back to the queue: a receive spent on an
outage would count toward the queue's maxReceiveCount and dead-letter a good order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """The retry loop gave up because its stop event was set."""


@dataclass(frozen=True)
class Backoff:
    base: float = 0.1
    """First ceiling of the jittered delay, in seconds; it doubles per failure."""
    cap: float = 2.0
    """The most a single wait can last: short, so work resumes soon after an outage ends."""
    equal_jitter: bool = False
    """Wait at least half the ceiling ("equal jitter"), for errors a quick retry cannot fix."""

    def delay(self, failures: int) -> float:
        """Full jitter (AWS's recommendation): uniform between 0 (or, with equal jitter, half
        the ceiling) and the doubled ceiling."""
        ceiling = min(self.cap, self.base * 2 ** min(failures, 30))
        return random.uniform(ceiling / 2 if self.equal_jitter else 0, ceiling)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `stop` is set meanwhile; True if stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    stop: asyncio.Event,
    on_error: Callable[[BaseException, int, float], None],
    backoff: Backoff | Callable[[BaseException], Backoff] = Backoff(),
    attempts: int | None = None,
) -> T:
    """Await `call()` until it succeeds; errors of `retry_on` wait and go again.

    Raises Stopped once `stop` is set while waiting, and re-raises the last error after
    `attempts` failures (None: no limit). `on_error(error, failures, delay)` is told of each.
    `backoff` may be chosen per error (a callable), so errors of different kinds pace apart.
    """
    failures = 0
    while True:
        try:
            return await call()
        except retry_on as exc:
            failures += 1
            if attempts is not None and failures >= attempts:
                raise
            pace = backoff if isinstance(backoff, Backoff) else backoff(exc)
            wait = pace.delay(failures)
            on_error(exc, failures, wait)
            if await sleep_unless(stop, wait):
                raise Stopped from exc

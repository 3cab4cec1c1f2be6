"""Long polls that wait on the event loop instead of in a thread each.

Stock moto answers `ReceiveMessage` with `WaitTimeSeconds` by blocking its request thread,
re-checking the queue every second. Here the server runs every receive without waiting;
when one comes back empty with wait time left, `receive_message` records that on the
request's `LongPoll` and the server parks the request on the queue's `Waiters` until a
message becomes ready there (or a hidden one's timer runs out, or the wait ends), then
runs the same request again. A parked poll is a future and a timer: no thread, no CPU.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from moto.sqs.models import SQSBackend

from . import sqs_index
from .sqs_index import MessageIndex, State, now_ms


@dataclass
class LongPoll:
    """One ReceiveMessage request's wait, carried across its re-runs."""

    deadline: float | None = None
    """time.monotonic() when the wait ends; set by the first run."""
    parked_on: MessageIndex | None = None
    """Set when a run came back empty with time left: the queue to wait on."""


# The request being served. The server runs moto only on the event loop's thread, one
# request at a time, so a plain module variable is enough.
current: LongPoll | None = None


def _receive_without_blocking(original: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    @functools.wraps(original)
    def receive_message(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> list[Any]:
        poll = current
        if poll is None or not wait_seconds_timeout:
            return original(
                self,
                queue_name,
                count,
                wait_seconds_timeout,
                visibility_timeout,
                message_attribute_names,
            )
        if poll.deadline is None:
            poll.deadline = time.monotonic() + wait_seconds_timeout
        result = original(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
        if not result and time.monotonic() < poll.deadline:
            poll.parked_on = self.get_queue(queue_name)._messages
        return result

    return receive_message


def install() -> None:
    """Make moto's receive hand waiting back to the server (patched server only)."""
    wrapped = _receive_without_blocking(SQSBackend.receive_message)
    setattr(SQSBackend, "receive_message", wrapped)  # noqa: B010 (mypy forbids assigning a method)


Wake = Literal["message", "timer", "ended"]
"""Why a parked poll resumed: a message became ready, a hidden one's timer ran out, or
its wait ended (then it answers with its last, empty, result)."""


@dataclass
class Waiters:
    """The polls parked on one queue, oldest first."""

    parked: deque[asyncio.Future[None]] = field(default_factory=deque)
    woken: int = 0
    """Polls woken for a ready message that have not run again yet."""


class Registry:
    """Parks polls per queue and wakes one per message that became ready."""

    def __init__(self) -> None:
        self._queues: dict[MessageIndex, Waiters] = {}

    async def wait(self, poll: LongPoll, index: MessageIndex) -> Wake:
        """Park `poll` on `index` until a message may be ready for it or its wait ends."""
        assert poll.deadline is not None
        timeout = poll.deadline - time.monotonic()
        wake: Wake = "ended"
        next_change = index.next_change_ms()
        if next_change is not None:
            until_change = (next_change - now_ms()) / 1000 + 0.001
            if until_change < timeout:
                timeout, wake = max(until_change, 0.0), "timer"
        waiters = self._queues.setdefault(index, Waiters())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.parked.append(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return wake
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                waiters.woken = max(0, waiters.woken - 1)  # woken, but will never run again
            raise
        finally:
            if (not future.done() or future.cancelled()) and future in waiters.parked:
                # Timed out or cancelled (client gone): leave the line (unless a wake-up
                # already took it off, in the instant between the timeout and this line).
                waiters.parked.remove(future)
            self._forget_if_idle(index)
        return "message"

    def ran_again(self, index: MessageIndex) -> None:
        """A poll woken for a message has run again, whatever it got."""
        waiters = self._queues.get(index)
        if waiters is not None:
            waiters.woken = max(0, waiters.woken - 1)
            self._forget_if_idle(index)

    def wake_ready(self) -> None:
        """After each request: wake one parked poll per ready message not yet claimed."""
        changed, sqs_index.became_ready = sqs_index.became_ready, set()
        for index in changed:
            waiters = self._queues.get(index)
            if waiters is None:
                continue
            wanted = index.count(State.READY) - waiters.woken
            while wanted > 0 and waiters.parked:
                future = waiters.parked.popleft()
                if future.done():
                    continue  # timed out or cancelled a moment ago: its poll is leaving
                future.set_result(None)
                waiters.woken += 1
                wanted -= 1

    def _forget_if_idle(self, index: MessageIndex) -> None:
        waiters = self._queues.get(index)
        if waiters is not None and not waiters.parked and not waiters.woken:
            del self._queues[index]

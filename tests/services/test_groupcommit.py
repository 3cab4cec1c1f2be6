"""GroupCommit: batching by arrival, limits, per-entry results, cancellation, no idle timer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from services.common.groupcommit import (
    MAX_FILL_WAIT,
    MAX_LINGER,
    GroupCommit,
    GroupCommitClosed,
)


class Backend:
    """A fake service: records each call's items; `hold()` keeps calls in flight until released."""

    def __init__(self, fail: set[Any] | None = None) -> None:
        self.calls: list[list[Any]] = []
        self.fail = fail or set()
        self.raise_next: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.most_in_flight = 0

    def hold(self) -> None:
        self.gate = asyncio.Event()

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()
        self.gate = None

    async def send(self, items: list[Any]) -> Sequence[Any]:
        self.calls.append(list(items))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.in_flight -= 1
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc
        return [ValueError(f"bad {i}") if i in self.fail else f"ok {i}" for i in items]


async def settle(turns: int = 5) -> None:
    """Let the loop run a few iterations (no timers: every step here is a ready callback)."""
    for _ in range(turns):
        await asyncio.sleep(0)


def submit_all(gc: GroupCommit[Any, Any], items: Sequence[Any]) -> list[asyncio.Task[Any]]:
    return [asyncio.create_task(gc.submit(i)) for i in items]


class CountingLoop:
    """Counts timers scheduled on the running loop (asyncio.sleep(d > 0) uses call_at)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        self.timers = 0
        original = loop.call_at

        def call_at(when: float, callback: Any, *args: Any, context: Any = None) -> Any:
            self.timers += 1
            return original(when, callback, *args, context=context)

        monkeypatch.setattr(loop, "call_at", call_at)


async def test_a_lone_request_is_sent_at_once_without_a_timer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, linger=MAX_LINGER)
    timers = CountingLoop(monkeypatch)
    task = asyncio.create_task(gc.submit(1))
    # Two loop iterations: the caller queues its entry, then the sender task sends it.
    await settle(2)
    assert backend.calls == [[1]]
    assert await task == "ok 1"
    assert timers.timers == 0


async def test_requests_during_a_call_share_the_next_batch() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send)
    backend.hold()
    first = submit_all(gc, [0])
    await settle()
    rest = submit_all(gc, range(1, 8))
    await settle()
    # Nothing else leaves while the only call slot is busy.
    assert backend.calls == [[0]]
    backend.release()
    await asyncio.gather(*first, *rest)
    assert backend.calls == [[0], [1, 2, 3, 4, 5, 6, 7]]
    assert [t.result() for t in rest] == [f"ok {i}" for i in range(1, 8)]
    assert gc.stats.calls == 2 and gc.stats.entries == 8 and gc.stats.largest_batch == 7


async def test_requests_in_one_loop_iteration_share_one_call() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send)
    tasks = submit_all(gc, range(4))
    await asyncio.gather(*tasks)
    assert backend.calls == [[0, 1, 2, 3]]


async def test_batches_keep_arrival_order_and_the_item_limit() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, max_items=3)
    backend.hold()
    tasks = submit_all(gc, [0])
    await settle()
    tasks += submit_all(gc, range(1, 9))
    await settle()
    backend.release()
    await asyncio.gather(*tasks)
    assert backend.calls == [[0], [1, 2, 3], [4, 5, 6], [7, 8]]
    assert backend.most_in_flight == 1


async def test_concurrency_allows_that_many_calls_in_flight() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, max_items=2, concurrency=3)
    backend.hold()
    tasks = submit_all(gc, range(10))
    await settle(10)
    assert backend.in_flight == 3
    assert backend.calls == [[0, 1], [2, 3], [4, 5]]
    backend.release()
    await asyncio.gather(*tasks)
    assert sorted(i for call in backend.calls for i in call) == list(range(10))
    assert backend.most_in_flight == 3


async def test_byte_limit_splits_batches_and_an_oversize_item_travels_alone() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, max_items=10, max_bytes=10, size_of=len)
    backend.hold()
    tasks = submit_all(gc, ["x"])
    await settle()
    tasks += submit_all(gc, ["aaaa", "bbbb", "cc", "dddddddddddddd", "e", "ffffff", "ggggg"])
    await settle()
    backend.release()
    await asyncio.gather(*tasks)
    assert backend.calls == [
        ["x"],
        ["aaaa", "bbbb", "cc"],
        ["dddddddddddddd"],
        ["e", "ffffff"],
        ["ggggg"],
    ]


async def test_equal_keys_never_share_a_batch_and_keep_their_order() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, key_of=lambda item: item[0])
    backend.hold()
    tasks = submit_all(gc, [("z", 0)])
    await settle()
    tasks += submit_all(gc, [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3), ("b", 2)])
    await settle()
    backend.release()
    await asyncio.gather(*tasks)
    assert backend.calls == [
        [("z", 0)],
        [("a", 1), ("b", 1), ("c", 1)],
        [("a", 2), ("b", 2)],
        [("a", 3)],
    ]
    for call in backend.calls:
        keys = [key for key, _ in call]
        assert len(keys) == len(set(keys))


async def test_one_failed_entry_fails_only_its_caller() -> None:
    backend = Backend(fail={2})
    gc = GroupCommit(backend.send)
    results = await asyncio.gather(*submit_all(gc, range(4)), return_exceptions=True)
    assert len(backend.calls) == 1
    assert results[0] == "ok 0" and results[1] == "ok 1" and results[3] == "ok 3"
    assert isinstance(results[2], ValueError) and str(results[2]) == "bad 2"


async def test_a_failed_call_fails_its_whole_batch_and_only_it() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send)
    backend.hold()
    first = submit_all(gc, [0])
    await settle()
    second = submit_all(gc, [1, 2])
    await settle()
    backend.raise_next = ConnectionError("down")
    backend.release()
    results = await asyncio.gather(*first, *second, return_exceptions=True)
    assert isinstance(results[0], ConnectionError)
    assert results[1:] == ["ok 1", "ok 2"]
    assert gc.stats.failed_calls == 1


async def test_a_send_that_miscounts_its_results_fails_the_batch() -> None:
    async def short(items: list[int]) -> list[str]:
        return ["only one"]

    gc: GroupCommit[int, str] = GroupCommit(short)
    results = await asyncio.gather(*submit_all(gc, [1, 2]), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_caller_cancelled_while_queued_is_left_out_and_others_are_answered() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send)
    backend.hold()
    tasks = submit_all(gc, [0])
    await settle()
    queued = submit_all(gc, [1, 2, 3])
    await settle()
    queued[1].cancel()
    backend.release()
    await asyncio.gather(*tasks, queued[0], queued[2])
    assert backend.calls == [[0], [1, 3]]
    assert queued[1].cancelled()
    assert queued[0].result() == "ok 1" and queued[2].result() == "ok 3"


async def test_a_caller_cancelled_in_flight_leaves_its_batch_alone() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send)
    backend.hold()
    tasks = submit_all(gc, [1, 2, 3])
    await settle()
    assert backend.calls == [[1, 2, 3]]
    tasks[0].cancel()
    await settle()
    backend.release()
    assert await tasks[1] == "ok 2" and await tasks[2] == "ok 3"
    assert tasks[0].cancelled()
    # The path still works afterwards.
    assert await gc.submit(4) == "ok 4"


async def test_timeouts_of_callers_do_not_cancel_the_call() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send)
    backend.hold()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await gc.submit(1)
    await settle()
    # The entry had not left yet: it was taken out, and nothing was sent for it.
    assert backend.calls == []
    backend.release()
    assert await gc.submit(2) == "ok 2"
    assert backend.calls == [[2]]


async def test_linger_applies_only_while_another_call_is_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, concurrency=2, linger=MAX_LINGER)
    timers = CountingLoop(monkeypatch)
    backend.hold()
    tasks = submit_all(gc, [0])
    await settle()
    assert backend.calls == [[0]] and timers.timers == 0
    # A slot is free but a call is in flight: the next batch lingers (one timer) to fill.
    tasks += submit_all(gc, [1])
    await settle()
    tasks += submit_all(gc, [2])
    assert timers.timers == 1
    assert backend.calls == [[0]]
    while len(backend.calls) < 2:
        await asyncio.sleep(MAX_LINGER / 2)
    assert backend.calls == [[0], [1, 2]]
    backend.release()
    await asyncio.gather(*tasks)


async def test_a_linger_ends_early_when_the_batch_fills() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, max_items=3, concurrency=2, linger=MAX_LINGER)
    backend.hold()
    tasks = submit_all(gc, [0])
    await settle()
    tasks += submit_all(gc, [1])
    await settle()
    tasks += submit_all(gc, [2, 3])
    await settle()
    assert backend.calls == [[0], [1, 2, 3]]
    backend.release()
    await asyncio.gather(*tasks)


async def test_fill_wait_holds_even_a_lone_request(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, fill_wait=0.01)
    timers = CountingLoop(monkeypatch)
    task = asyncio.create_task(gc.submit(1))
    await settle()
    assert backend.calls == [] and timers.timers == 1
    assert await task == "ok 1"
    assert backend.calls == [[1]]


async def test_fill_wait_ends_when_the_batch_is_full() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, max_items=4, fill_wait=MAX_FILL_WAIT)
    tasks = submit_all(gc, [0])
    await settle()
    assert backend.calls == []
    tasks += submit_all(gc, [1, 2, 3, 4])
    await settle()
    # Full at the fourth entry: it leaves without waiting; the fifth waits for the next.
    assert backend.calls == [[0, 1, 2, 3]]
    closing = asyncio.create_task(gc.close())
    await settle()
    # close() ends the wait too.
    assert backend.calls == [[0, 1, 2, 3], [4]]
    await closing
    await asyncio.gather(*tasks)


async def test_fill_wait_ends_when_the_batch_reaches_its_byte_limit() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, max_bytes=10, size_of=len, fill_wait=MAX_FILL_WAIT)
    tasks = submit_all(gc, ["aaaa"])
    await settle()
    assert backend.calls == []
    tasks += submit_all(gc, ["bbbbbb"])
    await settle()
    assert backend.calls == [["aaaa", "bbbbbb"]]
    await asyncio.gather(*tasks)


async def test_close_flushes_everything_and_refuses_new_requests() -> None:
    backend = Backend()
    gc = GroupCommit(backend.send, max_items=2)
    backend.hold()
    tasks = submit_all(gc, range(5))
    await settle()
    closing = asyncio.create_task(gc.close())
    await settle()
    assert not closing.done()
    with pytest.raises(GroupCommitClosed):
        await gc.submit(9)
    backend.release()
    await closing
    assert [t.result() for t in tasks] == [f"ok {i}" for i in range(5)]
    assert gc.in_flight == 0 and gc.queued == 0


async def test_a_path_recovers_after_many_rounds() -> None:
    backend = Backend(fail={13})
    gc = GroupCommit(backend.send, max_items=4, concurrency=2)
    results = await asyncio.gather(*submit_all(gc, range(50)), return_exceptions=True)
    assert [r for r in results if isinstance(r, Exception)] != []
    assert [r for i, r in enumerate(results) if i != 13] == [
        f"ok {i}" for i in range(50) if i != 13
    ]
    assert all(len(call) <= 4 for call in backend.calls)
    assert gc.stats.entries == 50


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_items": 0},
        {"concurrency": 0},
        {"linger": MAX_LINGER * 2},
        {"linger": -1.0},
        {"fill_wait": MAX_FILL_WAIT * 2},
        {"max_bytes": 10},
        {"size_of": len},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        GroupCommit(Backend().send, **kwargs)

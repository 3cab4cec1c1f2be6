"""The services' log lines: whole JSON lines, those of one loop turn in as few writes as fit."""

from __future__ import annotations

import asyncio
import io
import sys

import orjson
import structlog

from services.common.logging import _ATOMIC_WRITE, LineBatcher, configure_logging, get_logger


class CountingFile(io.BytesIO):
    """A file that remembers each write() it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes.append(bytes(data))
        return super().write(data)


async def test_lines_logged_in_one_turn_leave_in_one_write() -> None:
    file = CountingFile()
    batcher = LineBatcher(file)
    for i in range(5):
        batcher.write(b'{"n":%d}\n' % i)
        batcher.flush()
    assert file.writes == []  # held until the turn ends
    await asyncio.sleep(0)
    assert file.writes == [b"".join(b'{"n":%d}\n' % i for i in range(5))]
    batcher.write(b'{"n":5}\n')
    batcher.flush()
    await asyncio.sleep(0)
    assert file.writes[1:] == [b'{"n":5}\n']  # the next turn's line: its own write


async def test_a_turns_lines_are_cut_into_atomic_chunks_of_whole_lines() -> None:
    file = CountingFile()
    batcher = LineBatcher(file)
    line = b"x" * 999 + b"\n"
    long_line = b"y" * (_ATOMIC_WRITE * 2) + b"\n"
    for data in [line] * 9 + [long_line, line]:
        batcher.write(data)
        batcher.flush()
    await asyncio.sleep(0)
    assert b"".join(file.writes) == line * 9 + long_line + line
    assert all(w.endswith(b"\n") for w in file.writes)
    # Every chunk is whole lines within PIPE_BUF, but for the one line longer on its own.
    assert [len(w) for w in file.writes] == [4000, 4000, 1000, len(long_line), 1000]


def test_outside_a_running_loop_a_line_is_written_at_once() -> None:
    file = CountingFile()
    batcher = LineBatcher(file)
    batcher.write(b"a\n")
    batcher.flush()
    assert file.writes == [b"a\n"]


def test_lines_held_by_a_loop_that_stopped_are_written_by_the_next_line() -> None:
    file = CountingFile()
    batcher = LineBatcher(file)

    async def log_and_stop() -> None:
        batcher.write(b"last turn\n")
        batcher.flush()
        asyncio.get_running_loop().stop()

    loop = asyncio.new_event_loop()
    loop.create_task(log_and_stop())
    loop.run_forever()  # stops at the end of the turn that logged: the write never ran
    loop.close()
    assert file.writes == []
    batcher.write(b"after\n")
    batcher.flush()
    assert file.writes == [b"last turn\nafter\n"]


async def test_the_services_logger_writes_json_lines_through_the_batcher() -> None:
    file = CountingFile()
    real = sys.stdout
    sys.stdout = io.TextIOWrapper(file)
    try:
        configure_logging("info", service="test", cache=False)
        log = get_logger()
        log.info("first", n=1)
        log.debug("dropped")
        log.info("second", n=2)
        await asyncio.sleep(0)
    finally:
        sys.stdout = real
        structlog.reset_defaults()
    assert len(file.writes) == 1
    lines = [orjson.loads(x) for x in file.writes[0].splitlines()]
    assert [(x["event"], x["service"], x["n"]) for x in lines] == [
        ("first", "test", 1),
        ("second", "test", 2),
    ]

"""structlog JSON lines on stdout, one event per line, ready for CloudWatch Logs Insights."""

from __future__ import annotations

import asyncio
import atexit
import logging
import select
import sys
from typing import Any, BinaryIO, cast

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


# A write of at most this many bytes to a pipe is atomic (POSIX PIPE_BUF; 4096 on Linux):
# a chunk of whole lines that size never interleaves with another process's writes.
_ATOMIC_WRITE = getattr(select, "PIPE_BUF", 512)


class LineBatcher:
    """A file for structlog's BytesLogger: the lines one turn of the event loop logs leave
    together, in as few write() calls as fit whole lines into atomic chunks.

    A worker settling a batch of payments logs one line per order in the same turn; one
    write() each cost the worker about a tenth of its CPU under a backlog (py-spy, `bench
    receive`). Lines are written at the end of the turn that logged them, so a reader sees
    them as promptly as the loop runs; outside a running loop (start-up, the last lines
    after it stops) a line is written at once, after any still held, and at exit whatever
    is held is written. Only a kill -9 in the same turn loses lines.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._held: list[bytes] = []
        # The loop whose end of turn will write what is held (None: nothing scheduled).
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        atexit.register(self.write_held)

    # BytesLogger needs only these two methods of a binary file.
    def write(self, data: bytes) -> None:
        self._held.append(data)

    def flush(self) -> None:
        """BytesLogger calls this after each line: the real write waits for the turn's end."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.write_held()
            return
        # A loop that stopped with our write still queued never runs it: schedule on this one.
        if self._scheduled_on is not loop:
            self._scheduled_on = loop
            loop.call_soon(self.write_held)

    def write_held(self) -> None:
        self._scheduled_on = None
        if not self._held:
            return
        held, self._held = self._held, []
        chunk: list[bytes] = []
        size = 0
        for line in held:
            if chunk and size + len(line) > _ATOMIC_WRITE:
                self._file.write(b"".join(chunk))
                self._file.flush()
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._file.write(b"".join(chunk))
            self._file.flush()


def configure_logging(level: str = "info", *, service: str, cache: bool = True) -> None:
    """Configure structlog for this process; `service` is stamped on every line."""
    stdout = cast(BinaryIO, LineBatcher(sys.stdout.buffer))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _stamp_service(service),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        # Whole lines in atomic writes to the inherited stdout: several processes sharing a
        # pipe (as under `make run`) interleave whole lines, never fragments.
        logger_factory=structlog.BytesLoggerFactory(file=stdout),
        cache_logger_on_first_use=cache,
    )


def _stamp_service(service: str) -> structlog.types.Processor:
    def processor(_: Any, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
        event.setdefault("service", service)
        return event

    return processor


def get_logger(**initial: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**initial)
    return logger

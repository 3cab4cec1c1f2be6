"""`Dashboard`: the web app and the queue sampler on a thread of their own, fed by `tee`.

The launcher is plain synchronous code around subprocesses; a thread with its own event loop
lets it gain a dashboard with a start, a stop and one `tee` per child, and nothing else.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from aiohttp import web

from services.common.settings import AwsSettings

from ..topology import Topology
from .aggregator import Aggregator
from .app import create_app
from .queries import QueryBox
from .sampler import sample_queues
from .settings import DashboardSettings


class Dashboard:
    """Serves the page at `url` between `start()` and `stop()`; `tee()` feeds it a child's logs."""

    def __init__(
        self,
        settings: DashboardSettings,
        aws: AwsSettings,
        topology: Topology,
        log_name: str = "orderflow",
    ) -> None:
        self.settings = settings
        self._log_name = log_name
        self.aggregator = Aggregator()
        self.url = ""
        self._aws, self._topology = aws, topology
        # The tee threads write to the aggregator while the loop thread reads it.
        self._lock = threading.Lock()
        self._tees: list[threading.Thread] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> str:
        """Listen and start sampling; return the page's URL. Raises OSError if it cannot bind."""
        self._thread = threading.Thread(target=self._run, name="dashboard", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.url

    def tee(
        self,
        stream: IO[bytes] | None,
        out: IO[bytes] | None = None,
        also: Callable[[bytes, float], None] | None = None,
    ) -> None:
        """Copy `stream` line by line to `out` (this process's stdout), unchanged, and feed it
        (and `also`, with the time it was read: the log shipper)."""
        assert stream is not None, "start the child with stdout=subprocess.PIPE"
        target = out if out is not None else sys.stdout.buffer

        def copy() -> None:
            for line in iter(stream.readline, b""):
                # One write per line: lines of several children interleave whole.
                target.write(line)
                target.flush()
                at = time.time()
                self.feed(line, at)
                if also is not None:
                    also(line, at)

        thread = threading.Thread(target=copy, name="dashboard-tee", daemon=True)
        thread.start()
        self._tees.append(thread)

    def feed(self, line: bytes, at: float | None = None) -> None:
        with self._lock:
            self.aggregator.feed_line(line, time.time() if at is None else at)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.aggregator.snapshot(time.time())

    def _queue_sample(self, at: float, visible: int, in_flight: int, dlq: int) -> None:
        with self._lock:
            self.aggregator.add_queue_sample(at, visible, in_flight, dlq)

    def stop(self) -> None:
        """Wait for the children's output to end (stop them first), then close the server."""
        for thread in self._tees:
            thread.join()
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to start(); the thread only reports it
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        stopping = self._stopping = asyncio.Event()
        async with QueryBox(self._aws, self._log_name) as box:
            runner = web.AppRunner(create_app(self.snapshot, stopping, box.run), shutdown_timeout=2)
            await runner.setup()
            try:
                site = web.TCPSite(runner, self.settings.host, self.settings.port)
                await site.start()
                host, port = runner.addresses[0][:2]
                self.url = f"http://{host}:{port}/"
                sampler = asyncio.create_task(
                    sample_queues(
                        self._aws,
                        self._topology.queue_url,
                        self._topology.dlq_url,
                        self._queue_sample,
                        stopping,
                    )
                )
                self._ready.set()
                await stopping.wait()
                await sampler
            finally:
                await runner.cleanup()

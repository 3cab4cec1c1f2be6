"""A process followed from asyncio: its JSON log lines parsed as they come (the tests).

`ServiceProcess` runs `python -m MODULE` (a service, `devstack` itself) and waits on its log
lines (handing each to `ship` too, if given: a `LogShipper.sink`, as `make run` ships them);
`api_process` is the API on a loopback port, yielded once `/health` answers.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from services.common.settings import AwsSettings

from .env import LOOPBACK, service_env
from .processes import MODULES, command
from .topology import Topology

Event = dict[str, Any]


class ServiceProcess:
    """`python -m MODULE` with a given environment; its stdout parsed line by line."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        ship: Callable[[bytes, float], None] | None = None,
    ) -> None:
        self.module = module
        self.env = dict(env)
        self._ship = ship
        self.events: list[Event] = []
        self.stderr = b""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stderr_reader: asyncio.Task[None] | None = None
        self._new_line = asyncio.Event()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self) -> ServiceProcess:
        self._proc = await asyncio.create_subprocess_exec(
            *command(self.module),
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        # Drained as it comes: a child that writes more than a pipe buffer to an unread stderr
        # (aiohttp logs a traceback per malformed request there) would block mid-write.
        self._stderr_reader = asyncio.create_task(self._read_stderr())
        return self

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        async for line in self._proc.stderr:
            self.stderr += line

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            if self._ship is not None:
                self._ship(line, time.time())
            try:
                self.events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                self.events.append(
                    {"event": "non_json_line", "line": line.decode(errors="replace")}
                )
            self._new_line.set()
        self._new_line.set()

    async def wait_for(
        self, predicate: Callable[[Event], bool], *, count: int = 1, timeout: float = 30
    ) -> list[Event]:
        """Wait until `count` log events match; fail if the process ends or time runs out."""

        async def matched() -> list[Event]:
            while True:
                found = [e for e in self.events if predicate(e)]
                if len(found) >= count:
                    return found
                assert self._reader is not None
                if self._reader.done():
                    raise AssertionError(f"{self.module} exited; events: {self.events[-5:]}")
                self._new_line.clear()
                await self._new_line.wait()

        return await asyncio.wait_for(matched(), timeout)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self._proc is not None
        self._proc.send_signal(sig)

    async def wait(self, timeout: float = 30) -> int:
        assert self._proc is not None and self._stderr_reader is not None
        await asyncio.wait_for(asyncio.shield(self._stderr_reader), timeout)
        code = await asyncio.wait_for(self._proc.wait(), timeout)
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        readers = [r for r in (self._reader, self._stderr_reader) if r is not None]
        await asyncio.gather(*readers, return_exceptions=True)


async def run_to_exit(module: str, env: Mapping[str, str], timeout: float = 30) -> tuple[int, str]:
    """Run a module that should exit by itself; return its exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        *command(module),
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def wait_healthy(api: ServiceProcess, url: str, tries: int = 100) -> None:
    """Return once the API at `url` answers /health with 200 (tried every 0.1 s)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(tries):
            try:
                async with http.get(f"{url}/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"the API never answered; stderr: {api.stderr[-2000:]!r}")


@asynccontextmanager
async def api_process(
    aws: AwsSettings, topology: Topology, port: int, **env: str
) -> AsyncIterator[tuple[ServiceProcess, str]]:
    """Run the API with order state on `port`; yield it and its base URL once it answers.

    On exit it gets SIGTERM and must stop cleanly (exit 0).
    """
    settings = {
        "ORDER_TOPIC_ARN": topology.topic_arn,
        "ORDERS_TABLE": topology.table,
        "HOST": LOOPBACK,
        "PORT": str(port),
        "PAYMENT_SECONDS": "0.01",
    }
    api = await ServiceProcess(MODULES["api"], service_env(aws, **(settings | env))).start()
    url = f"http://{LOOPBACK}:{port}"
    try:
        await wait_healthy(api, url)
        yield api, url
        api.signal(signal.SIGTERM)
        assert await api.wait(timeout=30) == 0, api.stderr[-2000:]
    finally:
        await api.stop()

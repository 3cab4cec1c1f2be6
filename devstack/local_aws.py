"""The local AWS as a child process, and its endpoint (tests, bench, `make run`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import orjson

from .env import LOOPBACK, isolated


@dataclass(frozen=True)
class Running:
    endpoint: str
    pid: int
    """The server's process id (the bench reads its CPU time from /proc)."""


@contextmanager
def local_aws_process(
    host: str = LOOPBACK, port: int = 0, *, extra_args: tuple[str, ...] = ()
) -> Iterator[str]:
    """Start `python -m localaws`, yield its endpoint URL, stop it on exit."""
    with local_aws_server(host, port, extra_args=extra_args) as running:
        yield running.endpoint


@contextmanager
def local_aws_server(
    host: str = LOOPBACK, port: int = 0, *, extra_args: tuple[str, ...] = ()
) -> Iterator[Running]:
    """Like `local_aws_process`, yielding the endpoint and the server's pid."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "localaws", "--host", host, "--port", str(port), *extra_args],
        stdout=subprocess.PIPE,
        env=isolated(os.environ),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first:
            raise RuntimeError(f"localaws exited with code {proc.wait()} before it was ready")
        ready = orjson.loads(first)
        yield Running(endpoint=str(ready["endpoint"]), pid=int(ready.get("pid", proc.pid)))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

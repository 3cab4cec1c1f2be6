"""The API and the worker as child processes: their command line, start and stop."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from typing import IO, Literal

from .env import LOOPBACK

Service = Literal["api", "worker"]
MODULES: dict[Service, str] = {"api": "services.api", "worker": "services.worker"}


def command(module: str) -> list[str]:
    """`python -m MODULE` with this interpreter (the virtualenv the harness runs in)."""
    return [sys.executable, "-m", module]


def start(
    service: Service, env: Mapping[str, str], stdout: int | IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """Start one service with `env` (see env.service_env); its log lines go to `stdout`."""
    return subprocess.Popen(command(MODULES[service]), env=dict(env), stdout=stdout)


def stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (the ECS way), then SIGKILL if it has not exited within `timeout` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process still running at once, then wait for all (each its own grace)."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(
    proc: subprocess.Popen[bytes], port: int, timeout: float, host: str = LOOPBACK
) -> None:
    """Return once `port` accepts connections; raise if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {timeout:g} s")

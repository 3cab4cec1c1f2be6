"""Run a Dockerfile's CMD the way its image would, without a Docker engine.

The final stage's exec-form CMD and HEALTHCHECK run with the stage's ENV, from a directory
holding only what the image ships (the `services` package), with this venv's Python standing in
for the image's: its dependencies are the same runtime set pyproject.toml declares.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"api": ROOT / "Dockerfile.api", "worker": ROOT / "Dockerfile.worker"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    pairs = []
    for entry in joined:
        keyword, _, rest = entry.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    pairs = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM")
    return pairs[last_from:]


def _env(arguments: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(arguments))


@dataclass(frozen=True)
class Image:
    cmd: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None
    user: str | None


def image(dockerfile: Path) -> Image:
    """What the image built from `dockerfile` would run: exec-form CMD, ENV, HEALTHCHECK, USER."""
    env: dict[str, str] = {}
    cmd: list[str] = []
    healthcheck = None
    user = None
    for keyword, arguments in final_stage(dockerfile):
        if keyword == "ENV":
            env.update(_env(arguments))
        elif keyword == "CMD":
            cmd = json.loads(arguments)  # exec form only: a shell-form CMD fails to parse here
        elif keyword == "HEALTHCHECK":
            healthcheck = json.loads(arguments[arguments.index("CMD ") + 4 :])
        elif keyword == "USER":
            user = arguments
    # The image's venv lives at /opt/venv; here this venv's interpreter stands in for it.
    env.pop("PATH", None)
    return Image(cmd=cmd, env=env, healthcheck=healthcheck, user=user)


def image_root(tmp: Path) -> Path:
    """A directory holding only what the images install: the `services` package."""
    root = tmp / "image-site-packages"
    if not root.exists():
        shutil.copytree(
            ROOT / "services", root / "services", ignore=shutil.ignore_patterns("__pycache__")
        )
    return root


def as_local(argv: list[str]) -> list[str]:
    if argv[0] != "python":
        raise AssertionError(f"expected the image to run python, got {argv!r}")
    return [sys.executable, *argv[1:]]


class Service:
    """A service process started from its image's CMD; its stdout JSON lines are collected."""

    def __init__(self, name: str, env: Mapping[str, str], tmp: Path) -> None:
        self.name = name
        self.image = image(DOCKERFILES[name])
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
            **self.image.env,
            **env,
            "PYTHONPATH": str(image_root(tmp)),
        }
        self.lines: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._cwd = tmp
        # A file, not a pipe: a chatty traceback can never block the process on a full pipe.
        self._stderr_path = tmp / f"{name}-{id(self)}.stderr"
        self._stderr = self._stderr_path.open("wb")
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Service:
        self._proc = subprocess.Popen(
            as_local(self.image.cmd),
            cwd=self._cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            self.raw.append(raw)
            try:
                self.lines.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                self.lines.append({"unparsed": raw.decode(errors="replace")})

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = 20
    ) -> dict[str, Any]:
        """The first log line matching `predicate`, waiting up to `within` seconds for it."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            if self._proc is not None and self._proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"{self.name}: no such log line in {within}s; got {self.lines}\n{self.stderr()}"
        )

    def stderr(self) -> str:
        self._stderr.flush()
        return self._stderr_path.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as ECS sends it; the exit code once the process is gone."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s") from None
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *_: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()

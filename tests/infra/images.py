"""Build each image's virtualenv the way its Dockerfile does, and run its CMD, without Docker.

The build stage is carried out step by step on this machine: its ENV, WORKDIR, COPY (of what
.dockerignore lets into the context) and RUN lines, with the image's absolute paths (/opt/venv,
/src) mapped into a temporary directory. So the CMD runs the wheel pip built and installed from
requirements.lock into a clean virtualenv, from an empty working directory, exactly as in the
image: a file missing from the wheel is missing here too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
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


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each stage, FROM first (global ARGs before it belong to none)."""
    found: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions(dockerfile):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, arguments))
    return found


def base_images(dockerfile: Path) -> list[str]:
    """Each stage's FROM, with the global ARGs' defaults (what a build without --build-arg uses)."""
    args: dict[str, str] = {}
    for keyword, arguments in instructions(dockerfile):
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in arguments:
            name, _, default = arguments.partition("=")
            args[name.strip()] = default.strip()
    return [
        re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], stage[0][1])
        for stage in stages(dockerfile)
    ]


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    return stages(dockerfile)[-1]


def _env(arguments: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(arguments))


def context_entries() -> set[str]:
    """What .dockerignore lets into the build context: it ignores `*` and re-includes these."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "*" in lines, ".dockerignore is expected to start from nothing (`*`)"
    return {line[1:].rstrip("/") for line in lines if line.startswith("!")}


@dataclass(frozen=True)
class Image:
    cmd: list[str]
    env: dict[str, str]
    healthcheck: list[str] | None
    user: str | None
    volumes: list[str]


def image(dockerfile: Path) -> Image:
    """What the image built from `dockerfile` would run: exec-form CMD, ENV, HEALTHCHECK, USER."""
    env: dict[str, str] = {}
    cmd: list[str] = []
    healthcheck = None
    user = None
    volumes: list[str] = []
    for keyword, arguments in final_stage(dockerfile):
        if keyword == "ENV":
            env.update(_env(arguments))
        elif keyword == "CMD":
            cmd = json.loads(arguments)  # exec form only: a shell-form CMD fails to parse here
        elif keyword == "HEALTHCHECK":
            healthcheck = json.loads(arguments[arguments.index("CMD ") + 4 :])
        elif keyword == "USER":
            user = arguments
        elif keyword == "VOLUME":
            volumes.extend(json.loads(arguments))
    return Image(cmd=cmd, env=env, healthcheck=healthcheck, user=user, volumes=volumes)


class Filesystem:
    """The image's absolute paths, mapped under `root` on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, image_path: str) -> Path:
        assert image_path.startswith("/"), image_path
        return self.root / image_path.lstrip("/")

    def rewrite(self, text: str, prefixes: list[str]) -> str:
        for prefix in sorted(prefixes, key=len, reverse=True):
            text = re.sub(rf"(?<![\w/]){re.escape(prefix)}(?=/|\b|$)", str(self.path(prefix)), text)
        return text


def _build_stage(dockerfile: Path) -> list[tuple[str, str]]:
    everything = stages(dockerfile)
    assert len(everything) >= 2, "multi-stage: the venv is built in one stage, copied to the next"
    return everything[0]


def build_key(dockerfile: Path) -> str:
    """The build stage's instructions and what it copies: equal keys build equal virtualenvs."""
    digest = hashlib.sha256()
    for keyword, arguments in _build_stage(dockerfile):
        digest.update(f"{keyword} {arguments}\n".encode())
        if keyword == "COPY" and not arguments.startswith("--"):
            for source in shlex.split(arguments)[:-1]:
                for path in sorted(_files(ROOT / source)):
                    digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


@dataclass(frozen=True)
class BuiltImage:
    name: str
    image: Image
    fs: Filesystem
    venv_paths: list[str]

    def env(self) -> dict[str, str]:
        """The final stage's ENV with image paths mapped; PATH leads to the image's venv."""
        mapped = {
            k: self.fs.rewrite(v, self.venv_paths + self.image.volumes)
            for k, v in self.image.env.items()
        }
        mapped["PATH"] = mapped["PATH"].replace("$PATH", os.environ.get("PATH", ""))
        for volume in self.image.volumes:
            self.fs.path(volume).mkdir(parents=True, exist_ok=True)
        return mapped

    def argv(self, argv: list[str], env: Mapping[str, str]) -> list[str]:
        """An exec-form command resolved on the image's PATH, as the container runtime does."""
        found = shutil.which(argv[0], path=env["PATH"])
        assert found is not None, f"{argv[0]} is not on the image's PATH {env['PATH']}"
        assert Path(found).is_relative_to(self.fs.root), (
            f"{argv[0]} resolved outside the image: {found}"
        )
        return [found, *argv[1:]]


def build(name: str, root: Path) -> BuiltImage:
    """Carry out the build stage of `name`'s Dockerfile under `root`."""
    dockerfile = DOCKERFILES[name]
    fs = Filesystem(root)
    allowed = context_entries()
    # `python` in the build stage is the base image's interpreter; here, this machine's.
    tools = root / ".tools"
    tools.mkdir(parents=True, exist_ok=True)
    (tools / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{tools}{os.pathsep}{env.get('PATH', '')}"
    workdir = fs.path("/")
    absolute: list[str] = []
    for keyword, arguments in _build_stage(dockerfile)[1:]:
        if keyword == "ENV":
            env.update(_env(arguments))
        elif keyword == "WORKDIR":
            absolute.append(arguments)
            workdir = fs.path(arguments)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, target = shlex.split(arguments)
            for source in sources:
                assert source.split("/")[0] in allowed, f"{source} is left out by .dockerignore"
                if (ROOT / source).is_dir():
                    ignore = shutil.ignore_patterns("__pycache__")  # as .dockerignore says
                    shutil.copytree(ROOT / source, workdir / target, ignore=ignore)
                    continue
                into_dir = target.endswith("/") or len(sources) > 1
                destination = workdir / target / Path(source).name if into_dir else workdir / target
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, destination)
        elif keyword == "RUN":
            absolute.extend(re.findall(r"(?<![\w.])(/opt/[\w.-]+)", arguments))
            command = fs.rewrite(arguments, absolute)
            proc = subprocess.run(
                ["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
                timeout=900, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, f"{name}: RUN {arguments}\n{proc.stdout}\n{proc.stderr}"
        else:
            raise AssertionError(
                f"{name}: the build stage has {keyword}, which this test cannot do"
            )
    built = image(dockerfile)
    # The final stage copies the venv from the build stage to the same path: nothing to move.
    copies = [a for k, a in final_stage(dockerfile) if k == "COPY"]
    assert all(a.startswith("--from=build ") for a in copies), copies
    venv_paths = [shlex.split(a)[-1] for a in copies]
    return BuiltImage(name, built, fs, venv_paths)


def build_all(root: Path) -> dict[str, BuiltImage]:
    """Every image, building a build stage shared by several images once."""
    by_key: dict[str, Path] = {}
    built: dict[str, BuiltImage] = {}
    for name in sorted(DOCKERFILES):
        key = build_key(DOCKERFILES[name])
        if key in by_key:
            first = next(b for b in built.values() if b.fs.root == by_key[key])
            built[name] = BuiltImage(name, image(DOCKERFILES[name]), first.fs, first.venv_paths)
        else:
            by_key[key] = root / key
            built[name] = build(name, root / key)
    return built


class Service:
    """A service process started from its image's CMD; its stdout JSON lines are collected."""

    def __init__(self, built: BuiltImage, env: Mapping[str, str], tmp: Path) -> None:
        self.name = built.name
        self.built = built
        self.image = built.image
        # The task's variables override the image's ENV, as in a container, except PATH and
        # this interpreter's own variables, which the caller only inherited from this process.
        inherited = ("PATH", "PYTHON", "VIRTUAL_ENV")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(inherited)},
            **{k: v for k, v in env.items() if not k.startswith(inherited)},
            **{k: v for k, v in built.env().items() if k == "PATH" or k not in env},
        }
        self.lines: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        # The image's WORKDIR is /: no source tree next to the process, only the installed wheel.
        self._cwd = tmp / f"{self.name}-cwd"
        self._cwd.mkdir(exist_ok=True)
        # A file, not a pipe: a chatty traceback can never block the process on a full pipe.
        self._stderr_path = tmp / f"{self.name}-{id(self)}.stderr"
        self._stderr = self._stderr_path.open("wb")
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Service:
        self._proc = subprocess.Popen(
            self.built.argv(self.image.cmd, self.env),
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

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """The image's HEALTHCHECK command, run beside the service with the same environment."""
        assert self.image.healthcheck is not None
        return subprocess.run(
            self.built.argv(self.image.healthcheck, self.env),
            cwd=self._cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
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

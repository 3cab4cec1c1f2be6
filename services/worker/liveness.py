"""Liveness without a web server: the event loop touches a file (the heartbeat), a check reads it.

ECS ignores Docker's HEALTHCHECK and the worker has no port for an ALB to probe, so the task
definition's container healthCheck runs `python -m services.worker.healthcheck`. A loop that is
blocked (a synchronous call that never returns, a deadlock under the GIL) stops touching the
file; the check then fails and ECS replaces the task. So does a worker whose AWS calls keep
being refused for good (access denied, KMS, a missing table: services/common/awserrors.py):
it removes the file, and the check fails at its next run.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.common.logging import get_logger
from services.common.settings import env_float

log = get_logger()


def _default_path() -> Path:
    # Per user, so two people's workers on one machine never read each other's liveness file.
    return Path(tempfile.gettempdir()) / f"orderflow-worker-{os.getuid()}.heartbeat"


@dataclass(frozen=True)
class LivenessSettings:
    path: Path = field(default_factory=_default_path)
    """HEARTBEAT_FILE: the file the loop touches (the image points it at a writable volume)."""
    interval_seconds: float = 5.0
    """HEARTBEAT_INTERVAL_SECONDS: how often the loop touches it."""
    max_age_seconds: float = 30.0
    """HEARTBEAT_MAX_AGE_SECONDS: older than this and the check calls the worker wedged."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> LivenessSettings:
        raw_path = environ.get("HEARTBEAT_FILE", "").strip()
        interval = env_float(
            environ, "HEARTBEAT_INTERVAL_SECONDS", cls.interval_seconds, minimum=0.1, maximum=60
        )
        # At least two intervals: one late touch under load must not look like a wedge.
        max_age = env_float(
            environ,
            "HEARTBEAT_MAX_AGE_SECONDS",
            max(cls.max_age_seconds, 2 * interval),
            minimum=2 * interval,
            maximum=3600,
        )
        return cls(
            path=Path(raw_path) if raw_path else _default_path(),
            interval_seconds=interval,
            max_age_seconds=max_age,
        )


class LivenessFile:
    """The file's mtime is the last moment the loop ran; touch() is cheap enough to call often."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def touch(self) -> None:
        # utime on an existing file is one syscall; create it (and its directory) only once.
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()

    def clear(self) -> None:
        """Fail the check at once: the process is alive but cannot do its work."""
        self.path.unlink(missing_ok=True)


def _always() -> bool:
    return True


async def keep_alive(
    file: LivenessFile, interval: float, healthy: Callable[[], bool] = _always
) -> None:
    """Touch the liveness file every `interval` seconds while the loop runs and `healthy()`;
    remove it while not (and say so once per spell)."""
    was_healthy = True
    while True:
        now_healthy = healthy()
        if now_healthy:
            file.touch()
        else:
            file.clear()
            if was_healthy:
                log.error("liveness_failed", path=str(file.path))
        was_healthy = now_healthy
        await asyncio.sleep(interval)


def age_seconds(path: Path, now: float | None = None) -> float | None:
    """Seconds since the last touch, or None if the loop never touched the file."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return (time.time() if now is None else now) - mtime

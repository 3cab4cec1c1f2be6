"""The worker's liveness check: passes while the event loop runs, fails once the loop is wedged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.settings import SettingsError
from services.worker.liveness import LivenessSettings

# A process whose event loop keeps the heartbeat until the file `wedge` appears; then a blocking
# call takes the loop (and the process stays up), as a synchronous hang in the worker would.
_LOOP = """
import asyncio, os, sys, time
from services.worker.liveness import LivenessFile, LivenessSettings, keep_alive

async def main():
    settings = LivenessSettings.from_env(os.environ)
    beat = asyncio.create_task(keep_alive(LivenessFile(settings.path), settings.interval_seconds))
    while not os.path.exists(sys.argv[1]):
        await asyncio.sleep(0.02)
    time.sleep(3600)
    beat.cancel()

asyncio.run(main())
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HEARTBEAT_FILE": str(tmp_path / "run" / "worker.heartbeat"),
        "HEARTBEAT_INTERVAL_SECONDS": "0.1",
        "HEARTBEAT_MAX_AGE_SECONDS": "0.5",
    }


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.worker.healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def wait_for_exit_code(env: dict[str, str], code: int, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while (proc := healthcheck(env)).returncode != code:
        assert time.monotonic() < deadline, f"healthcheck never exited {code}: {proc.stderr}"
        time.sleep(0.1)


@pytest.fixture
def loop_process(
    env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    wedge = tmp_path / "wedge"
    proc = subprocess.Popen([sys.executable, "-c", _LOOP, str(wedge)], env=env)
    try:
        yield proc, wedge
    finally:
        proc.kill()
        proc.wait()


def test_check_passes_while_the_loop_runs_and_fails_once_it_is_wedged(
    env: dict[str, str], loop_process: tuple[subprocess.Popen[bytes], Path]
) -> None:
    proc, wedge = loop_process
    wait_for_exit_code(env, 0)
    # Still fresh after several max ages: the loop keeps touching, not one touch at start.
    time.sleep(3 * 0.5)
    assert healthcheck(env).returncode == 0
    wedge.touch()
    wait_for_exit_code(env, 1)
    assert proc.poll() is None, "the wedged process is still running: only the check can tell"
    assert "old (max 0.5s)" in healthcheck(env).stderr


def test_check_fails_before_any_heartbeat(env: dict[str, str]) -> None:
    proc = healthcheck(env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("healthcheck: no heartbeat at ")


def test_bad_setting_fails_the_check_with_one_line(env: dict[str, str]) -> None:
    proc = healthcheck({**env, "HEARTBEAT_MAX_AGE_SECONDS": "0.1"})
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1
    assert "HEARTBEAT_MAX_AGE_SECONDS must be between" in proc.stderr


def test_settings_defaults_and_floor() -> None:
    defaults = LivenessSettings.from_env({})
    assert defaults.max_age_seconds >= 2 * defaults.interval_seconds
    # A slower beat raises the default max age with it, so one late touch is never a wedge.
    assert LivenessSettings.from_env({"HEARTBEAT_INTERVAL_SECONDS": "40"}).max_age_seconds == 80
    with pytest.raises(SettingsError):
        LivenessSettings.from_env({"HEARTBEAT_INTERVAL_SECONDS": "0"})

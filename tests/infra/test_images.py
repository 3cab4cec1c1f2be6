"""Each image's CMD (and the API's HEALTHCHECK), run the way the image would run it."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from services.common.settings import AwsSettings
from services.common.topology import Topology

from ..conftest import service_env
from .images import Service, as_local, image_root
from .scenario import free_port


def _healthcheck(api: Service, tmp: Path) -> int:
    assert api.image.healthcheck is not None
    proc = subprocess.run(
        as_local(api.image.healthcheck),
        cwd=tmp,
        env={**api.env, "PYTHONPATH": str(image_root(tmp))},
        capture_output=True,
        timeout=10,
        check=False,
    )
    return proc.returncode


async def test_api_cmd_serves_passes_healthcheck_and_stops_on_sigterm(
    aws: AwsSettings, topology: Topology, tmp_path: Path
) -> None:
    env = service_env(aws, **topology.env(), PORT=str(free_port()))
    with Service("api", env, tmp_path) as api:
        await api.wait_for(lambda line: line.get("event") == "api_starting")
        for _ in range(100):
            if await asyncio.to_thread(_healthcheck, api, tmp_path) == 0:
                break
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(_healthcheck, api, tmp_path) == 0
        assert api.terminate() == 0
        assert api.lines[-1]["event"] == "api_stopped"
        # With the API gone, the same check reports the container unhealthy.
        assert await asyncio.to_thread(_healthcheck, api, tmp_path) != 0


async def test_worker_cmd_stops_cleanly_on_sigterm(
    aws: AwsSettings, topology: Topology, tmp_path: Path
) -> None:
    env = service_env(aws, **topology.env(), WAIT_TIME_SECONDS="20")
    with Service("worker", env, tmp_path) as worker:
        await worker.wait_for(lambda line: line.get("event") == "worker_started")
        # SIGTERM mid long-poll: the worker abandons the poll and exits 0 at once.
        assert worker.terminate(timeout=10) == 0
        assert worker.lines[-1]["event"] == "worker_stopped"

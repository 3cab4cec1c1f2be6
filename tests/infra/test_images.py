"""Each image's CMD and HEALTHCHECK, run from the virtualenv its Dockerfile builds (images.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from devstack.topology import Topology
from services.common.settings import AwsSettings

from ..helpers import order_body, service_env
from .images import ROOT, BuiltImage, Service, build_key, context_entries
from .scenario import free_port, wait_healthy


async def _wait_healthcheck(service: Service, code: int, within: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (proc := await asyncio.to_thread(service.healthcheck)).returncode != code:
        assert asyncio.get_running_loop().time() < deadline, (
            f"{service.name}: HEALTHCHECK never exited {code}: {proc.stdout}{proc.stderr}"
        )
        await asyncio.sleep(0.2)


def test_the_image_runs_the_installed_wheel_not_the_source_tree(
    images: dict[str, BuiltImage],
) -> None:
    api = images["api"]
    site = sorted(api.fs.root.glob("opt/venv/lib/python*/site-packages"))
    assert site, "no virtualenv at /opt/venv"
    installed = site[0] / "services"
    assert (installed / "api" / "openapi.json").is_file(), (
        "the wheel lacks services/api/openapi.json"
    )
    for harness in ("localaws", "devstack", "bench"):
        assert not (site[0] / harness).exists(), "the images install the services only"
    # Neither an editable install nor a path back into this checkout.
    assert not list(site[0].glob("__editable__*")), "an editable install points at the checkout"
    assert not any(str(ROOT) in p.read_text() for p in site[0].glob("*.pth"))


def test_both_dockerfiles_build_the_same_virtualenv(images: dict[str, BuiltImage]) -> None:
    # One build for both (build_key): if the build stages drift apart, this says so.
    assert build_key(Path(ROOT / "Dockerfile.api")) == build_key(Path(ROOT / "Dockerfile.worker"))
    assert images["api"].fs.root == images["worker"].fs.root


def test_the_context_holds_the_lock() -> None:
    assert {"requirements.lock", "pyproject.toml", "README.md", "services"} <= context_entries()


async def test_api_and_worker_cmds_serve_pay_an_order_and_stop_on_sigterm(
    aws: AwsSettings, topology: Topology, tmp_path: Path, images: dict[str, BuiltImage]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = service_env(aws, **topology.env())
    api_env = {**base, "PORT": str(port), "HOST": "127.0.0.1"}
    worker_env = {**base, "NUM_WORKERS": "4", "PAYMENT_SECONDS": "0.2", "WAIT_TIME_SECONDS": "1"}
    with (
        Service(images["api"], api_env, tmp_path) as api,
        Service(images["worker"], worker_env, tmp_path) as worker,
    ):
        async with aiohttp.ClientSession() as http:
            await wait_healthy(url, http)
            await _wait_healthcheck(api, 0)
            async with http.get(f"{url}/openapi.json") as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["paths"]
            async with http.post(f"{url}/orders/async", json=order_body()) as resp:
                assert resp.status == 202, await resp.text()
                order_id = (await resp.json())["order_id"]
        await worker.wait_for(
            lambda line: line.get("event") == "order_paid" and line.get("order_id") == order_id
        )
        assert api.terminate() == 0
        assert api.lines[-1]["event"] == "api_stopped"
        # With the API gone, the same check reports the container unhealthy.
        assert (await asyncio.to_thread(api.healthcheck)).returncode != 0
        assert worker.terminate(timeout=10) == 0
        assert worker.lines[-1]["event"] == "worker_stopped"


async def test_worker_cmd_stops_cleanly_on_sigterm(
    aws: AwsSettings, topology: Topology, tmp_path: Path, images: dict[str, BuiltImage]
) -> None:
    env = service_env(aws, **topology.env(), WAIT_TIME_SECONDS="20")
    with Service(images["worker"], env, tmp_path) as worker:
        await worker.wait_for(lambda line: line.get("event") == "worker_started")
        # SIGTERM mid long-poll: the worker abandons the poll and exits 0 at once.
        assert worker.terminate(timeout=10) == 0
        assert worker.lines[-1]["event"] == "worker_stopped"


async def test_worker_healthcheck_passes_while_it_runs(
    aws: AwsSettings, topology: Topology, tmp_path: Path, images: dict[str, BuiltImage]
) -> None:
    env = service_env(aws, **topology.env(), WAIT_TIME_SECONDS="1")
    with Service(images["worker"], env, tmp_path) as worker:
        await worker.wait_for(lambda line: line.get("event") == "worker_started")
        await _wait_healthcheck(worker, 0, within=10)
        assert worker.terminate(timeout=10) == 0

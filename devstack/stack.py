"""`python -m devstack` (`make run`): the whole system on this machine, in the foreground.

The local AWS, the topology, the API on :8080 and one worker, every service's JSON log lines
on this process's stdout and in the local AWS's CloudWatch Logs (`/orderflow/api`,
`/orderflow/worker`, shipped as ECS's awslogs driver ships them: `devstack/logship.py`), and a
live dashboard of them on :8081 (`devstack/dashboard`). Ctrl-C (or SIGTERM) stops the services
first, then the dashboard and the log shipper (which sends what is left), then the local AWS.

The launcher's loop, in order: `main` parses the settings and installs the signal handlers;
`run` starts the local AWS and the topology, says `stack_ready`, starts the children
(`start_children`), watches them until a stop is asked for or one exits (`watch`), and
stops them (`stop_children`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO

import orjson

from services.common.settings import AwsSettings, SettingsError, env_int

from . import processes
from .dashboard import Dashboard, DashboardSettings
from .env import isolated, isolated_process_env
from .local_aws import local_aws_process
from .logship import LogShipper, ShipSettings, log_group
from .processes import Service
from .topology import TopologyNames, create_topology

CHILDREN: tuple[Service, ...] = ("api", "worker")
Children = dict[Service, subprocess.Popen[bytes]]


def say(event: str, **fields: object) -> None:
    """One JSON log line of the launcher's own, in the services' format."""
    line = {"event": event, "service": "stack", **fields}
    sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class StackSettings:
    aws_port: int
    """LOCALAWS_PORT: the local AWS's port (0 picks a free one)."""
    names: TopologyNames
    region: str
    """AWS_REGION / AWS_DEFAULT_REGION, kept: the only AWS variable a developer's shell keeps."""
    dashboard: DashboardSettings
    shipping: ShipSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StackSettings:
        return cls(
            aws_port=env_int(environ, "LOCALAWS_PORT", 4566, minimum=0, maximum=65535),
            names=TopologyNames.from_env(environ),
            region=AwsSettings.from_env({**environ, "AWS_ENDPOINT_URL": ""}).region,
            dashboard=DashboardSettings.from_env(environ),
            shipping=ShipSettings.from_env(environ),
        )


def shipped_groups(shipping: ShipSettings) -> list[str]:
    """The log groups `make run` ships to (none with LOG_SHIPPING=off)."""
    if not shipping.enabled:
        return []
    return [log_group(shipping.name, name) for name in CHILDREN]


def start_children(env: Mapping[str, str], stdout: int | IO[bytes] | None = None) -> Children:
    """Start the API and the worker; their log lines go to `stdout` (this one's by default)."""
    return {name: processes.start(name, env, stdout=stdout) for name in CHILDREN}


def watch(children: Children, stop_requested: Callable[[], bool]) -> int:
    """Wait until a stop is asked for (0) or a child exits by itself (1, and say which)."""
    while not stop_requested():
        exited = {name: p.returncode for name, p in children.items() if p.poll() is not None}
        if exited:
            say("stack_child_exited", exit_codes=exited)
            return 1
        time.sleep(0.2)
    return 0


def stop_children(children: Children) -> None:
    """SIGTERM to every child still running, then wait for each to finish its own shutdown."""
    processes.stop_all(children.values())


def run(settings: StackSettings, stop_requested: Callable[[], bool]) -> int:
    """The local AWS, the topology, then the services until a stop is asked for."""
    # Every process here gets throwaway credentials, never a developer's real ones.
    env = isolated(os.environ, settings.region)
    with local_aws_process(port=settings.aws_port) as endpoint:
        aws = AwsSettings(region=settings.region, endpoint_url=endpoint)
        env["AWS_ENDPOINT_URL"] = endpoint
        with isolated_process_env(aws):
            topology = asyncio.run(create_topology(aws, settings.names))
        env.update(topology.env())
        dashboard = Dashboard(settings.dashboard, aws, topology, settings.shipping.name)
        try:
            dashboard.start()
        except OSError as exc:
            print(f"stack: dashboard: {exc}", file=sys.stderr)
            return 2
        shipper = LogShipper(aws, settings.shipping) if settings.shipping.enabled else None
        if shipper is not None:
            shipper.start()
        say(
            "stack_ready",
            endpoint=endpoint,
            dashboard=dashboard.url,
            log_groups=shipped_groups(settings.shipping),
            **topology.env(),
        )
        # The children's lines pass through the dashboard (and to CloudWatch Logs, as the
        # awslogs driver sends them on ECS) on their way to this stdout.
        children = start_children(env, stdout=subprocess.PIPE)
        for name, child in children.items():
            dashboard.tee(child.stdout, also=shipper.sink(name) if shipper else None)
        try:
            code = watch(children, stop_requested)
        finally:
            stop_children(children)
            dashboard.stop()
            if shipper is not None:
                stats = shipper.stop()
                say("logs_shipped", sent=stats.sent, dropped=stats.dropped, batches=stats.batches)
    say("stack_stopped")
    return code


def main() -> int:
    try:
        settings = StackSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 2
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return run(settings, lambda: stopping)

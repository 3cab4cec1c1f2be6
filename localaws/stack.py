"""`python -m localaws.stack`: the whole system on this machine, in the foreground.

The local AWS, the topology, the API on :8080 and one worker, every service's JSON log lines
on this process's stdout. Ctrl-C (or SIGTERM) stops the services first, then the local AWS.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import orjson

from devstack.dashboard import Dashboard, DashboardSettings
from services.common.settings import AwsSettings, SettingsError, env_int
from services.common.topology import TopologyNames, create_topology

from .process import FAKE_CREDENTIALS, local_aws_process

SERVICES = {"api": "services.api", "worker": "services.worker"}


def _say(event: str, **fields: object) -> None:
    line = {"event": event, "service": "stack", **fields}
    sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
    sys.stdout.flush()


def main() -> int:
    # The local AWS gets throwaway credentials, never a developer's real ones.
    env = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"} | FAKE_CREDENTIALS
    try:
        aws_port = env_int(env, "LOCALAWS_PORT", 4566, minimum=0, maximum=65535)
        names = TopologyNames.from_env(env)
        dashboard_settings = DashboardSettings.from_env(env)
    except SettingsError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 2
    stop_requested = False

    def request_stop(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    with local_aws_process(port=aws_port) as endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        os.environ.update(FAKE_CREDENTIALS)
        os.environ.pop("AWS_PROFILE", None)
        topology = asyncio.run(create_topology(AwsSettings.from_env(env), names))
        env.update(topology.env())
        dashboard = Dashboard(dashboard_settings, AwsSettings.from_env(env), topology)
        try:
            dashboard.start()
        except OSError as exc:
            print(f"stack: dashboard: {exc}", file=sys.stderr)
            return 2
        _say("stack_ready", endpoint=endpoint, dashboard=dashboard.url, **topology.env())
        children = {
            name: subprocess.Popen([sys.executable, "-m", module], env=env, stdout=subprocess.PIPE)
            for name, module in SERVICES.items()
        }
        for proc in children.values():
            dashboard.tee(proc.stdout)
        code = 0
        while not stop_requested:
            exited = {name: p.poll() for name, p in children.items() if p.poll() is not None}
            if exited:
                _say("stack_child_exited", exit_codes=exited)
                code = 1
                break
            time.sleep(0.2)
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in children.values():
            proc.wait()
        dashboard.stop()
    _say("stack_stopped")
    return code


if __name__ == "__main__":
    raise SystemExit(main())

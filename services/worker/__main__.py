"""`python -m services.worker`: drain the queue until SIGTERM/SIGINT (or, with BURST, empty)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from services.common.heap import freeze_startup_heap, space_young_collections
from services.common.logging import configure_logging
from services.common.settings import SettingsError

from .settings import WorkerSettings
from .worker import QueueNotFound, open_worker


async def serve(settings: WorkerSettings) -> None:
    async with open_worker(settings) as worker:
        loop = asyncio.get_running_loop()
        # Signals only ask for a stop; the worker's own shutdown does the rest.
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        freeze_startup_heap()  # clients open, queue checked: start-up is done
        space_young_collections()  # payments held by the thousand (services/common/heap.py)
        await worker.run()


def main() -> int:
    try:
        settings = WorkerSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, service="worker")
    try:
        asyncio.run(serve(settings))
    except QueueNotFound as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m services.api`: serve the order API until SIGINT/SIGTERM."""

from __future__ import annotations

import os
import sys

from aiohttp import web

from services.common.heap import freeze_startup_heap
from services.common.logging import configure_logging, get_logger
from services.common.settings import SettingsError

from .app import create_app
from .settings import ApiSettings


async def _freeze_heap(_: web.Application) -> None:
    freeze_startup_heap()


def main() -> int:
    try:
        settings = ApiSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"api: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, service="api")
    get_logger().info("api_starting", host=settings.host, port=settings.port)
    app = create_app(settings)
    # After the clients opened (cleanup_ctx runs first), before the first request.
    app.on_startup.append(_freeze_heap)
    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_timeout,
            # aiohttp arms this timer when a connection opens and re-arms it only after a
            # response, so it also bounds how long a client may take to send its headers.
            keepalive_timeout=settings.idle_timeout,
            access_log=None,  # the middleware writes one canonical line per request instead
            print=None,
        )
    except SettingsError as exc:  # a start-up check found the topic or table wrong
        print(f"api: {exc}", file=sys.stderr)
        return 2
    get_logger().info("api_stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

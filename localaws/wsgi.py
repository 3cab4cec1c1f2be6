"""Call a WSGI app (moto's) with an aiohttp request, synchronously, on the loop's thread."""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import web
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from multidict import CIMultiDict

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# aiohttp computes these itself from the body it sends.
_HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def environ(request: web.BaseRequest, body: bytes) -> dict[str, Any]:
    """A PEP 3333 environ for `request` whose body was already read."""
    path, _, query = request.raw_path.partition("?")
    host, _, port = (request.host or "localhost").rpartition(":")
    if not host:
        host, port = port, "80"
    env: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        # PEP 3333: the percent-decoded path as latin-1 text.
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
        "REMOTE_ADDR": request.remote or "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            env[key] = value
            continue
        if key == "CONTENT_LENGTH":
            continue
        key = "HTTP_" + key
        env[key] = f"{env[key]},{value}" if key in env else value
    return env


def call(app: WsgiApp, env: dict[str, Any]) -> web.Response:
    """Run the app to completion and turn what it returns into an aiohttp response."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return lambda data: None  # moto never uses the legacy write() callable

    chunks = app(env, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, headers = started
    kept = CIMultiDict((k, v) for k, v in headers if k.lower() not in _HOP_HEADERS)
    code, _, reason = status.partition(" ")
    return web.Response(body=body, status=int(code), reason=reason or None, headers=kept)


def install_dispatch_cache() -> None:
    """Remember which moto backend serves each host (moto works it out on every request)."""
    original = DomainDispatcherApplication.get_backend_for_host
    known: dict[str | None, Any] = {}

    @functools.wraps(original)
    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host not in known:
            # The answer depends only on the host and moto's static URL patterns. Bounded,
            # since the host is built from what the client's Authorization header says.
            if len(known) > 4096:
                known.clear()
            known[host] = original(self, host)
        return known[host]

    setattr(DomainDispatcherApplication, "get_backend_for_host", get_backend_for_host)  # noqa: B010

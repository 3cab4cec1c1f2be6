"""The dashboard's web app: the page, its static files, and the data as Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

STATIC = Path(__file__).parent / "static"
PUSH_SECONDS = 1.0

Snapshot = Callable[[], dict[str, Any]]

SNAPSHOT: web.AppKey[Snapshot] = web.AppKey("snapshot")
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("stopping", asyncio.Event)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def snapshot_json(request: web.Request) -> web.Response:
    body = orjson.dumps(request.app[SNAPSHOT]())
    return web.Response(body=body, content_type="application/json")


async def events(request: web.Request) -> web.StreamResponse:
    """A snapshot every second until the client leaves or the dashboard stops."""
    stopping = request.app[STOPPING]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    while not stopping.is_set():
        try:
            await response.write(b"data: " + orjson.dumps(request.app[SNAPSHOT]()) + b"\n\n")
        except ConnectionError:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), PUSH_SECONDS)
    return response


def create_app(snapshot: Snapshot, stopping: asyncio.Event) -> web.Application:
    """No I/O here: the caller runs it."""
    app = web.Application()
    app[SNAPSHOT] = snapshot
    app[STOPPING] = stopping
    app.router.add_get("/", index)
    app.router.add_get("/snapshot.json", snapshot_json)
    app.router.add_get("/events", events)
    app.router.add_static("/static/", STATIC)
    return app

"""The dashboard's web app: the page, its static files, the data as Server-Sent Events, and
the query box's endpoints (`POST /query` runs a Logs Insights query, `GET /queries.json`
lists the shipped ones)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ..insights import QueryError, QueryResult
from .queries import shipped_queries

STATIC = Path(__file__).parent / "static"
PUSH_SECONDS = 1.0

Snapshot = Callable[[], dict[str, Any]]
RunQuery = Callable[[str, str, str], Awaitable[QueryResult]]
"""(query, since, group) -> the result; QueryError or ValueError with a reason."""

SNAPSHOT: web.AppKey[Snapshot] = web.AppKey("snapshot")
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("stopping", asyncio.Event)
QUERY: web.AppKey[RunQuery] = web.AppKey("query")


def _error(status: int, code: str, message: str) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json")


async def run_query(request: web.Request) -> web.Response:
    """`{"query", "since"?, "group"?}` -> `{"columns", "rows", "statistics"}`, or a 400."""
    try:
        body = await request.json(loads=orjson.loads)
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "bad_request", "the body must be JSON")
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return _error(400, "bad_request", 'the body must be {"query": "...", "since": "15m"}')
    since, group = body.get("since", "15m"), body.get("group", "all")
    if not isinstance(since, str) or not isinstance(group, str):
        return _error(400, "bad_request", "since and group must be strings")
    try:
        result = await request.app[QUERY](body["query"], since, group)
    except (QueryError, ValueError) as exc:
        return _error(400, "query_failed", str(exc))
    answer = {"columns": result.columns(), "rows": result.rows, "statistics": result.statistics}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def queries_json(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(shipped_queries()), content_type="application/json")


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


def create_app(snapshot: Snapshot, stopping: asyncio.Event, query: RunQuery) -> web.Application:
    """No I/O here: the caller runs it."""
    app = web.Application()
    app[SNAPSHOT] = snapshot
    app[STOPPING] = stopping
    app[QUERY] = query
    app.router.add_get("/", index)
    app.router.add_get("/snapshot.json", snapshot_json)
    app.router.add_get("/events", events)
    app.router.add_post("/query", run_query)
    app.router.add_get("/queries.json", queries_json)
    app.router.add_static("/static/", STATIC)
    return app

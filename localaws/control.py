"""The server's own endpoints under /_localaws/: request counts (and fault injection).

Never AWS APIs: these paths are answered before moto sees the request, and are not counted.
Errors are JSON `{"error": {"code", "message"}}` like the services'.
"""

from __future__ import annotations

from aiohttp import web

from .calls import Counts

PREFIX = "/_localaws/"


def is_control(path: str) -> bool:
    return path.startswith(PREFIX)


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


class Control:
    """Answers /_localaws/ requests from the server's counters (and fault rules)."""

    def __init__(self, counts: Counts) -> None:
        self._counts = counts

    async def handle(self, request: web.BaseRequest) -> web.Response:
        if request.path == PREFIX + "requests":
            if request.method != "GET":
                return error(405, "method_not_allowed", "use GET", headers={"Allow": "GET"})
            return web.json_response(self._counts.snapshot())
        return error(404, "not_found", f"no such endpoint: {request.path}")

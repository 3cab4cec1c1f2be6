"""The server's own endpoints: request counts and fault rules.

Never AWS APIs: these paths are answered before moto sees the request, and are not counted.
Errors are JSON `{"error": {"code", "message"}}` like the services'.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from . import chaos
from .calls import Counts

PREFIX = "/_localaws/"
# LocalStack's path too, so a chaos script written for LocalStack runs here unchanged.
FAULTS = (PREFIX + "chaos/faults", "/_localstack/chaos/faults")


def is_control(path: str) -> bool:
    return path.startswith(PREFIX) or path in FAULTS


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


def _not_allowed(allow: str) -> web.Response:
    return error(405, "method_not_allowed", f"use {allow}", headers={"Allow": allow})


class Control:
    """Answers the control endpoints from the server's counters and fault rules."""

    def __init__(self, counts: Counts, faults: chaos.Faults) -> None:
        self._counts = counts
        self._faults = faults

    async def handle(self, request: web.BaseRequest) -> web.Response:
        if request.path == PREFIX + "requests":
            if request.method != "GET":
                return _not_allowed("GET")
            return web.json_response(self._counts.snapshot())
        if request.path in FAULTS:
            return await self._rules(request)
        return error(404, "not_found", f"no such endpoint: {request.path}")

    async def _rules(self, request: web.BaseRequest) -> web.Response:
        """GET lists the rules; POST replaces them, PATCH adds to them, DELETE removes the
        rules given (LocalStack's verbs). Every answer is the rules then in force."""
        if request.method == "GET":
            return web.json_response(chaos.rules_json(self._faults.rules))
        if request.method not in ("POST", "PATCH", "DELETE"):
            return _not_allowed("GET, POST, PATCH, DELETE")
        body = await request.content.read()
        try:
            given = chaos.parse_rules(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            return error(400, "invalid_json", f"the body is not JSON: {exc}")
        except chaos.RuleError as exc:
            return error(400, "invalid_rule", str(exc))
        if request.method == "POST":
            self._faults.rules = given
        elif request.method == "PATCH":
            self._faults.rules += given
        else:
            self._faults.rules = tuple(r for r in self._faults.rules if r not in given)
        return web.json_response(chaos.rules_json(self._faults.rules))

"""Serve Logs Insights from moto's logs backend: replaces moto's start_query (which knows
only `fields`, `sort` and `limit` and runs inside the request) and its companions."""

from __future__ import annotations

import threading
from typing import Any

import orjson
from moto.logs.responses import LogsResponse
from moto.logs.utils import EventMessageFilter

from . import parser
from .filter_pattern import Matcher, compile_pattern
from .service import INSIGHTS, ApiError, Handler, Insights

# LogsResponse method (moto's name for the action) -> what answers it.
ACTIONS: dict[str, Handler] = {}


def _endpoint(handle: Any) -> Any:
    def method(self: LogsResponse) -> Any:
        try:
            params = orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError:
            params = {}
        if not isinstance(params, dict):
            params = {}
        try:
            return orjson.dumps(handle(INSIGHTS, self.logs_backend, params)).decode()
        except ApiError as exc:
            body = {"__type": exc.code, "message": exc.message, **exc.extra}
            return orjson.dumps(body).decode(), {
                "status": 400,
                "x-amzn-ErrorType": exc.code,
                "Content-Type": "application/x-amz-json-1.1",
            }

    return method


_HANDLERS: dict[str, Any] = {
    "start_query": lambda s, b, p: {"queryId": Insights.start(s, b, p)},
    "get_query_results": Insights.results,
    "stop_query": Insights.stop,
    "describe_queries": Insights.describe,
    "get_log_record": Insights.log_record,
}


def install() -> None:
    for name, handle in _HANDLERS.items():
        setattr(LogsResponse, name, _endpoint(handle))
    # Building Lark's parser tables takes ~0.1 s: on a fresh server that was a tenth of a
    # 200,000-line query's time, paid by the first StartQuery. Built beside start-up instead.
    threading.Thread(target=parser.warm, name="insights-warm", daemon=True).start()


def install_filter_patterns() -> None:
    """FilterLogEvents applies the documented filter-pattern syntax (`filter_pattern.py`)."""
    original_init = EventMessageFilter.__init__
    original_matches = EventMessageFilter.matches

    def __init__(self: EventMessageFilter, pattern: str) -> None:
        original_init(self, pattern)
        # moto builds one per event: the compiled pattern is cached by its text.
        self.compiled = compile_pattern(pattern)  # type: ignore[attr-defined]

    def matches(self: EventMessageFilter, message: str) -> bool:
        compiled: Matcher | None = self.compiled  # type: ignore[attr-defined]
        if compiled is None:
            return bool(original_matches(self, message))
        return compiled(message)

    EventMessageFilter.__init__ = __init__  # type: ignore[method-assign]
    EventMessageFilter.matches = matches  # type: ignore[method-assign]

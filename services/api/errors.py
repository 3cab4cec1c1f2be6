"""JSON errors for every failure and the canonical one-line log per request.

This is where an HTTP status is chosen: ANSWERS maps each order error (services/domain/
errors.py) to its status, body `code`, message and Retry-After; the middleware renders those,
the handlers' own ApiErrors (malformed requests) and aiohttp's HTTP exceptions alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from services.common.logging import get_logger
from services.common.metrics import HTTP_DIMENSIONS, HTTP_REQUEST, emf, route_fields
from services.domain.errors import (
    InProgress,
    KeyReused,
    OrderError,
    PaymentDeclined,
    PaymentUnavailable,
    PublishAmbiguous,
    PublishFailed,
    StateRefused,
    StateUnavailable,
)

log = get_logger()

# Paths whose requests are logged but not counted in the request metrics.
UNMETERED_PATHS = frozenset({"/health"})

# Seconds a client should wait before retrying after an outage answer (or a 409).
RETRY_AFTER = "1"

_CODES = {
    400: "bad_request",
    408: "request_timeout",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An answer other than success, carried up to the middleware that renders it."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Answer:
    """How the API answers one kind of order error."""

    status: int
    code: str
    message: str = "{error}"
    """The body's message; `{error}` is the error's own text."""
    retry_after: str | None = None


# The one table of order errors to HTTP, looked up along the error's class hierarchy: the
# most specific row wins (StateRefused, a StateUnavailable, has its own).
ANSWERS: dict[type[OrderError], Answer] = {
    KeyReused: Answer(422, "idempotency_key_reused"),
    InProgress: Answer(
        409,
        "request_in_progress",
        "the first request with this key is still being processed",
        RETRY_AFTER,
    ),
    # SNS's answer was lost: the order may well be queued (and will then be paid). The
    # client must not take this for "not queued": its retry, same key or order_id, tells.
    PublishAmbiguous: Answer(
        503,
        "queue_unavailable",
        "SNS did not confirm the order: it may have been queued, and then it will be paid; "
        "retry with the same Idempotency-Key or order_id to learn which",
        RETRY_AFTER,
    ),
    # No 202 unless SNS acknowledged: the client must know the order was not queued.
    PublishFailed: Answer(
        503, "queue_unavailable", "the order could not be queued; retry later", RETRY_AFTER
    ),
    PaymentDeclined: Answer(402, "payment_declined"),
    PaymentUnavailable: Answer(503, "payment_unavailable", "{error}; retry later", RETRY_AFTER),
    # Logged at error where DynamoDB refused it (aws_permanent_error): not an outage a retry
    # rides out, but our setting or our bug.
    StateRefused: Answer(500, "state_refused", "order state refused the call; see the logs"),
    StateUnavailable: Answer(
        503,
        "state_unavailable",
        "order state is unreachable; retry later",
        RETRY_AFTER,
    ),
}


def answer(error: OrderError) -> ApiError | None:
    """The answer ANSWERS gives `error`; None for an order error it lacks (a bug)."""
    row = next((ANSWERS[kind] for kind in type(error).__mro__ if kind in ANSWERS), None)
    if row is None:
        return None
    if isinstance(error, StateUnavailable) and not isinstance(error, StateRefused):
        # The one line about an outage this request could not ride out (a refused call was
        # logged where it was refused, as aws_permanent_error).
        log.error("state_unavailable", detail=str(error))
    headers = {"Retry-After": row.retry_after} if row.retry_after is not None else None
    return ApiError(row.status, row.code, row.message.format(error=error), headers)


def json_response(
    data: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def error_response(error: ApiError) -> web.Response:
    body = {"error": {"code": error.code, "message": error.message}}
    return json_response(body, error.status, error.headers)


def _from_http_exception(exc: web.HTTPException) -> ApiError:
    status = exc.status
    code = _CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    return ApiError(status, code, exc.reason or HTTPStatus(status).phrase, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as JSON and write the request's canonical log line."""
    structlog.contextvars.clear_contextvars()
    started = time.perf_counter()
    response: web.StreamResponse
    error: ApiError | None = None
    try:
        response = await handler(request)
    except ApiError as exc:
        error = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = _from_http_exception(exc)
    except Exception as exc:
        error = answer(exc) if isinstance(exc, OrderError) else None
        if error is None:
            log.exception("unhandled_error", method=request.method, path=request.path)
            error = ApiError(500, "internal_error", "internal error")
    if error is not None:
        response = error_response(error)
        if 400 <= error.status < 500 and request.path.startswith("/orders"):
            log.info("order_rejected", code=error.code, reason=error.message, status=error.status)
    # The ALB and ECS probe /health every few seconds per task: their line stays, but carries
    # no EMF fields, so the request count and latency metrics show what clients sent.
    metrics = (
        emf(HTTP_REQUEST, dimensions=HTTP_DIMENSIONS) if request.path not in UNMETERED_PATHS else {}
    )
    resource = request.match_info.route.resource
    log.info(
        "http_request",
        method=request.method,
        path=request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        **route_fields(resource.canonical if resource is not None else None),
        **metrics,
    )
    return response

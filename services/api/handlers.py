"""Route handlers: the order endpoints, order status, the OpenAPI document and health."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from services.common.logging import get_logger
from services.domain.messages import InvalidInput, OrderRequest, parse_order_request
from services.domain.orders import Status

from .errors import ApiError, json_response
from .keys import AWS_HEALTH, ORDERS, SETTINGS, WORKFLOW

log = get_logger()
routes = web.RouteTableDef()

# Printable ASCII, as the IETF Idempotency-Key draft suggests; long enough for any UUID scheme.
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
OPENAPI = Path(__file__).with_name("openapi.json")
# Content codings aiohttp decodes without optional packages; it passes any other through
# undecoded, which would then be parsed as if it were plain JSON.
CONTENT_CODINGS = frozenset({"identity", "gzip", "deflate"})
# Not an answer anyone receives: the canonical log line's status when the client went away
# mid-body (nginx's convention), so a hang-up is not counted as a server error.
CLIENT_CLOSED_REQUEST = 499


async def _read_order(request: web.Request) -> OrderRequest:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in CONTENT_CODINGS:
        raise ApiError(
            415, "unsupported_media_type", "Content-Encoding must be gzip, deflate or identity"
        )
    settings = request.app[SETTINGS]
    limit = settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        # Refuse before reading a byte of an announced oversize body.
        raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")
    try:
        async with asyncio.timeout(settings.body_timeout):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        # Also a compressed body whose decoded size passes the limit (a zip bomb): aiohttp
        # decodes as it reads, so no more than about the limit is ever held.
        raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes") from None
    except RequestPayloadError:
        # The body's framing or coding is corrupt (bad gzip data, a broken chunk).
        raise ApiError(400, "invalid_json", "body could not be decoded") from None
    except ConnectionResetError:
        raise ApiError(
            CLIENT_CLOSED_REQUEST, "client_closed_request", "the client left before its body"
        ) from None
    except TimeoutError:
        raise ApiError(
            408, "request_timeout", f"body not received within {settings.body_timeout:g} s"
        ) from None
    try:
        return parse_order_request(body)
    except InvalidInput as exc:
        raise ApiError(400, exc.code, exc.message) from None


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 printable ASCII characters",
        )
    return key


def _answer(order_id: str, status: str, total: float, **extra: object) -> dict[str, object]:
    return {"order_id": order_id, "status": status, "total": total, **extra}


@routes.post("/orders/async")
async def create_order_async(request: web.Request) -> web.Response:
    wanted = await _read_order(request)
    key = _idempotency_key(request)
    # An order error (not queued, key reused, ...) is answered by the middleware's table.
    accepted = await request.app[WORKFLOW].accept(wanted, key, request.path)
    return json_response(
        _answer(accepted.order_id, "accepted", accepted.total),
        202,
        {"Location": f"/orders/{accepted.order_id}"},
    )


@routes.post("/orders/sync")
async def create_order_sync(request: web.Request) -> web.Response:
    wanted = await _read_order(request)
    key = _idempotency_key(request)
    # An order error (declined, processor down, ...) is answered by the middleware's table.
    paid = await request.app[WORKFLOW].pay_now(wanted, key, request.path)
    return json_response(_answer(paid.order_id, "paid", paid.total, payment_ms=paid.payment_ms))


# Only UUID-shaped ids match, so GET /orders/async stays a 405, not an unknown order.
@routes.get(r"/orders/{order_id:[0-9a-fA-F-]{32,36}}")
async def get_order(request: web.Request) -> web.Response:
    store = request.app[ORDERS]
    raw_id = request.match_info["order_id"]
    try:
        order_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise ApiError(404, "not_found", "no such order") from None
    # An order this process just accepted: its mark may still be on its way to DynamoDB.
    await request.app[WORKFLOW].marked(order_id)
    record = await store.get(order_id)
    # A pending order was never acknowledged by SNS: it was not accepted, so it is not shown.
    if record is None or record.status == Status.PENDING:
        raise ApiError(404, "not_found", "no such order")
    return json_response(record.public())


@routes.get("/openapi.json")
async def openapi(_: web.Request) -> web.Response:
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/json")


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    # No AWS call: a load balancer probing every few seconds must not depend on SNS. But an
    # API whose calls AWS keeps refusing for good (access denied, KMS, a missing table) does
    # nothing useful: unhealthy, so the ALB and ECS replace it and the deployment fails.
    aws = request.app[AWS_HEALTH]
    if not aws.healthy:
        raise ApiError(
            503,
            "unhealthy",
            f"AWS refused the last {aws.in_a_row} calls for good (see aws_permanent_error)",
        )
    return json_response({"status": "ok"})

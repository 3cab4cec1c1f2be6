"""Route handlers: the order endpoints, order status, the OpenAPI document and health."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from datetime import datetime
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from botocore.exceptions import BotoCoreError, ClientError

from services.common.logging import get_logger
from services.common.messages import (
    InvalidInput,
    OrderMessage,
    OrderRequest,
    encode_message,
    parse_order_request,
)
from services.common.orders import (
    OrderRecord,
    OrderStore,
    StateUnavailable,
    Status,
    request_hash,
)
from services.common.payment import PaymentDeclined, PaymentUnavailable

from .errors import ApiError, json_response
from .keys import ORDERS, PAYMENTS, SETTINGS, SNS

log = get_logger()
routes = web.RouteTableDef()

# Seconds a client should wait before retrying after an outage answer.
RETRY_AFTER = "1"
# Printable ASCII, as the IETF Idempotency-Key draft suggests; long enough for any UUID scheme.
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
OPENAPI = Path(__file__).with_name("openapi.json")
# Content codings aiohttp decodes without optional packages; it passes any other through
# undecoded, which would then be parsed as if it were plain JSON.
CONTENT_CODINGS = frozenset({"identity", "gzip", "deflate"})
# Not an answer anyone receives: the canonical log line's status when the client went away
# mid-body (nginx's convention), so a hang-up is not counted as a server error.
CLIENT_CLOSED_REQUEST = 499


def _outage(code: str, message: str) -> ApiError:
    return ApiError(503, code, message, {"Retry-After": RETRY_AFTER})


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


async def _register(
    request: web.Request, store: OrderStore, order: OrderMessage, wanted: OrderRequest
) -> tuple[OrderMessage, OrderRecord | None]:
    """Record the order as pending, or find the order this request is a retry of."""
    fingerprint = request_hash(request.path, wanted)
    key = _idempotency_key(request)
    if key is not None:
        order_id, bound = await store.bind_idempotency_key(key, order.order_id, fingerprint)
        if bound != fingerprint:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )
        order = order.model_copy(update={"order_id": order_id})
    existing = await store.create_pending(order, fingerprint)
    if existing is not None and existing.request_hash != fingerprint:
        raise ApiError(
            422, "idempotency_key_reused", "this order_id was used with a different request"
        )
    return order, existing


def _in_progress() -> ApiError:
    return ApiError(
        409,
        "request_in_progress",
        "the first request with this key is still being processed",
        {"Retry-After": RETRY_AFTER},
    )


def _answer(order_id: str, status: str, total: float, **extra: object) -> dict[str, object]:
    return {"order_id": order_id, "status": status, "total": total, **extra}


def _accepted_response(order_id: str, total: float) -> web.Response:
    return json_response(
        _answer(order_id, "accepted", total), 202, {"Location": f"/orders/{order_id}"}
    )


def _age_seconds(iso: str) -> float:
    return time.time() - datetime.fromisoformat(iso).timestamp()


@routes.post("/orders/async")
async def create_order_async(request: web.Request) -> web.Response:
    wanted = await _read_order(request)
    order = OrderMessage.accept(wanted)
    store = request.app[ORDERS]
    settings = request.app[SETTINGS]
    # Only a request that names itself (a key, or its own order_id) can be a retry: only those
    # pay for the pending write that lets a retry find it. Others cost one write, after SNS.
    keyed = store is not None and (
        wanted.order_id is not None or "Idempotency-Key" in request.headers
    )
    if store is not None and keyed:
        order, existing = await _register(request, store, order, wanted)
        structlog.contextvars.bind_contextvars(order_id=order.order_id)
        if existing is not None and existing.status != Status.PENDING:
            log.info("order_replayed", status=str(existing.status))
            return _accepted_response(existing.order_id, existing.total)
        if (
            existing is not None
            and _age_seconds(existing.updated_at) < 2 * settings.publish_timeout
        ):
            raise _in_progress()
        # A pending order older than that lost its publish (the API died mid-way): retry it.
    structlog.contextvars.bind_contextvars(order_id=order.order_id)
    try:
        async with asyncio.timeout(settings.publish_timeout):
            await request.app[SNS].publish(
                TopicArn=settings.topic_arn, Message=encode_message(order)
            )
    except (BotoCoreError, ClientError, TimeoutError) as exc:
        # No 202 unless SNS acknowledged: the client must know the order was not queued.
        log.error("publish_failed", error=type(exc).__name__, detail=str(exc))
        if store is not None and keyed:
            # Not accepted after all: a retry (same key or order_id) starts afresh.
            await store.forget_pending(order.order_id)
        raise _outage("queue_unavailable", "the order could not be queued; retry later") from None
    if store is not None:
        try:
            if keyed:
                await store.mark_accepted(order.order_id)
            else:
                await store.record_accepted(order)
        except StateUnavailable as exc:
            # The order is queued all the same, so it is accepted: the worker's claim writes
            # its state when it takes it, and GET finds it from then on.
            log.warning("state_unavailable", detail=str(exc))
    log.info("order_accepted", total=order.total, items=len(order.items))
    return _accepted_response(order.order_id, order.total)


@routes.post("/orders/sync")
async def create_order_sync(request: web.Request) -> web.Response:
    wanted = await _read_order(request)
    order = OrderMessage.accept(wanted)
    store = request.app[ORDERS]
    payments = request.app[PAYMENTS]
    token = None
    if store is not None:
        order, existing = await _register(request, store, order, wanted)
        structlog.contextvars.bind_contextvars(order_id=order.order_id)
        if existing is not None and existing.status == Status.PAID:
            log.info("order_replayed", status=str(existing.status))
            return json_response(
                _answer(order.order_id, "paid", existing.total, payment_ms=existing.payment_ms)
            )
        if existing is not None and existing.status == Status.FAILED:
            raise ApiError(402, "payment_declined", existing.failure_reason or "payment failed")
        claim = await store.claim(order, lease_seconds=payments.settings.timeout + 5)
        if not claim.won:
            raise _in_progress()
        token = claim.token
    structlog.contextvars.bind_contextvars(order_id=order.order_id)
    try:
        payment_ms = await payments.charge(order)
    except PaymentDeclined as exc:
        log.info("order_failed", mode="sync", reason=str(exc))
        if store is not None and token is not None:
            await store.mark_failed(order.order_id, token, str(exc))
        raise ApiError(402, "payment_declined", str(exc)) from None
    except PaymentUnavailable as exc:
        log.warning("payment_unavailable", mode="sync", reason=str(exc))
        if store is not None and token is not None:
            await store.release(order.order_id, token, str(exc))
        raise _outage("payment_unavailable", f"{exc}; retry later") from None
    if store is not None and token is not None:
        await store.mark_paid(order.order_id, token, payment_ms)
    log.info("order_paid", mode="sync", payment_ms=round(payment_ms, 3), queue_ms=0.0)
    return json_response(
        _answer(order.order_id, "paid", order.total, payment_ms=round(payment_ms, 3))
    )


# Only UUID-shaped ids match, so GET /orders/async stays a 405, not an unknown order.
@routes.get(r"/orders/{order_id:[0-9a-fA-F-]{32,36}}")
async def get_order(request: web.Request) -> web.Response:
    store = request.app[ORDERS]
    raw_id = request.match_info["order_id"]
    try:
        order_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise ApiError(404, "not_found", "no such order") from None
    record = await store.get(order_id) if store is not None else None
    # A pending order was never acknowledged by SNS: it was not accepted, so it is not shown.
    if record is None or record.status == Status.PENDING:
        raise ApiError(404, "not_found", "no such order")
    return json_response(record.public())


@routes.get("/openapi.json")
async def openapi(_: web.Request) -> web.Response:
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/json")


@routes.get("/health")
async def health(_: web.Request) -> web.Response:
    # No AWS call: a load balancer probing every few seconds must not depend on SNS.
    return json_response({"status": "ok"})

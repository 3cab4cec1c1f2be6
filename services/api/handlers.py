"""Route handlers: the order endpoints and the load balancer's health check."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from services.common.logging import get_logger
from services.common.messages import (
    InvalidInput,
    OrderMessage,
    OrderRequest,
    encode_message,
    parse_order_request,
)

from .errors import ApiError, json_response
from .keys import PAYMENTS, SETTINGS, SNS

log = get_logger()
routes = web.RouteTableDef()

# Seconds a client should wait before retrying after an outage answer.
RETRY_AFTER = "1"


async def _read_order(request: web.Request) -> OrderRequest:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        # Refuse before reading a byte of an announced oversize body.
        raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes") from None
    try:
        return parse_order_request(body)
    except InvalidInput as exc:
        raise ApiError(400, exc.code, exc.message) from None


def _accepted(order: OrderMessage, status: str, **extra: object) -> dict[str, object]:
    return {"order_id": order.order_id, "status": status, "total": order.total, **extra}


@routes.post("/orders/async")
async def create_order_async(request: web.Request) -> web.Response:
    order = OrderMessage.accept(await _read_order(request))
    structlog.contextvars.bind_contextvars(order_id=order.order_id)
    settings = request.app[SETTINGS]
    try:
        async with asyncio.timeout(settings.publish_timeout):
            await request.app[SNS].publish(
                TopicArn=settings.topic_arn, Message=encode_message(order)
            )
    except (BotoCoreError, ClientError, TimeoutError) as exc:
        # No 202 unless SNS acknowledged: the client must know the order was not queued.
        log.error("publish_failed", error=type(exc).__name__, detail=str(exc))
        raise ApiError(
            503,
            "queue_unavailable",
            "the order could not be queued; retry later",
            {"Retry-After": RETRY_AFTER},
        ) from None
    log.info("order_accepted", total=order.total, items=len(order.items))
    return json_response(
        _accepted(order, "accepted"), 202, {"Location": f"/orders/{order.order_id}"}
    )


@routes.post("/orders/sync")
async def create_order_sync(request: web.Request) -> web.Response:
    order = OrderMessage.accept(await _read_order(request))
    structlog.contextvars.bind_contextvars(order_id=order.order_id)
    payment_ms = await request.app[PAYMENTS].charge(order)
    log.info("order_paid", mode="sync", payment_ms=round(payment_ms, 3), queue_ms=0.0)
    return json_response(_accepted(order, "paid", payment_ms=round(payment_ms, 3)))


@routes.get("/health")
async def health(_: web.Request) -> web.Response:
    # No AWS call: a load balancer probing every few seconds must not depend on SNS.
    return json_response({"status": "ok"})

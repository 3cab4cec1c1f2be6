"""The order as the API accepts it and as it travels on SNS/SQS: validated and encoded in one place.

Pydantic (strict, no extra fields, no NaN) validates both directions of the wire format, so a
client's body and a queued message go through the same rules.
"""

from __future__ import annotations

import re
import time
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)

MESSAGE_VERSION = 1

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)
_UUID_PATTERN = r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$"
_UUID = re.compile(_UUID_PATTERN)
# The largest integer the JSON parser (orjson) reads as an integer; past it comes a float.
MAX_CUSTOMER_ID = 2**64 - 1
# DynamoDB numbers cannot be smaller in magnitude than this, and the order total is stored as
# one: a smaller non-zero price would make the client's order an outage (503), not a 400.
MIN_NONZERO_PRICE = 1e-130


def _customer_id(value: object) -> int | str:
    # bool is an int subclass in Python but never a customer id on the wire.
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CUSTOMER_ID:
        return value
    if isinstance(value, str) and 1 <= len(value) <= 64:
        return value
    raise ValueError("must be an integer from 1 to 2**64-1 or a string of 1 to 64 characters")


def _order_id(value: object) -> str:
    if isinstance(value, str) and _UUID.match(value):
        return str(uuid.UUID(value))
    raise ValueError("must be a UUID string")


CustomerId = Annotated[
    int | str,
    PlainValidator(_customer_id),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_CUSTOMER_ID},
                {"type": "string", "minLength": 1, "maxLength": 64},
            ]
        }
    ),
]
# Lax only in the container: a JSON array becomes an immutable tuple; the items stay strict.
Items = Annotated[tuple["OrderItem", ...], Field(min_length=1, max_length=100, strict=False)]
# The pattern, not `format: uuid`: hyphens are optional on the way in (canonical on the way out).
OrderId = Annotated[
    str, PlainValidator(_order_id), WithJsonSchema({"type": "string", "pattern": _UUID_PATTERN})
]


def _storable_price(value: float) -> float:
    if 0 < value < MIN_NONZERO_PRICE:
        raise ValueError(f"must be 0 or at least {MIN_NONZERO_PRICE:g}")
    return value


# DynamoDB's number range: a total outside it can never be stored (every write of it is a
# ValidationException), so a message carrying one is refused at decoding and dead-lettered.
DYNAMODB_MAX_NUMBER = 9.9999999999999999999999999999999999999e125
DYNAMODB_MIN_POSITIVE = 1e-130


def _storable_total(value: float) -> float:
    if value != 0 and not DYNAMODB_MIN_POSITIVE <= value <= DYNAMODB_MAX_NUMBER:
        raise ValueError("must be 0 or between 1e-130 and 9.99e125 (what DynamoDB can store)")
    return value


Price = Annotated[
    float,
    Field(ge=0, le=1_000_000),
    AfterValidator(_storable_price),
    WithJsonSchema(
        {
            "type": "number",
            "minimum": 0,
            "maximum": 1_000_000,
            "not": {"exclusiveMinimum": 0, "exclusiveMaximum": MIN_NONZERO_PRICE},
        }
    ),
]


class OrderItem(BaseModel):
    model_config = _STRICT

    product_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(ge=1, le=1000)]
    price: Price
    """Unit price."""


class OrderRequest(BaseModel):
    """The body of POST /orders/async and /orders/sync."""

    model_config = _STRICT

    order_id: OrderId | None = None
    customer_id: CustomerId
    items: Items


class OrderMessage(BaseModel):
    """An accepted order, as published to SNS and received from SQS (version 1)."""

    model_config = _STRICT

    v: Literal[1] = 1
    order_id: OrderId
    customer_id: CustomerId
    items: Items
    total: Annotated[float, Field(ge=0), AfterValidator(_storable_total)]
    accepted_at: float
    """Unix time (seconds) at which the API accepted the order."""

    @classmethod
    def from_request(cls, request: OrderRequest, *, now: float | None = None) -> OrderMessage:
        """The message for a request the API takes: its order_id (or a new one) and total."""
        return cls(
            order_id=request.order_id or str(uuid.uuid4()),
            customer_id=request.customer_id,
            items=request.items,
            total=order_total(request.items),
            accepted_at=time.time() if now is None else now,
        )


class InvalidInput(ValueError):
    """Bytes that are not a valid order; `field` names where, when one field is to blame."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def order_total(items: tuple[OrderItem, ...]) -> float:
    # Decimal of the shortest repr keeps 0.1 + 0.2 at 0.3; the answer goes back out as a number.
    total = sum((Decimal(repr(item.price)) * item.quantity for item in items), Decimal(0))
    return float(total)


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path or "body"


def _from_validation_error(exc: ValidationError) -> InvalidInput:
    first = exc.errors(include_url=False)[0]
    field = _field_path(first["loc"])
    # Items are a JSON array on the wire; pydantic speaks of the tuple we keep them in.
    message = str(first["msg"]).removeprefix("Value error, ")
    message = message.replace("Tuple", "Array").replace("tuple", "array")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "missing":
        message = "is required"
    return InvalidInput("invalid_order", f"{field}: {message}", field)


def _loads(raw: bytes | str) -> Any:
    try:
        # orjson rejects NaN/Infinity literals, integers past 64 bits, invalid UTF-8 and
        # nesting past 1024 levels, so none of those reach validation.
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("invalid_json", f"body is not valid JSON: {exc}") from None


def parse_order_request(raw: bytes) -> OrderRequest:
    data = _loads(raw)
    if not isinstance(data, dict):
        raise InvalidInput("invalid_order", "body must be a JSON object", "body")
    try:
        return OrderRequest.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(exc) from None


# SQS accepts only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF in a message
# body. orjson escapes the control characters but writes U+FFFE and U+FFFF (valid in a client's
# JSON string) raw, and SNS could not deliver such an order to the queue after its 202.
_NOT_FOR_SQS = re.compile("[\ufffe\uffff]")


def encode_message(message: OrderMessage) -> str:
    encoded = orjson.dumps(message.model_dump(mode="json")).decode()
    # The JSON escape decodes to the same character, so the message means the same.
    return _NOT_FOR_SQS.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)


def decode_message(body: bytes | str) -> OrderMessage:
    """Decode a queued message; any junk raises InvalidInput, never anything else."""
    data = _loads(body)
    if not isinstance(data, dict):
        raise InvalidInput("invalid_message", "message must be a JSON object")
    if data.get("v") != MESSAGE_VERSION:
        raise InvalidInput("unsupported_version", f"unsupported message version {data.get('v')!r}")
    try:
        return OrderMessage.model_validate(data)
    except ValidationError as exc:
        error = _from_validation_error(exc)
        raise InvalidInput("invalid_message", error.message, error.field) from None

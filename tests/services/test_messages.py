"""The order message codec: what the API validates is what the worker decodes."""

from __future__ import annotations

import contextlib
import uuid

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.domain.messages import (
    MIN_NONZERO_PRICE,
    InvalidInput,
    OrderMessage,
    OrderRequest,
    decode_message,
    encode_message,
    order_total,
    parse_order_request,
)

items = st.lists(
    st.fixed_dictionaries(
        {
            "product_id": st.text(min_size=1, max_size=64),
            "quantity": st.integers(1, 1000),
            # 0, or no smaller than DynamoDB can store the order's total.
            "price": st.one_of(st.just(0.0), st.floats(MIN_NONZERO_PRICE, 1_000_000)),
        }
    ),
    min_size=1,
    max_size=100,
)
requests = st.fixed_dictionaries(
    {
        "customer_id": st.one_of(st.integers(1, 2**63 - 1), st.text(min_size=1, max_size=64)),
        "items": items,
    },
    optional={"order_id": st.uuids().map(str)},
)


@settings(max_examples=200, deadline=None)
@given(requests)
def test_round_trip(body: dict[str, object]) -> None:
    request = parse_order_request(orjson.dumps(body))
    message = OrderMessage.from_request(request)
    assert decode_message(encode_message(message)) == message
    if "order_id" in body:
        assert message.order_id == body["order_id"]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_junk_bytes_never_crash_the_decoder(junk: bytes) -> None:
    try:
        decode_message(junk)
    except InvalidInput as exc:
        assert exc.code in {"invalid_json", "invalid_message", "unsupported_version"}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_junk_json_never_crashes_the_decoder_or_the_parser(value: object) -> None:
    raw = orjson.dumps(value)
    for parse in (decode_message, parse_order_request):
        with contextlib.suppress(InvalidInput):
            parse(raw)


def test_total_is_exact_in_decimal() -> None:
    request = OrderRequest.model_validate(
        {
            "customer_id": 1,
            "items": [
                {"product_id": "a", "quantity": 3, "price": 0.1},
                {"product_id": "b", "quantity": 1, "price": 0.2},
            ],
        }
    )
    assert order_total(request.items) == 0.5


def test_order_id_is_normalised() -> None:
    upper = str(uuid.uuid4()).upper()
    request = parse_order_request(
        orjson.dumps(
            {
                "order_id": upper,
                "customer_id": 1,
                "items": [{"product_id": "a", "quantity": 1, "price": 1}],
            }
        )
    )
    assert request.order_id == upper.lower()


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_unknown_versions_are_refused(version: object) -> None:
    message = OrderMessage.from_request(
        OrderRequest.model_validate(
            {"customer_id": 1, "items": [{"product_id": "a", "quantity": 1, "price": 1}]}
        )
    )
    data = orjson.loads(encode_message(message)) | {"v": version}
    with pytest.raises(InvalidInput) as caught:
        decode_message(orjson.dumps(data))
    assert caught.value.code == "unsupported_version"

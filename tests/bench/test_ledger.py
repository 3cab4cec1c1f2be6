"""The ledger counts the processor's own lines, so a double charge is visible."""

from __future__ import annotations

import orjson

from bench.harness.ledger import charged_twice, charges, parse_lines


def test_charges_are_counted_per_order_across_processes() -> None:
    worker = [
        orjson.dumps({"event": "payment_charged", "order_id": "a", "service": "worker"}),
        orjson.dumps({"event": "payment_declined", "order_id": "b", "service": "worker"}),
        b"not json",
    ]
    api = [orjson.dumps({"event": "payment_charged", "order_id": "a", "service": "api"})]
    events = parse_lines([*worker, *api])
    assert charges(events) == {"a": 2}
    assert charged_twice(events) == {"a": 2}


def test_single_charges_are_not_doubles() -> None:
    events = parse_lines([orjson.dumps({"event": "payment_charged", "order_id": "a"})])
    assert charged_twice(events) == {}

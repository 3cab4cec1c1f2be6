"""The DynamoDB drill's verdict (bench/tools/drill_tally.py): charges from the processor's
ledger, not from `order_paid`, so a double charge or a lost order fails it."""

from __future__ import annotations

from typing import Any

from bench.tools.drill_tally import problems, table, tally


def _line(event: str, order_id: str, **fields: Any) -> dict[str, Any]:
    return {"event": event, "order_id": order_id, "level": "info", **fields}


def _paid_once(*orders: str) -> list[dict[str, Any]]:
    return [_line(e, o) for o in orders for e in ("payment_charged", "order_paid")]


def test_every_order_charged_once_and_paid_passes() -> None:
    events = [*_paid_once("a", "b"), _line("order_duplicate", "a")]
    result = tally(3, ["a", "b"], {"500 state_refused": 1}, events)
    assert problems(result) == []
    assert result.duplicates == 1
    assert "| accepted orders charged exactly once | 2 |" in table(result)


def test_a_double_charge_fails_though_order_paid_says_once() -> None:
    # The issue's failure: the order is paid once by the workers' account, but the
    # processor charged it twice (the second charge ended in claim_lost_after_payment).
    events = [
        *_paid_once("a", "b"),
        _line("payment_charged", "b", service="worker"),
        _line("claim_lost_after_payment", "b", level="error"),
    ]
    result = tally(2, ["a", "b"], {}, events)
    found = problems(result)
    assert found == ["1 order(s) charged more than once: b x2"]
    assert result.errors == {"claim_lost_after_payment": 1}
    assert "| orders charged twice or more | 1 |" in table(result)


def test_an_order_never_charged_fails_even_with_an_order_paid_line() -> None:
    events = [*_paid_once("a"), _line("order_paid", "b")]
    found = problems(tally(2, ["a", "b"], {}, events))
    assert found == ["1 accepted order(s) never charged: b"]


def test_an_order_charged_but_never_paid_fails() -> None:
    events = [*_paid_once("a"), _line("payment_charged", "b")]
    assert problems(tally(2, ["a", "b"], {}, events)) == [
        "1 accepted order(s) with no order_paid: b"
    ]


def test_nothing_accepted_proves_nothing() -> None:
    assert problems(tally(60, [], {"503 state_unavailable": 60}, [])) == [
        "no order was accepted: the drill proved nothing"
    ]


def test_permanent_errors_are_counted_by_code() -> None:
    events = [
        {"event": "aws_permanent_error", "code": "AccessDeniedException", "level": "error"},
        {"event": "aws_permanent_error", "code": "AccessDeniedException", "level": "error"},
        {"event": "state_unavailable", "level": "warning"},
    ]
    result = tally(0, [], {}, events)
    assert result.permanent_codes == {"AccessDeniedException": 2}
    assert result.errors == {"aws_permanent_error": 2}
    assert result.warnings == {"state_unavailable": 1}

"""What a drill against `make run` counts, and its verdict (bench/tools/dynamodb_hang.py).

Charges come from the payment processor's own `payment_charged` lines (bench/harness/ledger.py),
paid orders from the workers' `order_paid` lines, both read from the launcher's stdout, where
every service's lines pass. Kept apart from the drill's driver so the verdict can be tested
with a failing input without starting a stack.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..harness.ledger import Ledger, charges


@dataclass(frozen=True)
class Tally:
    """One drill's figures."""

    sent: int
    accepted: tuple[str, ...]
    """Order ids the API answered 202 for, in send order."""
    refused: Counter[str] = field(default_factory=Counter)
    """Every other answer, by status (or the client's error), e.g. {"503": 4}."""
    ledger: Ledger = field(default_factory=Ledger)
    paid: Counter[str] = field(default_factory=Counter)
    """`order_paid` lines per order."""
    duplicates: int = 0
    """`order_duplicate` lines: redeliveries recognized as already paid (not charged)."""
    errors: Counter[str] = field(default_factory=Counter)
    """Error-level lines, by event."""
    warnings: Counter[str] = field(default_factory=Counter)
    """Warning-level lines, by event."""
    permanent_codes: Counter[str] = field(default_factory=Counter)
    """`aws_permanent_error` lines, by AWS error code."""


def tally(
    sent: int,
    accepted: Sequence[str],
    refused: Mapping[str, int],
    events: Iterable[Mapping[str, Any]],
) -> Tally:
    """Count the launcher's log lines (parsed) for one drill."""
    events = list(events)
    paid: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    duplicates = 0
    for e in events:
        name = str(e.get("event"))
        if name == "order_paid" and e.get("order_id") is not None:
            paid[str(e["order_id"])] += 1
        elif name == "order_duplicate":
            duplicates += 1
        elif name == "aws_permanent_error":
            codes[str(e.get("code"))] += 1
        level = e.get("level")
        if level == "error":
            errors[name] += 1
        elif level == "warning":
            warnings[name] += 1
    return Tally(
        sent=sent,
        accepted=tuple(accepted),
        refused=Counter(refused),
        ledger=Ledger(charges(events)),
        paid=paid,
        duplicates=duplicates,
        errors=errors,
        warnings=warnings,
        permanent_codes=codes,
    )


def problems(t: Tally) -> list[str]:
    """Why the drill fails: every accepted order must be charged exactly once (the processor's
    ledger) and paid (an `order_paid` line). Empty: it passes."""
    found: list[str] = []
    if not t.accepted:
        found.append("no order was accepted: the drill proved nothing")
    never = [o for o in t.accepted if t.ledger.per_order[o] == 0]
    many = {o: t.ledger.per_order[o] for o in t.accepted if t.ledger.per_order[o] > 1}
    unpaid = [o for o in t.accepted if t.paid[o] == 0]
    if never:
        found.append(f"{len(never)} accepted order(s) never charged: {', '.join(never[:5])}")
    if many:
        shown = ", ".join(f"{o} x{n}" for o, n in list(many.items())[:5])
        found.append(f"{len(many)} order(s) charged more than once: {shown}")
    if unpaid:
        found.append(f"{len(unpaid)} accepted order(s) with no order_paid: {', '.join(unpaid[:5])}")
    strangers = set(t.ledger.per_order) - set(t.accepted)
    if strangers:
        found.append(f"{len(strangers)} charge(s) for orders the API never accepted")
    return found


def table(t: Tally) -> str:
    """The drill's figures as a Markdown table."""
    accepted = set(t.accepted)
    once = sum(1 for o in t.accepted if t.ledger.per_order[o] == 1)
    rows = [
        ("orders sent", t.sent),
        ("202 accepted", len(t.accepted)),
        ("other answers", dict(sorted(t.refused.items())) or "none"),
        ("payment_charged lines (ledger)", t.ledger.total),
        ("accepted orders charged exactly once", once),
        ("accepted orders never charged", len(t.ledger.lost(t.accepted))),
        ("orders charged twice or more", len(t.ledger.twice())),
        ("order_paid lines", sum(t.paid.values())),
        ("accepted orders with order_paid", sum(1 for o in accepted if t.paid[o])),
        ("order_duplicate lines (not charged)", t.duplicates),
        ("aws_permanent_error by code", dict(t.permanent_codes) or "none"),
        ("error lines by event", dict(t.errors.most_common()) or "none"),
        ("warning lines by event", dict(t.warnings.most_common()) or "none"),
    ]
    lines = ["| figure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)

"""The payment processor's ledger, read back from log lines: what was really charged.

Every process that pays (workers, the API's /orders/sync) writes one `payment_charged` line
per charge it made (services/domain/payment.py). Charges are counted here from those lines,
across every process of a run, and never from the order record the workflow writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .results import TargetResult
from .targets import target

CHARGED = "payment_charged"


def parse_lines(lines: Iterable[bytes | str]) -> list[dict[str, Any]]:
    """JSON log lines as dicts; lines that are not JSON objects are skipped."""
    events = []
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def charges(events: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """How many times the processor charged each order, in one process's lines."""
    return Counter(str(e["order_id"]) for e in events if e.get("event") == CHARGED)


@dataclass(frozen=True, slots=True)
class Ledger:
    """Charges per order over every process of one run: the only place charges are counted."""

    per_order: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, *processes: Counter[str]) -> Ledger:
        """One ledger from each paying process's charges (summed per order)."""
        total: Counter[str] = Counter()
        for process in processes:
            total.update(process)
        return cls(total)

    @property
    def total(self) -> int:
        """Every charge the processor made."""
        return sum(self.per_order.values())

    def twice(self) -> dict[str, int]:
        """Orders charged more than once, with their count."""
        return {order_id: n for order_id, n in self.per_order.items() if n > 1}

    def charged(self, orders: Iterable[str]) -> set[str]:
        """Those of `orders` the processor charged at least once."""
        return {order_id for order_id in orders if self.per_order[order_id] > 0}

    def lost(self, accepted: Iterable[str]) -> set[str]:
        """Accepted orders the processor never charged."""
        return {order_id for order_id in accepted if self.per_order[order_id] == 0}


def charged_twice(events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Orders charged more than once in these log lines."""
    return Ledger(charges(events)).twice()


def ledger_targets(
    scenario: str, ledger: Ledger, *, accepted: Iterable[str] | None, paid: int
) -> list[TargetResult]:
    """The ledger's verdicts every scenario that pays gives (see ledger_verdicts)."""
    lost = None if accepted is None else len(ledger.lost(accepted))
    return ledger_verdicts(
        scenario, lost=lost, twice=len(ledger.twice()), charges=ledger.total, paid=paid
    )


def ledger_verdicts(
    scenario: str, *, lost: int | None, twice: int, charges: int, paid: int
) -> list[TargetResult]:
    """Accepted orders never charged (None: the scenario accepts none of its own), orders
    charged twice, and every charge in the ledger against `paid`, the scenario's own count
    of paid orders (the workers' `order_paid` lines, the sync answers): a ledger that was not
    read, or that charged an order twice, does not match it."""
    found: list[TargetResult] = []
    if lost is not None:
        found.append(
            target(f"{scenario}: accepted orders never charged (processor's ledger)", lost, "==", 0)
        )
    found += [
        target(f"{scenario}: orders charged twice (processor's ledger)", twice, "==", 0),
        target(
            f"{scenario}: charges in the processor's ledger = orders paid",
            charges,
            "==",
            paid,
            note="paid: the services' own account (order_paid lines, sync answers)",
        ),
    ]
    return found

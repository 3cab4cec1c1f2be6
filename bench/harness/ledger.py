"""The payment processor's ledger, read back from log lines: what was really charged.

Every process that pays (workers, the API's /orders/sync) writes one `payment_charged` line
per charge it made (services/common/payment.py). Charges are counted here from those lines,
across every process of a run, and never from the order record the workflow writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

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
    """How many times the processor charged each order."""
    return Counter(str(e["order_id"]) for e in events if e.get("event") == CHARGED)


def charged_twice(events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Orders the processor charged more than once, with their count."""
    return {order_id: n for order_id, n in charges(events).items() if n > 1}


def combined(ledgers: Iterable[Counter[str]]) -> Counter[str]:
    """One ledger from many processes' (charges per order, summed)."""
    total: Counter[str] = Counter()
    for ledger in ledgers:
        total.update(ledger)
    return total


def twice(ledger: Counter[str]) -> dict[str, int]:
    """Orders a ledger shows charged more than once, with their count."""
    return {order_id: n for order_id, n in ledger.items() if n > 1}


def twice_charged(*ledgers: Counter[str]) -> dict[str, int]:
    """Orders charged more than once over every process's ledger of one run."""
    return twice(combined(ledgers))

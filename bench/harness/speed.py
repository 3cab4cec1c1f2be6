"""How fast this machine ran Python around a bench run and each of its scenarios.

The same commit's worker CPU per order in `receive` read 0.63 ms in one run here and 1.31 ms
in another within the hour (same settings, nothing else running): the CPU under a shared
machine is not a constant. A reference's CPU figures are only comparable with another's
when both say how fast the machine was, so `machine()` records the CPU time of one fixed
piece of pure-Python work, shaped like a worker's per-order work (dicts built, JSON written
and read, a hash, a string formatted). It corrects no figure: it says whether two runs'
machines were alike.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Mapping
from typing import Any

import orjson

ORDERS = 20_000
ROUNDS = 3


def _work(orders: int) -> int:
    size = 0
    for i in range(orders):
        order_id = f"order-{i:08d}"
        item = {
            "order_id": {"S": order_id},
            "status": {"S": "paying"},
            "lease": {"N": str(1_700_000_000 + i)},
            "items": {"L": [{"M": {"sku": {"S": "sku-1"}, "qty": {"N": "2"}}}]},
        }
        body = orjson.dumps({"TransactItems": [{"Update": {"Key": item}}]})
        size += len(orjson.loads(body)["TransactItems"])
        size += len(hashlib.sha256(body).hexdigest())
    return size


def python_ms(orders: int = ORDERS, rounds: int = ROUNDS) -> float:
    """CPU milliseconds for `orders` rounds of the fixed work: the median of `rounds` runs."""
    times = []
    for _ in range(rounds):
        started = time.process_time()
        _work(orders)
        times.append((time.process_time() - started) * 1000)
    return round(statistics.median(times), 1)


def speed(meta: Mapping[str, Any]) -> str:
    """A run's machine speed at its start and end, as the reports say it."""
    start, end = meta["machine_start"].get("python_ms"), meta["machine_end"].get("python_ms")
    if start is None:
        return "the machine's speed was not recorded"
    return (
        f"the fixed Python work (bench/harness/speed.py) took {start} ms of CPU at the start "
        f"and {end} ms at the end"
    )

"""The services' JSON log lines and the queue's samples, as per-second series over a window.

Every figure is computed from the fields CloudWatch reads, so the two views agree:
- accepted/s: `order_accepted` lines; paid/s: `order_paid` lines (both modes, as the
  throughput-per-minute query counts them);
- API latency: `duration_ms` of the `http_request` lines that carry EMF metrics (`_aws`),
  which leaves out `/health` exactly as the metric does;
- queue time: `queue_ms` of `order_paid` lines with `mode = "async"` (the percentiles query);
- busy slots: payment seconds spent in each second, each payment (`payment_ms` of the
  worker's `order_paid` line, ending at its timestamp) spread over the seconds it ran in.
  Over a whole window this is CloudWatch's `SUM(payment_ms) / 1000 / PERIOD` (Little's law);
  per second it is exact, never above the slot count, for payments that have ended: the
  newest seconds fill in as the payments running in them end, so the counter is the mean of
  the RATE_SECONDS that end one payment ago;
- failures: what the errors-by-code query lists (warning and error lines, `order_rejected`)
  plus the info-level fates of an order, `order_failed` and `message_dead_lettered`.

Lines are binned by their own `timestamp`, not by when they arrived. Percentiles are
nearest-rank. Not thread-safe by itself: `Dashboard` holds a lock around it.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

WINDOW_SECONDS = 300
RATE_SECONDS = 10
"""The counters' rates: the mean of the last this many complete seconds."""
LATEST_FAILURES = 20

FAILURE_LEVELS = frozenset({"warning", "error", "critical"})
FAILURE_EVENTS = frozenset({"order_failed", "message_dead_lettered", "order_rejected"})
# Where each failure event keeps its explanation, in order of preference.
REASON_FIELDS = ("reason", "detail", "error", "code")


@dataclass(slots=True)
class _Second:
    accepted: int = 0
    paid: int = 0
    busy_s: float = 0.0
    """Payment seconds spent within this second (busy slots, on average over it)."""
    api_ms: list[float] = field(default_factory=list)
    queue_ms: list[float] = field(default_factory=list)
    failures: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    queue: tuple[int, int, int] | None = None
    """The last SQS sample taken in this second: visible, in flight, DLQ visible."""


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def _epoch(event: Mapping[str, Any], default: float) -> float:
    stamp = event.get("timestamp")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            pass
    return default


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class Aggregator:
    """Fed log events and queue samples; `snapshot(now)` is what the page draws."""

    def __init__(
        self, window_seconds: int = WINDOW_SECONDS, latest_failures: int = LATEST_FAILURES
    ) -> None:
        self.window = window_seconds
        self._seconds: dict[int, _Second] = {}
        self._latest: deque[dict[str, Any]] = deque(maxlen=latest_failures)
        self._newest = 0
        self.slots: int | None = None
        """NUM_WORKERS, from the last `worker_started` line."""
        self.payment_s = 0.0
        """The last payment's duration: how far back the busy-slots counter reads."""

    def _second(self, at: float) -> _Second:
        key = math.floor(at)
        if key > self._newest:
            self._newest = key
            # Bounded memory whether or not anyone is looking.
            if len(self._seconds) > 2 * self.window:
                self._prune(key - self.window)
        return self._seconds.setdefault(key, _Second())

    def _prune(self, oldest: int) -> None:
        for key in [k for k in self._seconds if k < oldest]:
            del self._seconds[key]

    def feed_line(self, line: bytes, received_at: float) -> None:
        """One line of a service's stdout; anything that is not a JSON object is skipped."""
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return
        if isinstance(event, dict):
            self.add(event, received_at)

    def add(self, event: Mapping[str, Any], received_at: float) -> None:
        name = event.get("event")
        if not isinstance(name, str):
            return
        at = _epoch(event, received_at)
        service = str(event.get("service", ""))
        if name == "order_accepted":
            self._second(at).accepted += 1
        elif name == "order_paid":
            second = self._second(at)
            second.paid += 1
            payment_ms, queue_ms = _number(event.get("payment_ms")), _number(event.get("queue_ms"))
            if service == "worker" and payment_ms is not None:
                self._spread_payment(at - payment_ms / 1000, at)
            if event.get("mode") == "async" and queue_ms is not None:
                second.queue_ms.append(queue_ms)
        elif name == "http_request" and "_aws" in event:
            duration = _number(event.get("duration_ms"))
            if duration is not None:
                self._second(at).api_ms.append(duration)
        elif name == "worker_started":
            slots = _number(event.get("num_workers"))
            self.slots = int(slots) if slots is not None else None
        if event.get("level") in FAILURE_LEVELS or name in FAILURE_EVENTS:
            self._failure(event, name, service, at)

    def _spread_payment(self, started: float, ended: float) -> None:
        """Count a payment's time in each second it ran in."""
        self.payment_s = ended - started
        for key in range(math.floor(started), math.floor(ended) + 1):
            overlap = min(ended, key + 1) - max(started, key)
            if overlap > 0:
                self._second(key).busy_s += overlap

    def _failure(self, event: Mapping[str, Any], name: str, service: str, at: float) -> None:
        code = str(event.get("code") or event.get("error") or "")
        self._second(at).failures[(service, name, code)] += 1
        reason = next((str(event[f]) for f in REASON_FIELDS if event.get(f)), "")
        self._latest.appendleft(
            {
                "at": at,
                "service": service,
                "event": name,
                "level": event.get("level"),
                "order_id": event.get("order_id") or event.get("message_id"),
                "reason": reason,
            }
        )

    def add_queue_sample(self, at: float, visible: int, in_flight: int, dlq: int) -> None:
        self._second(at).queue = (visible, in_flight, dlq)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The window of complete seconds ending before `now`: series, counters, failures."""
        end = math.floor(now) - 1
        start = end - self.window + 1
        self._prune(start)
        empty = _Second()
        seconds = [self._seconds.get(t, empty) for t in range(start, end + 1)]
        api_ms = [v for s in seconds for v in s.api_ms]
        queue_ms = [v for s in seconds for v in s.queue_ms]
        recent = seconds[-RATE_SECONDS:]
        # Seconds whose payments have all ended (those running now are not counted yet).
        settled = seconds[: len(seconds) - math.ceil(self.payment_s)][-RATE_SECONDS:]
        latest_queue = next((s.queue for s in reversed(seconds) if s.queue is not None), None)
        failures: Counter[tuple[str, str, str]] = Counter()
        for s in seconds:
            failures.update(s.failures)
        return {
            "now": now,
            "window_s": self.window,
            "series": {
                "t": list(range(start, end + 1)),
                "accepted": [s.accepted for s in seconds],
                "paid": [s.paid for s in seconds],
                "api_p50": [percentile(s.api_ms, 50) for s in seconds],
                "api_p99": [percentile(s.api_ms, 99) for s in seconds],
                "queue_p50": [percentile(s.queue_ms, 50) for s in seconds],
                "queue_p99": [percentile(s.queue_ms, 99) for s in seconds],
                "busy": [round(s.busy_s, 3) for s in seconds],
                "visible": [s.queue[0] if s.queue else None for s in seconds],
                "in_flight": [s.queue[1] if s.queue else None for s in seconds],
                "dlq": [s.queue[2] if s.queue else None for s in seconds],
            },
            "totals": {
                "accepted": sum(s.accepted for s in seconds),
                "paid": sum(s.paid for s in seconds),
                "accepted_per_s": sum(s.accepted for s in recent) / RATE_SECONDS,
                "paid_per_s": sum(s.paid for s in recent) / RATE_SECONDS,
                "busy": round(sum(s.busy_s for s in settled) / RATE_SECONDS, 3),
                "slots": self.slots,
                "api_p50": percentile(api_ms, 50),
                "api_p99": percentile(api_ms, 99),
                "queue_p50": percentile(queue_ms, 50),
                "queue_p99": percentile(queue_ms, 99),
                "visible": latest_queue[0] if latest_queue else None,
                "in_flight": latest_queue[1] if latest_queue else None,
                "dlq": latest_queue[2] if latest_queue else None,
                "failures": sum(failures.values()),
            },
            "failures": {
                "by_event": [
                    {"service": svc, "event": ev, "code": code, "count": n}
                    for (svc, ev, code), n in failures.most_common()
                ],
                "latest": [f for f in self._latest if f["at"] >= start],
            },
        }

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
- failures: what the errors-by-code query lists (warning and error lines, `order_rejected`,
  `order_failed` and `message_dead_lettered`), and split as the queries split them: final
  (`order_failed`, the final-failures-by-reason query), retried (`payment_retry` and every
  other warning: something was tried again), client errors (`order_rejected`, a 4xx) and
  errors (error-level lines);
- latency per route: the metered `http_request` lines' `duration_ms` by `route` and `mode`
  (the api-latency-by-route query, the EMF metric's dimensions);
- the ledger, since the stack started: charges (`payment_charged`, the processor's own
  lines), orders paid (`order_paid`), and orders charged more than once (the
  charged-more-than-once query);
- the oldest order without a final state: async orders whose `order_accepted` has no
  `order_paid`, `order_failed` or `message_dead_lettered` yet (orders-without-final-state).

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
FINAL_EVENTS = frozenset({"order_paid", "order_failed", "message_dead_lettered"})
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
    kinds: Counter[str] = field(default_factory=Counter)
    """Failures by kind: final, retried, client, error."""
    routes: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    """Metered request durations by (route, mode)."""
    queue: tuple[int, int, int] | None = None
    """The last SQS sample taken in this second: visible, in flight, DLQ visible."""


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def failure_kind(event: Mapping[str, Any]) -> str | None:
    """final, retried, client or error: how the queries split what went wrong.

    An order's fate is counted once: its `order_failed` line, not also its dead-lettering or
    the sync path's 402 `order_rejected` (a declined card is not the client's mistake); a
    message dead-lettered without an order (undecodable) is a final failure of its own.
    """
    name, level = event.get("event"), event.get("level")
    if name == "order_rejected":
        return None if event.get("status") == 402 else "client"
    if name == "message_dead_lettered":
        return None if event.get("order_id") else "final"
    if name == "order_failed":
        return "final"
    if level in ("error", "critical"):
        return "error"
    return "retried"


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
        self.charges: Counter[str] = Counter()
        """The processor's ledger since the stack started: charges per order."""
        self.paid_total = 0
        self.pending: dict[str, float] = {}
        """Accepted async orders with no final line yet, and when they were accepted."""
        self._final_first: set[str] = set()
        """Orders whose worker line came before the API's order_accepted (two pipes race)."""

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
        order_id = event.get("order_id")
        if name == "order_accepted":
            self._second(at).accepted += 1
            if isinstance(order_id, str) and order_id not in self._final_first:
                self.pending.setdefault(order_id, at)
            self._final_first.discard(str(order_id))
        elif name == "payment_charged" and isinstance(order_id, str):
            self.charges[order_id] += 1
        if (
            name in FINAL_EVENTS
            and isinstance(order_id, str)
            and self.pending.pop(order_id, None) is None
            and service == "worker"
        ):
            self._final_first.add(order_id)
        if name == "order_paid":
            self.paid_total += 1
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
                second = self._second(at)
                second.api_ms.append(duration)
                key = (str(event.get("route", "")), str(event.get("mode", "")))
                second.routes.setdefault(key, []).append(duration)
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
        second = self._second(at)
        second.failures[(service, name, code)] += 1
        if (kind := failure_kind(event)) is not None:
            second.kinds[kind] += 1
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
        failures, kinds, routes = _merged(seconds)
        oldest = min(self.pending.items(), key=lambda item: item[1], default=None)
        return {
            "now": now,
            "window_s": self.window,
            "series": _series(seconds, start, end),
            "totals": self._totals(seconds, failures, kinds),
            "routes": _routes(routes),
            "ledger": {
                "charged": sum(self.charges.values()),
                "paid": self.paid_total,
                "charged_twice": sorted(o for o, n in self.charges.items() if n > 1),
            },
            "pending": {
                "count": len(self.pending),
                "oldest_order_id": oldest[0] if oldest else None,
                "oldest_age_s": round(now - oldest[1], 1) if oldest else None,
            },
            "failures": {
                "by_event": [
                    {"service": svc, "event": ev, "code": code, "count": n}
                    for (svc, ev, code), n in failures.most_common()
                ],
                "latest": [f for f in self._latest if f["at"] >= start],
            },
        }

    def _totals(
        self,
        seconds: list[_Second],
        failures: Counter[tuple[str, str, str]],
        kinds: Counter[str],
    ) -> dict[str, Any]:
        """The window's counters: sums, recent rates, latencies, the latest queue depths."""
        api_ms = [v for s in seconds for v in s.api_ms]
        queue_ms = [v for s in seconds for v in s.queue_ms]
        recent = seconds[-RATE_SECONDS:]
        # Seconds whose payments have all ended (those running now are not counted yet).
        settled = seconds[: len(seconds) - math.ceil(self.payment_s)][-RATE_SECONDS:]
        latest_queue = next((s.queue for s in reversed(seconds) if s.queue is not None), None)
        return {
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
            "failures_final": kinds["final"],
            "failures_retried": kinds["retried"],
            "failures_client": kinds["client"],
            "failures_error": kinds["error"],
        }


def _merged(
    seconds: list[_Second],
) -> tuple[Counter[tuple[str, str, str]], Counter[str], dict[tuple[str, str], list[float]]]:
    """The window's failures, failure kinds and route durations, over all its seconds."""
    failures: Counter[tuple[str, str, str]] = Counter()
    kinds: Counter[str] = Counter()
    routes: dict[tuple[str, str], list[float]] = {}
    for s in seconds:
        failures.update(s.failures)
        kinds.update(s.kinds)
        for key, durations in s.routes.items():
            routes.setdefault(key, []).extend(durations)
    return failures, kinds, routes


def _series(seconds: list[_Second], start: int, end: int) -> dict[str, list[Any]]:
    """One value per second of the window, for the charts."""
    return {
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
    }


def _routes(routes: dict[tuple[str, str], list[float]]) -> list[dict[str, Any]]:
    """Each route and mode's request count and latencies, in route order."""
    return [
        {
            "route": route,
            "mode": mode,
            "requests": len(durations),
            "p50": percentile(durations, 50),
            "p99": percentile(durations, 99),
            "max": max(durations),
        }
        for (route, mode), durations in sorted(routes.items())
    ]

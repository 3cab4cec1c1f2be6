"""The reference report's Locust test: customers posting one order each per cycle.

Run by `bench.scenarios.compare` as `locust -f bench/scenarios/locustfile.py --headless ...`;
read from the environment: BENCH_PATH (/orders/sync or /orders/async), BENCH_PACING (mean
seconds per user cycle), BENCH_JITTER (each cycle is the mean x uniform(1 - jitter, 1 + jitter)) and
BENCH_START_SPREAD (seconds over which each batch of started users spreads its first order)
and BENCH_SAMPLES (where every request's latency and every accepted order id go).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Any

import orjson
from locust import FastHttpUser, events, task

from bench.harness.load import order_body

PATH = os.environ.get("BENCH_PATH", "/orders/async")
SAMPLES = os.environ.get("BENCH_SAMPLES", "")
_latencies: list[float] = []
_failures = 0
_accepted: list[str] = []
# Wall time of the first request sent and the last answered: the run's measured span.
_span: list[float] = []


# FastHttpUser: the lighter client, so less of a fast answer's latency is the client's own.
class Customer(FastHttpUser):
    # The report's figures (sync 3,024 ms at 5.7 req/s, async 39 ms at 5.4 req/s from 20
    # users) both fit one ~3.5 s cycle per user, so pacing (not a fixed wait) gives both
    # endpoints the same load. Locust starts users 10 at a time; with an exact pacing those
    # 10 would order in the same millisecond forever. The jitter lets them drift apart, as
    # customers do; BENCH_JITTER=0 keeps the lockstep bursts.
    pacing = float(os.environ.get("BENCH_PACING", "3.5"))
    jitter = float(os.environ.get("BENCH_JITTER", "0.5"))
    _cycle_started = 0.0

    # Locust starts a second's worth of users (10 at 10/s) in the same instant; each waits
    # up to that second first, so "10 users a second" arrive as ten, not as one burst.
    start_spread = float(os.environ.get("BENCH_START_SPREAD", "0"))

    def on_start(self) -> None:
        time.sleep(random.uniform(0, self.start_spread))  # gevent-patched: yields

    def wait_time(self) -> float:
        cycle = self.pacing * random.uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, cycle - (time.monotonic() - self._cycle_started))

    @task
    def order(self) -> None:
        self._cycle_started = time.monotonic()
        order_id = str(uuid.uuid4())
        headers = {"Content-Type": "application/json"}
        with self.client.post(
            PATH, data=order_body(order_id).decode(), headers=headers, catch_response=True
        ) as response:
            if response.status_code in (200, 202):
                _accepted.append(order_id)
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}")


@events.request.add_listener  # type: ignore[untyped-decorator]
def _record(response_time: float, exception: Any, **_: Any) -> None:
    global _failures
    now = time.time()
    sent = now - response_time / 1000
    _span[:] = [min(_span[0], sent) if _span else sent, now]
    if exception is None:
        _latencies.append(response_time)
    else:
        _failures += 1


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write(**_: Any) -> None:
    if SAMPLES:
        span = _span[1] - _span[0] if _span else None
        doc = {
            "latencies_ms": _latencies,
            "failures": _failures,
            "accepted": _accepted,
            "span_s": span,
        }
        with open(SAMPLES, "wb") as f:
            f.write(orjson.dumps(doc))

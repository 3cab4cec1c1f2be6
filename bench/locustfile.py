"""The reference report's Locust test: customers posting one order each per cycle.

Run by `bench.compare` as `locust -f bench/locustfile.py --headless ...`; read from the
environment: BENCH_PATH (/orders/sync or /orders/async), BENCH_PACING (seconds per user
cycle) and BENCH_SAMPLES (where every request's latency and every accepted order id go).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import orjson
from locust import FastHttpUser, constant_pacing, events, task

from bench.load import order_body

PATH = os.environ.get("BENCH_PATH", "/orders/async")
SAMPLES = os.environ.get("BENCH_SAMPLES", "")
_latencies: list[float] = []
_failures = 0
_accepted: list[str] = []


# FastHttpUser: the lighter client, so less of a fast answer's latency is the client's own.
class Customer(FastHttpUser):
    # The report's figures (sync 3,024 ms at 5.7 req/s, async 39 ms at 5.4 req/s from 20
    # users) both fit one ~3.5 s cycle per user, so the load is the same on both endpoints.
    wait_time = constant_pacing(float(os.environ.get("BENCH_PACING", "3.5")))

    @task
    def order(self) -> None:
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
    if exception is None:
        _latencies.append(response_time)
    else:
        _failures += 1


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write(**_: Any) -> None:
    if SAMPLES:
        doc = {"latencies_ms": _latencies, "failures": _failures, "accepted": _accepted}
        with open(SAMPLES, "wb") as f:
            f.write(orjson.dumps(doc))

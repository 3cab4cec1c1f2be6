"""CloudWatch Embedded Metric Format: turn a structlog JSON line into a metric, no PutMetricData.

`emf(...)` returns the `_aws` member to pass as a keyword to the log call. CloudWatch Logs then
extracts the named fields of that same line as metrics: one value, one name, in the logs and in
the metrics alike, and nothing extra for the service to send or pay for per call.
Spec: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

NAMESPACE = "Orderflow"

Unit = Literal["Milliseconds", "Seconds", "Count", "None"]

# The metrics each canonical line carries, by field name. Requests and orders are counted by
# the SampleCount statistic of these same metrics, so no field exists only to be counted.
ORDER_PAID: Mapping[str, Unit] = {"payment_ms": "Milliseconds", "queue_ms": "Milliseconds"}
HTTP_REQUEST: Mapping[str, Unit] = {"duration_ms": "Milliseconds"}

# Every line has `service` (see logging.py); more dimensions would multiply the metric count.
DIMENSIONS: Sequence[str] = ("service",)

# The API's requests per route template and payment mode: /orders/sync waits for a payment
# (seconds), /orders/async only queues it (milliseconds); one metric for both hid each in the
# other. Routes are templates (`/orders/{order_id}`), and every path no route matches is
# UNMATCHED, so a client cannot mint metrics by inventing paths.
HTTP_DIMENSIONS: Sequence[str] = ("service", "route", "mode")
ROUTE_MODES: Mapping[str, str] = {"/orders/sync": "sync", "/orders/async": "async"}
UNMATCHED = "unmatched"
NO_MODE = "none"


def route_fields(route: str | None) -> dict[str, str]:
    """The `route` and `mode` members of a request's line (the HTTP_DIMENSIONS it lacks)."""
    template = route or UNMATCHED
    return {"route": template, "mode": ROUTE_MODES.get(template, NO_MODE)}


def emf(
    metrics: Mapping[str, Unit],
    *,
    dimensions: Sequence[str] = DIMENSIONS,
    namespace: str = NAMESPACE,
    now: float | None = None,
) -> dict[str, Any]:
    """The `_aws` metadata that declares `metrics` and `dimensions`, fields of the same line."""
    timestamp = time.time() if now is None else now
    return {
        "_aws": {
            "Timestamp": int(timestamp * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in metrics.items()],
                }
            ],
        }
    }

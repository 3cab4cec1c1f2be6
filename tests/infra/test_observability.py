"""The EMF lines and the dashboard, checked against what the real services write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest

from devstack.topology import create_topology
from services.common.metrics import HTTP_DIMENSIONS, HTTP_REQUEST, ORDER_PAID, ROUTE_MODES, emf
from services.common.settings import AwsSettings

from ..helpers import unique_names
from .images import BuiltImage
from .scenario import Outcome, order_journey
from .tf import TERRAFORM_DIR

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

QUERIES = sorted((TERRAFORM_DIR / "queries").glob("*.logsinsights"))
SCHEMA = json.loads((Path(__file__).parent / "emf_schema.json").read_text())


@pytest.fixture(scope="module")
async def journey(
    aws: AwsSettings,
    sns: SNSClient,
    sqs: SQSClient,
    tmp_path_factory: pytest.TempPathFactory,
    images: dict[str, BuiltImage],
    module_aws_env: None,
) -> Outcome:
    topology = await create_topology(aws, unique_names())
    return await order_journey(
        aws,
        sns,
        sqs,
        topic_arn=topology.topic_arn,
        queue_url=topology.queue_url,
        dlq_url=topology.dlq_url,
        tmp=tmp_path_factory.mktemp("journey"),
        images=images,
        extra_env={"ORDERS_TABLE": topology.table},
    )


def emf_problems(line: dict[str, Any]) -> list[str]:
    """Why `line` is not a valid EMF line: the schema, then the spec's target-member rules."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    problems = [error.message for error in validator.iter_errors(line)]
    if problems:
        return problems
    for directive in line["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                if not isinstance(line.get(name), str):
                    problems.append(f"dimension {name!r} is not a string member of the line")
        for metric in directive["Metrics"]:
            value = line.get(metric["Name"])
            values = value if isinstance(value, list) else [value]
            if not values or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                problems.append(f"metric {metric['Name']!r} is not a numeric member of the line")
    return problems


def test_the_real_questions_have_queries() -> None:
    # Each is run against a real run's logs and its answer checked in
    # tests/devstack/test_queries.py, which also checks every field a query reads exists.
    assert {q.stem for q in QUERIES} >= {
        "throughput-per-minute",
        "payment-and-queue-percentiles",
        "errors-by-code",
        "order-journey",
        "api-latency-by-route",
        "final-failures-by-reason",
        "orders-without-final-state",
        "charged-more-than-once",
        "dlq-arrivals-by-reason",
    }


def test_the_dashboard_shows_api_latency_per_route_and_mode() -> None:
    text = (TERRAFORM_DIR / "observability.tf").read_text()
    for route, mode in ROUTE_MODES.items():
        assert f'"{route}" = "{mode}"' in text
    assert '"duration_ms", "service", "api", "route", route, "mode", mode' in text
    # No widget reads the request metric by service alone: that metric no longer exists.
    assert '"duration_ms", "service", "api", {' not in text


def test_order_journey_query_follows_one_order(journey: Outcome) -> None:
    # Both services stamp the order's id, so filtering on it shows the API and the worker side.
    services = {
        line["service"] for line in journey.all_lines() if line.get("order_id") == journey.order_id
    }
    assert services == {"api", "worker"}


def test_emf_lines_validate(journey: Outcome) -> None:
    emf_lines = [line for line in journey.all_lines() if "_aws" in line]
    events = {(line["service"], line["event"]) for line in emf_lines}
    assert ("api", "http_request") in events
    assert ("worker", "order_paid") in events
    for line in emf_lines:
        assert emf_problems(line) == [], line


def test_health_probes_are_logged_but_not_metered(journey: Outcome) -> None:
    requests = [line for line in journey.lines["api"] if line.get("event") == "http_request"]
    probes = [line for line in requests if line["path"] == "/health"]
    orders = [line for line in requests if line["path"].startswith("/orders")]
    assert probes and orders
    assert not any("_aws" in line for line in probes)
    assert all("_aws" in line for line in orders)


def test_emf_declares_the_metrics_of_each_line(journey: Outcome) -> None:
    declared = {
        line["event"]: {m["Name"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        for line in journey.all_lines()
        if "_aws" in line
    }
    assert declared["order_paid"] == set(ORDER_PAID)
    assert declared["http_request"] == set(HTTP_REQUEST)
    dimensions = {
        line["event"]: line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
        for line in journey.all_lines()
        if "_aws" in line
    }
    assert dimensions["http_request"] == [list(HTTP_DIMENSIONS)]
    assert dimensions["order_paid"] == [["service"]]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ({"service": "worker", "payment_ms": 1.0}, "'_aws' is a required property"),
        ({**emf(ORDER_PAID), "service": "worker", "queue_ms": 1.0}, "'payment_ms' is not"),
        ({**emf(ORDER_PAID), "payment_ms": 1, "queue_ms": 2}, "'service' is not a string"),
        ({**emf({"x": "Millis"}), "service": "a", "x": 1}, "is not one of"),  # type: ignore[dict-item]
        ({**emf(HTTP_REQUEST), "service": "api", "duration_ms": "3"}, "not a numeric"),
    ],
)
def test_emf_check_rejects_invalid_lines(line: dict[str, Any], problem: str) -> None:
    problems = emf_problems(line)
    assert any(problem in p for p in problems), problems

"""EMF lines sent with PutLogEvents become CloudWatch metrics, as CloudWatch Logs makes them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from localaws.emf import InvalidEmf, extract
from localaws.insights.aggregates import nearest_rank
from services.common.metrics import HTTP_REQUEST, emf
from services.common.settings import AwsSettings

from ..helpers import aws_client


@pytest.fixture(scope="module")
async def logs(aws: AwsSettings) -> AsyncIterator[Any]:
    async with aws_client(aws, "logs") as client:
        yield client


@pytest.fixture(scope="module")
async def cloudwatch(aws: AwsSettings) -> AsyncIterator[Any]:
    async with aws_client(aws, "cloudwatch") as client:
        yield client


async def ship(logs: Any, lines: Sequence[dict[str, Any] | str]) -> str:
    """Put `lines` in a fresh group and stream, now; return the group's name."""
    group = f"/emf-test/{uuid.uuid4().hex[:8]}"
    await logs.create_log_group(logGroupName=group)
    await logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    events = [
        {
            "timestamp": now,
            "message": line if isinstance(line, str) else orjson.dumps(line).decode(),
        }
        for line in lines
    ]
    await logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=events)
    return group


async def stat(
    cloudwatch: Any, namespace: str, name: str, dims: dict[str, str], stat: str
) -> list[float]:
    now = datetime.now(UTC)
    got = await cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                    },
                    "Period": 3600,
                    "Stat": stat,
                },
            }
        ],
        StartTime=now - timedelta(minutes=30),
        EndTime=now + timedelta(minutes=30),
    )
    values: list[float] = got["MetricDataResults"][0]["Values"]
    return values


def request_line(route: str, ms: float) -> dict[str, Any]:
    dims = ("service", "route", "mode")
    line = {
        "event": "http_request",
        "service": "api",
        "route": route,
        "mode": "sync",
        "duration_ms": ms,
    }
    return line | emf(HTTP_REQUEST, dimensions=dims, namespace="EmfTest")


async def test_emf_lines_become_metrics_with_their_dimensions(logs: Any, cloudwatch: Any) -> None:
    route = f"POST /t/{uuid.uuid4().hex[:6]}"
    durations = [float(v) for v in range(1, 101)]
    await ship(logs, [request_line(route, ms) for ms in durations] + ["plain text", {"no": "emf"}])
    dims = {"service": "api", "route": route, "mode": "sync"}
    assert await stat(cloudwatch, "EmfTest", "duration_ms", dims, "SampleCount") == [100.0]
    assert await stat(cloudwatch, "EmfTest", "duration_ms", dims, "Sum") == [sum(durations)]
    assert await stat(cloudwatch, "EmfTest", "duration_ms", dims, "Maximum") == [100.0]
    # Percentiles: moto alone answered these with HTTP 500.
    assert await stat(cloudwatch, "EmfTest", "duration_ms", dims, "p50") == [50.0]
    assert await stat(cloudwatch, "EmfTest", "duration_ms", dims, "p99") == [99.0]
    # Another route's metric is another metric.
    other = dims | {"route": "GET /other"}
    assert await stat(cloudwatch, "EmfTest", "duration_ms", other, "SampleCount") == []


async def test_broken_emf_lines_count_as_errors_and_make_no_metric(
    logs: Any, cloudwatch: Any
) -> None:
    route = f"POST /broken/{uuid.uuid4().hex[:6]}"
    bad = request_line(route, 5) | {"duration_ms": "5"}  # a string is not a metric value
    group = await ship(logs, [bad, '{"_aws": {', request_line(route, 7)])
    dims = {"service": "api", "route": route, "mode": "sync"}
    assert await stat(cloudwatch, "EmfTest", "duration_ms", dims, "SampleCount") == [1.0]
    errors = {"LogGroupName": group}
    assert await stat(cloudwatch, "AWS/Logs", "EMFValidationErrors", errors, "Sum") == [1.0]
    assert await stat(cloudwatch, "AWS/Logs", "EMFParsingErrors", errors, "Sum") == [1.0]
    # The lines themselves are all kept, broken or not.
    got = await logs.get_log_events(logGroupName=group, logStreamName="s")
    assert len(got["events"]) == 3


def test_extract_follows_the_spec() -> None:
    line = {"service": "api", "v": [1, 2], **emf({"v": "Count"}, dimensions=("service",))}
    [datum] = extract(line)
    assert (datum.namespace, datum.dimensions, datum.values, datum.unit) == (
        "Orderflow",
        (("service", "api"),),
        (1.0, 2.0),
        "Count",
    )
    assert extract({"event": "x"}) == []
    for broken in (
        {**line, "service": 3},
        {**line, "v": True},
        {**line, "_aws": {"CloudWatchMetrics": []}},
        {
            **line,
            "_aws": {
                **line["_aws"],
                "CloudWatchMetrics": [{"Namespace": "", "Dimensions": [], "Metrics": []}],
            },
        },
    ):
        with pytest.raises(InvalidEmf):
            extract(broken)


def test_nearest_rank() -> None:
    assert nearest_rank([3.0, 1.0, 2.0], 50) == 2.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert nearest_rank([], 99) is None


async def test_metric_filters_count_matching_lines_as_terraform_declares_them(
    logs: Any, cloudwatch: Any
) -> None:
    """observability.tf's error_log_lines filter: error and critical lines, by service."""
    group = await ship(logs, [])
    namespace = f"Filters{uuid.uuid4().hex[:6]}"
    await logs.put_metric_filter(
        logGroupName=group,
        filterName="errors",
        filterPattern='{ $.level = "error" || $.level = "critical" }',
        metricTransformations=[
            {
                "metricName": "error_log_lines",
                "metricNamespace": namespace,
                "metricValue": "1",
                "unit": "Count",
                "dimensions": {"service": "$.service"},
            }
        ],
    )
    lines = [
        {"event": "publish_failed", "level": "error", "service": "api"},
        {"event": "claim_lost", "level": "error", "service": "worker"},
        {"event": "unhandled_error", "level": "critical", "service": "api"},
        {"event": "order_paid", "level": "info", "service": "api"},
        {"event": "no_service", "level": "error"},  # no dimension value: no metric
    ]
    now = int(time.time() * 1000)
    await logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now, "message": orjson.dumps(line).decode()} for line in lines],
    )
    assert await stat(cloudwatch, namespace, "error_log_lines", {"service": "api"}, "Sum") == [2.0]
    assert await stat(cloudwatch, namespace, "error_log_lines", {"service": "worker"}, "Sum") == [
        1.0
    ]

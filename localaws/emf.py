"""CloudWatch Embedded Metric Format: the metrics CloudWatch Logs extracts from ingested lines.

On AWS, a log event whose message is a JSON object with an `_aws` member becomes metrics as it
is ingested (PutLogEvents, so the awslogs driver too). Here the logs backend's
`put_log_events` is wrapped: the events it accepted go through `extract`, and what comes out
is put into the same account and region's CloudWatch metrics, so `GetMetricData` and
`GetMetricStatistics` answer for them. Spec:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

As on AWS, a line that is not JSON is only a log line; a JSON line with an `_aws` member that
breaks the spec is still ingested, extracts no metric, and counts one `EMFValidationErrors`
(`AWS/Logs`, dimension `LogGroupName`); JSON that cannot be parsed although it starts like an
object counts `EMFParsingErrors`. Not emulated: StorageResolution (every metric is kept at
the timestamp it carries, which GetMetricData bins by its period anyway), the 1 MB event
limit, and the `x-amzn-logs-format` header (extraction needs no header, as on AWS).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

import orjson

from . import metric_filters

UNITS = frozenset(
    {
        "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
        "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
        "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
        "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
        "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
    }
)  # fmt: skip
MAX_METRICS = 100
MAX_DIMENSIONS = 30
MAX_VALUES = 100


class InvalidEmf(ValueError):
    """An `_aws` document that breaks the spec: the line stays, its metrics do not."""


@dataclass(frozen=True, slots=True)
class Datum:
    """One metric value (or values) of one dimension set, as PutMetricData's MetricDatum."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    values: tuple[float, ...]
    unit: str
    timestamp: datetime
    """Naive UTC, as moto's CloudWatch keeps every timestamp."""

    def metric_data(self) -> dict[str, Any]:
        """The MetricDatum moto's `put_metric_data` takes."""
        return {
            "MetricName": self.name,
            "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions],
            "Values": list(self.values),
            "Unit": self.unit,
            "Timestamp": self.timestamp,
        }


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _string(value: Any, limit: int) -> TypeGuard[str]:
    return isinstance(value, str) and 1 <= len(value) <= limit


def extract(line: Mapping[str, Any]) -> list[Datum]:
    """The metrics one parsed log line declares; [] without `_aws`; InvalidEmf if broken."""
    meta = line.get("_aws")
    if meta is None:
        return []
    if not isinstance(meta, dict):
        raise InvalidEmf("_aws is not an object")
    stamp, directives = meta.get("Timestamp"), meta.get("CloudWatchMetrics")
    if not _number(stamp) or stamp < 0:
        raise InvalidEmf("_aws.Timestamp is not a non-negative number")
    if not isinstance(directives, list):
        raise InvalidEmf("_aws.CloudWatchMetrics is not an array")
    timestamp = datetime.fromtimestamp(stamp / 1000, UTC).replace(tzinfo=None)
    data: list[Datum] = []
    for directive in directives:
        data.extend(_directive(line, directive, timestamp))
    return data


def _directive(line: Mapping[str, Any], directive: Any, timestamp: datetime) -> list[Datum]:
    if not isinstance(directive, dict):
        raise InvalidEmf("a MetricDirective is not an object")
    namespace, dimension_sets, metrics = (
        directive.get("Namespace"),
        directive.get("Dimensions"),
        directive.get("Metrics"),
    )
    if not _string(namespace, 1024):
        raise InvalidEmf("Namespace is not a string of 1 to 1024 characters")
    if not isinstance(dimension_sets, list):
        raise InvalidEmf("Dimensions is not an array")
    if not isinstance(metrics, list) or len(metrics) > MAX_METRICS:
        raise InvalidEmf(f"Metrics is not an array of at most {MAX_METRICS}")
    resolved: list[tuple[tuple[str, str], ...]] = []
    for names in dimension_sets:
        if not isinstance(names, list) or len(names) > MAX_DIMENSIONS:
            raise InvalidEmf(f"a DimensionSet is not an array of at most {MAX_DIMENSIONS}")
        pairs: list[tuple[str, str]] = []
        for name in names:
            if not _string(name, 250):
                raise InvalidEmf("a dimension name is not a string of 1 to 250 characters")
            value = line.get(name)
            if not _string(value, 1024):
                raise InvalidEmf(f"dimension {name!r} is not a string member of the line")
            pairs.append((name, value))
        resolved.append(tuple(pairs))
    data = []
    for metric in metrics:
        if not isinstance(metric, dict) or not _string(metric.get("Name"), 1024):
            raise InvalidEmf("a MetricDefinition has no Name")
        name, unit = metric["Name"], metric.get("Unit", "None")
        if unit not in UNITS:
            raise InvalidEmf(f"metric {name!r} has unit {unit!r}")
        raw = line.get(name)
        values: list[Any] = raw if isinstance(raw, list) else [raw]
        floats = tuple(float(v) for v in values if _number(v))
        if not values or len(values) > MAX_VALUES or len(floats) != len(values):
            raise InvalidEmf(f"metric {name!r} is not a number (or up to 100) in the line")
        # No dimension set at all still makes the metric, without dimensions.
        for dimensions in resolved or [()]:
            data.append(Datum(namespace, name, dimensions, floats, unit, timestamp))
    return data


@dataclass
class Extracted:
    """What one batch of messages gave: the metrics, and the AWS/Logs error counts."""

    data: list[Datum]
    parsing_errors: int = 0
    validation_errors: int = 0


def extract_all(messages: Iterable[str]) -> Extracted:
    """Every metric in a batch of log messages, the broken ones counted, never raised."""
    out = Extracted([])
    for message in messages:
        # Only a JSON object can be EMF; plain text lines are plain logs.
        if not message.lstrip().startswith("{") or "_aws" not in message:
            continue
        try:
            line = orjson.loads(message)
        except orjson.JSONDecodeError:
            out.parsing_errors += 1
            continue
        if not isinstance(line, dict):
            continue
        try:
            out.data.extend(extract(line))
        except InvalidEmf:
            out.validation_errors += 1
    return out


PutMetricData = Callable[[str, list[dict[str, Any]]], None]
"""A CloudWatch backend's `put_metric_data(namespace, metric_data)`."""


def publish(extracted: Extracted, log_group: str, put: PutMetricData, now: datetime) -> None:
    """Put the metrics of one batch, grouped by namespace; count its EMF errors in AWS/Logs."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for datum in extracted.data:
        by_namespace.setdefault(datum.namespace, []).append(datum.metric_data())
    for namespace, metric_data in by_namespace.items():
        put(namespace, metric_data)
    errors = {
        "EMFParsingErrors": extracted.parsing_errors,
        "EMFValidationErrors": extracted.validation_errors,
    }
    logs_metrics = [
        {
            "MetricName": name,
            "Dimensions": [{"Name": "LogGroupName", "Value": log_group}],
            "Value": float(count),
            "Unit": "Count",
            "Timestamp": now,
        }
        for name, count in errors.items()
        if count
    ]
    if logs_metrics:
        put("AWS/Logs", logs_metrics)


def _accepted(events: list[dict[str, Any]], rejected: Mapping[str, int]) -> list[dict[str, Any]]:
    """The events PutLogEvents kept: the too-old ones lead, the too-new ones trail."""
    start = rejected.get("tooOldLogEventEndIndex", -1) + 1
    end = rejected.get("tooNewLogEventStartIndex", len(events))
    return events[start:end]


def install() -> None:
    """Extract EMF metrics, and apply the group's metric filters, to every batch accepted."""
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.utils import utcnow
    from moto.logs.models import LogsBackend

    original = LogsBackend.put_log_events

    def put_log_events(
        self: LogsBackend,
        log_group_name: str,
        log_stream_name: str,
        log_events: list[dict[str, Any]],
    ) -> tuple[str, dict[str, Any]]:
        token, rejected = original(self, log_group_name, log_stream_name, log_events)
        accepted = _accepted(log_events, rejected)
        backend = cloudwatch_backends[self.account_id][self.region_name]
        extracted = extract_all(e["message"] for e in accepted)
        if extracted.data or extracted.parsing_errors or extracted.validation_errors:
            publish(extracted, log_group_name, backend.put_metric_data, utcnow())
        filters = self.filters.get_matching_filters(log_group_name=log_group_name)
        if filters:
            for namespace, datums in metric_filters.metric_data(filters, accepted).items():
                backend.put_metric_data(namespace, datums)
        return token, rejected

    LogsBackend.put_log_events = put_log_events  # type: ignore[method-assign]

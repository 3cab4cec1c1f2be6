"""Metric filters: the metrics CloudWatch Logs counts from ingested lines that match a pattern.

moto stores `PutMetricFilter`'s filters but never applies them, so the alarms Terraform
builds on them (`error_log_lines`, `publish_failures` in observability.tf) stayed silent
locally. Here each batch `PutLogEvents` accepted is matched against its log group's filters
with the filter-pattern matcher `FilterLogEvents` uses (`insights/filter_pattern.py`), and
every match puts the transformation's value (a number, or `$.field` of a JSON line) with its
dimensions (`$.field` values) at the event's timestamp; a line that matches nothing puts
`defaultValue` if the filter has one. Not emulated: space-delimited patterns (`[a, b]`: such
a filter makes no metric here), and AWS's limit of 1,000 dimension values per filter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from .insights.filter_pattern import compile_pattern


def _field(reference: str, doc: Any) -> Any:
    """`$.a.b` of a JSON line (None if absent); anything else is a literal."""
    if not reference.startswith("$."):
        return reference
    value = doc
    for part in reference[2:].split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def metric_data(
    filters: Iterable[Mapping[str, Any]], events: Iterable[Mapping[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """{namespace: PutMetricData datums} that `events` make through `filters`."""
    events = list(events)
    out: dict[str, list[dict[str, Any]]] = {}
    for metric_filter in filters:
        matcher = compile_pattern(metric_filter.get("filterPattern") or "")
        if matcher is None and (metric_filter.get("filterPattern") or "").strip():
            continue  # a pattern not emulated makes no metric, rather than a wrong one
        for transformation in metric_filter.get("metricTransformations") or []:
            datums = out.setdefault(transformation["metricNamespace"], [])
            for event in events:
                message = event["message"]
                stamp = datetime.fromtimestamp(event["timestamp"] / 1000, UTC).replace(tzinfo=None)
                if matcher is None or matcher(message):
                    try:
                        doc = orjson.loads(message) if message.lstrip().startswith("{") else None
                    except orjson.JSONDecodeError:
                        doc = None
                    value = _number(_field(str(transformation["metricValue"]), doc))
                    dimensions = {
                        name: _field(str(ref), doc)
                        for name, ref in (transformation.get("dimensions") or {}).items()
                    }
                    if value is None or not all(isinstance(v, str) for v in dimensions.values()):
                        continue
                elif transformation.get("defaultValue") is not None:
                    value, dimensions = float(transformation["defaultValue"]), {}
                else:
                    continue
                datum: dict[str, Any] = {
                    "MetricName": transformation["metricName"],
                    "Value": value,
                    "Timestamp": stamp,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                }
                if transformation.get("unit"):
                    datum["Unit"] = transformation["unit"]
                datums.append(datum)
    return {namespace: datums for namespace, datums in out.items() if datums}

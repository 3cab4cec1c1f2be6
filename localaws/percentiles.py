"""Percentile statistics (`p50`, `p99`, `p99.9`) for CloudWatch GetMetricData.

moto 5.2.5 answers only Sum, Average, Minimum, Maximum and SampleCount: any other `Stat`
left a `None` in the values and the response failed to serialise (HTTP 500). A percentile
is computed here over the raw values in the period, nearest rank (the smallest value with
at least p % of the values at or below it). CloudWatch keeps percentiles approximately, so
its figure can differ from this exact one by its documented error; not emulated: percentiles
over values sent as StatisticValues (AWS has none for those either: moto still fails on a
period holding only those), trimmed means and the other extended statistics
(`tm99`, `wm99`, `IQM`...), and `ExtendedStatistics` in GetMetricStatistics.
"""

from __future__ import annotations

import re
from typing import Any

# One nearest-rank for the whole local AWS: Logs Insights' pct() computes the same figure.
from .insights.aggregates import nearest_rank

PERCENTILE = re.compile(r"p(100|\d{1,2}(?:\.\d+)?)")


def install() -> None:
    from moto.cloudwatch.models import Statistics

    original = Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Statistics, stat: str) -> Any:
        match = PERCENTILE.fullmatch(stat)
        if match is None:
            return original(self, stat)
        return nearest_rank(self.metric_single_values_list, float(match.group(1)))

    Statistics.get_statistics_for_type = get_statistics_for_type  # type: ignore[method-assign]

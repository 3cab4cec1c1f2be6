"""The shapes of the bench's results: what run() returns, report() reads and --json saves.

TypedDicts rather than dataclasses: a result goes through JSON (`--json`, `bench readme`)
and comes back as the same dict, and the report renders from either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict


class TargetResult(TypedDict):
    """A target in its JSON form (bench/harness/targets.py)."""

    name: str
    measured: float | None
    op: str
    limit: float
    unit: str
    met: bool
    """Stored, so a reader of the JSON needs no code."""
    note: str


class Result(TypedDict, total=False):
    """What every scenario's result may hold besides its own figures."""

    targets: list[TargetResult]
    charts: list[str]
    """PNG file names, beside the report."""
    wall_seconds: float
    python_ms: dict[str, float]
    """The machine's speed just before and just after the scenario (bench/harness/speed.py)."""
    error: str
    """Set by the suite instead of the figures when the scenario raised."""


Earlier = Mapping[str, Result]
"""The results of the scenarios the suite ran before this one, by scenario name."""

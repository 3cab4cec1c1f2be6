"""A target: one measured figure against one limit, met or not; one shape for every scenario."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .results import TargetResult

Op = Literal[">=", "<=", "==", "<"]
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "<": lambda a, b: a < b,
}


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    """Says what is measured and where: `scenario: figure, conditions`."""
    measured: float | None
    """None when the figure could not be measured (the run failed first): then not met."""
    op: Op
    limit: float
    unit: str = ""
    note: str = ""

    @property
    def met(self) -> bool:
        return self.measured is not None and _OPS[self.op](self.measured, self.limit)

    def as_dict(self) -> TargetResult:
        """The JSON form (`met` included, so a reader of the JSON needs no code)."""
        return {
            "name": self.name,
            "measured": self.measured,
            "op": self.op,
            "limit": self.limit,
            "unit": self.unit,
            "met": self.met,
            "note": self.note,
        }


def target(
    name: str, measured: float | None, op: Op, limit: float, unit: str = "", note: str = ""
) -> TargetResult:
    """A Target in its JSON form, as scenarios put it in their result's `targets`."""
    return Target(name, measured, op, limit, unit, note).as_dict()


def unmet(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The names of every target not met, over every scenario's result."""
    return [t["name"] for t in all_targets(results) if not t["met"]]


def all_targets(results: Mapping[str, Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for result in results.values():
        yield from result.get("targets", [])

"""Markdown rendering shared by every scenario's report: tables, numbers, target verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..harness.targets import target

__all__ = ["fmt", "table", "target", "targets_table"]


def fmt(value: object, digits: int = 1) -> str:
    """A number as a person reads it: thousands separated, `digits` decimals, `-` for none."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return "∞" if value > 0 else "-"
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 1) -> str:
    """A Markdown table; numbers right-aligned, everything formatted by fmt()."""
    cells = [[fmt(cell, digits) for cell in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---:" if n else "---" for n in numeric) + " |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def targets_table(targets: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            t["name"],
            f"{fmt(t['measured'], 2)} {t['unit']}".strip(),
            f"{t['op']} {fmt(t['limit'], 2)} {t['unit']}".strip(),
            "met" if t["met"] else "**not met**",
            t.get("note", ""),
        ]
        for t in targets
    ]
    return table(["target", "measured", "wanted", "verdict", "note"], rows)

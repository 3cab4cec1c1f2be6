"""Values in a query: how they compare, sort, combine and render as AWS renders them."""

from __future__ import annotations

import calendar
import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson


class Timestamp(int):
    """Milliseconds since the epoch that render as a date (`@timestamp`, `bin()`, ...)."""

    __slots__ = ()


_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def number(value: Any) -> int | float | None:
    """The value as a number (a JSON number, or text that is one), else None."""
    kind = type(value)
    if kind is int or kind is float or kind is Timestamp:
        return value  # type: ignore[no-any-return]
    if kind is str:
        if _NUMBER.fullmatch(value):
            return float(value) if any(c in value for c in ".eE") else int(value)
        return None
    if kind is bool:
        # A comparison's answer counts as 1 or 0 (`sum(status >= 500)`), as AWS shows it.
        return int(value)
    return None


def as_text(value: Any) -> str:
    """How a value reads as a string (for string functions and rendering)."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is Timestamp:
        return format_timestamp(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return format_float(value)
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def format_float(value: float) -> str:
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def format_timestamp(ms: int) -> str:
    """`YYYY-MM-DD HH:MM:SS.mmm` in UTC, as Logs Insights shows `@timestamp`."""
    seconds, millis = divmod(int(ms), 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{millis:03d}"


def render(value: Any) -> str | None:
    """The string GetQueryResults carries for a value; None leaves the field out of the row."""
    if value is None:
        return None
    return as_text(value)


def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if type(value) is str:
        return value != ""
    if type(value) in (int, float):
        return bool(value != 0)
    return True


def equal(a: Any, b: Any) -> bool:
    """`=`: numerically when both read as numbers (`"200"` equals `200`), else as text."""
    if a is None or b is None:
        return False
    if type(a) is type(b) and type(a) is not bool:
        return a == b  # type: ignore[no-any-return]
    x, y = number(a), number(b)
    if x is not None and y is not None:
        return x == y
    return as_text(a) == as_text(b)


def compare(a: Any, b: Any) -> int | None:
    """-1, 0 or 1 for `<`-style operators; None when either side is missing."""
    if a is None or b is None:
        return None
    x, y = number(a), number(b)
    if x is not None and y is not None:
        return (x > y) - (x < y)
    s, t = as_text(a), as_text(b)
    return (s > t) - (s < t)


_CHUNKS = re.compile(r"\d+|\D+")


def sort_key(value: Any) -> tuple[Any, ...]:
    """AWS's documented ascending order: every non-number before every number; a non-number
    compares chunk by chunk, runs of digits by length then value, other runs by Unicode."""
    n = number(value)
    if n is not None:
        return (1, n)
    text = as_text(value)
    chunks: list[tuple[str, int, int]] = []
    for chunk in _CHUNKS.findall(text):
        if chunk[0].isdigit():
            # Any digit run sorts where a digit would among other characters ('0'..'9' are
            # contiguous in Unicode), then by its length and value against another run.
            chunks.append(("0", len(chunk), int(chunk)))
        else:
            chunks.append((chunk, 0, 0))
    return (0, tuple(chunks))


# -- time periods

PERIOD_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_MONTHS = {"mo": 1, "q": 3, "y": 12}
# Weeks start on Monday (1970-01-05 was the first Monday after the epoch).
_WEEK_ORIGIN = 4 * 86_400_000


def floor_time(ms: int, count: int, unit: str) -> int:
    """The start of the `count`-`unit` bucket holding `ms` (UTC; months are calendar months)."""
    if unit in _MONTHS:
        months = count * _MONTHS[unit]
        moment = datetime.fromtimestamp(ms // 1000, UTC)
        index = (moment.year * 12 + moment.month - 1) // months * months
        year, month = divmod(index, 12)
        return calendar.timegm((year, month + 1, 1, 0, 0, 0)) * 1000
    size = count * PERIOD_MS[unit]
    origin = _WEEK_ORIGIN if unit == "w" else 0
    return (ms - origin) // size * size + origin


def ceil_time(ms: int, count: int, unit: str) -> int:
    start = floor_time(ms, count, unit)
    if start == ms:
        return ms
    if unit in _MONTHS:
        months = count * _MONTHS[unit]
        moment = datetime.fromtimestamp(start // 1000, UTC)
        index = moment.year * 12 + moment.month - 1 + months
        year, month = divmod(index, 12)
        return calendar.timegm((year, month + 1, 1, 0, 0, 0)) * 1000
    return start + count * PERIOD_MS[unit]

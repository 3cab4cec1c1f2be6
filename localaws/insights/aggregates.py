"""The `stats` functions: an accumulator per group, fed one value per matching event.

`pct` is exact nearest-rank over every value the group saw (AWS approximates): the value
at rank ceil(p/100 x n) of the sorted values (rank 1 for p = 0). `stddev` is the sample
standard deviation (n - 1). `count_distinct` is exact (AWS approximates high cardinality).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .values import number, sort_key


class Accumulator:
    __slots__ = ()

    def add(self, value: Any, timestamp: int) -> None:
        raise NotImplementedError

    def result(self) -> Any:
        raise NotImplementedError


class Count(Accumulator):
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def add(self, value: Any, timestamp: int) -> None:
        if value is not None:
            self.n += 1

    def result(self) -> Any:
        return self.n


class CountDistinct(Accumulator):
    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: set[Any] = set()

    def add(self, value: Any, timestamp: int) -> None:
        if value is not None:
            self.seen.add(
                value if type(value) is not dict and type(value) is not list else repr(value)
            )

    def result(self) -> Any:
        return len(self.seen)


class Sum(Accumulator):
    __slots__ = ("n", "total")

    def __init__(self) -> None:
        self.total: int | float = 0
        self.n = 0

    def add(self, value: Any, timestamp: int) -> None:
        x = number(value)
        if x is not None:
            self.total += x
            self.n += 1

    def result(self) -> Any:
        return self.total if self.n else None


class Avg(Sum):
    __slots__ = ()

    def result(self) -> Any:
        return self.total / self.n if self.n else None


class StdDev(Accumulator):
    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, value: Any, timestamp: int) -> None:
        x = number(value)
        if x is not None:
            self.values.append(x)

    def result(self) -> Any:
        n = len(self.values)
        if n == 0:
            return None
        if n == 1:
            return 0
        mean = math.fsum(self.values) / n
        return math.sqrt(math.fsum((v - mean) ** 2 for v in self.values) / (n - 1))


class Extreme(Accumulator):
    """min/max: numerically over values that are numbers, else in sort order."""

    __slots__ = ("best", "best_key", "numeric", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.best: Any = None
        self.best_key: Any = None
        self.numeric = False

    def add(self, value: Any, timestamp: int) -> None:
        if value is None:
            return
        x = number(value)
        if x is not None:
            if not self.numeric:
                self.numeric, self.best, self.best_key = True, value, x
            elif (x - self.best_key) * self.sign > 0:
                self.best, self.best_key = value, x
        elif not self.numeric:
            key = sort_key(value)
            if self.best_key is None or (
                key > self.best_key if self.sign > 0 else key < self.best_key
            ):
                self.best, self.best_key = value, key

    def result(self) -> Any:
        if self.best is None:
            return None
        x = number(self.best)
        # A number read from text (parse) comes back as that number; a Timestamp stays one.
        return x if x is not None and type(self.best) is str else self.best


class Percentile(Accumulator):
    __slots__ = ("p", "values")

    def __init__(self, p: float) -> None:
        self.values: list[int | float] = []
        self.p = p

    def add(self, value: Any, timestamp: int) -> None:
        kind = type(value)
        if kind is float or kind is int:
            self.values.append(value)
            return
        x = number(value)
        if x is not None:
            self.values.append(x)

    def result(self) -> Any:
        return nearest_rank(self.values, self.p)


def nearest_rank(values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile: sorted values, rank ceil(p/100 x n), at least 1."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class ByTime(Accumulator):
    """earliest/latest: the value from the event with the earliest/latest @timestamp."""

    __slots__ = ("at", "sign", "value")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.value: Any = None
        self.at: int | None = None

    def add(self, value: Any, timestamp: int) -> None:
        if value is None:
            return
        if self.at is None or (timestamp - self.at) * self.sign > 0:
            self.value, self.at = value, timestamp

    def result(self) -> Any:
        return self.value


class SortsExtreme(Accumulator):
    """sortsFirst/sortsLast: the value first/last in Logs Insights' ascending sort order."""

    __slots__ = ("key", "sign", "value")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.value: Any = None
        self.key: Any = None

    def add(self, value: Any, timestamp: int) -> None:
        if value is None:
            return
        key = sort_key(value)
        if self.key is None or (key < self.key if self.sign < 0 else key > self.key):
            self.value, self.key = value, key

    def result(self) -> Any:
        return self.value


# name: (argument count, factory given the constant arguments after the first)
AGGREGATES: dict[str, tuple[int, Callable[..., Accumulator]]] = {
    "count": (1, Count),
    "count_distinct": (1, CountDistinct),
    "sum": (1, Sum),
    "avg": (1, Avg),
    "stddev": (1, StdDev),
    "min": (1, lambda: Extreme(-1)),
    "max": (1, lambda: Extreme(1)),
    "pct": (2, Percentile),
    "earliest": (1, lambda: ByTime(-1)),
    "latest": (1, lambda: ByTime(1)),
    "sortsfirst": (1, lambda: SortsExtreme(-1)),
    "sortslast": (1, lambda: SortsExtreme(1)),
}

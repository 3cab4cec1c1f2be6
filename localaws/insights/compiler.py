"""Turn a parsed query into closures, once per query: no tree walking per event.

Every expression becomes a function of a `Record`. Commands become operations: the ones
before the first `stats`, `sort`, `limit` or `dedup` run on each event as it is scanned
(`fields`, `filter`, `parse`); the rest run on the list of rows left.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import ast
from .aggregates import AGGREGATES, Accumulator
from .errors import MalformedQuery
from .functions import FUNCTIONS, PERIOD_FUNCTIONS
from .records import Getter, Record, getter
from .values import (
    PERIOD_MS,
    Timestamp,
    as_text,
    ceil_time,
    compare,
    equal,
    floor_time,
    number,
    sort_key,
    truthy,
)

MAX_STATS = 2


@dataclass
class _Aggregate:
    factory: Callable[[], Accumulator]
    argument: Getter
    slot: str


@dataclass
class _Scope:
    """What an expression may use: aggregates only inside `stats`; after a `stats`, its
    columns by the text that names them (`sort count(*) desc` reads the `count(*)` column)."""

    aggregates: list[_Aggregate] | None = None
    columns: frozenset[str] = frozenset()
    text: str = ""

    def plain(self) -> _Scope:
        """The same columns, no aggregates."""
        return _Scope(None, self.columns, self.text)


def _error(node: ast.Node | ast.Command, message: str) -> MalformedQuery:
    return MalformedQuery(message, node.start, node.end)


def _timestamp_of(record: Record) -> Any:
    event = record.event
    if event is not None:
        return event.timestamp
    made = record.made
    return None if made is None else made.get("@timestamp")


def compile_expr(node: ast.Expr, scope: _Scope) -> Getter:
    if scope.columns and scope.text[node.start : node.end] in scope.columns:
        return getter(scope.text[node.start : node.end])
    if isinstance(node, ast.Field):
        return getter(node.name)
    if isinstance(node, ast.Literal):
        value = node.value
        return lambda record: value
    if isinstance(node, ast.Period):
        if node.unit in PERIOD_MS:
            ms = node.count * PERIOD_MS[node.unit]
            return lambda record: ms
        raise _error(node, "a calendar period can only be used with bin, datefloor, dateceil")
    if isinstance(node, ast.Call):
        return _compile_call(node, scope)
    if isinstance(node, ast.Arith):
        return _compile_arith(node, scope)
    if isinstance(node, ast.Neg):
        operand = compile_expr(node.operand, scope)

        def neg(record: Record) -> Any:
            x = number(operand(record))
            return None if x is None else -x

        return neg
    if isinstance(node, ast.Compare):
        return _compile_compare(node, scope)
    if isinstance(node, ast.In):
        return _compile_in(node, scope)
    if isinstance(node, ast.Like):
        return _compile_like(node, scope)
    if isinstance(node, ast.Bool):
        return _compile_bool(node, scope)
    if isinstance(node, ast.Not):
        operand = compile_predicate(node.operand, scope)
        return lambda record: not operand(record)
    if isinstance(node, ast.Regex):
        raise _error(node, "a regular expression can only follow like or =~, or parse a field")
    if isinstance(node, ast.ListLit):
        raise _error(node, "a list can only follow in")
    raise _error(node, "* can only be the argument of count")


_BOOLEAN = (ast.Compare, ast.In, ast.Like, ast.Bool, ast.Not)


def compile_predicate(node: ast.Expr, scope: _Scope) -> Callable[[Record], bool]:
    """An expression as a test: comparisons already answer a bool, anything else is truthy."""
    value = compile_expr(node, scope)
    if isinstance(node, _BOOLEAN):
        return value
    return lambda record: truthy(value(record))


def _compile_bool(node: ast.Bool, scope: _Scope) -> Getter:
    parts = tuple(compile_predicate(o, scope) for o in node.operands)
    if len(parts) == 2:
        a, b = parts
        if node.op == "and":
            return lambda record: a(record) and b(record)
        return lambda record: a(record) or b(record)
    if node.op == "and":

        def every(record: Record) -> bool:
            return all(part(record) for part in parts)

        return every

    def some(record: Record) -> bool:
        return any(part(record) for part in parts)

    return some


def _compile_call(node: ast.Call, scope: _Scope) -> Getter:
    name = node.name
    if name in AGGREGATES:
        return _compile_aggregate(node, scope)
    if name in PERIOD_FUNCTIONS:
        return _compile_period_function(node, scope)
    function = FUNCTIONS.get(name)
    if function is None:
        raise _error(node, f"unknown function {name}")
    n = len(node.args)
    if n < function.min_args or (function.max_args is not None and n > function.max_args):
        raise _error(node, f"wrong number of arguments to {name}: {n}")
    args = [compile_expr(a, scope) for a in node.args]
    impl = function.impl
    if n == 1:
        (a,) = args
        return lambda record: impl(a(record))
    if n == 2:
        a, b = args
        return lambda record: impl(a(record), b(record))
    return lambda record: impl(*[arg(record) for arg in args])


def _period(node: ast.Call, arg: ast.Expr) -> ast.Period:
    if not isinstance(arg, ast.Period):
        raise _error(arg, f"{node.name} takes a time period such as 5m or 1h")
    return arg


def _compile_period_function(node: ast.Call, scope: _Scope) -> Getter:
    want = PERIOD_FUNCTIONS[node.name]
    if len(node.args) != want:
        raise _error(node, f"wrong number of arguments to {node.name}: {len(node.args)}")
    period = _period(node, node.args[-1])
    count, unit = period.count, period.unit
    if count < 1:
        raise _error(period, "a period must be at least 1")
    if node.name == "bin":
        if unit in PERIOD_MS:
            size = count * PERIOD_MS[unit]
            origin = floor_time(0, count, unit)

            # The last bin made, and the times it covers: events come mostly in time
            # order, so most share their predecessor's bin (one query, one thread).
            low, high, last = 1, 0, Timestamp(0)

            def bin_fixed(record: Record) -> Any:
                nonlocal low, high, last
                event = record.event
                ts = event.timestamp if event is not None else _timestamp_of(record)
                if ts is None:
                    return None
                if low <= ts < high:
                    return last
                start = (ts - origin) // size * size + origin
                last = Timestamp(start)
                low, high = start, start + size
                return last

            return bin_fixed
        return lambda record: _floor(_timestamp_of(record), count, unit)
    value = compile_expr(node.args[0], scope)
    rounding = _floor if node.name == "datefloor" else _ceil
    return lambda record: rounding(value(record), count, unit)


def _floor(ts: Any, count: int, unit: str) -> Any:
    n = number(ts)
    return None if n is None else Timestamp(floor_time(int(n), count, unit))


def _ceil(ts: Any, count: int, unit: str) -> Any:
    n = number(ts)
    return None if n is None else Timestamp(ceil_time(int(n), count, unit))


def _compile_aggregate(node: ast.Call, scope: _Scope) -> Getter:
    if scope.aggregates is None:
        raise _error(node, f"{node.name} is an aggregate function: use it in stats")
    want, factory = AGGREGATES[node.name]
    args = node.args
    if node.name == "count" and not args:
        args = (ast.Star(node.start, node.end),)
    if len(args) != want:
        raise _error(node, f"wrong number of arguments to {node.name}: {len(args)}")
    first = args[0]
    if isinstance(first, ast.Star):
        if node.name != "count":
            raise _error(first, "* can only be the argument of count")
        argument: Getter = lambda record: 1  # noqa: E731 - counts every event
    else:
        # An aggregate's argument is per event: no aggregate inside it.
        argument = compile_expr(first, scope.plain())
    if node.name == "pct":
        p = args[1]
        if not isinstance(p, ast.Literal) or number(p.value) is None:
            raise _error(p, "pct takes a constant percentile between 0 and 100")
        percent = number(p.value)
        assert percent is not None
        if not 0 <= percent <= 100:
            raise _error(p, "pct takes a constant percentile between 0 and 100")
        made: Callable[[], Accumulator] = lambda: factory(percent)  # noqa: E731
    else:
        made = factory
    slot = f"\x00agg{len(scope.aggregates)}"
    scope.aggregates.append(_Aggregate(made, argument, slot))
    return getter(slot)


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
    "^": lambda a, b: float(a) ** b,
}


def _compile_arith(node: ast.Arith, scope: _Scope) -> Getter:
    left, right = compile_expr(node.left, scope), compile_expr(node.right, scope)
    op = _ARITH[node.op]

    def arith(record: Record) -> Any:
        a, b = number(left(record)), number(right(record))
        if a is None or b is None:
            return None
        try:
            result = op(a, b)
        except (ZeroDivisionError, OverflowError, ValueError):
            return None
        return int(result) if type(result) is Timestamp else result

    return arith


def _compile_compare(node: ast.Compare, scope: _Scope) -> Getter:
    left, right = compile_expr(node.left, scope), compile_expr(node.right, scope)
    op = node.op
    if op in ("=", "!="):
        want = op == "="
        if isinstance(node.right, ast.Literal) and isinstance(node.right.value, str):
            text = node.right.value

            def eq_text(record: Record) -> bool:
                v = left(record)
                if v is None:
                    return False
                return (v == text if type(v) is str else equal(v, text)) is want

            return eq_text

        def eq(record: Record) -> bool:
            a, b = left(record), right(record)
            if a is None or b is None:
                return False
            return equal(a, b) is want

        return eq
    tests: dict[str, Callable[[int], bool]] = {
        "<": lambda c: c < 0,
        "<=": lambda c: c <= 0,
        ">": lambda c: c > 0,
        ">=": lambda c: c >= 0,
    }
    test = tests[op]
    if isinstance(node.right, ast.Literal) and not isinstance(node.right.value, str):
        bound = node.right.value
        fasts: dict[str, Callable[[Any, Any], bool]] = {
            "<": operator.lt,
            "<=": operator.le,
            ">": operator.gt,
            ">=": operator.ge,
        }
        fast = fasts[op]

        def cmp_number(record: Record) -> bool:
            v = left(record)
            kind = type(v)
            if kind is int or kind is float:
                return fast(v, bound)
            c = compare(v, bound)
            return c is not None and test(c)

        return cmp_number

    def cmp(record: Record) -> bool:
        c = compare(left(record), right(record))
        return c is not None and test(c)

    return cmp


def _compile_in(node: ast.In, scope: _Scope) -> Getter:
    operand = compile_expr(node.operand, scope)
    items = [compile_expr(i, scope) for i in node.items.items]
    negate = node.negate

    def member(record: Record) -> bool:
        v = operand(record)
        if v is None:
            return False
        found = any(equal(v, item(record)) for item in items)
        return found is not negate

    return member


def _compile_like(node: ast.Like, scope: _Scope) -> Getter:
    operand = compile_expr(node.operand, scope)
    negate = node.negate
    if isinstance(node.pattern, ast.Regex):
        search = node.pattern.pattern.search

        def like_regex(record: Record) -> bool:
            v = operand(record)
            if v is None:
                return False
            return (search(v if type(v) is str else as_text(v)) is not None) is not negate

        return like_regex
    needle = as_text(node.pattern.value)

    def like_text(record: Record) -> bool:
        v = operand(record)
        if v is None:
            return False
        return (needle in (v if type(v) is str else as_text(v))) is not negate

    return like_text


# -- commands


def _stored(value: Any) -> Any:
    """A boolean stored in a field shows as 1 or 0, as AWS shows `ispresent()`'s."""
    return int(value) if type(value) is bool else value


RowOp = Callable[[Record], bool]


@dataclass
class StatsOp:
    groups: list[tuple[str, Getter]]
    aggregates: list[_Aggregate]
    outputs: list[tuple[str, Getter]]
    """Each column: read from a row holding the group values and the aggregates' results."""

    def run(self, records: Iterable[Record]) -> tuple[list[Record], int]:
        """Aggregate `records`; the rows, one per group, and how many records fed them."""
        groups: dict[Any, list[Accumulator]] = {}
        # Per group, each accumulator's bound `add` beside its argument: no indexing and
        # no method lookup per event and aggregate.
        feeds: dict[Any, list[tuple[Callable[[Any, int], None], Getter]]] = {}
        factories = [a.factory for a in self.aggregates]
        arguments = [a.argument for a in self.aggregates]
        getters = [g for _, g in self.groups]
        single = getters[0] if len(getters) == 1 else None
        matched = 0
        for record in records:
            matched += 1
            if single is not None:
                key = single(record)
                kind = type(key)
                if kind is bool or kind is dict or kind is list:
                    key = _hashable(key)
            elif getters:
                key = tuple([_hashable(g(record)) for g in getters])
            else:
                key = ()
            feed = feeds.get(key)
            if feed is None:
                accumulators = groups[key] = [f() for f in factories]
                feed = feeds[key] = [
                    (a.add, g) for a, g in zip(accumulators, arguments, strict=True)
                ]
            event = record.event
            ts = event.timestamp if event is not None else (_timestamp_of(record) or 0)
            for add, argument in feed:
                add(argument(record), ts)
        if not groups and not self.groups:
            # An ungrouped stats over nothing still answers one row (count 0).
            groups[()] = [f() for f in factories]
        rows = []
        for key, accumulators in groups.items():
            keys = (key,) if single is not None else key
            values: dict[str, Any] = {}
            for (name, _), value in zip(self.groups, keys, strict=True):
                values[name] = value
            for aggregate, accumulator in zip(self.aggregates, accumulators, strict=True):
                values[aggregate.slot] = accumulator.result()
            scratch = Record.made_row(values)
            out = {name: _stored(values[name]) for name, _ in self.groups}
            out.update((name, _stored(g(scratch))) for name, g in self.outputs)
            rows.append(Record.made_row(out))
        return rows, matched


def _hashable(value: Any) -> Any:
    kind = type(value)
    if kind is bool:
        return int(value)
    if kind is dict or kind is list:
        return as_text(value)
    return value


@dataclass
class SortOp:
    keys: list[tuple[Getter, bool]]

    def run(self, rows: list[Record]) -> list[Record]:
        # Stable sorts, least significant key first; a missing value sorts last either way.
        for get, descending in reversed(self.keys):

            def key(record: Record, get: Getter = get, descending: bool = descending) -> Any:
                value = get(record)
                if value is None:
                    return (0,) if descending else (1,)
                return (1, sort_key(value)) if descending else (0, sort_key(value))

            rows.sort(key=key, reverse=descending)
        return rows


@dataclass
class LimitOp:
    count: int

    def run(self, rows: list[Record]) -> list[Record]:
        return rows[: self.count]


@dataclass
class DedupOp:
    getters: list[Getter]

    def run(self, rows: list[Record]) -> list[Record]:
        seen: set[Any] = set()
        kept = []
        for row in rows:
            values = tuple(_hashable(g(row)) for g in self.getters)
            if any(v is None for v in values):
                kept.append(row)  # AWS keeps every event with a null among the fields
            elif values not in seen:
                seen.add(values)
                kept.append(row)
        return kept


@dataclass
class FilterListOp:
    keep: RowOp

    def run(self, rows: list[Record]) -> list[Record]:
        return [r for r in rows if self.keep(r)]


ListOp = StatsOp | SortOp | LimitOp | DedupOp | FilterListOp


@dataclass
class Plan:
    head: list[RowOp]
    """Run on each scanned event, in order; an event goes on while each answers True."""
    tail: list[ListOp]
    columns: list[str]
    aggregated: bool
    """A stats query: no @ptr, no default order by @timestamp."""
    needles: tuple[str, ...] = field(default=())
    """Text every matching event's message must contain (a necessary condition only,
    checked before any JSON is parsed; the filter itself still decides)."""


def _row_op(command: ast.Command, scope: _Scope) -> RowOp | None:
    """`fields`, `display`, `filter` or `parse` as an operation on one record."""
    if isinstance(command, ast.Filter):
        return compile_predicate(command.expr, scope)
    if isinstance(command, ast.Fields | ast.Display):
        setters = [
            (item.name, compile_expr(item.expr, scope))
            for item in command.items
            if item.aliased or not isinstance(item.expr, ast.Field)
        ]
        if not setters:
            return None

        def assign(record: Record) -> bool:
            for name, value in setters:
                record.set(name, _stored(value(record)))
            return True

        return assign
    if isinstance(command, ast.Parse):
        source = getter(command.source.name)
        search = command.regex.search  # type: ignore[union-attr]
        names = command.names
        by_name = command.glob is None

        def parse(record: Record) -> bool:
            value = source(record)
            if value is None:
                return True
            match = search(value if type(value) is str else as_text(value))
            if match is not None:
                groups = (
                    match.groupdict() if by_name else dict(zip(names, match.groups(), strict=True))
                )
                for name, text in groups.items():
                    if text is not None:
                        record.set(name, text)
            return True

        return parse
    return None


def _check_order(commands: tuple[ast.Command, ...]) -> None:
    stats = [c for c in commands if isinstance(c, ast.Stats)]
    if len(stats) > MAX_STATS:
        raise _error(stats[MAX_STATS], f"a query can have at most {MAX_STATS} stats commands")
    if len(stats) == MAX_STATS:
        second = commands.index(stats[1])
        for command in commands[:second]:
            if isinstance(command, ast.Sort | ast.Limit):
                raise _error(command, "sort and limit must come after the second stats command")
    for index, command in enumerate(commands):
        if isinstance(command, ast.Dedup):
            for later in commands[index + 1 :]:
                if not isinstance(later, ast.Limit):
                    raise _error(later, "only limit can follow dedup")


def compile_query(query: ast.Query) -> Plan:
    commands = query.commands
    _check_order(commands)
    head: list[RowOp] = []
    tail: list[ListOp] = []
    columns: list[str] | None = None
    display: list[str] | None = None
    aggregated = False
    sorted_yet = False
    after = _Scope()
    """Scope of expressions in the commands after the latest `stats`."""
    for command in commands:
        if isinstance(command, ast.Fields):
            columns = list(columns or [])
            columns += [i.name for i in command.items if i.name not in columns]
        elif isinstance(command, ast.Display):
            display = [i.name for i in command.items]
        elif isinstance(command, ast.Stats):
            if not command.items:
                raise _error(command, "stats needs at least one aggregate function")
            scope = _Scope([], after.columns, after.text)
            outputs = [(i.name, compile_expr(i.expr, scope)) for i in command.items]
            assert scope.aggregates is not None
            if not scope.aggregates:
                raise _error(command, "stats needs at least one aggregate function")
            groups = [(i.name, compile_expr(i.expr, after.plain())) for i in command.by]
            tail.append(StatsOp(groups, scope.aggregates, outputs))
            columns = [name for name, _ in groups] + [name for name, _ in outputs]
            after = _Scope(None, frozenset(columns), query.text)
            aggregated = True
            continue
        if isinstance(command, ast.Sort):
            keys = [(compile_expr(k.expr, after), k.descending) for k in command.keys]
            tail.append(SortOp(keys))
            sorted_yet = True
            continue
        if isinstance(command, ast.Limit):
            tail.append(LimitOp(command.count))
            continue
        if isinstance(command, ast.Dedup):
            tail.append(DedupOp([getter(f.name) for f in command.fields]))
            continue
        op = _row_op(command, after)
        if op is None:
            continue
        if tail:
            tail.append(FilterListOp(op))
        else:
            head.append(op)
    del sorted_yet
    final = display or columns or ["@timestamp", "@message"]
    return Plan(head, tail, final, aggregated, _needles(commands))


# A string literal whose JSON encoding is itself in quotes, whatever the encoder: no
# escapes, no non-ASCII, not a number (`"200"` equals 200) nor a JSON word (true equals
# "true").
_PLAIN = re.compile(r"[A-Za-z0-9_ .:@#,;=+-]+")


def _needles(commands: tuple[ast.Command, ...]) -> tuple[str, ...]:
    """Substrings a message must contain to pass the filters scanned before anything else.

    `@message like "text"` needs "text" in the message; `field = "text"` (a JSON field no
    earlier command made) needs `"text"` in it, quotes included. Only top-level `and`
    conjuncts of filters that run on each event (before any stats, sort, limit or dedup)
    count, and none about a field an earlier `fields ... as`, `display` or `parse` made.
    """
    needles: list[str] = []
    made: set[str] = set()
    for command in commands:
        if isinstance(command, ast.Fields | ast.Display):
            made.update(i.name for i in command.items)
        elif isinstance(command, ast.Parse):
            made.update(command.names)
        elif isinstance(command, ast.Filter):
            for conjunct in _conjuncts(command.expr):
                needle = _needle(conjunct, made)
                if needle is not None:
                    needles.append(needle)
        else:
            break
    return tuple(needles)


def _needle(conjunct: ast.Expr, made: set[str]) -> str | None:
    if (
        isinstance(conjunct, ast.Like)
        and not conjunct.negate
        and isinstance(conjunct.operand, ast.Field)
        and conjunct.operand.name == "@message"
        and "@message" not in made
        and isinstance(conjunct.pattern, ast.Literal)
    ):
        return as_text(conjunct.pattern.value)
    if (
        isinstance(conjunct, ast.Compare)
        and conjunct.op == "="
        and isinstance(conjunct.left, ast.Field)
        and not conjunct.left.name.startswith("@")
        and conjunct.left.name not in made
        and isinstance(conjunct.right, ast.Literal)
        and isinstance(conjunct.right.value, str)
        and _PLAIN.fullmatch(conjunct.right.value)
        and number(conjunct.right.value) is None
        and conjunct.right.value not in ("true", "false", "null")
    ):
        return f'"{conjunct.right.value}"'
    # Any comparison, `in`, `like` or `ispresent` is false for a missing field, so a JSON
    # field it tests must be in the message as a quoted key (not a dotted path: `a.b` may
    # be a key with a dot or a nested one, `tags.0` an index; nor a name starting with @).
    operand = None
    if isinstance(conjunct, ast.Compare):
        operand = conjunct.left
    elif isinstance(conjunct, ast.In | ast.Like):
        operand = conjunct.operand
    elif isinstance(conjunct, ast.Call) and conjunct.name == "ispresent" and conjunct.args:
        operand = conjunct.args[0]
    if (
        isinstance(operand, ast.Field)
        and not operand.name.startswith("@")
        and operand.name not in made
        and "." not in operand.name
        and _PLAIN.fullmatch(operand.name)
    ):
        return f'"{operand.name}"'
    return None


def _conjuncts(expr: ast.Expr) -> list[ast.Expr]:
    if isinstance(expr, ast.Bool) and expr.op == "and":
        return [c for operand in expr.operands for c in _conjuncts(operand)]
    return [expr]

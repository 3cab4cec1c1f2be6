"""The parsed query: expressions and commands, each with its place in the query text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Node:
    start: int
    end: int


@dataclass(frozen=True)
class Field(Node):
    name: str


@dataclass(frozen=True)
class Literal(Node):
    value: str | int | float


@dataclass(frozen=True)
class Period(Node):
    """`5m`, `1h`, `1mo`: a count of a unit (months, quarters and years are calendar units)."""

    count: int
    unit: str
    """One of ms, s, m, h, d, w, mo, q, y."""


@dataclass(frozen=True)
class Regex(Node):
    source: str
    """The pattern as written between the slashes."""
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class ListLit(Node):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Star(Node):
    """`*` as the argument of `count(*)`."""


@dataclass(frozen=True)
class Call(Node):
    name: str
    """Lower-cased: AWS accepts `isPresent` and `ispresent` alike."""
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Arith(Node):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg(Node):
    operand: Expr


@dataclass(frozen=True)
class Compare(Node):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class In(Node):
    operand: Expr
    items: ListLit
    negate: bool


@dataclass(frozen=True)
class Like(Node):
    operand: Expr
    pattern: Literal | Regex
    negate: bool


@dataclass(frozen=True)
class Bool(Node):
    op: str
    """`and` or `or`."""
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Not(Node):
    operand: Expr


Expr = (
    (Field | Literal | Period | Regex | ListLit | Star | Call | Arith | Neg | Compare | In | Like)
    | Bool
    | Not
)


@dataclass(frozen=True)
class Item:
    """One entry of `fields`, `display`, `stats` or `by`: an expression and its column name."""

    expr: Expr
    name: str
    """The alias after `as`, else the field's name, else the expression's text."""
    aliased: bool


@dataclass(frozen=True)
class Command:
    start: int
    end: int


@dataclass(frozen=True)
class Fields(Command):
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Display(Command):
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Filter(Command):
    expr: Expr


@dataclass(frozen=True)
class Stats(Command):
    items: tuple[Item, ...]
    by: tuple[Item, ...]


@dataclass(frozen=True)
class SortKey:
    expr: Expr
    descending: bool


@dataclass(frozen=True)
class Sort(Command):
    keys: tuple[SortKey, ...]


@dataclass(frozen=True)
class Limit(Command):
    count: int


@dataclass(frozen=True)
class Parse(Command):
    source: Field
    glob: str | None
    regex: re.Pattern[str] | None
    names: tuple[str, ...]


@dataclass(frozen=True)
class Dedup(Command):
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class Query:
    text: str
    commands: tuple[Command, ...] = field(default=())

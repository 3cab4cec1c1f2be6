"""Parse Logs Insights QL with Lark (the grammar is `grammar.lark`) into `ast` nodes."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from . import ast
from .errors import MalformedQuery, line_and_column

_UNITS = {
    "millisecond": "ms", "msec": "ms", "ms": "ms",
    "second": "s", "sec": "s", "s": "s",
    "minute": "m", "min": "m", "m": "m",
    "hour": "h", "hr": "h", "h": "h",
    "day": "d", "d": "d",
    "week": "w", "w": "w",
    "month": "mo", "mon": "mo", "mo": "mo",
    "quarter": "q", "qtr": "q", "q": "q",
    "year": "y", "yr": "y", "y": "y",
}  # fmt: skip
_PERIOD = re.compile(r"(\d+)([a-z]+)")


@functools.cache
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    # LALR with the contextual lexer: `/` is division after an operand and starts a regex
    # after `like`, `=~` or a parse source, so each is lexed only where the grammar allows it.
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def warm() -> None:
    """Build the parser now (~0.1 s of CPU), so the first StartQuery does not wait for it."""
    _lark()


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body, flags=re.S) if "\\" in body else body


def translate_regex(source: str) -> str:
    """AWS's (Java-style) regex syntax as Python's: `(?<name>` groups, inline flags anywhere."""
    out = re.sub(r"\(\?<(?![=!])", "(?P<", source.replace("\\/", "/"))
    # Java accepts `^(?i)x`; Python 3.11 wants global flags first, so hoist them.
    flags = re.findall(r"(?<!\\)\(\?([aiLmsux]+)\)", out)
    if flags:
        out = re.sub(r"(?<!\\)\(\?[aiLmsux]+\)", "", out)
        out = f"(?{''.join(sorted(set(''.join(flags))))})" + out
    return out


def glob_regex(glob: str) -> re.Pattern[str]:
    """A parse glob (`*` for each field, the rest literal) as a regex with a group per `*`."""
    parts = glob.split("*")
    body = "(.*?)".join(re.escape(p) for p in parts)
    if glob.endswith("*"):
        # The last `*` takes the rest of the line (AWS's example: `The error was: *`).
        body = body[: -len("(.*?)")] + "(.*)"
    return re.compile(body, re.S)


def _compile_regex(token: Token) -> ast.Regex:
    source = token.value[1:-1]
    start, end = token.start_pos or 0, token.end_pos or 0
    try:
        pattern = re.compile(translate_regex(source))
    except re.error as exc:
        raise MalformedQuery(f"invalid regular expression /{source}/: {exc}", start, end) from None
    return ast.Regex(start, end, source, pattern)


def _span(meta: Any) -> tuple[int, int]:
    return meta.start_pos, meta.end_pos


@v_args(meta=True)
class _ToAst(Transformer[Token, Any]):
    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    # -- expressions
    def number(self, meta: Any, children: list[Token]) -> ast.Literal:
        text = children[0].value
        value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
        return ast.Literal(*_span(meta), value)

    def period(self, meta: Any, children: list[Token]) -> ast.Period:
        match = _PERIOD.fullmatch(children[0].value.lower())
        assert match is not None
        count, unit = match.groups()
        unit = unit if unit in _UNITS else unit[:-1]  # the plural `s`
        return ast.Period(*_span(meta), int(count), _UNITS[unit])

    def string(self, meta: Any, children: list[Token]) -> ast.Literal:
        return ast.Literal(*_span(meta), _unquote(children[0].value))

    def field(self, meta: Any, children: list[Token]) -> ast.Field:
        name = children[0].value
        return ast.Field(*_span(meta), name[1:-1] if name.startswith("`") else name)

    def star(self, meta: Any, children: list[Token]) -> ast.Star:
        return ast.Star(*_span(meta))

    def list_lit(self, meta: Any, children: list[Any]) -> ast.ListLit:
        return ast.ListLit(*_span(meta), tuple(c for c in children if c is not None))

    def call(self, meta: Any, children: list[Any]) -> ast.Call:
        name, *args = children
        return ast.Call(*_span(meta), name.value.lower(), tuple(a for a in args if a is not None))

    def arith(self, meta: Any, children: list[Any]) -> ast.Arith:
        left, op, right = children
        return ast.Arith(*_span(meta), op.value, left, right)

    def neg(self, meta: Any, children: list[Any]) -> ast.Expr:
        (operand,) = children
        if isinstance(operand, ast.Literal) and not isinstance(operand.value, str):
            return ast.Literal(*_span(meta), -operand.value)
        return ast.Neg(*_span(meta), operand)

    def compare(self, meta: Any, children: list[Any]) -> ast.Compare:
        left, op, right = children
        return ast.Compare(*_span(meta), op.value, left, right)

    def in_(self, meta: Any, children: list[Any]) -> ast.In:
        return ast.In(*_span(meta), children[0], children[1], negate=False)

    def not_in(self, meta: Any, children: list[Any]) -> ast.In:
        return ast.In(*_span(meta), children[0], children[1], negate=True)

    def _like(self, meta: Any, children: list[Any], negate: bool) -> ast.Like:
        operand, _, pattern = children
        if isinstance(pattern, Token):
            pattern = _compile_regex(pattern)
        return ast.Like(*_span(meta), operand, pattern, negate)

    def like(self, meta: Any, children: list[Any]) -> ast.Like:
        return self._like(meta, children, negate=False)

    def not_like(self, meta: Any, children: list[Any]) -> ast.Like:
        return self._like(meta, children, negate=True)

    def or_(self, meta: Any, children: list[Any]) -> ast.Expr:
        return children[0] if len(children) == 1 else ast.Bool(*_span(meta), "or", tuple(children))

    def and_(self, meta: Any, children: list[Any]) -> ast.Expr:
        if len(children) == 1:
            return children[0]  # type: ignore[no-any-return]
        return ast.Bool(*_span(meta), "and", tuple(children))

    def not_(self, meta: Any, children: list[Any]) -> ast.Not:
        return ast.Not(*_span(meta), children[0])

    # -- command parts
    def item(self, meta: Any, children: list[Any]) -> ast.Item:
        expr, alias = children
        if alias is not None:
            return ast.Item(expr, alias.name, aliased=True)
        if isinstance(expr, ast.Field):
            return ast.Item(expr, expr.name, aliased=False)
        return ast.Item(expr, self._text[expr.start : expr.end], aliased=False)

    def sort_key(self, meta: Any, children: list[Any]) -> ast.SortKey:
        expr, direction = children
        # Without `asc` or `desc`: ascending (see the README: AWS does not document it).
        return ast.SortKey(expr, direction is not None and direction.type == "DESC")

    # -- commands
    def fields_cmd(self, meta: Any, children: list[Any]) -> ast.Fields:
        return ast.Fields(*_span(meta), tuple(children))

    def display_cmd(self, meta: Any, children: list[Any]) -> ast.Display:
        return ast.Display(*_span(meta), tuple(children))

    def filter_cmd(self, meta: Any, children: list[Any]) -> ast.Filter:
        return ast.Filter(*_span(meta), children[0])

    def items(self, meta: Any, children: list[Any]) -> tuple[ast.Item, ...]:
        return tuple(children)

    def stats_cmd(self, meta: Any, children: list[Any]) -> ast.Stats:
        items, by = children
        return ast.Stats(*_span(meta), items, by or ())

    def sort_cmd(self, meta: Any, children: list[Any]) -> ast.Sort:
        return ast.Sort(*_span(meta), tuple(children))

    def limit_cmd(self, meta: Any, children: list[Token]) -> ast.Limit:
        token = children[0]
        if not token.value.isdigit() or int(token.value) < 1:
            raise MalformedQuery(
                f"limit must be a positive integer, not {token.value}",
                token.start_pos or 0,
                token.end_pos or 0,
            )
        return ast.Limit(*_span(meta), int(token.value))

    def parse_cmd(self, meta: Any, children: list[Any]) -> ast.Parse:
        source, pattern, *names = children
        fields = tuple(n.name for n in names if n is not None)
        if isinstance(pattern, Token):  # a regex: its named groups are the fields
            regex = _compile_regex(pattern).pattern
            if fields:
                raise MalformedQuery(
                    "parse with a regular expression takes its field names from its named "
                    "groups, not from `as`",
                    pattern.start_pos or 0,
                    meta.end_pos,
                )
            if not regex.groupindex:
                raise MalformedQuery(
                    "the regular expression of parse has no named capturing group",
                    pattern.start_pos or 0,
                    pattern.end_pos or 0,
                )
            return ast.Parse(*_span(meta), source, None, regex, tuple(regex.groupindex))
        glob = pattern.value
        if not fields or glob.count("*") != len(fields):
            raise MalformedQuery(
                f"parse pattern has {glob.count('*')} wildcards but {len(fields)} field "
                "names after `as`",
                pattern.start,
                meta.end_pos,
            )
        return ast.Parse(*_span(meta), source, glob, glob_regex(glob), fields)

    def dedup_cmd(self, meta: Any, children: list[Any]) -> ast.Dedup:
        return ast.Dedup(*_span(meta), tuple(children))

    def start(self, meta: Any, children: list[Any]) -> tuple[ast.Command, ...]:
        return tuple(children)


def parse(text: str) -> ast.Query:
    """The query's commands, or `MalformedQuery` with the offending text's offsets."""
    try:
        tree: Tree[Token] = _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    try:
        commands = _ToAst(text).transform(tree)
    except VisitError as exc:
        # Lark wraps what a transformer method raises: a MalformedQuery is the answer.
        if isinstance(exc.orig_exc, MalformedQuery):
            raise exc.orig_exc from None
        raise
    return ast.Query(text, commands)


def _syntax_error(text: str, exc: UnexpectedInput) -> MalformedQuery:
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        start, end = exc.token.start_pos or 0, exc.token.end_pos or 0
        symbol = exc.token.value
    elif isinstance(exc, UnexpectedCharacters):
        start = exc.pos_in_stream or 0
        end, symbol = start + 1, text[start : start + 1]
    elif isinstance(exc, UnexpectedEOF | UnexpectedToken):
        start = end = len(text)
        symbol = "<EOF>"
    else:  # pragma: no cover - lark's other errors carry a position too
        start = end = exc.pos_in_stream or 0
        symbol = text[start : start + 1]
    line, column = line_and_column(text, start)
    return MalformedQuery(
        f"unexpected symbol found {symbol} at line {line} and position {column}", start, end
    )

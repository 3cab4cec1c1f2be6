"""CloudWatch Logs filter patterns, as FilterLogEvents applies them to each event.

moto 5.2.5 knows single terms and quoted phrases and lets every other pattern match every
event (a JSON pattern `{ $.event = "order_failed" }` returned the whole log). This parses
the documented syntax with Lark (`filter_pattern.lark`) and compiles it once per pattern:

- terms: every bare word and quoted phrase must appear (case-sensitive substrings), a
  `-word` must not, and of the `?word`s at least one must;
- JSON: `{ SELECTOR OP VALUE }` with `$.a.b` and `$.list[0]` selectors, `=`/`!=` on
  strings (`*` matches any run of characters) and on numbers, `<`, `<=`, `>`, `>=` on numbers,
  `IS NULL`, `NOT EXISTS`, `IS TRUE`/`IS FALSE`, `&&`, `||` and parentheses.

A space-delimited pattern (`[ip, user, ...]`) is not emulated: it matches every event, as
moto's does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from lark import Lark, Token, Transformer
from lark.exceptions import LarkError

Matcher = Callable[[str], bool]
_MISSING: Any = object()


@functools.cache
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "filter_pattern.lark").read_text()
    return Lark(grammar, parser="lalr")


def _select(doc: Any, selector: str) -> Any:
    """The value at `$.a.b[0]`; _MISSING when any step is absent."""
    value = doc
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", selector[1:]):
        if name:
            if type(value) is not dict or name not in value:
                return _MISSING
            value = value[name]
        else:
            if type(value) is not list or int(index) >= len(value):
                return _MISSING
            value = value[int(index)]
    return value


def _wildcard(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in text.split("*")), re.S)


JsonTest = Callable[[Any], bool]


class _ToMatcher(Transformer[Token, Any]):
    # -- JSON
    def text(self, children: list[Token]) -> tuple[str, str]:
        raw = children[0].value
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        return ("text", raw)

    def number(self, children: list[Token]) -> tuple[str, float]:
        return ("number", float(children[0].value))

    def compare(self, children: list[Any]) -> JsonTest:
        selector, op, (kind, operand) = children[0].value, children[1].value, children[2]
        if kind == "number":
            number = float(operand)
            tests: dict[str, Callable[[float], bool]] = {
                "=": lambda v: v == number,
                "!=": lambda v: v != number,
                "<": lambda v: v < number,
                "<=": lambda v: v <= number,
                ">": lambda v: v > number,
                ">=": lambda v: v >= number,
            }
            test = tests[op]

            def numeric(doc: Any) -> bool:
                value = _select(doc, selector)
                return type(value) in (int, float) and test(float(value))

            return numeric
        pattern = _wildcard(str(operand))
        want = op == "="
        if op not in ("=", "!="):
            return lambda doc: False  # AWS compares strings for equality only

        def textual(doc: Any) -> bool:
            value = _select(doc, selector)
            if value is _MISSING or value is None or type(value) in (dict, list):
                return False
            text = value if type(value) is str else orjson.dumps(value).decode()
            return (pattern.fullmatch(text) is not None) is want

        return textual

    def is_null(self, children: list[Token]) -> JsonTest:
        selector = children[0].value
        return lambda doc: _select(doc, selector) is None

    def not_exists(self, children: list[Token]) -> JsonTest:
        selector = children[0].value
        return lambda doc: _select(doc, selector) is _MISSING

    def is_bool(self, children: list[Token]) -> JsonTest:
        selector, want = children[0].value, children[1].value.upper() == "TRUE"
        return lambda doc: _select(doc, selector) is want

    def all_of(self, children: list[JsonTest]) -> JsonTest:
        return lambda doc: all(test(doc) for test in children)

    def any_of(self, children: list[JsonTest]) -> JsonTest:
        return lambda doc: any(test(doc) for test in children)

    def json(self, children: list[JsonTest]) -> Matcher:
        (test,) = children

        def match(message: str) -> bool:
            try:
                doc = orjson.loads(message)
            except orjson.JSONDecodeError:
                return False
            return type(doc) is dict and test(doc)

        return match

    # -- terms
    def phrase(self, children: list[Token]) -> tuple[str, str]:
        return ("must", re.sub(r"\\(.)", r"\1", children[0].value[1:-1]))

    def word(self, children: list[Token]) -> tuple[str, str]:
        return ("must", children[0].value)

    def exclude(self, children: list[Token]) -> tuple[str, str]:
        return ("not", children[0].value)

    def optional(self, children: list[Token]) -> tuple[str, str]:
        value = children[0].value
        return ("any", value[1:-1] if value.startswith('"') else value)

    def terms(self, children: list[tuple[str, str]]) -> Matcher:
        must = [t for kind, t in children if kind == "must"]
        never = [t for kind, t in children if kind == "not"]
        some = [t for kind, t in children if kind == "any"]

        def match(message: str) -> bool:
            return (
                all(t in message for t in must)
                and not any(t in message for t in never)
                and (not some or any(t in message for t in some))
            )

        return match

    def start(self, children: list[Matcher]) -> Matcher:
        return children[0]


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Matcher | None:
    """A test for messages, or None for a pattern this does not emulate (moto's answer)."""
    if not pattern or not pattern.strip() or pattern.strip().startswith("["):
        return None
    try:
        matcher: Matcher = _ToMatcher().transform(_lark().parse(pattern))
    except LarkError:
        return None
    return matcher

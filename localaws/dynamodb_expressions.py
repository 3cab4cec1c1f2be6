"""DynamoDB patch: expressions are parsed once per text, not on every call.

The services send a handful of fixed expression texts with varying values, and stock moto
parses each one up to three times per write (the handler's checks, the transaction's
condition, the backend's own). Two caches, both keyed by everything the parse reads:

- `UpdateExpressionParser.make(text)`: the parse reads only the text, and nothing mutates
  the tree it returns (moto's validator deep-copies it before rewriting it), so the same
  tree is handed out again.
- Condition expressions: moto's parser reads the text, the names and the values, but the
  values only land in the tree's `AttributeValue` leaves. The text and names are parsed
  once with a marker in place of each value; each call gets its own copy of that tree
  with real `AttributeValue(values[name])` leaves, built by moto's own constructor, i.e.
  the tree a fresh parse would build. A call whose values do not bind cleanly (a
  placeholder missing, a value that is not a one-key dict) and any text that fails to
  parse take moto's own parser, so every error is moto's. `BETWEEN` is never templated:
  its constructor inspects the values.
"""

from __future__ import annotations

from typing import Any

import moto.dynamodb.comparisons as comparisons
import moto.dynamodb.models as dynamodb_models
import moto.dynamodb.responses as dynamodb_responses
from moto.dynamodb.comparisons import (
    AttributeValue,
    ConditionExpressionParser,
    Func,
    FuncBetween,
    Op,
    OpDefault,
    Operand,
)
from moto.dynamodb.parsing.expressions import (  # type: ignore[attr-defined]
    UpdateExpressionParser,
)

# Captured at import, before `install` replaces it (the compiler in dynamodb_update uses
# the cache whether or not the patches are installed in this process).
_original_make: Any = UpdateExpressionParser.make
_update_trees: dict[str, Any] = {}
_templates: dict[tuple[str, Any], _Template | None] = {}
# Bounds the caches against a client that sends ever-new texts; the services send ~10.
MAX_CACHED = 2048


def cached_make(expression_str: str) -> Any:
    """`UpdateExpressionParser.make`, parsing each text once (a failed parse is not kept)."""
    tree = _update_trees.get(expression_str)
    if tree is None:
        tree = _original_make(expression_str)
        if len(_update_trees) < MAX_CACHED and isinstance(expression_str, str):
            _update_trees[expression_str] = tree
    return tree


class _Marker(str):
    """Stands in for a value in a template; its text is the placeholder (':v')."""


class _MarkerValues(dict[str, Any]):
    """The values a template is parsed with: every placeholder resolves to a marker."""

    def __getitem__(self, name: str) -> dict[str, _Marker]:
        return {"S": _Marker(name)}


_NODE_TYPES = (Op, Func, Operand)


class _Template:
    """A condition tree parsed with markers, and what the parse found."""

    def __init__(self, tree: Any, names_found: list[str], values_found: list[str]) -> None:
        self.tree = tree
        self.names_found = names_found
        self.values_found = values_found

    def bind(self, values: Any) -> Any | None:
        """A fresh tree with real values, or None when moto's parser must judge the call."""
        if not isinstance(values, dict):
            return None
        bound: dict[str, AttributeValue] = {}
        for name in self.values_found:
            value = values.get(name)
            if not isinstance(value, dict) or not value:
                return None
            bound[name] = AttributeValue(value)
        return _clone(self.tree, bound, {})


def _clone(node: Any, bound: dict[str, AttributeValue], memo: dict[int, Any]) -> Any:
    """Copy a template tree (nodes shared inside it stay shared), values swapped in."""
    if isinstance(node, AttributeValue) and isinstance(node.value, _Marker):
        # A placeholder used twice gets two equal leaves, as a fresh parse gives.
        return _fresh(bound[node.value])
    if isinstance(node, list | tuple):
        return type(node)(_clone(n, bound, memo) for n in node)
    if not isinstance(node, _NODE_TYPES):
        return node
    done = memo.get(id(node))
    if done is not None:
        return done
    new = object.__new__(type(node))
    memo[id(node)] = new
    new.__dict__ = {k: _clone(v, bound, memo) for k, v in node.__dict__.items()}
    return new


def _fresh(value: AttributeValue) -> AttributeValue:
    new = object.__new__(AttributeValue)
    new.__dict__ = dict(value.__dict__)
    return new


def _walk(node: Any) -> Any:
    if isinstance(node, list | tuple):
        for n in node:
            yield from _walk(n)
    elif isinstance(node, _NODE_TYPES):
        yield node
        for v in node.__dict__.values():
            yield from _walk(v)


def _template(expr: str, names: Any) -> _Template | None:
    try:
        key = (expr, None if names is None else tuple(names.items()))
        hash(key)
    except (TypeError, AttributeError):
        return None
    if key in _templates:
        return _templates[key]
    made: _Template | None = None
    try:
        parser = ConditionExpressionParser(expr, names, _MarkerValues())
        tree = parser.parse()
    except Exception:  # moto's parser raises it again, on the call itself
        tree = None
    if tree is not None and not any(isinstance(n, FuncBetween) for n in _walk(tree)):
        made = _Template(tree, list(parser.expr_attr_names_found), parser.expr_attr_values_found)
    if len(_templates) < MAX_CACHED:
        _templates[key] = made
    return made


class CachedConditionParser:
    """Drop-in for moto's `ConditionExpressionParser` as its callers use it."""

    def __init__(self, expr: str | None, names: Any, values: Any) -> None:
        self.condition_expression = expr
        self.expression_attribute_names = names
        self.expression_attribute_values = values
        self.expr_attr_names_found: list[str] = []
        self.expr_attr_values_found: list[str] = []

    def parse(self) -> Any:
        expr = self.condition_expression
        if not expr:
            return OpDefault(None, None)  # type: ignore[arg-type]
        template = _template(expr, self.expression_attribute_names) if type(expr) is str else None
        tree = template.bind(self.expression_attribute_values) if template else None
        if template is None or tree is None:
            parser = ConditionExpressionParser(
                expr, self.expression_attribute_names, self.expression_attribute_values
            )
            tree = parser.parse()
            self.expr_attr_names_found.extend(parser.expr_attr_names_found)
            self.expr_attr_values_found.extend(parser.expr_attr_values_found)
            return tree
        self.expr_attr_names_found.extend(template.names_found)
        self.expr_attr_values_found.extend(template.values_found)
        return tree


def create_condition_expression_parser(expr: str | None, names: Any, values: Any) -> Any:
    return CachedConditionParser(expr, names, values)


def install() -> None:
    UpdateExpressionParser.make = staticmethod(cached_make)
    # Every module that imported the factory by name, and the module that defines it (its
    # `get_filter_expression` looks it up there).
    for module in (comparisons, dynamodb_responses, dynamodb_models):
        module.create_condition_expression_parser = create_condition_expression_parser  # type: ignore[attr-defined]

"""DynamoDB patch: expressions are parsed once per text, not on every call.

The services send a handful of fixed expression texts with varying values, and stock moto
parses each one up to three times per write (the handler's checks, the transaction's
condition, the backend's own). Two caches, both keyed by everything the parse reads:

- `UpdateExpressionParser.make(text)`: the parse reads only the text, and nothing mutates
  the tree it returns (moto's validator deep-copies it before rewriting it), so the same
  tree is handed out again.
- Condition expressions: moto's parser reads the text, the names and the values, but the
  values only land in the tree's `AttributeValue` leaves. The text and names are parsed
  once, with a slot in place of each value leaf; a call's values become the leaves
  `AttributeValue(values[name])` a fresh parse would build (moto's own constructor), and
  each slot evaluates as its leaf while that call's tree is evaluated (nothing else is
  ever done with a parsed condition). A call whose values do not bind cleanly (a
  placeholder missing, a value that is not a one-key dict) and any text that fails to
  parse take moto's own parser, so every error is moto's. `BETWEEN` is never templated:
  its constructor inspects the values.
"""

from __future__ import annotations

from contextvars import ContextVar
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


class _Slot(AttributeValue):
    """A value leaf of a template: it evaluates as the value bound for the current call."""

    def __init__(self, name: str) -> None:  # moto's constructor reads a value; there is none
        self.name = name

    def expr(self, item: Any) -> Any:
        return _binding.get()[self.name].expr(item)

    def get_type(self, item: Any) -> Any:
        return _binding.get()[self.name].get_type(item)

    def __repr__(self) -> str:
        return self.name


# The values of the call whose tree is being evaluated (a context variable: each thread and
# each nested evaluation sees its own).
_binding: ContextVar[dict[str, AttributeValue]] = ContextVar("dynamodb_condition_values")


class _Bound:
    """A template with one call's values: evaluates as the tree a fresh parse would build.

    Every caller of a parsed condition only calls `.expr(item)` on it (or ignores it).
    """

    def __init__(self, tree: Any, values: dict[str, AttributeValue]) -> None:
        self._tree = tree
        self._values = values

    def expr(self, item: Any) -> Any:
        token = _binding.set(self._values)
        try:
            return self._tree.expr(item)
        finally:
            _binding.reset(token)

    def __repr__(self) -> str:
        return repr(self._tree)


class _Template:
    """A condition tree parsed with slots for values, and what the parse found."""

    def __init__(self, tree: Any, names_found: list[str], values_found: list[str]) -> None:
        self.tree = _with_slots(tree, {})
        self.names_found = names_found
        self.values_found = values_found

    def bind(self, values: Any) -> _Bound | None:
        """The tree with this call's values, or None when moto's parser must judge the call."""
        if not isinstance(values, dict):
            return None
        bound: dict[str, AttributeValue] = {}
        for name in self.values_found:
            value = values.get(name)
            if not isinstance(value, dict) or not value:
                return None
            # moto's own constructor: the leaf a fresh parse builds from this value.
            bound[name] = AttributeValue(value)
        return _Bound(self.tree, bound)


def _with_slots(node: Any, memo: dict[int, Any]) -> Any:
    """The marker leaves of a freshly parsed tree swapped for slots (in place)."""
    if isinstance(node, AttributeValue) and isinstance(node.value, _Marker):
        return memo.setdefault(id(node), _Slot(str(node.value)))
    if isinstance(node, list | tuple):
        return type(node)(_with_slots(n, memo) for n in node)
    if isinstance(node, _NODE_TYPES) and id(node) not in memo:
        memo[id(node)] = node
        for k, v in list(node.__dict__.items()):
            node.__dict__[k] = _with_slots(v, memo)
    return node


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
            parsed = parser.parse()
            self.expr_attr_names_found.extend(parser.expr_attr_names_found)
            self.expr_attr_values_found.extend(parser.expr_attr_values_found)
            return parsed
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

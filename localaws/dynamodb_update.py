"""DynamoDB patch: UpdateItem applies a precompiled plan instead of moto's validator chain.

Stock moto validates an update expression on every call by deep-copying its tree and
walking it with ten rewriting passes (twice for a new item), then walks it again to apply
it. For the expressions the services use, nearly all of that depends only on the text,
the names and the table's keys, so it is done once per (text, names, key attributes):

- the expression is parsed, and moto's own item-independent validators run on it (action
  counts, overlapping paths, key attributes updated): an expression any of them refuses
  is never compiled, so moto's chain raises its error on every call;
- what remains per call is what moto does per call: each value placeholder resolved to a
  fresh `DynamoType` (a missing one raises moto's `ExpressionAttributeValueNotDefined`),
  `if_not_exists` read from the item as it was before the update, the type-mismatch and
  empty-key checks in moto's order, then the actions applied in moto's normalised order
  through the item's own size-checked dict.

Only top-level attributes (`a`, `#n`) with `SET p = :v`, `SET p = if_not_exists(q, :v)`,
`REMOVE p` and `ADD p :number` compile; anything else (nested paths, list_append, +/-,
DELETE, set ADD, AttributeUpdates, Expected) takes moto's own path, whole.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from moto.dynamodb.comparisons import get_expected
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    EmptyKeyAttributeException,
    ExpressionAttributeValueNotDefined,
    IncorrectDataType,
    InvalidAttributeTypeError,
    ItemSizeTooLarge,
    ItemSizeToUpdateTooLarge,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.table import Table
from moto.dynamodb.models.utilities import bytesize
from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
    ExpressionAttribute,
    ExpressionAttributeName,
    ExpressionAttributeValue,
    UpdateExpressionAddAction,
    UpdateExpressionDeleteAction,
    UpdateExpressionFunction,
    UpdateExpressionPath,
    UpdateExpressionRemoveAction,
    UpdateExpressionSetAction,
    UpdateExpressionValue,
)
from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords
from moto.dynamodb.parsing.validators import (
    ActionCountValidator,
    OverlappingPathsValidator,
    UpdateHashRangeKeyValidator,
)

from . import dynamodb_expressions

_original_update: Any = None
# LimitedSizeDict's limit (moto: "between 409 and 410KB" measured, 405,000 set).
LIMIT = 405_000
_ACTIONS = [
    UpdateExpressionAddAction,
    UpdateExpressionDeleteAction,
    UpdateExpressionRemoveAction,
    UpdateExpressionSetAction,
]


@dataclass(frozen=True)
class _Action:
    kind: str
    """"SET", "REMOVE" or "ADD"."""
    attr: str
    """The attribute it writes, names resolved."""
    token: str
    """The path as written (`#s` or `status`): moto's type and empty-key checks read this."""
    value: int | None = None
    """Index of its value placeholder in `_Plan.placeholders` (SET, ADD)."""
    if_not_exists: str | None = None
    """SET p = if_not_exists(q, :v): the attribute q, names resolved."""


@dataclass(frozen=True)
class _Plan:
    placeholders: tuple[str, ...]
    """Every value placeholder, in the order moto's value pass meets them."""
    actions: tuple[_Action, ...]
    """In the order moto applies them (`Node.normalize`)."""


_plans: dict[tuple[Any, ...], _Plan | None] = {}


def _attr(path: Any, names: dict[str, str]) -> tuple[str, str] | None:
    """(attribute, token) of a one-element path; None for anything deeper or undefined."""
    if not isinstance(path, UpdateExpressionPath) or len(path.children) != 1:
        return None
    (node,) = path.children
    if type(node) is ExpressionAttributeName:
        placeholder = node.get_attribute_name_placeholder()
        if placeholder not in names:
            return None
        return names[placeholder], placeholder
    if type(node) is ExpressionAttribute:
        name = node.get_attribute_name()
        if name.upper() in ReservedKeywords.get_reserved_keywords():
            return None  # moto refuses it on every call
        return name, name
    return None


def _value_name(node: Any) -> str | None:
    return node.get_value_name() if type(node) is ExpressionAttributeValue else None


def _compile_action(action: Any, names: dict[str, str], slots: list[str]) -> _Action | None:
    target = _attr(action.children[0], names)
    if target is None:
        return None
    attr, token = target
    if type(action) is UpdateExpressionRemoveAction and len(action.children) == 1:
        return _Action("REMOVE", attr, token)
    if type(action) is UpdateExpressionAddAction and len(action.children) == 2:
        value = _value_name(action.children[1])
        return None if value is None else _Action("ADD", attr, token, _slot(slots, value))
    if type(action) is not UpdateExpressionSetAction or len(action.children) != 2:
        return None
    operand = action.children[1]
    if type(operand) is not UpdateExpressionValue or len(operand.children) != 1:
        return None
    (inner,) = operand.children
    value = _value_name(inner)
    if value is not None:
        return _Action("SET", attr, token, _slot(slots, value))
    if (
        type(inner) is UpdateExpressionFunction
        and len(inner.children) == 3
        and inner.get_function_name() == "if_not_exists"
    ):
        source = _attr(inner.children[1], names)
        value = _value_name(inner.children[2])
        if source is not None and value is not None:
            return _Action("SET", attr, token, _slot(slots, value), if_not_exists=source[0])
    return None


def _slot(slots: list[str], name: str) -> int:
    slots.append(name)
    return len(slots) - 1


def _compile(expression: str, names: dict[str, str], table: Any) -> _Plan | None:
    try:
        tree = dynamodb_expressions.cached_make(expression)
        # moto's own item-independent checks; whatever they refuse stays moto's to refuse.
        checked = copy.deepcopy(tree)
        for validator in (
            ActionCountValidator(),
            OverlappingPathsValidator(names),
            UpdateHashRangeKeyValidator(table.table_key_attrs, names),
        ):
            checked = validator.traverse(checked)
    except Exception:
        return None
    # Placeholders are numbered in the order the original tree holds them (moto's value
    # pass walks it depth first); the actions are compiled in the normalised order.
    in_tree_order = [action for action in tree.find_clauses(_ACTIONS)]
    slots: list[str] = []
    by_node: dict[int, _Action] = {}
    for action in in_tree_order:
        compiled = _compile_action(action, names, slots)
        if compiled is None:
            return None
        by_node[id(action)] = compiled
    normalised = copy.deepcopy(tree)
    originals = {id(c): a for c, a in zip(normalised.find_clauses(_ACTIONS), in_tree_order)}  # noqa: B905
    normalised.normalize()
    actions = tuple(by_node[id(originals[id(node)])] for node in normalised.children)
    if len(actions) != len(in_tree_order):
        return None
    return _Plan(tuple(slots), actions)


def _plan(expression: str, names: Any, table: Any) -> _Plan | None:
    if not isinstance(names, dict):
        return None
    try:
        key = (expression, tuple(names.items()), tuple(table.table_key_attrs))
        hash(key)
    except TypeError:
        return None
    if key not in _plans:
        plan = _compile(expression, names, table)
        if len(_plans) >= dynamodb_expressions.MAX_CACHED:
            return plan
        _plans[key] = plan
    return _plans[key]


def _numbers_added(plan: _Plan, values: Any) -> bool:
    """Whether every ADD in the plan adds a number (the only ADD compiled)."""
    if not isinstance(values, dict):
        return False
    for action in plan.actions:
        if action.kind == "ADD":
            value = values.get(plan.placeholders[action.value or 0])
            if not isinstance(value, dict) or not value or next(iter(value)) != "N":
                return False
    return True


def _check_sets(plan: _Plan, resolved: list[DynamoType], table: Any) -> None:
    """moto's TypeMismatchValidator, then its EmptyStringKeyValueValidator, over the SETs."""
    sets = [(a.token, resolved[i]) for i, a in enumerate(plan.actions) if a.kind == "SET"]
    for token, value in sets:
        for definition in table.attr:
            if definition["AttributeName"] == token and definition["AttributeType"] != value.type:
                raise InvalidAttributeTypeError(token, definition["AttributeType"], value.type)
    key_attributes = table.attribute_keys
    for token, value in sets:
        if not value.value and value.type in ["S", "B"] and token in key_attributes:
            raise EmptyKeyAttributeException(key_in_index=True)


def _size(value: Any) -> int:
    """What LimitedSizeDict counts for a key or a value."""
    return value.size() if type(value) is DynamoType else bytesize(str(value))


class _SizedAttrs:
    """An item's attributes, written with LimitedSizeDict's 400 KB check kept incrementally.

    LimitedSizeDict re-adds the size of every key and value on each write (quadratic in the
    attributes an update writes). The same check here: the running total starts as its sum,
    and each write adjusts it by what changed, which is exact because nothing else writes
    the item while a plan runs and no compiled action mutates a value in place.
    """

    def __init__(self, attrs: Any) -> None:
        self._attrs = attrs
        self._exact = type(attrs) is LimitedSizeDict
        if self._exact:
            self._total = sum(_size(k) + _size(v) for k, v in attrs.items())

    def set(self, key: str, value: DynamoType) -> None:
        if not self._exact:
            self._attrs[key] = value
            return
        new = bytesize(key) + value.size()
        # LimitedSizeDict.__setitem__'s check: everything held now, plus the new pair.
        if self._total + new > LIMIT:
            raise ItemSizeTooLarge
        old = self._attrs.get(key)
        dict.__setitem__(self._attrs, key, value)
        self._total += new if old is None else new - bytesize(key) - _size(old)

    def pop(self, key: str) -> None:
        old = self._attrs.pop(key, None)
        if self._exact and old is not None:
            self._total -= bytesize(key) + _size(old)


def update_item(
    self: DynamoDBBackend,
    table_name: str,
    key: dict[str, dict[str, Any]],
    update_expression: str,
    expression_attribute_names: dict[str, Any],
    expression_attribute_values: dict[str, Any],
    attribute_updates: dict[str, Any] | None = None,
    expected: dict[str, Any] | None = None,
    condition_expression: str | None = None,
    return_values_on_condition_check_failure: str | None = None,
) -> Item:
    table = self.get_table(table_name)
    plan = None
    if update_expression and not attribute_updates and not expected:
        plan = _plan(update_expression, expression_attribute_names, table)
    values = expression_attribute_values
    if plan is not None and not _numbers_added(plan, values):
        plan = None  # a set ADD, or values moto's own passes must judge
    if plan is None:
        return _original_update(  # type: ignore[no-any-return]
            self,
            table_name,
            key,
            update_expression=update_expression,
            expression_attribute_names=expression_attribute_names,
            expression_attribute_values=expression_attribute_values,
            attribute_updates=attribute_updates,
            expected=expected,
            condition_expression=condition_expression,
            return_values_on_condition_check_failure=return_values_on_condition_check_failure,
        )
    # From here on, moto's update_item step by step, minus the validator chain.
    hash_value, range_value = _key_values(table, key)
    item = table.get_item(hash_value, range_value)
    # The old image is only ever read by a stream.
    orig_item = copy.deepcopy(item) if table.stream_shard is not None else None
    _check_condition(
        item,
        condition_expression,
        expression_attribute_names,
        expression_attribute_values,
        return_values_on_condition_check_failure,
    )
    resolved = _resolve(plan, values, item)
    _check_sets(plan, resolved, table)
    if item is None:
        item = _created(table, hash_value, range_value)
    _apply(plan, resolved, item)
    if table.stream_shard is not None:
        table.stream_shard.add(orig_item, item)
    return item


def _key_values(
    table: Table, key: dict[str, dict[str, Any]]
) -> tuple[DynamoType, DynamoType | None]:
    """The item's hash and range key as moto's update_item reads them from `Key`."""
    if all([table.hash_key_attr in key, table.range_key_attr in key]):
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr])  # type: ignore[index]
        return hash_value, range_value
    if table.hash_key_attr in key:
        return DynamoType(key[table.hash_key_attr]), None
    return DynamoType(key), None


def _check_condition(
    item: Item | None,
    condition_expression: str | None,
    names: dict[str, Any],
    values: dict[str, Any],
    return_values_on_condition_check_failure: str | None,
) -> None:
    """moto's two condition checks (empty `Expected`, then the condition), in its order."""
    if not get_expected({}).expr(item):
        raise ConditionalCheckFailed
    condition_op = dynamodb_expressions.create_condition_expression_parser(
        condition_expression, names, values
    ).parse()
    if not condition_op.expr(item):
        if return_values_on_condition_check_failure == "ALL_OLD" and item is not None:
            raise ConditionalCheckFailed(item=item.to_json()["Attributes"])
        raise ConditionalCheckFailed


def _resolve(plan: _Plan, values: dict[str, Any], item: Item | None) -> list[DynamoType]:
    """Each action's operand, all read before any action runs, as moto's validation does."""
    # moto's value pass: one fresh DynamoType per placeholder occurrence.
    typed: list[DynamoType] = []
    for name in plan.placeholders:
        if name not in values:
            raise ExpressionAttributeValueNotDefined(attribute_value=name)
        typed.append(DynamoType(values[name]))
    # SET operands are all read before any action runs (moto evaluates them while validating).
    attrs = item.attrs if item is not None else {}
    resolved: list[DynamoType] = []
    for action in plan.actions:
        value = typed[action.value] if action.value is not None else None
        if action.if_not_exists is not None and action.if_not_exists in attrs:
            value = attrs[action.if_not_exists]
        resolved.append(value)  # type: ignore[arg-type]
    return resolved


def _created(table: Table, hash_value: DynamoType, range_value: DynamoType | None) -> Item:
    """A new item holding only its key, put as moto does when the update finds none."""
    data: dict[str, Any] = {table.hash_key_attr: {hash_value.type: hash_value.value}}
    if range_value:
        data.update({table.range_key_attr: {range_value.type: range_value.value}})  # type: ignore[dict-item]
    table.put_item(data)
    item = table.get_item(hash_value, range_value)
    assert item is not None
    return item


def _apply(plan: _Plan, resolved: list[DynamoType], item: Item) -> None:
    """The actions in moto's order through the item's size-checked attributes."""
    writes = _SizedAttrs(item.attrs)
    try:
        for action, value in zip(plan.actions, resolved, strict=True):
            if action.kind == "SET":
                writes.set(action.attr, value)
            elif action.kind == "REMOVE":
                writes.pop(action.attr)
            else:
                existing = item.attrs.get(action.attr)
                if existing is None:
                    existing = DynamoType({"N": "0"})
                if not existing.type == "N":
                    raise IncorrectDataType()
                writes.set(action.attr, existing + value)
    except ItemSizeTooLarge:
        raise ItemSizeToUpdateTooLarge() from None


def install() -> None:
    global _original_update
    if _original_update is None:
        _original_update = DynamoDBBackend.update_item
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]

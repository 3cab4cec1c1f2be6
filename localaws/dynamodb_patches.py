"""DynamoDB patches: copies only where a rollback needs them.

TransactWriteItems backs up the items it touches, not whole tables.

moto deep-copies every table a transaction names before applying it, to roll back on a
failed condition: O(table size) per call, so a worker marking 10 orders paid per transaction
slows down as the orders table grows. The wrapper below snapshots only the items the
transaction's operations address, makes moto's own per-table backup a no-op, and restores
those items if moto raises. What every call returns is unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

import moto.dynamodb.models as dynamodb_models
import moto.dynamodb.responses as dynamodb_responses
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table

_original_transact: Any = None


class _TablesAreNotCopied:
    """Stands in for the `copy` module inside moto.dynamodb.models: tables pass uncopied."""

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def _key(table: Table, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _snapshot(
    backend: Any, transact_items: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any], Any]]:
    saved = []
    for item in transact_items:
        try:
            op_type, op = next(iter(item.items()))
            table_name = op["TableName"]
            table = backend.tables[table_name]
            key = _key(table, op_type, op)
            current = backend.get_item(table_name, key)
        except Exception:  # moto itself raises the right error for this op
            continue
        old = copy.deepcopy(current.to_json()["Attributes"]) if current else None
        saved.append((table_name, key, old))
    return saved


def _restore(backend: Any, saved: list[tuple[str, dict[str, Any], Any]]) -> None:
    for table_name, key, old in reversed(saved):
        if old is None:
            if backend.get_item(table_name, key) is not None:
                backend.delete_item(table_name, key)
        else:
            backend.put_item(table_name, old)


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    saved = _snapshot(self, transact_items)
    try:
        _original_transact(self, transact_items)
    except Exception:
        _restore(self, saved)
        raise


def install_transact_snapshot() -> None:
    global _original_transact
    backend = dynamodb_models.DynamoDBBackend
    if _original_transact is None:
        _original_transact = backend.transact_write_items
    dynamodb_models.copy = _TablesAreNotCopied()  # type: ignore[attr-defined,assignment]
    backend.transact_write_items = _transact_write_items  # type: ignore[method-assign]


class _ItemsAreNotCopied:
    """Stands in for the `copy` module inside moto.dynamodb.responses: items pass uncopied.

    UpdateItem's handler deep-copies the item before the update only to call `to_json()` on
    the copy, and `to_json()` already builds fresh containers (lists, maps, sets) around
    immutable scalars, so the attributes it returns are untouched by the update anyway.
    """

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        if isinstance(value, Item):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def install_handler_item_copy() -> None:
    dynamodb_responses.copy = _ItemsAreNotCopied()  # type: ignore[attr-defined,assignment]

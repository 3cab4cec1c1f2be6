"""JSON-protocol request bodies in one orjson call, where botocore's serializer would only copy.

botocore's JSONSerializer walks the service model for every value of a request, to convert
what JSON cannot carry as given (timestamps, blobs as base64, non-finite floats) and to rename
members the model renames. DynamoDB's writes and SQS's receives, deletes and visibility changes
hold none of these: the walk only rebuilds the same dict. For one claim in a TransactWriteItems
(16 attribute values) it took 43 µs of CPU, for a paid-mark 23 µs; written directly, 3.8 and
2.0 µs. client_cost's TransactWriteItems of 10 updates went from 4.96 to 3.57 million instructions
of client work per call (valgrind, as `python -m bench.tools.client_cost` explains).

`DirectJSON` wraps a client's serializer. For an operation whose input model has nothing to
convert, it asks the model serializer for everything but the body (target, content type,
method), then writes the body with orjson. Anything else goes the model's way, unchanged:
an operation with timestamps, floats, documents, renamed members or a host prefix anywhere in
its input; a request with a value orjson would write differently (bytes, datetimes,
dataclasses, integers beyond 64 bits make it raise, and it falls back); a request that uses a
blob member (DynamoDB's `B` and `BS`, SQS's binary attributes), since the model base64-encodes
a blob given as text. tests/services/test_wirejson.py holds the bodies equal, as JSON, for
every request shape the services build.
"""

from __future__ import annotations

from typing import Any

import orjson
from botocore.model import OperationModel, Shape
from botocore.serialize import JSONSerializer

# Types orjson would write differently from botocore's json.dumps make it raise instead.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# Shapes the model serializer converts rather than copies.
_CONVERTED = {"timestamp", "float", "double"}


class _NeedsModel(Exception):
    """The operation's input holds a shape the model serializer converts."""


def _blob_keys(shape: Shape, seen: set[str]) -> set[bytes]:
    """The JSON keys under which a blob may appear in `shape`; raises _NeedsModel."""
    if shape.name in seen:
        return set()
    seen.add(shape.name)
    if shape.type_name in _CONVERTED or getattr(shape, "is_document_type", False):
        raise _NeedsModel
    keys: set[bytes] = set()
    members: dict[str, Shape] = {}
    if shape.type_name == "structure":
        members = dict(shape.members)  # type: ignore[attr-defined]
    elif shape.type_name == "list":
        members = {"": shape.member}  # type: ignore[attr-defined]
    elif shape.type_name == "map":
        members = {"": shape.value}  # type: ignore[attr-defined]
    for name, member in members.items():
        if name and "name" in member.serialization:
            raise _NeedsModel  # a renamed structure member
        if name and _holds_blob(member):
            keys.add(orjson.dumps(name) + b":")
        keys |= _blob_keys(member, seen)
    return keys


def _holds_blob(shape: Shape) -> bool:
    """A blob, or a list or map of them (a member whose own value is base64 text)."""
    while shape.type_name in ("list", "map"):
        shape = shape.member if shape.type_name == "list" else shape.value  # type: ignore[attr-defined]
    return shape.type_name == "blob"


class DirectJSON:
    """A JSON-protocol serializer that copies what the model serializer would only copy."""

    def __init__(self, model: Any) -> None:
        self.model = model
        # Per operation: the blob keys to look for in a body, or None (always the model's way).
        self._plans: dict[str, frozenset[bytes] | None] = {}
        self.direct = 0
        """Requests serialized directly (tests read it: the fast path is really taken)."""

    def serialize_to_request(
        self, parameters: dict[str, Any], operation_model: OperationModel
    ) -> dict[str, Any]:
        blobs = self._plan(operation_model)
        if blobs is not None:
            try:
                body = orjson.dumps(parameters, option=_STRICT)
            except TypeError:
                body = None
            if body is not None and not any(key in body for key in blobs):
                request: dict[str, Any] = self.model.serialize_to_request({}, operation_model)
                request["body"] = body
                self.direct += 1
                return request
        result: dict[str, Any] = self.model.serialize_to_request(parameters, operation_model)
        return result

    def _plan(self, operation: OperationModel) -> frozenset[bytes] | None:
        name = operation.name
        if name not in self._plans:
            plan: frozenset[bytes] | None = None
            endpoint: Any = operation.endpoint or {}
            if operation.input_shape is not None and "hostPrefix" not in endpoint:
                try:
                    plan = frozenset(_blob_keys(operation.input_shape, set()))
                except _NeedsModel:
                    plan = None
            self._plans[name] = plan
        return self._plans[name]


def install(client: Any) -> DirectJSON | None:
    """Serialize `client`'s requests directly where that changes nothing; None if left as is.

    botocore keeps the serializer on the client (`_serializer`, set once at creation). A client
    of another protocol is left as it is, and so is one that validates parameters: validation
    is a walk of the model too, and whoever asked for it wants the model's way."""
    model = getattr(client, "_serializer", None)
    if type(model) is not JSONSerializer:  # another protocol (rest-json too), or validating
        return None
    direct = DirectJSON(model)
    client._serializer = direct
    return direct

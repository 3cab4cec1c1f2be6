"""One log event as a query sees it, and how a field name reads from it.

A `Record` wraps moto's stored event without copying it. The message's JSON is parsed at
most once per record, the first time a query reads a field that is not built in, and a
dotted name (`a.b.c`, `items.0`) walks into it. Fields a query makes (`fields ... as`,
`parse`, a `stats` row's columns) live in `made` and shadow the message's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from .values import Timestamp

_UNPARSED: Any = object()
loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError


class Source:
    """Where a record comes from: its log group and stream."""

    __slots__ = ("group", "log", "ptr_prefix", "stream")

    def __init__(self, group: str, stream: str, account: str) -> None:
        self.group = group
        self.stream = stream
        # AWS shows @log as "account-id:log-group-name".
        self.log = f"{account}:{group}"
        self.ptr_prefix = f"{account}\x00{group}\x00{stream}\x00"


class Record:
    __slots__ = ("doc", "event", "made", "source")

    def __init__(self, event: Any, source: Source | None) -> None:
        self.event = event
        """moto's `LogEvent` (timestamp, message, ingestion_time, event_id); None for a
        row `stats` made."""
        self.source = source
        self.doc: Any = _UNPARSED
        self.made: dict[str, Any] | None = None

    @classmethod
    def made_row(cls, values: dict[str, Any]) -> Record:
        row = cls(None, None)
        row.doc = None
        row.made = values
        return row

    def set(self, name: str, value: Any) -> None:
        made = self.made
        if made is None:
            self.made = {name: value}
        else:
            made[name] = value


def _document(record: Record) -> Any:
    doc = record.doc
    if doc is _UNPARSED:
        message = record.event.message
        doc = None
        if message[:1] == "{":
            try:
                doc = orjson.loads(message)
            except orjson.JSONDecodeError:
                doc = None
            if type(doc) is not dict:
                doc = None
        record.doc = doc
    return doc


Getter = Callable[[Record], Any]


def _builtin(name: str) -> Getter | None:
    def event_or_made(read: Callable[[Any], Any]) -> Getter:
        def get(record: Record) -> Any:
            event = record.event
            if event is None:
                made = record.made
                return None if made is None else made.get(name)
            return read(record)

        return get

    if name == "@timestamp":
        return event_or_made(lambda r: Timestamp(r.event.timestamp))
    if name == "@message":
        return event_or_made(lambda r: r.event.message)
    if name == "@ingestionTime":
        return event_or_made(lambda r: Timestamp(r.event.ingestion_time))
    if name == "@logStream":
        return event_or_made(lambda r: r.source.stream)
    if name == "@log":
        return event_or_made(lambda r: r.source.log)
    if name == "@ptr":
        return event_or_made(lambda r: pointer(r))
    return None


def pointer(record: Record) -> str:
    """An opaque `@ptr` (GetLogRecord takes it back): account, group, stream, event id."""
    import base64

    raw = f"{record.source.ptr_prefix}{record.event.event_id}".encode()  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(raw).decode()


def getter(name: str) -> Getter:
    """How to read field `name` from a record: built in, made by the query, or from JSON."""
    builtin = _builtin(name)
    if builtin is not None:
        # A query can still shadow a built-in name (`stats max(@timestamp) as @timestamp`).
        def shadowable(record: Record) -> Any:
            made = record.made
            if made is not None and name in made:
                return made[name]
            return builtin(record)

        return shadowable
    path = name.split(".")
    first, rest = path[0], path[1:]

    def get(record: Record) -> Any:
        made = record.made
        if made is not None and name in made:
            return made[name]
        doc = record.doc
        if doc is _UNPARSED:
            # _document, inlined: this is the first field read of most events.
            message = record.event.message
            doc = None
            if message[:1] == "{":
                try:
                    doc = loads(message)
                except JSONDecodeError:
                    doc = None
                if type(doc) is not dict:
                    doc = None
            record.doc = doc
        if doc is None:
            return None
        if not rest:
            return doc.get(name)
        value = doc.get(name)
        if value is not None:
            return value  # a key that itself has dots
        value = doc.get(first)
        for part in rest:
            if type(value) is dict:
                value = value.get(part)
            elif type(value) is list and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value

    return get

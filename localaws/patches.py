"""Named patches that take moto's SQS hot paths from O(queue length) to O(1) or O(batch).

Each patch replaces or wraps a few moto functions and must not change what any API call
returns. Every moto function a patch replaces, wraps or relies on is listed in `GUARDS`
with a digest of its source in the pinned moto: `apply()` refuses to patch a moto whose
code differs (and `tests/localaws/test_patch_guards.py` says which function moved), because
a patch written against other code could silently change behaviour.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import moto.sqs.models as sqs_models
from moto.core.utils import camelcase_to_underscores, unix_time, unix_time_millis
from moto.sqs.exceptions import InvalidAttributeName, InvalidParameterValue, ReceiptHandleIsInvalid
from moto.sqs.models import Message, Queue, SQSBackend

from . import longpoll
from .sqs_index import MessageIndex, ReadyView, State, now_ms, owner

SUPPORTED_MOTO = "5.2.5"

# The unpatched functions, captured before `apply()` replaces them.
_originals: dict[str, Any] = {}


@dataclass(frozen=True)
class Patch:
    name: str
    why: str
    guarded: tuple[str, ...]
    """moto functions (`Class.attr`) this patch replaces, wraps or relies on."""
    install: Callable[[], None]


class MotoDrift(RuntimeError):
    """The installed moto's patched code is not the code the patches were written for."""


def _original(qualname: str) -> Any:
    cls_name, attr = qualname.split(".")
    member = inspect.getattr_static(getattr(sqs_models, cls_name), attr)
    return member.fget if isinstance(member, property) else member


def moto_source(qualname: str) -> str:
    """The source of a guarded moto function as moto shipped it (read before patching)."""
    if qualname not in _originals:
        _originals[qualname] = _original(qualname)
    return inspect.getsource(_originals[qualname])


def digest(qualname: str) -> str:
    return hashlib.sha256(moto_source(qualname).encode()).hexdigest()[:16]


def _replace(cls: type, name: str, value: object) -> None:
    setattr(cls, name, value)


# -- 1. retention check: one attribute read instead of all of them ----------------------


def _is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
    # moto asked get_queue_attributes for this one integer, which builds every attribute,
    # three of them by scanning the queue, once per message received.
    retention_period = self.get_queue(queue_name).message_retention_period
    retain_until = retention_period + message.sent_timestamp / 1000
    return not retain_until <= unix_time()


def _install_retention() -> None:
    _replace(
        SQSBackend,
        "is_message_valid_based_on_retention_period",
        _is_message_valid_based_on_retention_period,
    )


# -- 2. attribute reads: built once per request, without moto's name conversion ---------

# camelcase_to_underscores walks each name char by char (~6 µs a name, ~20 names per build).
_snake = functools.cache(camelcase_to_underscores)


def _attributes(self: Any) -> dict[str, Any]:
    # moto's Queue.attributes verbatim, with the name conversion cached; the three counts it
    # reads are O(1) once patch 3 is in.
    result: dict[str, Any] = {}
    for attribute in self.BASE_ATTRIBUTES:
        result[attribute] = getattr(self, _snake(attribute))
    if self.fifo_queue:
        for attribute in self.FIFO_ATTRIBUTES:
            result[attribute] = getattr(self, _snake(attribute))
    if self.kms_master_key_id:
        for attribute in self.KMS_ATTRIBUTES:
            result[attribute] = getattr(self, _snake(attribute))
    if self.policy:
        result["Policy"] = self.policy
    if self.redrive_policy:
        result["RedrivePolicy"] = json.dumps(self.redrive_policy)
    for key in result:
        if isinstance(result[key], bool):
            result[key] = str(result[key]).lower()
    return result


def _get_queue_attributes(self: Any, queue_name: str, attribute_names: list[str]) -> dict[str, Any]:
    # moto rebuilt queue.attributes up to three times per requested name.
    queue = self.get_queue(queue_name)
    if not attribute_names:
        return {}
    valid_names = ["All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES]
    invalid_name = next((name for name in attribute_names if name not in valid_names), None)
    if invalid_name or invalid_name == "":
        raise InvalidAttributeName(invalid_name)
    every: dict[str, Any] = queue.attributes
    if "All" in attribute_names:
        return every
    return {name: every[name] for name in attribute_names if every.get(name) is not None}


def _install_attributes() -> None:
    _replace(Queue, "attributes", property(_attributes))
    _replace(SQSBackend, "get_queue_attributes", _get_queue_attributes)


# -- 3. message index: counts maintained, ready messages and receipt handles indexed ----


def _messages_get(self: Any) -> MessageIndex:
    index = self.__dict__.get("_localaws_index")
    if index is None:
        index = self.__dict__["_localaws_index"] = MessageIndex(now_ms)
    return index  # type: ignore[no-any-return]


def _messages_set(self: Any, messages: list[Any]) -> None:
    # Queue.__init__ and purge_queue assign a fresh list; the index takes its place.
    self.__dict__["_localaws_index"] = MessageIndex(now_ms, messages)


def _delete_message(self: Any, receipt_handle: str) -> None:
    # moto walked every message (building each one's list of handles) twice, then rebuilt
    # the list; the index finds the message by handle and removes it in O(1).
    if receipt_handle in self.deleted_messages:
        return
    message = self._messages.by_handle(receipt_handle)
    if message is None:
        raise ReceiptHandleIsInvalid()
    self.pending_messages.discard(message)
    self.deleted_messages.update(message.all_receipt_handles)
    self._messages.remove(message)


def _change_message_visibility(
    self: Any, queue_name: str, receipt_handle: str, visibility_timeout: int
) -> None:
    # moto's body, with its walk over every message replaced by the handle lookup.
    queue = self.get_queue(queue_name)
    message = queue._messages.by_handle(receipt_handle)
    if message is None:
        raise ReceiptHandleIsInvalid
    visibility_timeout_msec = int(visibility_timeout) * 1000
    given_visibility_timeout = unix_time_millis() + visibility_timeout_msec
    if given_visibility_timeout - message.sent_timestamp > 43200 * 1000:
        raise InvalidParameterValue(
            f"Value {visibility_timeout} for parameter VisibilityTimeout is invalid. Reason: "
            "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]"
        )
    message.change_visibility(visibility_timeout)
    if message.visible and message in queue.pending_messages:
        queue.pending_messages.remove(message)


def _tell_index(method: Callable[..., None]) -> Callable[..., None]:
    """Wrap a Message method that changes visibility, delay or receipt handle."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        method(self, *args, **kwargs)
        index = owner(self)
        if index is not None:
            index.changed(self)

    return wrapper


def _count(state: State) -> property:
    return property(lambda self: self._messages.count(state))


def _install_index() -> None:
    _replace(Queue, "_messages", property(_messages_get, _messages_set))
    _replace(Queue, "messages", property(lambda self: ReadyView(self._messages)))
    _replace(Queue, "approximate_number_of_messages", _count(State.READY))
    _replace(Queue, "approximate_number_of_messages_not_visible", _count(State.IN_FLIGHT))
    _replace(Queue, "approximate_number_of_messages_delayed", _count(State.DELAYED))
    _replace(Queue, "delete_message", _delete_message)
    _replace(SQSBackend, "change_message_visibility", _change_message_visibility)
    for name in ("change_visibility", "delay", "mark_received"):
        _replace(Message, name, _tell_index(getattr(Message, name)))


PATCHES = (
    Patch(
        name="sqs-retention-check-o1",
        why="every received message computed all queue attributes (3 full scans) "
        "to read MessageRetentionPeriod",
        guarded=("SQSBackend.is_message_valid_based_on_retention_period",),
        install=_install_retention,
    ),
    Patch(
        name="sqs-attribute-reads-o1",
        why="each send (and SNS fan-out) read ContentBasedDeduplication through "
        "Queue.attributes; GetQueueAttributes rebuilt it up to 3x per name",
        guarded=("Queue.attributes", "SQSBackend.get_queue_attributes"),
        install=_install_attributes,
    ),
    Patch(
        name="sqs-message-index",
        why="approximate counts, the ready-message walk on receive, delete and "
        "ChangeMessageVisibility all scanned every message in the queue",
        guarded=(
            "Queue.__init__",
            "Queue.messages",
            "Queue.add_message",
            "Queue.delete_message",
            "Queue.wait_for_messages",
            "Queue.approximate_number_of_messages",
            "Queue.approximate_number_of_messages_not_visible",
            "Queue.approximate_number_of_messages_delayed",
            "Message.change_visibility",
            "Message.delay",
            "Message.mark_received",
            "SQSBackend.receive_message",
            "SQSBackend.change_message_visibility",
            "SQSBackend.purge_queue",
        ),
        install=_install_index,
    ),
    Patch(
        name="sqs-long-poll-parks",
        why="a long poll blocked a server thread, waking every second; the server now "
        "parks it on the event loop (see localaws.longpoll)",
        guarded=("SQSBackend.receive_message",),
        install=longpoll.install,
    ),
)

# Source digests of the guarded functions in moto SUPPORTED_MOTO (see `digest`).
GUARDS: dict[str, str] = {
    "SQSBackend.is_message_valid_based_on_retention_period": "cca23b94a5f3af9d",
    "Queue.attributes": "40cb990b121628d5",
    "SQSBackend.get_queue_attributes": "58417223da457b5a",
    "Queue.__init__": "0a4781ed5a21a050",
    "Queue.messages": "03a531dbcbcf9aee",
    "Queue.add_message": "f27c9231c1f20433",
    "Queue.delete_message": "fa6fd5b9bd2cafb4",
    "Queue.wait_for_messages": "58432562ccf2e13e",
    "Queue.approximate_number_of_messages": "d357a9506a56d2f8",
    "Queue.approximate_number_of_messages_not_visible": "5dbecc4dda174358",
    "Queue.approximate_number_of_messages_delayed": "c3c1dadb0c42ed5f",
    "Message.change_visibility": "fcde8986de1390dc",
    "Message.delay": "4af4d292f3a61eaa",
    "Message.mark_received": "98e7ec115c7fcb9f",
    "SQSBackend.receive_message": "065f3e5e7d214408",
    "SQSBackend.change_message_visibility": "f0e9df5f66627114",
    "SQSBackend.purge_queue": "443ea1ae7b15230c",
}

_applied = False


def drift() -> dict[str, tuple[str, str]]:
    """Guarded functions whose source differs from the pinned moto: {name: (want, got)}."""
    names = [name for patch in PATCHES for name in patch.guarded]
    got = {name: digest(name) for name in names}
    return {
        name: (GUARDS.get(name, "?"), got[name]) for name in names if GUARDS.get(name) != got[name]
    }


def apply() -> None:
    """Install every patch once, after checking moto is the code they were written for."""
    global _applied
    if _applied:
        return
    moved = drift()
    if moved:
        raise MotoDrift(
            f"localaws patches target moto {SUPPORTED_MOTO}; changed since: {sorted(moved)}. "
            "Re-read each function, port the patch, then update GUARDS."
        )
    for patch in PATCHES:
        for name in patch.guarded:
            moto_source(name)  # remember the original before it is replaced
        patch.install()
    _applied = True

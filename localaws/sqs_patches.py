"""The SQS patches: moto's hot paths from O(queue length) to O(1) or O(batch).

Each function here replaces one moto function and returns what moto's would; which moto
code each patch rests on is listed (and digested) in `localaws.patches`.
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Callable
from typing import Any

import moto.sqs.models as sqs_models
from moto.core.utils import camelcase_to_underscores, unix_time, unix_time_millis
from moto.moto_api._internal import mock_random
from moto.sqs.exceptions import InvalidAttributeName, InvalidParameterValue, ReceiptHandleIsInvalid
from moto.sqs.models import Message, Queue, SQSBackend

from .sqs_index import MessageIndex, ReadyView, State, now_ms, owner


def replace(owner_: object, name: str, value: object) -> None:
    """Set a moto attribute (mypy forbids assigning to a method directly)."""
    setattr(owner_, name, value)


# -- 1. retention check: one attribute read instead of all of them ----------------------


def _is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
    # moto asked get_queue_attributes for this one integer, which builds every attribute,
    # three of them by scanning the queue, once per message received.
    retention_period = self.get_queue(queue_name).message_retention_period
    retain_until = retention_period + message.sent_timestamp / 1000
    return not retain_until <= unix_time()


def install_retention() -> None:
    replace(
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


def install_attributes() -> None:
    replace(Queue, "attributes", property(_attributes))
    replace(SQSBackend, "get_queue_attributes", _get_queue_attributes)


# -- 3. message index: counts maintained, ready messages and receipt handles indexed ----


def _messages_get(self: Any) -> MessageIndex:
    index = self.__dict__.get("_localaws_index")
    if index is None:
        index = self.__dict__["_localaws_index"] = MessageIndex(now_ms)
    return index  # type: ignore[no-any-return]


def _messages_set(self: Any, messages: list[Any]) -> None:
    # Queue.__init__ and purge_queue assign a fresh list; the index takes its contents.
    index = self.__dict__.get("_localaws_index")
    if index is None:
        self.__dict__["_localaws_index"] = MessageIndex(now_ms, messages)
    else:
        index.replace_all(messages)


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


def install_index() -> None:
    replace(Queue, "_messages", property(_messages_get, _messages_set))
    replace(Queue, "messages", property(lambda self: ReadyView(self._messages)))
    replace(Queue, "approximate_number_of_messages", _count(State.READY))
    replace(Queue, "approximate_number_of_messages_not_visible", _count(State.IN_FLIGHT))
    replace(Queue, "approximate_number_of_messages_delayed", _count(State.DELAYED))
    replace(Queue, "delete_message", _delete_message)
    replace(SQSBackend, "change_message_visibility", _change_message_visibility)
    for name in ("change_visibility", "delay", "mark_received"):
        replace(Message, name, _tell_index(getattr(Message, name)))


# -- 4. receipt handles: one call to the generator instead of 185 --------------------------


def _generate_receipt_handle() -> str:
    # moto draws 185 lowercase letters with one random.choice each (~0.2 ms a message
    # received); choices(k=185) draws the same kind of string from the same generator.
    return "".join(mock_random.choices(string.ascii_lowercase, k=185))


def install_receipt_handles() -> None:
    replace(sqs_models, "generate_receipt_handle", _generate_receipt_handle)

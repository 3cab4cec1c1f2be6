"""An index over one moto SQS queue's messages, so the hot paths stop scanning the queue.

Stock moto keeps a queue's messages in a plain list and answers every question about them
(how many are visible, in flight or delayed; which to hand out next; which one holds this
receipt handle) by walking the whole list, calling the clock twice per message. Here the
list is replaced by `MessageIndex`, which keeps the same insertion order and list-like
interface moto's own code uses (`append`, `remove`, iteration, `len`) and in addition:

- the state of every message (ready, in flight, delayed) with a count per state, moved on
  by a heap of timers as visibility timeouts and delays run out;
- a heap of ready messages ordered by arrival, so a receive pops the oldest ready ones in
  O(batch · log n), in exactly the order moto's list walk would have found them;
- a map from every receipt handle a member ever had to its message.

Message state changes reach the index through `changed(message)`, which the patches call
after `Message.change_visibility`, `Message.delay` and `Message.mark_received`.
"""

from __future__ import annotations

import heapq
import itertools
import weakref
from collections.abc import Callable, Iterable, Iterator
from enum import IntEnum
from typing import Any

from moto.core.utils import unix_time_millis

# moto's Message and Queue are untyped (mypy ignores moto); these aliases say what is meant.
Message = Any
Clock = Callable[[], float]


class State(IntEnum):
    READY = 0
    IN_FLIGHT = 1
    DELAYED = 2


def now_ms() -> float:
    """moto's SQS clock (milliseconds since the epoch, as a float)."""
    return unix_time_millis()


def classify(message: Message, now_ms: float) -> State:
    """The state moto's `Message.visible` and `Message.delayed` properties imply at `now_ms`."""
    # moto: visible <=> now > visible_at; delayed <=> now < delayed_until. A message that is
    # both in flight and delayed cannot occur (delays are set only when a message is sent,
    # before anyone can receive it), so the three states partition the queue.
    if not now_ms > message.visible_at:
        return State.IN_FLIGHT
    if now_ms < message.delayed_until:
        return State.DELAYED
    return State.READY


# Which index a message belongs to. Weak keys, and not an attribute on the message, because
# moto deep-copies every message it hands out and would otherwise copy the whole index along.
_owners: weakref.WeakKeyDictionary[Message, MessageIndex] = weakref.WeakKeyDictionary()

# Indexes whose ready set grew since the server last looked (see localaws.longpoll).
became_ready: set[MessageIndex] = set()


def owner(message: Message) -> MessageIndex | None:
    return _owners.get(message)


class MessageIndex:
    """A queue's messages in arrival order, with O(1) counts, ready heap and handle map."""

    def __init__(self, clock: Clock, messages: Iterable[Message] = ()) -> None:
        self._clock = clock
        self.replace_all(messages)

    def replace_all(self, messages: Iterable[Message]) -> None:
        """Start over with these messages (PurgeQueue), keeping this index's identity.

        Long polls wait on the index object, so a purge must not swap it for another.
        """
        for old in list(getattr(self, "_seq", ())):
            if _owners.get(old) is self:
                del _owners[old]
        self._seq: dict[Message, int] = {}  # arrival order; dicts keep insertion order
        self._next_seq = itertools.count()
        self._state: dict[Message, State] = {}
        self._counts = [0, 0, 0]
        # (seq, message): entries go stale when a message leaves READY or the queue; they
        # are dropped when popped. `_heaped` says which seq a message's live entry has.
        self._ready: list[tuple[int, Message]] = []
        self._heaped: dict[Message, int] = {}
        # (when_ms, tiebreak, message, generation): a hidden message's next state change.
        self._timers: list[tuple[float, int, Message, int]] = []
        self._generation: dict[Message, int] = {}
        self._tiebreak = itertools.count()
        self._by_handle: dict[str, Message] = {}
        for message in messages:
            self.append(message)

    # -- the list interface moto's code uses -------------------------------------------

    def append(self, message: Message) -> None:
        self._seq[message] = next(self._next_seq)
        _owners[message] = self
        for handle in message.all_receipt_handles:
            if handle is not None:
                self._by_handle[handle] = message
        self._enter(message, classify(message, self._clock()))

    def remove(self, message: Message) -> None:
        if message not in self._seq:
            raise ValueError("message is not in this queue")
        del self._seq[message]
        self._counts[self._state.pop(message)] -= 1
        self._generation.pop(message, None)
        self._heaped.pop(message, None)
        if _owners.get(message) is self:
            del _owners[message]
        for handle in message.all_receipt_handles:
            if handle is not None and self._by_handle.get(handle) is message:
                del self._by_handle[handle]

    def __iter__(self) -> Iterator[Message]:
        # A snapshot: moto's code may remove messages while it walks them.
        return iter(list(self._seq))

    def __len__(self) -> int:
        return len(self._seq)

    def __contains__(self, message: object) -> bool:
        return message in self._seq

    def __getitem__(self, position: int) -> Message:
        return list(self._seq)[position]

    # -- what the patches ask -----------------------------------------------------------

    def count(self, state: State) -> int:
        self._advance()
        return self._counts[state]

    def by_handle(self, receipt_handle: str) -> Message | None:
        return self._by_handle.get(receipt_handle)

    def next_change_ms(self) -> float | None:
        """When the earliest hidden message may become ready (None: nothing is hidden)."""
        self._advance()
        while self._timers:
            _, _, message, generation = self._timers[0]
            if self._generation.get(message) == generation:
                return self._timers[0][0]
            heapq.heappop(self._timers)
        return None

    def ready(self) -> Iterator[Message]:
        """Ready messages, oldest first, popped lazily: a receive of 10 touches about 10.

        Messages the caller looked at but left ready (a FIFO group in flight, a zero
        visibility timeout, a message bound for the DLQ) go back when the caller stops.
        """
        self._advance()
        looked_at: dict[Message, int] = {}
        try:
            while self._ready:
                seq, message = heapq.heappop(self._ready)
                if self._heaped.get(message) == seq:
                    del self._heaped[message]
                if self._seq.get(message) != seq or self._state[message] != State.READY:
                    continue
                if message in looked_at:
                    # Re-queued while we walk (e.g. received with visibility timeout 0):
                    # moto's list walk sees each message once per receive.
                    continue
                looked_at[message] = seq
                yield message
        finally:
            for message, seq in looked_at.items():
                if self._seq.get(message) == seq and self._state[message] == State.READY:
                    self._push_ready(message)

    def changed(self, message: Message) -> None:
        """Re-read a member's visibility, delay and receipt handle after moto changed them."""
        if message not in self._seq:
            return
        handle = message.receipt_handle
        if handle is not None:
            self._by_handle[handle] = message
        self._counts[self._state[message]] -= 1
        self._enter(message, classify(message, self._clock()))

    # -- internals ---------------------------------------------------------------------

    def _enter(self, message: Message, state: State) -> None:
        self._state[message] = state
        self._counts[state] += 1
        generation = self._generation.get(message, 0) + 1
        self._generation[message] = generation
        if state == State.READY:
            self._push_ready(message)
            became_ready.add(self)
        else:
            when = message.visible_at if state == State.IN_FLIGHT else message.delayed_until
            entry = (when, next(self._tiebreak), message, generation)
            heapq.heappush(self._timers, entry)

    def _push_ready(self, message: Message) -> None:
        seq = self._seq[message]
        if self._heaped.get(message) != seq:
            self._heaped[message] = seq
            heapq.heappush(self._ready, (seq, message))

    def _advance(self) -> None:
        """Move messages whose visibility timeout or delay ran out to READY."""
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, message, generation = heapq.heappop(self._timers)
            if self._generation.get(message) != generation:
                continue
            state = classify(message, now)
            if state == self._state[message] and state != State.READY:
                # Exactly on the boundary (moto compares strictly): not yet. Try next time.
                heapq.heappush(self._timers, (now, next(self._tiebreak), message, generation))
                break
            self._counts[self._state[message]] -= 1
            self._enter(message, state)


class ReadyView:
    """What the patched `Queue.messages` returns: moto's list of ready messages, made lazy.

    moto iterates it (receive), tests it for truth (long-poll wait) and takes its length
    (ApproximateNumberOfMessages); none of those needs the whole list built.
    """

    def __init__(self, index: MessageIndex) -> None:
        self._index = index

    def __iter__(self) -> Iterator[Message]:
        return self._index.ready()

    def __len__(self) -> int:
        return self._index.count(State.READY)

    def __bool__(self) -> bool:
        return len(self) > 0

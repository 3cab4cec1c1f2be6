"""MessageIndex answers what moto's list walk would, for any sequence of queue operations.

A model keeps the plain list moto keeps and asks it the way moto does (every message's
`visible_at` and `delayed_until` against the clock); the index must agree after every step.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from moto.sqs.models import Message

from localaws.sqs_index import MessageIndex, State

ops = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from([0, 0, 0, 5, 20])),
        st.tuples(st.just("receive"), st.integers(1, 10), st.sampled_from([0, 3, 10, 30])),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("delete"), st.integers(0, 50)),
        st.tuples(st.just("tick"), st.sampled_from([1, 2, 5, 11])),
        st.tuples(st.just("purge")),
    ),
    max_size=60,
)


def stock_state(message: Message, now: float) -> State:
    """moto's own predicates: visible <=> now > visible_at; delayed <=> now < delayed_until."""
    if not now > message.visible_at:
        return State.IN_FLIGHT
    return State.DELAYED if now < message.delayed_until else State.READY


@settings(max_examples=300, deadline=None)
@given(ops)
def test_index_agrees_with_a_list_walk(steps: list[tuple[object, ...]]) -> None:
    now = [1_000_000.0]
    index = MessageIndex(lambda: now[0])
    model: list[Message] = []
    handles = itertools.count()
    for step in steps:
        match step:
            case ("send", int(delay)):
                message = Message(f"m{len(model)}-{now[0]}", "body")
                message.delayed_until = now[0] + delay
                model.append(message)
                index.append(message)
            case ("receive", int(count), int(visibility)):
                want = [m for m in model if stock_state(m, now[0]) == State.READY][:count]
                got = []
                for message in index.ready():
                    got.append(message)
                    # What moto's mark_received does, then tells the index.
                    if visibility:
                        message.visible_at = now[0] + visibility
                    message._old_receipt_handles.append(message.receipt_handle)
                    message.receipt_handle = f"h{next(handles)}"
                    index.changed(message)
                    if len(got) == count:
                        break
                assert got == want
            case ("release", int(i)) if model:
                message = model[i % len(model)]
                message.visible_at = now[0]  # ChangeMessageVisibility 0
                index.changed(message)
            case ("delete", int(i)) if model:
                message = model.pop(i % len(model))
                index.remove(message)
            case ("tick", int(dt)):
                now[0] += dt
            case ("purge",):
                model.clear()
                index.replace_all([])
        for state in State:
            assert index.count(state) == sum(stock_state(m, now[0]) == state for m in model)
        assert list(index) == model
        for message in model:
            for handle in message.all_receipt_handles:
                if handle is not None:
                    assert index.by_handle(handle) is message

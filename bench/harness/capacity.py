"""Capacity planning: payment slots and ECS tasks for an arrival rate (Little's law + Erlang C).

Little's law gives the floor: orders in payment L = arrival rate x payment time, so fewer
slots than that and the queue grows without end. Slots just above the floor keep up only on
average, and every burst of arrivals waits. The planner adds slots until the mean wait for a
free slot, by Erlang C (M/M/c: random arrivals and exponential payment times), is under the
target. Fixed-time payments wait less than that model says, so the answer errs on the safe side.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    arrival_rate: float
    """Orders per second."""
    payment_seconds: float
    target_wait_seconds: float
    """The mean time an order may wait for a free slot."""
    slots_per_task: int
    offered_load: float
    """Little's law: orders in payment at any moment, on average (rate x payment time)."""
    min_slots: int
    """The floor: ceil(offered load). Below it the queue grows forever."""
    slots: int
    """The slots to run: the fewest with a mean wait under the target."""
    predicted_wait_seconds: float
    utilization: float
    tasks: int
    """ECS tasks needed at `slots_per_task` slots (NUM_WORKERS) each."""

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def erlang_c_wait(arrival_rate: float, payment_seconds: float, slots: int) -> float:
    """Mean wait for a free slot in an M/M/c queue (seconds); inf when it cannot keep up."""
    load = arrival_rate * payment_seconds
    if slots <= load:
        return math.inf
    if load == 0:
        return 0.0
    # Erlang B by its stable recurrence, then Erlang C from it: no factorials of 1,000.
    blocking = 1.0
    for k in range(1, slots + 1):
        blocking = load * blocking / (k + load * blocking)
    waiting = slots * blocking / (slots - load * (1 - blocking))
    return waiting * payment_seconds / (slots - load)


def plan(
    arrival_rate: float,
    payment_seconds: float,
    target_wait_seconds: float,
    slots_per_task: int = 100,
) -> Plan:
    if arrival_rate < 0 or payment_seconds < 0:
        raise ValueError("arrival rate and payment time must not be negative")
    if target_wait_seconds <= 0:
        raise ValueError("the target wait must be above 0 s: no finite number of slots waits 0")
    if slots_per_task < 1:
        raise ValueError("a task runs at least one slot")
    load = arrival_rate * payment_seconds
    floor = math.ceil(load)
    slots = max(1, floor)
    while erlang_c_wait(arrival_rate, payment_seconds, slots) > target_wait_seconds:
        slots += 1
    return Plan(
        arrival_rate=arrival_rate,
        payment_seconds=payment_seconds,
        target_wait_seconds=target_wait_seconds,
        slots_per_task=slots_per_task,
        offered_load=load,
        min_slots=floor,
        slots=slots,
        predicted_wait_seconds=erlang_c_wait(arrival_rate, payment_seconds, slots),
        utilization=load / slots,
        tasks=math.ceil(slots / slots_per_task),
    )

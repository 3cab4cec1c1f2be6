"""The capacity planner: Little's law floor, Erlang C wait, slots and ECS tasks."""

from __future__ import annotations

import math

import pytest

from bench.harness.capacity import erlang_c_wait, plan


def test_erlang_c_matches_the_textbook_case() -> None:
    # M/M/3 at 2 orders/s and 1 s service: P(wait) = 4/9, mean wait = P(wait) / (c - a).
    assert erlang_c_wait(2.0, 1.0, 3) == pytest.approx(4 / 9)


def test_too_few_slots_wait_forever() -> None:
    assert erlang_c_wait(60, 3, 180) == math.inf
    assert erlang_c_wait(60, 3, 100) == math.inf


def test_flash_sale_plan_is_above_the_littles_law_floor_and_meets_its_target() -> None:
    p = plan(60, 3, 0.1, slots_per_task=100)
    assert p.offered_load == pytest.approx(180)
    assert p.min_slots == 180
    assert p.slots > p.min_slots
    assert p.predicted_wait_seconds <= 0.1
    # The fewest that do: one slot less misses the target.
    assert erlang_c_wait(60, 3, p.slots - 1) > 0.1
    assert p.tasks == math.ceil(p.slots / 100)
    assert p.utilization == pytest.approx(180 / p.slots)


def test_a_tighter_target_needs_more_slots() -> None:
    assert plan(60, 3, 0.01).slots > plan(60, 3, 0.1).slots > plan(60, 3, 1.0).slots


def test_no_arrivals_need_one_slot() -> None:
    p = plan(0, 3, 0.1)
    assert (p.slots, p.min_slots, p.tasks) == (1, 0, 1)


@pytest.mark.parametrize(
    ("rate", "pay", "wait", "per_task"),
    [(60, 3, 0, 100), (60, 3, -1, 100), (-1, 3, 0.1, 100), (60, 3, 0.1, 0)],
)
def test_impossible_plans_are_refused(rate: float, pay: float, wait: float, per_task: int) -> None:
    with pytest.raises(ValueError):
        plan(rate, pay, wait, per_task)

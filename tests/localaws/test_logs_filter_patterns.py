"""FilterLogEvents with CloudWatch Logs filter patterns (what `aws logs filter-log-events
--filter-pattern` sends), through boto3 against the local AWS, over the fixed log."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from .insights_fixture import Fixture, Line, logs_client, ship


@pytest.fixture(scope="module")
def fixture(endpoint: str) -> Fixture:
    return ship(endpoint)


@pytest.fixture(scope="module")
def logs(endpoint: str) -> Any:
    return logs_client(endpoint)


def _filtered(logs: Any, group: str, pattern: str) -> list[str]:
    messages: list[str] = []
    kwargs: dict[str, Any] = {"logGroupName": group, "filterPattern": pattern}
    while True:
        page = logs.filter_log_events(**kwargs)
        messages += [event["message"] for event in page["events"]]
        if not page.get("nextToken") or not page["events"]:
            return messages
        kwargs["nextToken"] = page["nextToken"]


CASES: list[tuple[str, Callable[[Line], bool]]] = [
    ('{ $.event = "order_paid" }', lambda x: x.get("event") == "order_paid"),
    ("{ $.event = order_* }", lambda x: str(x.get("event") or "").startswith("order_")),
    ('{ $.event != "order_paid" }',
     lambda x: x.data is not None and x.get("event") != "order_paid"),
    ("{ $.status >= 500 }", lambda x: (x.get("status") or 0) >= 500),
    (
        '{ ($.status = 400 || $.status = 500) && $.method = "POST" }',
        lambda x: x.get("status") in (400, 500) and x.get("method") == "POST",
    ),
    ('{ $.tags[1] = "t1" }', lambda x: x.get("tags.1") == "t1"),
    ('{ $.ctx.user.id = "u3" }', lambda x: x.get("ctx.user.id") == "u3"),
    ("{ $.code NOT EXISTS }", lambda x: x.data is not None and x.get("code") is None),
    ("ERROR", lambda x: "ERROR" in x.message),
    ('"The error was"', lambda x: "The error was" in x.message),
    ("ERROR -foo=0", lambda x: "ERROR" in x.message and "foo=0" not in x.message),
    ("?alice ?PUT", lambda x: "alice" in x.message or "PUT" in x.message),
]  # fmt: skip


@pytest.mark.parametrize(("pattern", "wanted"), CASES, ids=[c[0] for c in CASES])
def test_filter_pattern_selects_the_documented_events(
    logs: Any, fixture: Fixture, pattern: str, wanted: Callable[[Line], bool]
) -> None:
    groups = (fixture.api, fixture.worker)
    got = sorted(m for group in groups for m in _filtered(logs, group, pattern))
    want = sorted(x.message for x in fixture.of(*groups) if wanted(x))
    assert want, "a case that selects nothing proves nothing"
    assert got == want


def test_a_space_delimited_pattern_is_moto_s_answer(logs: Any, fixture: Fixture) -> None:
    # Not emulated: every event, as moto answers any pattern it does not know.
    got = _filtered(logs, fixture.api, "[ip, user, ...]")
    assert len(got) == len(fixture.of(fixture.api))
    assert all(re.match(r"[\[{]", m) or m for m in got)

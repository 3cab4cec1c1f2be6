"""IAM identity-policy evaluation: is `action` on `resource` allowed by these policy documents?

The part of AWS's policy evaluation logic that applies to a role's own (identity-based)
policies in one account: an explicit Deny in any statement wins, else an Allow in any
statement allows, else the request is implicitly denied. `Action`/`NotAction` match without
regard to case, `Resource`/`NotResource` with it; in both, `*` matches any run of characters
and `?` any one character. Conditions are not evaluated, and fail closed: an Allow with a
`Condition` never allows, a Deny with one always denies (README.md, "IAM").
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from enum import Enum
from typing import Any

import orjson


class Decision(Enum):
    ALLOWED = "allowed"
    IMPLICIT_DENY = "implicit_deny"
    """No statement allows it: AWS's "because no identity-based policy allows ..."."""
    EXPLICIT_DENY = "explicit_deny"
    """A Deny statement matches: AWS's "with an explicit deny in an identity-based policy"."""


@functools.lru_cache(maxsize=4096)
def _pattern(glob: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in glob)
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def matches(glob: str, value: str, *, ignore_case: bool) -> bool:
    """IAM's wildcard match of one `Action` or `Resource` entry against `value`."""
    return _pattern(glob, ignore_case).fullmatch(value) is not None


def _entries(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value or ()]


def _applies(statement: dict[str, Any], action: str, resource: str) -> bool:
    """Whether the statement's action and resource elements cover this request."""
    if "NotAction" in statement:
        on_action = not any(
            matches(a, action, ignore_case=True) for a in _entries(statement["NotAction"])
        )
    else:
        on_action = any(
            matches(a, action, ignore_case=True) for a in _entries(statement.get("Action"))
        )
    if not on_action:
        return False
    if "NotResource" in statement:
        return not any(
            matches(r, resource, ignore_case=False) for r in _entries(statement["NotResource"])
        )
    return any(matches(r, resource, ignore_case=False) for r in _entries(statement.get("Resource")))


def statements(document: str | dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of one policy document (JSON text or decoded), always as a list."""
    parsed = orjson.loads(document) if isinstance(document, str) else document
    found = parsed.get("Statement", [])
    return [found] if isinstance(found, dict) else list(found)


def evaluate(documents: Iterable[str | dict[str, Any]], action: str, resource: str) -> Decision:
    """AWS's decision for `action` on `resource` under these identity policies."""
    allowed = False
    for document in documents:
        for statement in statements(document):
            if not _applies(statement, action, resource):
                continue
            if statement.get("Effect") == "Deny":
                return Decision.EXPLICIT_DENY
            if statement.get("Effect") == "Allow" and "Condition" not in statement:
                allowed = True
    return Decision.ALLOWED if allowed else Decision.IMPLICIT_DENY

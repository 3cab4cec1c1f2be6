"""Which AWS call a request is (service, region, operation), and how many of each came in.

Worked out from the request the way AWS routes it, without running moto: the service and
region from the SigV4 credential scope, the operation from `X-Amz-Target` (JSON protocol:
DynamoDB, SQS) or the `Action` parameter (query protocol: SNS, SQS's older clients).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_plus

# Credential=AKID/20260101/us-east-1/sqs/aws4_request in the header, or in the query
# string's X-Amz-Credential (presigned URLs), percent-encoded there.
_SCOPE = re.compile(r"Credential=[^/,\s]*/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_QUERY_SCOPE = re.compile(r"(?:^|&)X-Amz-Credential=[^&]*?%2F\d{8}%2F([^&%]+)%2F([^&%]+)%2F")

Protocol = Literal["json", "query", "other"]
"""How the client speaks, so an injected error comes back in the shape it parses."""


@dataclass(frozen=True, slots=True)
class AwsCall:
    service: str
    """The signing name from the credential scope ("sqs"), or "unknown" if unsigned."""
    region: str
    operation: str
    """The API action ("ReceiveMessage"); the HTTP method for REST-style APIs."""
    protocol: Protocol


def identify(method: str, headers: Mapping[str, str], query: str, body: bytes) -> AwsCall:
    """The AWS call `body` and `headers` make, as far as they say."""
    service, region = "unknown", "unknown"
    scope = _SCOPE.search(headers.get("Authorization", "")) or _QUERY_SCOPE.search(query)
    if scope is not None:
        region, service = scope.group(1), scope.group(2)
    target = headers.get("X-Amz-Target")
    if target:
        return AwsCall(service, region, target.rpartition(".")[2], "json")
    action = _action(query.encode("latin-1", "replace"))
    if action is None and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        action = _action(body)
    if action is not None:
        return AwsCall(service, region, action, "query")
    return AwsCall(service, region, method, "other")


def _action(form: bytes) -> str | None:
    """The Action parameter of a form; bytes.find, not parse_qs or a regex: a form body can
    be a 256 KiB message (a regex alternation took 6 ms on one), and only Action matters."""
    if form.startswith(b"Action="):
        start = 7
    elif (at := form.find(b"&Action=")) >= 0:
        start = at + 8
    else:
        return None
    end = form.find(b"&", start)
    return unquote_plus(form[start : end if end >= 0 else len(form)].decode("latin-1"))


class Counts:
    """Requests received per service and operation since the server started."""

    def __init__(self) -> None:
        self._counts: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )

    def add(self, call: AwsCall) -> None:
        self._counts[call.service][call.operation] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {service: dict(ops) for service, ops in self._counts.items()}

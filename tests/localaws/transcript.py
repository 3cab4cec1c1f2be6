"""Record what a server answers, with the parts that differ on every run made comparable."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable
from typing import Any

from botocore.exceptions import ClientError

# Values unique per run: replaced by a stable name per distinct value, so that "the same
# message came back" still shows, but two servers' random ids compare equal.
_IDS = {"MessageId", "ReceiptHandle", "SequenceNumber", "Signature", "SigningCertURL"}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b[0-9a-f]{32}\b")
# What a DynamoDB error carries besides its code and message.
_ERROR_DETAILS = ("CancellationReasons", "Item")
# Clock readings: kept only as "present".
_TIMES = {
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "Timestamp",
}


class Transcript:
    """Steps of a scenario and what the server answered to each, normalised."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.steps: list[tuple[str, Any]] = []
        self._names: dict[str, str] = {}

    async def step(self, label: str, call: Awaitable[Any], *, reraise: bool = False) -> Any:
        """Await an API call, record its answer (or its error), return the raw answer.

        An error is recorded and swallowed (None comes back) unless `reraise`.
        """
        try:
            answer = await call
        except ClientError as exc:
            error = exc.response["Error"]
            got = {"error": error.get("Code"), "msg": error.get("Message")}
            if exc.response["ResponseMetadata"].get("HTTPStatusCode", 0) >= 500:
                # moto crashed: each server words its 500 page its own way.
                got["msg"] = "<server error page>"
            got.update({k: exc.response[k] for k in _ERROR_DETAILS if k in exc.response})  # type: ignore[literal-required]
            self.steps.append((label, self._normal(got)))
            if reraise:
                raise
            return None
        self.steps.append((label, self._normal(answer)))
        return answer

    def note(self, label: str, value: Any) -> None:
        self.steps.append((label, self._normal(value)))

    def _name(self, value: str) -> str:
        return self._names.setdefault(value, f"<{len(self._names)}>")

    def _normal(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            normal = {
                k: self._normal(v, k) for k, v in sorted(value.items()) if k != "ResponseMetadata"
            }
            if isinstance(normal.get("Body"), dict) and "MD5OfBody" in normal:
                normal["MD5OfBody"] = "<md5 of an SNS envelope>"  # it holds a timestamp
            return normal
        if isinstance(value, list):
            return [self._normal(v, key) for v in value]
        if not isinstance(value, str):
            return value
        if key in _IDS:
            return self._name(value)
        if key in _TIMES:
            return "<time>"
        if key == "Body" and value.startswith("{") and '"Type"' in value:
            # An SNS envelope (not raw delivery): compare its fields, normalised too.
            return self._normal(json.loads(value))
        value = _UUID.sub(lambda m: self._name(m.group()), value)
        return value.replace(self.endpoint, "<endpoint>")

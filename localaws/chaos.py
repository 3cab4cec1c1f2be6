"""Fault rules for the local AWS, in the shape of LocalStack's Chaos API.

A rule names a service (and maybe a region and an operation); a call it matches is, with
the rule's probability, delayed by `latency_ms` and/or failed with `error`, rendered the way
that AWS protocol renders errors, so botocore raises the same `ClientError` (code and HTTP
status) as it would against AWS.

This project's extension of the LocalStack shape: `"lost_answer": true` serves the call
(moto applies it) and then answers with the rule's `error` instead of moto's answer, so "the
write was applied but its answer was lost" can be injected per operation.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import orjson
from aiohttp import web

from .calls import AwsCall

SERVICES = ("dynamodb", "sns", "sqs")
MAX_LATENCY_MS = 600_000
"""Ten minutes: longer is surely a typo, and would outlive any client's read timeout."""

# What AWS puts before '#' in a JSON error's __type (botocore keeps only what follows).
_JSON_NAMESPACE = {"dynamodb": "com.amazonaws.dynamodb.v20120810", "sqs": "com.amazonaws.sqs"}
_XML_NAMESPACE = {
    "sns": "http://sns.amazonaws.com/doc/2010-03-31/",
    "sqs": "http://queue.amazonaws.com/doc/2012-11-05/",
}
# An AWS error code: botocore cuts a JSON __type at ':' and '#', and SQS's code travels in
# a header, so nothing else gets in.
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,127}")
_RULE_KEYS = {"service", "region", "operation", "probability", "error", "latency_ms", "lost_answer"}
_ERROR_KEYS = {"statusCode", "code", "message"}


class RuleError(ValueError):
    """A rule list the server refuses; the message names the offending field."""


@dataclass(frozen=True, slots=True)
class InjectedError:
    status: int = 503
    code: str = "ServiceUnavailable"
    message: str = "injected by a localaws fault rule"


@dataclass(frozen=True, slots=True)
class Rule:
    service: str
    region: str | None = None
    operation: str | None = None
    probability: float = 1.0
    error: InjectedError | None = None
    latency_ms: float = 0
    lost_answer: bool = False
    """Serve the call, then answer with `error` (this project's extension)."""

    def matches(self, call: AwsCall) -> bool:
        return (
            call.service == self.service
            and self.region in (None, call.region)
            and self.operation in (None, call.operation)
        )

    def to_json(self) -> dict[str, Any]:
        """The rule as the API takes it, with its defaults filled in."""
        out: dict[str, Any] = {"service": self.service, "probability": self.probability}
        if self.region is not None:
            out["region"] = self.region
        if self.operation is not None:
            out["operation"] = self.operation
        if self.error is not None:
            out["error"] = {
                "statusCode": self.error.status,
                "code": self.error.code,
                "message": self.error.message,
            }
        if self.latency_ms:
            out["latency_ms"] = self.latency_ms
        if self.lost_answer:
            out["lost_answer"] = True
        return out


@dataclass(frozen=True, slots=True)
class Fault:
    """What the rules decided for one call."""

    latency_ms: float
    error: InjectedError | None
    lost_answer: bool = False
    """The error replaces the answer of a call that was served."""


class Faults:
    """The rules in force, and the per-call draw."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rules: tuple[Rule, ...] = ()
        self._rng = rng or random.Random()

    def draw(self, call: AwsCall) -> Fault | None:
        """Every rule matching `call` fires with its own probability: delays add up, and
        the first firing rule with an error sets it."""
        latency, error, lost, fired = 0.0, None, False, False
        for rule in self.rules:
            if rule.matches(call) and self._rng.random() < rule.probability:
                fired = True
                latency += rule.latency_ms
                if error is None and rule.error is not None:
                    error, lost = rule.error, rule.lost_answer
        return Fault(latency, error, lost) if fired else None

    async def inject(self, call: AwsCall) -> web.Response | None:
        """Delay `call` as the rules say; the error response to send instead, if any."""
        fault = await self.before(call)
        if fault is None or fault.error is None or fault.lost_answer:
            return None
        return error_response(fault.error, call)

    async def before(self, call: AwsCall) -> Fault | None:
        """Draw the rules for `call` and wait out their delay; the fault, if any fired.

        The caller answers a fault's error instead of serving the call, or, for a lost
        answer, after serving it (`after`)."""
        fault = self.draw(call)
        if fault is not None and fault.latency_ms:
            # A sleep on the loop, not in moto: every other request goes on meanwhile.
            await asyncio.sleep(fault.latency_ms / 1000)
        return fault

    @staticmethod
    def after(fault: Fault | None, call: AwsCall, served: web.Response) -> web.Response:
        """The answer for a served call: moto's, or the error that replaces a lost one."""
        if fault is not None and fault.lost_answer and fault.error is not None:
            return error_response(fault.error, call)
        return served


def parse_rules(raw: object) -> tuple[Rule, ...]:
    """Rules from a decoded JSON body; RuleError names the first thing wrong."""
    if not isinstance(raw, list):
        raise RuleError("the body must be a JSON list of rules")
    return tuple(_parse_rule(item, f"[{i}]") for i, item in enumerate(raw))


def _parse_rule(raw: object, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: a rule must be an object")
    if unknown := sorted(set(raw) - _RULE_KEYS):
        raise RuleError(f"{where}: unknown field {unknown[0]!r}")
    service = raw.get("service")
    if service not in SERVICES:
        raise RuleError(f"{where}.service: must be one of {', '.join(SERVICES)}")
    region = _optional_name(raw, "region", where)
    operation = _optional_name(raw, "operation", where)
    probability = _number(raw, "probability", where, default=1.0, high=1.0)
    latency_ms = _number(raw, "latency_ms", where, default=0, high=MAX_LATENCY_MS)
    error = _parse_error(raw["error"], f"{where}.error") if "error" in raw else None
    lost_answer = raw.get("lost_answer", False)
    if not isinstance(lost_answer, bool):
        raise RuleError(f"{where}.lost_answer: must be true or false")
    if lost_answer and error is None:
        raise RuleError(f"{where}.lost_answer: needs an error to answer with")
    if error is None and not latency_ms:
        # LocalStack fails such a rule's calls with a default error; served normally here,
        # it would silently do nothing, so it is refused rather than guessed at.
        raise RuleError(f"{where}: give an error, a latency_ms, or both")
    return Rule(str(service), region, operation, probability, error, latency_ms, lost_answer)


def _parse_error(raw: object, where: str) -> InjectedError:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be an object")
    if unknown := sorted(set(raw) - _ERROR_KEYS):
        raise RuleError(f"{where}: unknown field {unknown[0]!r}")
    default = InjectedError()
    status = raw.get("statusCode", default.status)
    if type(status) is not int or not 400 <= status <= 599:
        raise RuleError(f"{where}.statusCode: must be an integer from 400 to 599")
    code = raw.get("code", default.code)
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise RuleError(f"{where}.code: must be an AWS error code such as ServiceUnavailable")
    message = raw.get("message", default.message)
    if not isinstance(message, str):
        raise RuleError(f"{where}.message: must be a string")
    return InjectedError(status, code, message)


def _optional_name(raw: dict[str, object], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise RuleError(f"{where}.{key}: must be a non-empty string")
    return value


def _number(raw: dict[str, object], key: str, where: str, *, default: float, high: float) -> float:
    value = raw.get(key, default)
    # bool is an int to Python, not to a JSON reader.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"{where}.{key}: must be a number")
    if not (math.isfinite(value) and 0 <= value <= high):
        raise RuleError(f"{where}.{key}: must be from 0 to {high:g}")
    return value


def error_response(
    error: InjectedError, call: AwsCall, *, json_type: str | None = None
) -> web.Response:
    """`error` as AWS renders it for the protocol `call` was made in.

    `json_type`: the JSON `__type` when it is not the service's namespace and the code (an
    access denial comes from AWS's authorizer; SQS names its errors apart from their codes).
    """
    request_id = str(uuid.uuid4())
    if call.protocol == "query":
        namespace = _XML_NAMESPACE.get(call.service, "")
        kind = "Sender" if error.status < 500 else "Receiver"
        xml = (
            f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type>'
            f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return web.Response(
            status=error.status,
            body=xml.encode(),
            content_type="text/xml",
            headers={"x-amzn-RequestId": request_id},
        )
    namespace = _JSON_NAMESPACE.get(call.service, f"com.amazonaws.{call.service}")
    headers = {"x-amzn-RequestId": request_id}
    if call.service == "sqs":
        # SQS speaks JSON but is "awsQueryCompatible": botocore takes the error code from
        # this header when present, as AWS sends it.
        kind = "Sender" if error.status < 500 else "Receiver"
        headers["x-amzn-query-error"] = f"{error.code};{kind}"
    body = {"__type": json_type or f"{namespace}#{error.code}", "message": error.message}
    return web.Response(
        status=error.status,
        body=orjson.dumps(body),
        content_type="application/x-amz-json-1.0",
        headers=headers,
    )


def rules_json(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    return [rule.to_json() for rule in rules]

"""The direct dispatch answers byte for byte as moto's Flask app does.

Status, headers (but the request id and date) and body of the same requests, sent once
through moto's own `DomainDispatcherApplication` and once through the patch's, in this
process on moto's WSGI app: the one place where the two paths can be told apart (over
HTTP the patched server always takes the direct one).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.test import EnvironBuilder

from localaws import direct_dispatch

_AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20270101/us-east-1/{}/aws4_request, "
    "SignedHeaders=host, Signature=0"
)
_TABLE = {
    "TableName": "dispatch",
    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "BillingMode": "PAY_PER_REQUEST",
}
_ITEM = {"pk": {"S": "x"}, "b": {"B": "AAE="}, "n": {"N": "1.5"}}
# Each request leaves the table as it found it, so both paths see the same state.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("ListTables", {}),
    ("DescribeTable", {"TableName": "nope"}),
    ("GetItem", {"TableName": "dispatch", "Key": {"pk": {"S": "x"}}}),
    ("GetItem", {"TableName": "dispatch", "Key": {"pk": {"S": "absent"}}}),
    (
        "PutItem",
        {
            "TableName": "dispatch",
            "Item": _ITEM,
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        },
    ),
    ("UpdateItem", {"TableName": "dispatch", "Key": {"pk": {"S": "x"}}, "UpdateExpression": "SET"}),
    ("BatchGetItem", {"RequestItems": {"dispatch": {"Keys": [{"pk": {"S": "x"}}]}}}),
    ("NoSuchOperation", {}),
    ("sqs.ListQueues", {}),
    ("sqs.GetQueueUrl", {"QueueName": "nope"}),
    ("sqs.SendMessage", {"QueueUrl": "http://localhost/123456789012/dispatch", "MessageBody": "m"}),
    ("sns.ListTopics", {"Action": "ListTopics", "Version": "2010-03-31"}),
    (
        "sns.Publish",
        {"Action": "Publish", "TopicArn": "arn:aws:sns:us-east-1:123456789012:no", "Message": "m"},
    ),
]


def _environ(target: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    return _post(
        json.dumps(body),
        {
            "X-Amz-Target": f"DynamoDB_20120810.{target}",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": _AUTH.format("dynamodb"),
            **headers,
        },
    )


def _post(data: str | dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    """A WSGI environ for a POST to / with `data` and `headers`."""
    environ: dict[str, Any] = EnvironBuilder(
        path="/", method="POST", data=data, headers=list(headers.items())
    ).get_environ()
    return environ


def _sqs(target: str, body: dict[str, Any]) -> dict[str, Any]:
    return _post(
        json.dumps(body),
        {
            "X-Amz-Target": f"AmazonSQS.{target}",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": _AUTH.format("sqs"),
        },
    )


def _sns(form: dict[str, str]) -> dict[str, Any]:
    return _post(form, {"Authorization": _AUTH.format("sns")})


def _body(environ: dict[str, Any]) -> Any:
    """A second reading of the same request body (each path reads it once)."""
    data = environ["wsgi.input"].read()
    environ["wsgi.input"] = io.BytesIO(data)
    return io.BytesIO(data)


Call = Callable[[Any, dict[str, Any], Any], Iterable[bytes]]


def _answer(call: Call, app: Any, environ: dict[str, Any]) -> dict[str, Any]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        got["status"] = status
        got["headers"] = sorted(
            (k.lower(), v) for k, v in headers if k.lower() not in ("x-amzn-requestid", "date")
        )

    try:
        body = b"".join(call(app, environ, start_response))
        # A query-protocol body carries a fresh request id, as the header does.
        got["body"] = re.sub(rb"<RequestId>[^<]*</RequestId>", b"<RequestId/>", body)
    except Exception as exc:  # both paths must fail alike too
        got["raised"] = type(exc).__name__
    return got


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Any:
    original = DomainDispatcherApplication.__call__
    monkeypatch.setattr(direct_dispatch, "_original_call", original)
    monkeypatch.setattr(direct_dispatch, "_apps", {})
    app = DomainDispatcherApplication(create_backend_app)
    original(app, _environ("CreateTable", _TABLE), lambda *a: None)
    original(app, _environ("PutItem", {"TableName": "dispatch", "Item": _ITEM}), lambda *a: None)
    return app


@pytest.mark.parametrize(("target", "body"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_direct_dispatch_answers_as_flask(
    app: Any, target: str, body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[bool] = []
    serve = direct_dispatch._serve

    def counted(*args: Any) -> Any:
        taken.append(True)
        return serve(*args)

    monkeypatch.setattr(direct_dispatch, "_serve", counted)
    environ = _sqs(target[4:], body) if target.startswith("sqs.") else _environ(target, body)
    if target.startswith("sns."):
        environ = _sns(body)
    want = _answer(
        DomainDispatcherApplication.__call__, app, dict(environ, **{"wsgi.input": _body(environ)})
    )
    got = _answer(direct_dispatch._call, app, environ)
    assert taken == [True]
    assert got == want
    if "raised" not in got:  # flask-cors's header, added by the direct path too
        assert ("access-control-allow-origin", "*") in got["headers"]


def test_a_browser_request_takes_flask(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct_dispatch, "_serve", lambda *a: pytest.fail("direct path"))
    environ = _environ("ListTables", {}, Origin="http://example.com")
    assert _answer(direct_dispatch._call, app, environ)["status"] == "200 OK"

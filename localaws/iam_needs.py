"""What IAM permissions one DynamoDB, SNS or SQS request needs: actions on real resource ARNs.

As AWS's service authorization reference has them for the calls the services make: a batch
or transaction is authorized as the single-item actions inside it, on each item's table;
SQS's batch calls as their single-message action; SNS's PublishBatch as sns:Publish. A
resource encrypted with a customer-managed KMS key adds the caller's implicit KMS
permissions on that key: DynamoDB's data-plane calls kms:Decrypt, SNS publishing
kms:GenerateDataKey and kms:Decrypt, SQS sending kms:GenerateDataKey and receiving
kms:Decrypt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from .calls import AwsCall

KeyOf = Callable[[str], str | None]
"""A resource ARN's customer-managed KMS key ARN, or None (unencrypted or an AWS key)."""


@dataclass(frozen=True, slots=True)
class Need:
    action: str
    """As IAM names it: "dynamodb:PutItem"."""
    resource: str
    """The resource ARN the action is evaluated on ("*" where the API has none)."""
    kms: bool = False
    """An implicit KMS permission of an encrypted resource: denied, it is the service's KMS
    error, not its plain access denial."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a request's resources live when it names them without an ARN."""

    account: str
    region: str
    partition: str = "aws"


# DynamoDB calls that read or write items, so need the table's key (control-plane calls such
# as DescribeTable do not decrypt anything).
_DYNAMODB_DATA = {
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
    "BatchWriteItem", "TransactGetItems", "TransactWriteItems", "ExecuteStatement",
    "BatchExecuteStatement", "ExecuteTransaction",
}  # fmt: skip
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
_SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_SQS_KMS = {"SendMessage": "kms:GenerateDataKey", "ReceiveMessage": "kms:Decrypt"}
_SNS_PUBLISH = {"Publish", "PublishBatch"}


def needs(call: AwsCall, params: dict[str, Any], scope: Scope, key_of: KeyOf) -> list[Need] | None:
    """The permissions `call` needs, in the order AWS checks them; None for a service that is
    not evaluated (README.md, "IAM")."""
    if call.service == "dynamodb":
        return _dynamodb(call.operation, params, scope, key_of)
    if call.service == "sqs":
        return _sqs(call.operation, params, scope, key_of)
    if call.service == "sns":
        return _sns(call.operation, params, key_of)
    return None


def params_of(call: AwsCall, query: str, body: bytes) -> dict[str, Any]:
    """The request's parameters: the JSON body, or the query string and form."""
    if call.protocol == "json":
        try:
            parsed = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    form = dict(parse_qsl(query))
    if call.protocol == "query":
        form.update(parse_qsl(body.decode("utf-8", "replace")))
    return form


def table_arn(name: str, scope: Scope) -> str:
    if name.startswith("arn:"):
        return name  # DynamoDB takes a table's ARN wherever it takes its name
    return f"arn:{scope.partition}:dynamodb:{scope.region}:{scope.account}:table/{name}"


def queue_arn(url: str, scope: Scope) -> str:
    """A queue URL's ARN: the account and name are the URL's path."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    account, name = (parts[-2], parts[-1]) if len(parts) >= 2 else (scope.account, parts[-1])
    return f"arn:{scope.partition}:sqs:{scope.region}:{account}:{name}"


def _dynamodb(op: str, params: dict[str, Any], scope: Scope, key_of: KeyOf) -> list[Need]:
    pairs: list[tuple[str, str]] = []  # (action, table)
    if op in ("TransactWriteItems", "TransactGetItems"):
        for item in params.get("TransactItems") or []:
            for kind, request in (item or {}).items():
                action = _TRANSACT_ACTIONS.get(kind)
                if action is not None and isinstance(request, dict):
                    pairs.append((action, str(request.get("TableName", ""))))
    elif op in ("BatchGetItem", "BatchWriteItem"):
        pairs = [(op, str(table)) for table in params.get("RequestItems") or {}]
    elif "TableName" in params:
        pairs = [(op, str(params["TableName"]))]
    else:
        return [Need(f"dynamodb:{op}", "*")]
    found: list[Need] = []
    for action, table in dict.fromkeys(pairs):
        found.append(Need(f"dynamodb:{action}", table_arn(table, scope)))
    if op in _DYNAMODB_DATA:
        for table in dict.fromkeys(table for _, table in pairs):
            if (key := key_of(table_arn(table, scope))) is not None:
                found.append(Need("kms:Decrypt", key, kms=True))
    return list(dict.fromkeys(found))


def _sqs(op: str, params: dict[str, Any], scope: Scope, key_of: KeyOf) -> list[Need]:
    action = _SQS_BATCH.get(op, op)
    if "QueueUrl" in params:
        resource = queue_arn(str(params["QueueUrl"]), scope)
    elif "QueueName" in params:
        owner = str(params.get("QueueOwnerAWSAccountId") or scope.account)
        resource = f"arn:{scope.partition}:sqs:{scope.region}:{owner}:{params['QueueName']}"
    else:
        return [Need(f"sqs:{action}", "*")]
    found = [Need(f"sqs:{action}", resource)]
    if action in _SQS_KMS and (key := key_of(resource)) is not None:
        found.append(Need(_SQS_KMS[action], key, kms=True))
    return found


def _sns(op: str, params: dict[str, Any], key_of: KeyOf) -> list[Need]:
    resource = str(params.get("TopicArn") or params.get("TargetArn") or "*")
    action = "Publish" if op in _SNS_PUBLISH else op
    found = [Need(f"sns:{action}", resource)]
    if op in _SNS_PUBLISH and resource != "*" and (key := key_of(resource)) is not None:
        found += [Need("kms:GenerateDataKey", key, kms=True), Need("kms:Decrypt", key, kms=True)]
    return found

"""IAM enforced on requests signed with assumed-role credentials (`--enforce-iam`).

A request whose access key moto's STS handed out for `AssumeRole` is evaluated against that
role's identity policies (inline and attached managed, as they are when the request comes
in) on the real resource ARNs (iam_needs), and refused the way the service refuses it
(error code, HTTP status, message). Any other credentials (the default keys Terraform and
the tests sign with) are the account's administrator, as before. Runs on the server's loop
thread, between requests, like moto itself, so moto's state is read without locks.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from moto.dynamodb.models import dynamodb_backends
from moto.iam.models import iam_backends
from moto.kms.models import kms_backends
from moto.sns.models import sns_backends
from moto.sqs.models import sqs_backends
from moto.sts.models import AssumedRole, sts_backends

from . import iam_needs, iam_policy
from .calls import AwsCall
from .chaos import InjectedError, error_response
from .iam_needs import Need, Scope
from .iam_policy import Decision

_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")
_QUERY_ACCESS_KEY = re.compile(r"(?:^|&)X-Amz-Credential=([^&%]+)%2F")
# The namespace AWS's request authorizer (not the service) puts in a JSON denial's __type.
_CORAL = "com.amazon.coral.service"


@dataclass(frozen=True, slots=True)
class Refusal:
    """How one service refuses a call: its plain access denial and its KMS denial."""

    denied: tuple[int, str, str | None]
    """(HTTP status, error code, JSON __type or None for the query protocol)."""
    kms_denied: tuple[int, str, str | None]


_REFUSALS = {
    "dynamodb": Refusal(
        (400, "AccessDeniedException", f"{_CORAL}#AccessDeniedException"),
        (400, "AccessDeniedException", f"{_CORAL}#AccessDeniedException"),
    ),
    # SQS's JSON protocol is query-compatible: botocore takes the code from the
    # x-amzn-query-error header (AccessDenied, KMS.AccessDeniedException), as AWS sends it.
    "sqs": Refusal(
        (403, "AccessDenied", f"{_CORAL}#AccessDeniedException"),
        (400, "KMS.AccessDeniedException", "com.amazonaws.sqs#KmsAccessDenied"),
    ),
    "sns": Refusal((403, "AuthorizationError", None), (400, "KMSAccessDenied", None)),
}


def message(caller: str, need: Need, decision: Decision, request_id: str = "") -> str:
    """AWS's wording of a denial; a KMS denial carries KMS's own error, as AWS wraps it."""
    why = (
        "with an explicit deny in an identity-based policy"
        if decision is Decision.EXPLICIT_DENY
        else f"because no identity-based policy allows the {need.action} action"
    )
    action, resource = need.action, need.resource
    text = f"User: {caller} is not authorized to perform: {action} on resource: {resource} {why}"
    if need.kms:
        text += (
            " (Service: AWSKMS; Status Code: 400; Error Code: AccessDeniedException;"
            f" Request ID: {request_id or uuid.uuid4()}; Proxy: null)"
        )
    return text


def refusal(call: AwsCall, caller: str, need: Need, decision: Decision) -> web.Response:
    """The service's answer to a call `decision` refuses."""
    shapes = _REFUSALS[call.service]
    status, code, json_type = shapes.kms_denied if need.kms else shapes.denied
    error = InjectedError(status, code, message(caller, need, decision))
    return error_response(error, call, json_type=json_type)


class Gate:
    """Decides, before moto runs a request, whether its caller may make it."""

    def __init__(self) -> None:
        self._assumed: dict[str, AssumedRole] = {}

    def check(
        self, call: AwsCall, headers: Mapping[str, str], query: str, body: bytes
    ) -> web.Response | None:
        """The refusal to send instead of running the call, or None to run it."""
        role = self._assumed_role(headers, query)
        if role is None:
            return None
        scope = Scope(role.account_id, call.region, role.partition)
        wanted = iam_needs.needs(call, iam_needs.params_of(call, query, body), scope, self._key_of)
        if not wanted:
            return None
        documents = _role_policies(role)
        for need in wanted:
            decision = iam_policy.evaluate(documents, need.action, need.resource)
            if decision is not Decision.ALLOWED:
                return refusal(call, role.arn, need, decision)
        return None

    def _assumed_role(self, headers: Mapping[str, str], query: str) -> AssumedRole | None:
        found = _ACCESS_KEY.search(headers.get("Authorization", "")) or _QUERY_ACCESS_KEY.search(
            query
        )
        # moto's STS hands out ASIA keys; every other key is an administrator's, not checked.
        if found is None or not found.group(1).startswith("ASIA"):
            return None
        key = found.group(1)
        if key not in self._assumed:
            for account in list(sts_backends):
                for backend in sts_backends[account].values():
                    for role in backend.assumed_roles:
                        self._assumed[role.access_key_id] = role
        return self._assumed.get(key)

    def _key_of(self, arn: str) -> str | None:
        """The customer-managed KMS key ARN encrypting the resource `arn`, if any."""
        parts = arn.split(":", 5)
        if len(parts) != 6:
            return None
        _, _, service, region, account, rest = parts
        key_id: str = ""
        if service == "dynamodb" and rest.startswith("table/"):
            table = dynamodb_backends[account][region].tables.get(rest.removeprefix("table/"))
            sse = getattr(table, "sse_specification", None) or {}
            key_id = sse.get("KMSMasterKeyId", "") if sse.get("Enabled") else ""
        elif service == "sqs":
            queue = sqs_backends[account][region].queues.get(rest)
            key_id = getattr(queue, "kms_master_key_id", "") or ""
        elif service == "sns":
            topic = sns_backends[account][region].topics.get(arn)
            key_id = getattr(topic, "kms_master_key_id", "") or ""
        return _customer_key_arn(key_id, account, region) if key_id else None


def _customer_key_arn(key_id: str, account: str, region: str) -> str | None:
    """The key's ARN if it is a customer-managed key of this account; None for an AWS-managed
    key (its key policy lets every principal of the account use it through the service) or
    one that does not exist."""
    if key_id.startswith("arn:"):
        _, _, _, region, account, resource = key_id.split(":", 5)
        key_id = resource
    kms: Any = kms_backends[account][region]
    if key_id.startswith("alias/"):
        if key_id.startswith("alias/aws/"):
            return None
        key_id = next((k.id for k in kms.keys.values() if key_id in k.aliases), "")
    key = kms.keys.get(key_id.removeprefix("key/"))
    if key is None or any(alias.startswith("alias/aws/") for alias in key.aliases):
        return None
    return str(key.arn)


def _role_policies(role: AssumedRole) -> list[str]:
    """The role's inline and attached managed policy documents, as they are now."""
    iam = iam_backends[role.account_id][role.partition]
    name = role.role_arn.rpartition("/")[2]
    found = next((r for r in iam.roles.values() if r.name == name), None)
    if found is None:
        return []  # a deleted role's sessions are allowed nothing
    documents = list(found.policies.values())
    for policy in found.managed_policies.values():
        default = next(v for v in policy.versions if v.is_default)
        documents.append(default.document)
    return documents

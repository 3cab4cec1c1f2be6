"""IAM enforced by the local AWS (`--enforce-iam`): the policy evaluator on its own, then a real
server refusing assumed-role callers exactly as DynamoDB, SQS and SNS refuse them."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from devstack.env import REGION, client_args
from devstack.local_aws import local_aws_process
from localaws.iam_policy import Decision, evaluate, matches
from services.common.aws import client_config

ACCOUNT = "123456789012"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders"


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action: Any, resource: Any = TABLE_ARN, **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def _deny(action: Any, resource: Any = TABLE_ARN) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


# --- the evaluator -----------------------------------------------------------------------------


def test_an_allow_on_the_action_and_resource_allows() -> None:
    policy = _policy(_allow(["dynamodb:GetItem", "dynamodb:PutItem"]))
    assert evaluate([policy], "dynamodb:PutItem", TABLE_ARN) is Decision.ALLOWED


def test_explicit_deny_beats_an_allow_in_another_policy() -> None:
    policies = [_policy(_allow("dynamodb:*")), _policy(_deny("dynamodb:PutItem"))]
    assert evaluate(policies, "dynamodb:PutItem", TABLE_ARN) is Decision.EXPLICIT_DENY
    assert evaluate(policies, "dynamodb:GetItem", TABLE_ARN) is Decision.ALLOWED


def test_a_missing_action_is_denied_by_default() -> None:
    policy = _policy(_allow("dynamodb:GetItem"))
    assert evaluate([policy], "dynamodb:UpdateItem", TABLE_ARN) is Decision.IMPLICIT_DENY
    assert evaluate([], "dynamodb:GetItem", TABLE_ARN) is Decision.IMPLICIT_DENY


def test_the_wrong_resource_arn_is_denied() -> None:
    policy = _policy(_allow("dynamodb:GetItem"))
    other = TABLE_ARN.replace("table/orders", "table/orders-old")
    assert evaluate([policy], "dynamodb:GetItem", other) is Decision.IMPLICIT_DENY


def test_wildcards_as_iam_matches_them() -> None:
    assert matches("kms:GenerateDataKey*", "kms:GenerateDataKey", ignore_case=True)
    assert matches("kms:GenerateDataKey*", "kms:GenerateDataKeyWithoutPlaintext", ignore_case=True)
    assert matches("dynamodb:*item", "dynamodb:PutItem", ignore_case=True)  # actions: any case
    assert matches("sqs:?eceiveMessage", "sqs:ReceiveMessage", ignore_case=True)
    assert matches(
        "arn:aws:sqs:*:*:orders-*", "arn:aws:sqs:us-east-1:1:orders-dlq", ignore_case=False
    )
    # Resources keep their case, and a '.' is a dot, not a regex's any-character.
    assert not matches(
        "arn:aws:sqs:*:*:Orders", "arn:aws:sqs:us-east-1:1:orders", ignore_case=False
    )
    assert not matches("a.c", "abc", ignore_case=False)
    policy = _policy(_allow("dynamodb:*", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/ord*"))
    assert evaluate([policy], "dynamodb:DeleteItem", TABLE_ARN) is Decision.ALLOWED


def test_not_action_and_not_resource() -> None:
    policy = _policy({"Effect": "Allow", "NotAction": "dynamodb:DeleteItem", "Resource": "*"})
    assert evaluate([policy], "dynamodb:PutItem", TABLE_ARN) is Decision.ALLOWED
    assert evaluate([policy], "dynamodb:DeleteItem", TABLE_ARN) is Decision.IMPLICIT_DENY
    deny = _policy({"Effect": "Deny", "Action": "*", "NotResource": TABLE_ARN})
    assert evaluate([policy, deny], "dynamodb:PutItem", TABLE_ARN) is Decision.ALLOWED
    assert evaluate([policy, deny], "dynamodb:PutItem", TABLE_ARN + "x") is Decision.EXPLICIT_DENY


def test_conditions_are_not_evaluated_and_fail_closed() -> None:
    conditional = _allow("dynamodb:GetItem", Condition={"Bool": {"aws:SecureTransport": "true"}})
    assert evaluate([_policy(conditional)], "dynamodb:GetItem", TABLE_ARN) is Decision.IMPLICIT_DENY


def test_a_single_statement_object_and_string_elements() -> None:
    policy = json.dumps({"Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}})
    assert evaluate([policy], "sqs:SendMessage", "arn:aws:sqs:x:1:q") is Decision.ALLOWED


# --- a server enforcing IAM ------------------------------------------------------------------


@pytest.fixture(scope="module")
def enforcing_endpoint() -> Iterator[str]:
    with local_aws_process(extra_args=("--enforce-iam",)) as url:
        yield url


@dataclass(frozen=True)
class Account:
    """The administrator's clients (the default keys), and what they made for these tests."""

    endpoint: str
    admin: dict[str, Any]
    key_arn: str
    table: str
    table_arn: str
    plain_table: str
    topic_arn: str
    queue_url: str
    queue_arn: str


def _clients(stack: AsyncExitStack, endpoint: str, **credentials: str) -> Any:
    # Any: the service names are plain strings, not the stubs' per-service literals.
    session: Any = get_session()
    config = client_config(pool_size=4, read_timeout=30, max_attempts=1)
    kwargs = client_args(endpoint, config) | credentials

    async def open_all(*services: str) -> dict[str, Any]:
        return {
            s: await stack.enter_async_context(session.create_client(s, **kwargs)) for s in services
        }

    return open_all


@pytest.fixture(scope="module")
async def account(enforcing_endpoint: str) -> AsyncIterator[Account]:
    async with AsyncExitStack() as stack:
        admin = await _clients(stack, enforcing_endpoint)(
            "iam", "sts", "kms", "dynamodb", "sqs", "sns"
        )
        key = (await admin["kms"].create_key(Description="iam tests"))["KeyMetadata"]["Arn"]
        tables = []
        for name, sse in (
            ("enc", {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key}),
            ("plain", None),
        ):
            table = f"iam-{name}-{uuid.uuid4().hex[:6]}"
            extra = {"SSESpecification": sse} if sse else {}
            await admin["dynamodb"].create_table(
                TableName=table,
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                **extra,
            )
            tables.append(table)
        topic = await admin["sns"].create_topic(
            Name=f"iam-{uuid.uuid4().hex[:6]}", Attributes={"KmsMasterKeyId": key}
        )
        queue_url = (
            await admin["sqs"].create_queue(
                QueueName=f"iam-{uuid.uuid4().hex[:6]}", Attributes={"KmsMasterKeyId": key}
            )
        )["QueueUrl"]
        queue_arn = (
            await admin["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        )["Attributes"]["QueueArn"]
        yield Account(
            enforcing_endpoint,
            admin,
            key,
            tables[0],
            f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{tables[0]}",
            tables[1],
            topic["TopicArn"],
            queue_url,
            queue_arn,
        )


@pytest.fixture
async def as_role(account: Account) -> AsyncIterator[Any]:
    """`await as_role(*statements)`: clients signed with a fresh role's assumed credentials."""
    async with AsyncExitStack() as stack:

        async def assume(*statements: dict[str, Any], managed: str | None = None) -> dict[str, Any]:
            name = f"role-{uuid.uuid4().hex[:8]}"
            trust = _policy(
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            )
            role = (
                await account.admin["iam"].create_role(
                    RoleName=name, AssumeRolePolicyDocument=trust
                )
            )["Role"]
            if statements:
                await account.admin["iam"].put_role_policy(
                    RoleName=name, PolicyName="inline", PolicyDocument=_policy(*statements)
                )
            if managed is not None:
                arn = (
                    await account.admin["iam"].create_policy(
                        PolicyName=f"{name}-m", PolicyDocument=managed
                    )
                )["Policy"]["Arn"]
                await account.admin["iam"].attach_role_policy(RoleName=name, PolicyArn=arn)
            creds = (
                await account.admin["sts"].assume_role(RoleArn=role["Arn"], RoleSessionName="s1")
            )["Credentials"]
            clients: dict[str, Any] = await _clients(
                stack,
                account.endpoint,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )("dynamodb", "sqs", "sns")
            clients["caller"] = f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/s1"
            return clients

        yield assume


async def _refused(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        await call
    return dict(caught.value.response)


def _item() -> dict[str, Any]:
    return {"pk": {"S": uuid.uuid4().hex}}


async def test_allowed_calls_run(account: Account, as_role: Any) -> None:
    role = await as_role(
        _allow(["dynamodb:PutItem", "dynamodb:GetItem"], account.table_arn),
        _allow("kms:Decrypt", account.key_arn),
    )
    item = _item()
    await role["dynamodb"].put_item(TableName=account.table, Item=item)
    got = await role["dynamodb"].get_item(TableName=account.table, Key=item)
    assert got["Item"] == item


async def test_a_missing_action_is_dynamodbs_access_denied(account: Account, as_role: Any) -> None:
    role = await as_role(
        _allow("dynamodb:GetItem", account.table_arn), _allow("kms:Decrypt", account.key_arn)
    )
    response = await _refused(role["dynamodb"].put_item(TableName=account.table, Item=_item()))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"] == (
        f"User: {role['caller']} is not authorized to perform: dynamodb:PutItem on resource: "
        f"{account.table_arn} because no identity-based policy allows the dynamodb:PutItem action"
    )


async def test_the_wrong_resource_is_denied(account: Account, as_role: Any) -> None:
    role = await as_role(_allow("dynamodb:*", account.table_arn), _allow("kms:*", account.key_arn))
    response = await _refused(
        role["dynamodb"].put_item(TableName=account.plain_table, Item=_item())
    )
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert f"table/{account.plain_table} because no identity-based" in response["Error"]["Message"]


async def test_an_explicit_deny_in_an_attached_managed_policy(
    account: Account, as_role: Any
) -> None:
    role = await as_role(
        _allow("dynamodb:*", "*"),
        managed=_policy(
            _deny("dynamodb:DeleteItem", account.table_arn.replace(account.table, "iam-*"))
        ),
    )
    response = await _refused(
        role["dynamodb"].delete_item(TableName=account.plain_table, Key=_item())
    )
    assert response["Error"]["Message"].endswith(
        "with an explicit deny in an identity-based policy"
    )
    # The same role may write where nothing denies it: the plain table needs no key.
    await role["dynamodb"].put_item(TableName=account.plain_table, Item=_item())


async def test_a_transaction_needs_each_items_action(account: Account, as_role: Any) -> None:
    role = await as_role(
        _allow("dynamodb:UpdateItem", account.table_arn), _allow("kms:Decrypt", account.key_arn)
    )
    update = {
        "TableName": account.table,
        "Key": _item(),
        "UpdateExpression": "SET n = :n",
        "ExpressionAttributeValues": {":n": {"N": "1"}},
    }
    await role["dynamodb"].transact_write_items(TransactItems=[{"Update": update}])
    put = {"TableName": account.table, "Item": _item()}
    response = await _refused(
        role["dynamodb"].transact_write_items(TransactItems=[{"Update": update}, {"Put": put}])
    )
    assert "perform: dynamodb:PutItem on resource" in response["Error"]["Message"]


async def test_the_tables_key_needs_kms_decrypt(account: Account, as_role: Any) -> None:
    role = await as_role(_allow(["dynamodb:GetItem", "dynamodb:DescribeTable"], account.table_arn))
    # Describing the table decrypts nothing.
    await role["dynamodb"].describe_table(TableName=account.table)
    response = await _refused(role["dynamodb"].get_item(TableName=account.table, Key=_item()))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"].startswith(
        f"User: {role['caller']} is not authorized to perform: kms:Decrypt on resource: "
        f"{account.key_arn} because no identity-based policy allows the kms:Decrypt action "
        "(Service: AWSKMS; Status Code: 400; Error Code: AccessDeniedException;"
    )


async def test_sqs_refusals(account: Account, as_role: Any) -> None:
    role = await as_role(_allow("sqs:ReceiveMessage", account.queue_arn))
    response = await _refused(role["sqs"].send_message(QueueUrl=account.queue_url, MessageBody="x"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["Error"]["Code"] == "AccessDenied"
    assert (
        f"sqs:SendMessage on resource: {account.queue_arn} because" in response["Error"]["Message"]
    )
    # Receiving from a KMS-encrypted queue needs kms:Decrypt on its key.
    response = await _refused(role["sqs"].receive_message(QueueUrl=account.queue_url))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "KMS.AccessDeniedException"
    assert f"kms:Decrypt on resource: {account.key_arn}" in response["Error"]["Message"]


async def test_sqs_batches_are_their_single_action(account: Account, as_role: Any) -> None:
    role = await as_role(
        _allow("sqs:SendMessage", account.queue_arn), _allow("kms:GenerateDataKey", account.key_arn)
    )
    await role["sqs"].send_message_batch(
        QueueUrl=account.queue_url, Entries=[{"Id": "1", "MessageBody": "x"}]
    )
    response = await _refused(
        role["sqs"].delete_message_batch(
            QueueUrl=account.queue_url, Entries=[{"Id": "1", "ReceiptHandle": "r"}]
        )
    )
    assert "sqs:DeleteMessage on resource" in response["Error"]["Message"]


async def test_sns_refusals(account: Account, as_role: Any) -> None:
    role = await as_role(
        _allow("sns:Publish", account.topic_arn), _allow("kms:Decrypt", account.key_arn)
    )
    response = await _refused(role["sns"].publish(TopicArn=account.topic_arn, Message="x"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "KMSAccessDenied"
    assert f"kms:GenerateDataKey on resource: {account.key_arn}" in response["Error"]["Message"]
    other = await as_role(_allow("kms:*", account.key_arn))
    response = await _refused(other["sns"].publish(TopicArn=account.topic_arn, Message="x"))
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert response["Error"]["Code"] == "AuthorizationError"
    assert f"sns:Publish on resource: {account.topic_arn} because" in response["Error"]["Message"]
    granted = await as_role(
        _allow("sns:Publish", account.topic_arn),
        _allow(["kms:GenerateDataKey*", "kms:Decrypt"], account.key_arn),
    )
    await granted["sns"].publish_batch(
        TopicArn=account.topic_arn, PublishBatchRequestEntries=[{"Id": "1", "Message": "x"}]
    )


async def test_the_administrators_keys_stay_allowed(account: Account) -> None:
    await account.admin["dynamodb"].put_item(TableName=account.table, Item=_item())
    await account.admin["sqs"].send_message(QueueUrl=account.queue_url, MessageBody="x")


async def test_a_role_edited_after_assuming_applies_at_once(account: Account, as_role: Any) -> None:
    role = await as_role(
        _allow("dynamodb:PutItem", account.table_arn), _allow("kms:Decrypt", account.key_arn)
    )
    await role["dynamodb"].put_item(TableName=account.table, Item=_item())
    name = role["caller"].split("/")[1]
    await account.admin["iam"].put_role_policy(
        RoleName=name,
        PolicyName="inline",
        PolicyDocument=_policy(_allow("dynamodb:PutItem", account.table_arn)),
    )
    response = await _refused(role["dynamodb"].put_item(TableName=account.table, Item=_item()))
    assert "kms:Decrypt" in response["Error"]["Message"]


async def test_without_the_flag_assumed_roles_are_not_checked(endpoint: str) -> None:
    async with AsyncExitStack() as stack:
        admin = await _clients(stack, endpoint)("iam", "sts")
        trust = _policy(
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        )
        role = (
            await admin["iam"].create_role(
                RoleName=f"r-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=trust
            )
        )["Role"]
        creds = (await admin["sts"].assume_role(RoleArn=role["Arn"], RoleSessionName="s"))[
            "Credentials"
        ]
        sqs = (
            await _clients(
                stack,
                endpoint,
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
            )("sqs")
        )["sqs"]
        await sqs.list_queues()
        await sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")


async def test_requests_moto_serves_through_flask_are_checked_too(
    account: Account, as_role: Any
) -> None:
    # A request with an Origin header skips direct_dispatch's fast path and goes through
    # moto's Flask app; the check runs before either.
    role = await as_role(_allow("dynamodb:GetItem", account.table_arn))

    def add_origin(request: Any, **_: Any) -> None:
        request.headers["Origin"] = "http://localhost"

    role["dynamodb"].meta.events.register("before-send.dynamodb.PutItem", add_origin)
    response = await _refused(role["dynamodb"].put_item(TableName=account.table, Item=_item()))
    assert response["Error"]["Code"] == "AccessDeniedException"


def test_stock_moto_refuses_to_pretend_it_enforces_iam() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "localaws", "--port", "0", "--stock", "--enforce-iam"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--enforce-iam needs the patched server" in proc.stderr

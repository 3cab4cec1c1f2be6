"""The messaging topology, created idempotently: SNS topic -> SQS queue (+ DLQ), the table.

Terraform owns the topology on AWS and neither service imports this: it serves the local AWS
(`make run`, the tests, the bench) and quick experiments against an account.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from aiobotocore.session import get_session

from services.common.aws import client_config
from services.common.settings import AwsSettings, SettingsError, env_int, env_str

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

MAX_RECEIVE_COUNT = 5
DLQ_RETENTION_SECONDS = 14 * 24 * 3600


@dataclass(frozen=True)
class TopologyNames:
    topic: str = "order-processing-events"
    queue: str = "order-processing-queue"
    dlq: str = "order-processing-dlq"
    table: str = "orders"
    visibility_timeout: int = 30
    """Seconds; must stay comfortably above the payment time, so a paying order stays hidden."""
    max_receive_count: int = MAX_RECEIVE_COUNT

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TopologyNames:
        return cls(
            topic=env_str(environ, "ORDER_TOPIC_NAME", cls.topic),
            queue=env_str(environ, "ORDER_QUEUE_NAME", cls.queue),
            dlq=env_str(environ, "ORDER_DLQ_NAME", cls.dlq),
            table=env_str(environ, "ORDERS_TABLE", cls.table),
            visibility_timeout=env_int(
                environ,
                "QUEUE_VISIBILITY_TIMEOUT",
                cls.visibility_timeout,
                minimum=0,
                maximum=43_200,
            ),
        )


def unique_names(
    prefix: str = "orders", *, table: str | None = None, visibility_timeout: int = 30
) -> TopologyNames:
    """Names with a random suffix, so runs on one local AWS never see each other's orders.

    The table is unique too unless `table` names a shared one.
    """
    suffix = uuid.uuid4().hex[:10]
    return TopologyNames(
        topic=f"{prefix}-{suffix}",
        queue=f"{prefix}-{suffix}",
        dlq=f"{prefix}-dlq-{suffix}",
        table=table or f"{prefix}-{suffix}",
        visibility_timeout=visibility_timeout,
    )


@dataclass(frozen=True, slots=True)
class Topology:
    topic_arn: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    dlq_arn: str
    subscription_arn: str
    table: str

    def env(self) -> dict[str, str]:
        """The settings the services read to find this topology."""
        return {
            "ORDER_TOPIC_ARN": self.topic_arn,
            "ORDER_QUEUE_URL": self.queue_url,
            "ORDER_DLQ_URL": self.dlq_url,
            "ORDERS_TABLE": self.table,
        }


async def _queue(
    sqs: SQSClient, name: str, attributes: Mapping[QueueAttributeNameType, str]
) -> tuple[str, str]:
    # CreateQueue with attributes that differ from an existing queue's fails, so create bare
    # and then set: running this twice converges instead of erroring.
    url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    await sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    got = await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return url, got["Attributes"]["QueueArn"]


async def ensure_table(dynamodb: DynamoDBClient, name: str) -> None:
    """The order-state table: hash key `pk`, on-demand, items expiring on `expires_at`."""
    # Exists already: converge the rest.
    with contextlib.suppress(dynamodb.exceptions.ResourceInUseException):
        await dynamodb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            SSESpecification={"Enabled": True},
        )
    await dynamodb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    ttl = await dynamodb.describe_time_to_live(TableName=name)
    if ttl["TimeToLiveDescription"].get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        await dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )


async def ensure_topology(
    sns: SNSClient,
    sqs: SQSClient,
    names: TopologyNames,
    dynamodb: DynamoDBClient | None = None,
) -> Topology:
    """Create (or converge) topic, queue, DLQ, redrive, queue policy, subscription and table.

    Without a DynamoDB client the table is left alone (messaging-only measurements).
    """
    if dynamodb is not None:
        await ensure_table(dynamodb, names.table)
    topic_arn = (await sns.create_topic(Name=names.topic))["TopicArn"]
    dlq_url, dlq_arn = await _queue(
        sqs, names.dlq, {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
    )
    queue_url, queue_arn = await _queue(
        sqs,
        names.queue,
        {
            "ReceiveMessageWaitTimeSeconds": "20",
            "VisibilityTimeout": str(names.visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": names.max_receive_count}
            ),
        },
    )
    await sqs.set_queue_attributes(
        QueueUrl=dlq_url,
        Attributes={
            "RedriveAllowPolicy": json.dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [queue_arn]}
            )
        },
    )
    # Only this topic may send to the queue.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowOrderTopic",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    await sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    subscription_arn = await _subscription(sns, topic_arn, queue_arn)
    return Topology(
        topic_arn, queue_url, queue_arn, dlq_url, dlq_arn, subscription_arn, names.table
    )


async def _subscription(sns: SNSClient, topic_arn: str, queue_arn: str) -> str:
    paginator = sns.get_paginator("list_subscriptions_by_topic")
    async for page in paginator.paginate(TopicArn=topic_arn):
        for sub in page.get("Subscriptions", []):
            if sub.get("Endpoint") == queue_arn and sub.get("Protocol") == "sqs":
                arn = sub["SubscriptionArn"]
                break
        else:
            continue
        break
    else:
        arn = (
            await sns.subscribe(
                TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, ReturnSubscriptionArn=True
            )
        )["SubscriptionArn"]
    # Raw delivery: the queue holds the order JSON itself, not an SNS envelope around it.
    await sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="RawMessageDelivery", AttributeValue="true"
    )
    return arn


async def create_topology(aws: AwsSettings, names: TopologyNames) -> Topology:
    """Open short-lived clients and ensure the topology (for launchers and tests)."""
    session = get_session()
    config = client_config(pool_size=2, read_timeout=30)
    async with (
        session.create_client(
            "sns", region_name=aws.region, endpoint_url=aws.endpoint_url, config=config
        ) as sns,
        session.create_client(
            "sqs", region_name=aws.region, endpoint_url=aws.endpoint_url, config=config
        ) as sqs,
        session.create_client(
            "dynamodb", region_name=aws.region, endpoint_url=aws.endpoint_url, config=config
        ) as dynamodb,
    ):
        return await ensure_topology(sns, sqs, names, dynamodb)


async def queue_counts(sqs: SQSClient, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages on a queue: what tests and the bench wait on."""
    got = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attrs = got["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def main() -> int:
    """`python -m devstack.topology`: ensure the topology, print it as JSON."""
    try:
        aws = AwsSettings.from_env(os.environ)
        names = TopologyNames.from_env(os.environ)
    except SettingsError as exc:
        print(f"topology: {exc}", file=sys.stderr)
        return 2
    topology = asyncio.run(create_topology(aws, names))
    print(json.dumps(asdict(topology)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The services' client config: what the lean options change on the wire, and what they keep."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, ParamValidationError

from devstack.env import CLIENT_CREDENTIALS
from devstack.topology import Topology
from services.common.aws import USER_AGENT, client_config
from services.common.settings import AwsSettings

from ..helpers import REGION


@asynccontextmanager
async def client(aws: AwsSettings, service: Any, *, lean: bool) -> Any:
    async with get_session().create_client(
        service,
        region_name=REGION,
        endpoint_url=aws.endpoint_url,
        **CLIENT_CREDENTIALS,
        config=client_config(pool_size=7, read_timeout=12, lean=lean),
    ) as made:
        yield made


def sent_user_agents(made: Any) -> list[str]:
    """The User-Agent header of every request the client sends from now on."""
    seen: list[str] = []

    def record(request: Any, **_: Any) -> None:
        value = request.headers["User-Agent"]
        seen.append(value.decode() if isinstance(value, bytes) else value)

    made.meta.events.register("before-send", record)
    return seen


def test_the_config_carries_pool_size_timeouts_and_retries() -> None:
    # Any: botocore's Config sets these attributes at run time; the stubs do not declare them.
    config: Any = client_config(pool_size=7, read_timeout=12, max_attempts=2)
    assert config.max_pool_connections == 7
    assert config.read_timeout == 12
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}


async def test_lean_clients_send_the_fixed_user_agent(aws: AwsSettings, topology: Topology) -> None:
    async with client(aws, "sns", lean=True) as sns:
        seen = sent_user_agents(sns)
        await sns.publish(TopicArn=topology.topic_arn, Message="hello")
    assert len(seen) == 1 and seen[0].startswith(USER_AGENT)
    assert "ua/2.1" not in seen[0]


async def test_default_clients_build_botocores_user_agent(
    aws: AwsSettings, topology: Topology
) -> None:
    async with client(aws, "sns", lean=False) as sns:
        seen = sent_user_agents(sns)
        await sns.publish(TopicArn=topology.topic_arn, Message="hello")
    assert len(seen) == 1 and seen[0] != USER_AGENT and "ua/2.1" in seen[0]


async def test_without_client_validation_the_service_still_refuses_a_bad_request(
    aws: AwsSettings, topology: Topology
) -> None:
    # A number sent where DynamoDB wants its string form: botocore would refuse it before
    # sending; lean clients leave that to the service, which answers a 4xx (nothing written).
    bad = {"TableName": topology.table, "Item": {"pk": {"S": "x"}, "n": {"N": 5}}}
    async with client(aws, "dynamodb", lean=False) as ddb:
        with pytest.raises(ParamValidationError):
            await ddb.put_item(**bad)
    async with client(aws, "dynamodb", lean=True) as ddb:
        with pytest.raises(ClientError) as refused:
            await ddb.put_item(**bad)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "Item" not in await ddb.get_item(TableName=topology.table, Key={"pk": {"S": "x"}})

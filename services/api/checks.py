"""Start-up checks of what the API depends on: its topic and its table.

A topic or table that does not exist (or may not be used) is a bad setting: the API stops with
one clear line rather than answering 503 to every order. An AWS that cannot be reached at
start is an outage, not a setting: the API starts anyway and answers 503 until it is back.
The same calls warm the clients (endpoint rules, credentials, the first connection), so the
first customer does not pay for that.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from services.common.logging import get_logger
from services.common.settings import SettingsError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient

log = get_logger()

# Error codes that mean the setting is wrong, not that AWS is having a bad moment.
_BAD_SETTING = {
    "NotFound",
    "NotFoundException",
    "InvalidParameter",
    "InvalidParameterException",
    "AuthorizationError",
    "AccessDeniedException",
    "ResourceNotFoundException",
    "ValidationException",
}


def _refuse(setting: str, value: str, exc: ClientError) -> SettingsError:
    error = exc.response.get("Error", {})
    return SettingsError(f"{setting} {value!r}: {error.get('Code')}: {error.get('Message')}")


async def _check(target: str, setting: str, value: str, call: Coroutine[Any, Any, object]) -> None:
    try:
        await call
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _BAD_SETTING:
            raise _refuse(setting, value, exc) from None
        log.warning("startup_check_failed", target=target, detail=str(exc))
    except BotoCoreError as exc:
        log.warning("startup_check_failed", target=target, detail=str(exc))


async def check_topic(sns: SNSClient, topic_arn: str) -> None:
    await _check("sns", "ORDER_TOPIC_ARN", topic_arn, sns.get_topic_attributes(TopicArn=topic_arn))


async def check_table(dynamodb: DynamoDBClient, table: str) -> None:
    await _check("dynamodb", "ORDERS_TABLE", table, dynamodb.describe_table(TableName=table))

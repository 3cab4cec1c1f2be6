"""TransactWriteItems on the patched launcher answers and rolls back exactly as stock moto."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from devstack.env import CLIENT_CREDENTIALS
from devstack.topology import ensure_table
from services.common.aws import client_config


async def _client(endpoint: str) -> Any:
    return get_session().create_client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url=endpoint,
        **CLIENT_CREDENTIALS,
        config=client_config(pool_size=4, read_timeout=30, max_attempts=1),
    )


def _update(key: str, paid_ok: bool) -> dict[str, Any]:
    """Mark `key` paying unless it is paid (the worker's claim, in miniature)."""
    return {
        "Update": {
            "TableName": "tx",
            "Key": {"pk": {"S": key}},
            "UpdateExpression": "SET #s = :paying ADD n :one",
            "ConditionExpression": "attribute_not_exists(pk) OR #s <> :paid"
            if paid_ok
            else "attribute_exists(pk)",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {
                ":paying": {"S": "paying"},
                ":paid": {"S": "paid"},
                ":one": {"N": "1"},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


async def transcript(endpoint: str) -> list[Any]:
    steps: list[Any] = []
    async with await _client(endpoint) as db:
        await ensure_table(db, "tx")
        await db.put_item(TableName="tx", Item={"pk": {"S": "a"}, "status": {"S": "paid"}})
        await db.put_item(TableName="tx", Item={"pk": {"S": "b"}, "status": {"S": "accepted"}})
        # "b" and "c" come before and after the failing "a": neither may stay applied.
        try:
            await db.transact_write_items(
                TransactItems=[_update("b", True), _update("a", True), _update("c", True)]
            )
            steps.append("applied")
        except ClientError as exc:
            steps.append((exc.response["Error"]["Code"], exc.response["CancellationReasons"]))
        steps.append(sorted(str(i) for i in (await db.scan(TableName="tx"))["Items"]))
        await db.transact_write_items(TransactItems=[_update("b", True), _update("c", True)])
        steps.append(sorted(str(i) for i in (await db.scan(TableName="tx"))["Items"]))
        with pytest.raises(ClientError) as caught:
            await db.transact_write_items(TransactItems=[_update("b", True), _update("b", True)])
        steps.append(caught.value.response["Error"]["Code"])
        await db.delete_table(TableName="tx")
    return steps


@pytest.fixture(scope="module")
async def both(endpoint: str, stock_endpoint: str) -> AsyncIterator[tuple[list[Any], list[Any]]]:
    yield await transcript(endpoint), await transcript(stock_endpoint)


async def test_transactions_roll_back_and_answer_like_stock(both: Any) -> None:
    patched, stock = both
    assert patched == stock
    code, reasons = patched[0]
    assert code == "TransactionCanceledException"
    assert [r["Code"] for r in reasons] == ["None", "ConditionalCheckFailed", "None"]
    assert reasons[1]["Item"] == {"pk": {"S": "a"}, "status": {"S": "paid"}}
    # Rolled back: b untouched, c never created.
    assert patched[1] == sorted(
        str(i)
        for i in (
            {"pk": {"S": "a"}, "status": {"S": "paid"}},
            {"pk": {"S": "b"}, "status": {"S": "accepted"}},
        )
    )
    assert len(patched[2]) == 3
    assert patched[3] == "ValidationException"

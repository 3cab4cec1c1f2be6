"""The local AWS's CPU per DynamoDB call on the order path: stock moto against the launcher.

`python -m bench.tools.dynamodb_cost [--calls N] [--backlog N] [--json PATH]`. For each server,
started in turn as `python -m localaws [--stock]` on loopback, one client runs every
DynamoDB call the services make (through `OrderStore`, so with their exact expressions)
`--calls` times in a row on a table already holding `--backlog` orders, and reads the
server's CPU time (psutil) before and after: server CPU ms per call. Then the order path
end to end, per order: SNS publish (fanned out to SQS) and the API's UpdateItem, and per
10 orders one receive, a 10-item claim transaction, a 10-item paid-mark transaction and
one DeleteMessageBatch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import orjson
from aiobotocore.session import get_session

from devstack.env import client_args
from devstack.local_aws import local_aws_server
from devstack.topology import TopologyNames, ensure_topology
from services.common.aws import client_config
from services.domain.messages import OrderItem, OrderMessage
from services.domain.orders import OrderStore

from ..harness.procstat import live_cpu_seconds

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef

SERVERS = {"stock": ("--stock",), "patched": ()}
BATCH = 10


@dataclass(frozen=True)
class Aws:
    db: DynamoDBClient
    sns: SNSClient
    sqs: SQSClient


@asynccontextmanager
async def _clients(endpoint: str) -> AsyncIterator[Aws]:
    session = get_session()
    kwargs = client_args(endpoint, client_config(pool_size=4, read_timeout=30, max_attempts=1))
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(session.create_client("dynamodb", **kwargs))
        sns = await stack.enter_async_context(session.create_client("sns", **kwargs))
        sqs = await stack.enter_async_context(session.create_client("sqs", **kwargs))
        yield Aws(db, sns, sqs)


def _order() -> OrderMessage:
    item = OrderItem(product_id="sku-1", quantity=2, price=9.99)
    return OrderMessage(
        order_id=str(uuid.uuid4()), customer_id=1, items=(item,), total=19.98, accepted_at=0.0
    )


async def _cpu_per_call(
    pid: int, calls: int, make: Callable[[int], Awaitable[Any]], per: int = 1
) -> float:
    """Server CPU ms per unit of work: `calls` awaited one after another, `per` units each."""
    before = live_cpu_seconds(pid)
    for i in range(calls):
        await make(i)
    return round(1000 * (live_cpu_seconds(pid) - before) / (calls * per), 3)


async def _single_writes(store: OrderStore, pid: int, calls: int) -> dict[str, float]:
    """Server CPU per call of each single-item call the API makes."""
    orders = [_order() for _ in range(calls)]

    async def put_new(i: int) -> None:
        assert await store.create_pending(orders[i], "h") is None

    async def put_exists(i: int) -> None:
        assert await store.create_pending(orders[i], "h") is not None  # ALL_OLD comes back

    async def mark_accepted(i: int) -> None:
        assert await store.mark_accepted(orders[i].order_id)

    async def record_accepted(i: int) -> None:
        await store.record_accepted(orders[i])

    async def get(i: int) -> None:
        assert await store.get(orders[i].order_id) is not None

    return {
        "PutItem attribute_not_exists (new)": await _cpu_per_call(pid, calls, put_new),
        "PutItem attribute_not_exists (exists, ALL_OLD)": await _cpu_per_call(
            pid, calls, put_exists
        ),
        "UpdateItem mark_accepted": await _cpu_per_call(pid, calls, mark_accepted),
        "UpdateItem record_accepted (if_not_exists)": await _cpu_per_call(
            pid, calls, record_accepted
        ),
        "GetItem": await _cpu_per_call(pid, calls, get),
    }


async def _batches(aws: Aws, store: OrderStore, pid: int, table: str, n: int) -> dict[str, float]:
    """Server CPU per call of each 10-item call: the worker's transactions, batch get/write."""
    batches = [[_order() for _ in range(BATCH)] for _ in range(n)]
    # The worker's 10-claim and 10-paid-mark transactions, through the store's public calls:
    # a batched store holds writes submitted together until they share one call.
    batched = store.batched(fill_wait=0.05)
    tokens: list[list[str]] = []

    async def claim(i: int) -> None:
        claims = await batched.claim_many([(o, "m") for o in batches[i]], 60)
        assert all(c.won for c in claims)
        tokens.append([c.token for c in claims])

    async def paid(i: int) -> None:
        marks = [(o.order_id, t, 3000.0) for o, t in zip(batches[i], tokens[i], strict=True)]
        assert all(await batched.mark_paid_many(marks))

    async def batch_get(i: int) -> None:
        keys = [{"pk": {"S": f"order#{o.order_id}"}} for o in batches[i]]
        await aws.db.batch_get_item(RequestItems={table: {"Keys": keys, "ConsistentRead": True}})

    async def batch_write(i: int) -> None:
        puts = [
            {"PutRequest": {"Item": {"pk": {"S": f"bw#{i}#{j}"}, "n": {"N": str(j)}}}}
            for j in range(BATCH)
        ]
        await aws.db.batch_write_item(RequestItems={table: puts})  # type: ignore[dict-item]

    return {
        "TransactWriteItems 10 claims": await _cpu_per_call(pid, n, claim),
        "TransactWriteItems 10 paid-marks": await _cpu_per_call(pid, n, paid),
        "BatchGetItem 10": await _cpu_per_call(pid, n, batch_get),
        "BatchWriteItem 10 puts": await _cpu_per_call(pid, n, batch_write),
    }


async def _operations(aws: Aws, pid: int, table: str, calls: int) -> dict[str, float]:
    # One write in flight at a time: each write is its own PutItem/UpdateItem/DeleteItem.
    store = OrderStore(aws.db, table, concurrency=1)
    got = await _single_writes(store, pid, calls)
    got |= await _batches(aws, store, pid, table, max(calls // BATCH, 3))
    orders = [_order() for _ in range(calls)]
    for o in orders:
        await store.create_pending(o, "h")

    async def forget(i: int) -> None:
        await store.forget_pending(orders[i].order_id)

    got["DeleteItem #s = :pending"] = await _cpu_per_call(pid, calls, forget)
    return got


async def _order_path(aws: Aws, pid: int, table: str, rounds: int) -> float:
    """Server CPU ms per order through SNS -> SQS and the order table, 10 orders a round."""
    names = TopologyNames(
        topic=f"cost-{uuid.uuid4().hex[:8]}", queue=f"cost-{uuid.uuid4().hex[:8]}", table=table
    )
    topology = await ensure_topology(aws.sns, aws.sqs, names)
    # Writes submitted together share one TransactWriteItems, as the worker's do.
    store = OrderStore(aws.db, table, concurrency=1).batched(fill_wait=0.05)

    async def one_round(_: int) -> None:
        orders = [_order() for _ in range(BATCH)]
        for o in orders:
            await aws.sns.publish(TopicArn=topology.topic_arn, Message=o.model_dump_json())
            await store.record_accepted(o)
        got = await aws.sqs.receive_message(
            QueueUrl=topology.queue_url, MaxNumberOfMessages=BATCH, WaitTimeSeconds=1
        )
        claims = await store.claim_many([(o, "m") for o in orders], 60)
        await store.mark_paid_many(
            [(o.order_id, c.token, 3000.0) for o, c in zip(orders, claims, strict=True)]
        )
        handles: list[DeleteMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, m in enumerate(got.get("Messages", []))
        ]
        if handles:
            await aws.sqs.delete_message_batch(QueueUrl=topology.queue_url, Entries=handles)

    return await _cpu_per_call(pid, rounds, one_round, per=BATCH)


async def _measure(endpoint: str, pid: int, calls: int, backlog: int) -> dict[str, Any]:
    async with _clients(endpoint) as aws:
        table = f"cost-{uuid.uuid4().hex[:8]}"
        await ensure_topology(aws.sns, aws.sqs, TopologyNames(table=table), aws.db)
        store = OrderStore(aws.db, table, concurrency=1)
        for _ in range(backlog):
            await store.create_pending(_order(), "h")
        ops = await _operations(aws, pid, table, calls)
        per_order = await _order_path(aws, pid, table, max(calls // BATCH, 3))
    return {"calls": ops, "order_path_ms_per_order": per_order}


async def run(
    calls: int, backlog: int, servers: tuple[str, ...] = tuple(SERVERS)
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "moto": version("moto"),
        "calls": calls,
        "backlog": backlog,
        "load_average_start": os.getloadavg()[0],
        "servers": {},
    }
    for name in servers:
        with local_aws_server(extra_args=SERVERS[name]) as server:
            result["servers"][name] = await _measure(server.endpoint, server.pid, calls, backlog)
    result["load_average_end"] = os.getloadavg()[0]
    return result


def table(result: dict[str, Any]) -> str:
    none: dict[str, Any] = {"calls": {}, "order_path_ms_per_order": 0.0}
    stock = result["servers"].get("stock", none)
    patched = result["servers"].get("patched", none)
    measured = stock if stock is not none else patched
    lines = [
        f"server CPU ms per call (moto {result['moto']}, {result['calls']} calls each, "
        f"{result['backlog']} orders in the table, load average "
        f"{result['load_average_start']:.2f} -> {result['load_average_end']:.2f})",
        f"{'call':<48} {'stock':>8} {'patched':>8} {'ratio':>7}",
    ]
    rows = [
        (k, stock["calls"].get(k, 0.0), patched["calls"].get(k, 0.0)) for k in measured["calls"]
    ]
    rows.append(
        (
            "order path, per order (SNS+SQS+DynamoDB)",
            stock["order_path_ms_per_order"],
            patched["order_path_ms_per_order"],
        )
    )
    for label, s, p in rows:
        ratio = f"{s / p:.1f}x" if p and s else "-"
        lines.append(f"{label:<48} {s:>8.3f} {p:>8.3f} {ratio:>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tools.dynamodb_cost", description=__doc__
    )
    parser.add_argument("--calls", type=int, default=200, help="calls of each kind (200)")
    parser.add_argument("--backlog", type=int, default=1000, help="orders in the table (1000)")
    parser.add_argument(
        "--servers",
        type=lambda s: tuple(s.split(",")),
        default=tuple(SERVERS),
        help="which servers to measure (stock,patched)",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    started = time.monotonic()
    if not args.servers or set(args.servers) - set(SERVERS):
        parser.error(f"--servers: a comma-separated choice of {', '.join(SERVERS)}")
    result = asyncio.run(run(args.calls, args.backlog, args.servers))
    result["seconds"] = round(time.monotonic() - started, 1)
    print(table(result))
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

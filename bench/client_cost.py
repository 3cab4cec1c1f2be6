"""Client CPU per AWS call: what one aiobotocore call costs the process that makes it.

`python -m bench.client_cost [--calls N] [--rounds R] [--config both|lean|default]
[--ablation] [--json PATH]` starts the local AWS on loopback and, for each client config,
makes N sequential calls of each operation per round: SNS Publish, PublishBatch of 10, SQS
SendMessage, DynamoDB UpdateItem (conditional, as the order path writes) and
TransactWriteItems of 10. It reports this process's CPU (user + system, `process_time`) per
call and per item. The machine is shared, so configs and operations are interleaved round
by round and the best round is reported beside the median: interference only ever adds.
`--ablation` also runs each of `LEAN_OPTIONS` alone, to show what each one is worth.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from localaws.process import FAKE_CREDENTIALS, local_aws_server
from services.common.aws import LEAN_OPTIONS, client_config

REGION = "us-east-1"
# About the size of an order message with a few items.
MESSAGE = orjson.dumps({"v": 1, "order_id": str(uuid.uuid4()), "pad": "x" * 250}).decode()

Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    name: str
    items: int
    """Messages or items one call carries."""


OPERATIONS = (
    Operation("sns.publish", 1),
    Operation("sns.publish_batch", 10),
    Operation("sqs.send_message", 1),
    Operation("dynamodb.update_item", 1),
    Operation("dynamodb.transact_write_items", 10),
)


def configs(ablation: bool, which: str) -> dict[str, AioConfig]:
    """Named client configs: botocore's defaults, the services' lean one, and each option."""
    out: dict[str, AioConfig] = {}
    if which in ("both", "default"):
        out["default"] = client_config(pool_size=10, read_timeout=10, lean=False)
    if which in ("both", "lean"):
        out["lean"] = client_config(pool_size=10, read_timeout=10)
    if ablation:
        plain = client_config(pool_size=10, read_timeout=10, lean=False)
        for name, value in LEAN_OPTIONS.items():
            out[f"only {name}"] = plain.merge(AioConfig(**{name: value}))
    return out


@asynccontextmanager
async def callers(endpoint: str, config: AioConfig) -> AsyncIterator[dict[str, Call]]:
    """One client per service with `config`, and a zero-argument call per operation."""
    session = get_session()
    async with AsyncExitStack() as stack:
        kwargs: dict[str, Any] = {
            "region_name": REGION,
            "endpoint_url": endpoint,
            "config": config,
        }

        async def client(service: Any) -> Any:
            return await stack.enter_async_context(session.create_client(service, **kwargs))

        sns, sqs, ddb = await client("sns"), await client("sqs"), await client("dynamodb")
        suffix = uuid.uuid4().hex[:8]
        topic = (await sns.create_topic(Name=f"cost-{suffix}"))["TopicArn"]
        queue = (await sqs.create_queue(QueueName=f"cost-{suffix}"))["QueueUrl"]
        table = f"cost-{suffix}"
        await ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        batch = [{"Id": str(i), "Message": MESSAGE} for i in range(10)]

        def update(pk: str) -> dict[str, Any]:
            # The shape of the order path's conditional state writes.
            return {
                "TableName": table,
                "Key": {"pk": {"S": pk}},
                "UpdateExpression": "SET #s = :s, updated_at = :t",
                "ConditionExpression": "attribute_not_exists(#s) OR #s <> :never",
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": {
                    ":s": {"S": "accepted"},
                    ":t": {"S": "2026-01-01T00:00:00Z"},
                    ":never": {"S": "gone"},
                },
            }

        transaction = [{"Update": update(f"order-{i}")} for i in range(10)]
        yield {
            "sns.publish": lambda: sns.publish(TopicArn=topic, Message=MESSAGE),
            "sns.publish_batch": lambda: sns.publish_batch(
                TopicArn=topic, PublishBatchRequestEntries=batch
            ),
            "sqs.send_message": lambda: sqs.send_message(QueueUrl=queue, MessageBody=MESSAGE),
            "dynamodb.update_item": lambda: ddb.update_item(**update("order")),
            "dynamodb.transact_write_items": lambda: ddb.transact_write_items(
                TransactItems=transaction
            ),
        }
        # Emptied so a long run does not grow the local AWS's queue.
        await sqs.purge_queue(QueueUrl=queue)


async def cpu_ms_per_call(call: Call, calls: int) -> tuple[float, float]:
    """(user + system, system) ms of this process's CPU per call."""
    start = os.times()
    for _ in range(calls):
        await call()
    end = os.times()
    system = end.system - start.system
    return ((end.user - start.user + system) * 1000 / calls, system * 1000 / calls)


async def measure(
    endpoint: str, named: dict[str, AioConfig], calls: int, rounds: int, warmup: int
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """(CPU, system CPU) ms per call, per config and operation, one sample per round."""
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {
        name: {op.name: [] for op in OPERATIONS} for name in named
    }
    async with AsyncExitStack() as stack:
        per_config = {
            name: await stack.enter_async_context(callers(endpoint, config))
            for name, config in named.items()
        }
        for ops in per_config.values():
            for call in ops.values():
                for _ in range(warmup):
                    await call()
        for _ in range(rounds):
            for op in OPERATIONS:
                for name, ops in per_config.items():
                    samples[name][op.name].append(await cpu_ms_per_call(ops[op.name], calls))
    return samples


def summarise(samples: dict[str, dict[str, list[tuple[float, float]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, per_op in samples.items():
        out[name] = {}
        for op in OPERATIONS:
            values = per_op[op.name]
            best, system = min(values)
            median = statistics.median(total for total, _ in values)
            out[name][op.name] = {
                "best_ms_per_call": round(best, 4),
                "best_round_system_ms": round(system, 4),
                "median_ms_per_call": round(median, 4),
                "best_ms_per_item": round(best / op.items, 4),
            }
    return out


def render(summary: dict[str, Any]) -> str:
    names = list(summary)
    head = "| operation | items | " + " | ".join(f"{n}: ms/call [sys] (median)" for n in names)
    lines = [head + " |", "|" + " --- |" * (2 + len(names))]
    for op in OPERATIONS:
        cells = [
            f"{summary[n][op.name]['best_ms_per_call']:.3f} "
            f"[{summary[n][op.name]['best_round_system_ms']:.3f}] "
            f"({summary[n][op.name]['median_ms_per_call']:.3f})"
            for n in names
        ]
        lines.append(f"| {op.name} | {op.items} | " + " | ".join(cells) + " |")
    if "default" in summary and "lean" in summary:
        lines.append("")
        for op in OPERATIONS:
            before = summary["default"][op.name]["best_ms_per_call"]
            after = summary["lean"][op.name]["best_ms_per_call"]
            lines.append(f"{op.name}: lean saves {100 * (1 - after / before):.0f} % (best rounds)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.client_cost", description=__doc__)
    parser.add_argument("--calls", type=int, default=300, help="calls per round (300)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--warmup", type=int, default=30, help="uncounted calls first (30)")
    parser.add_argument("--config", choices=("both", "lean", "default"), default="both")
    parser.add_argument("--ablation", action="store_true", help="also each lean option alone")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    # The local AWS takes any credentials; never let a developer's real ones be used.
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_DEFAULT_REGION"] = REGION
    named = configs(args.ablation, args.config)
    load_before = os.getloadavg()[0]
    with local_aws_server() as server:
        samples = asyncio.run(measure(server.endpoint, named, args.calls, args.rounds, args.warmup))
    summary = summarise(samples)
    meta = {
        "calls": args.calls,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "python": sys.version.split()[0],
    }
    print(render(summary))
    print(f"\nload average {meta['load_average'][0]} at start, {meta['load_average'][1]} at end")
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps({"meta": meta, "results": summary}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Client CPU per AWS call: what one aiobotocore call costs the process that makes it.

`python -m bench.tools.client_cost [--calls N] [--rounds R] [--config both|lean|default]
[--ablation] [--json PATH]` starts the local AWS on loopback and, for each client config,
makes N sequential calls of each operation per round: SNS Publish, PublishBatch of 10, SQS
SendMessage, DynamoDB UpdateItem (conditional, as the order path writes) and
TransactWriteItems of 10. It reports this process's CPU (user + system, `process_time`) per
call and per item. The machine is shared, so configs and operations are interleaved round
by round and the best round is reported beside the median: interference only ever adds.
`--ablation` also runs each of `LEAN_OPTIONS` alone, to show what each one is worth.

Figures that other load on the machine cannot move: count this process's instructions with
valgrind (the local AWS, a child process, is not traced), once with `--calls 0` and once
with `--calls 200`; the difference over 200 is instructions per call:
`valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null python -m
bench.tools.client_cost --skip-load --rounds 1 --config lean --ops sns.publish --calls 200`.

Then (unless `--skip-load`) the API's publish path under open-loop arrivals, with the lean
config and the services' topology (topic -> SQS subscription): one `sns.publish` per order
against `services.adapters.publisher.Publisher` (group-committed PublishBatch) at several
concurrencies. Per rate and mode: SNS calls per message, client CPU ms per message (net of
the same arrival loop with a no-op publish), and p50/p99 latency from each scheduled arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import import_module
from typing import Any

import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from devstack.env import REGION, isolate
from devstack.local_aws import local_aws_server
from devstack.topology import TopologyNames, create_topology
from services.adapters.publisher import Publisher
from services.common.aws import LEAN_OPTIONS, client_config, open_client
from services.common.settings import AwsSettings

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
        aws = AwsSettings(region=REGION, endpoint_url=endpoint)

        async def client(service: Any) -> Any:
            # As the services open theirs: with validation off, JSON bodies go direct.
            return await stack.enter_async_context(open_client(session, service, aws, config))

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


def cpu_times() -> tuple[float, float]:
    """This process's (user, system) CPU seconds, to the microsecond (os.times has 10 ms)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def cpu_ms_per_call(call: Call, calls: int) -> tuple[float, float]:
    """(user + system, system) ms of this process's CPU per call."""
    start = cpu_times()
    for _ in range(calls):
        await call()
    end = cpu_times()
    system = end[1] - start[1]
    per = 1000 / max(calls, 1)
    return ((end[0] - start[0] + system) * per, system * per)


async def measure(
    endpoint: str,
    named: dict[str, AioConfig],
    ops: tuple[Operation, ...],
    calls: int,
    rounds: int,
    warmup: int,
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """(CPU, system CPU) ms per call, per config and operation, one sample per round."""
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {
        name: {op.name: [] for op in ops} for name in named
    }
    async with AsyncExitStack() as stack:
        per_config = {
            name: await stack.enter_async_context(callers(endpoint, config))
            for name, config in named.items()
        }
        for calls_of in per_config.values():
            for call in calls_of.values():
                for _ in range(warmup):
                    await call()
        for _ in range(rounds):
            for op in ops:
                for name, calls_of in per_config.items():
                    samples[name][op.name].append(await cpu_ms_per_call(calls_of[op.name], calls))
    return samples


def summarise(samples: dict[str, dict[str, list[tuple[float, float]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, per_op in samples.items():
        out[name] = {}
        for op in OPERATIONS:
            if op.name not in per_op:
                continue
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
    ops = [op for op in OPERATIONS if op.name in summary[names[0]]]
    for op in ops:
        cells = [
            f"{summary[n][op.name]['best_ms_per_call']:.3f} "
            f"[{summary[n][op.name]['best_round_system_ms']:.3f}] "
            f"({summary[n][op.name]['median_ms_per_call']:.3f})"
            for n in names
        ]
        lines.append(f"| {op.name} | {op.items} | " + " | ".join(cells) + " |")
    if "default" in summary and "lean" in summary:
        lines.append("")
        for op in ops:
            before = summary["default"][op.name]["best_ms_per_call"]
            after = summary["lean"][op.name]["best_ms_per_call"]
            lines.append(f"{op.name}: lean saves {100 * (1 - after / before):.0f} % (best rounds)")
    return "\n".join(lines)


@dataclass(frozen=True)
class LoadRun:
    rate: float
    mode: str
    messages: int
    calls: int
    cpu_ms: float
    """Client CPU per message, net of the arrival loop's own."""
    p50_ms: float
    p99_ms: float


async def open_loop(
    publish: Callable[[str], Awaitable[Any]], rate: float, seconds: float
) -> tuple[float, list[float]]:
    """Arrivals at a fixed rate, each publishing once: (CPU ms per message, latencies ms)."""
    loop = asyncio.get_running_loop()
    count = round(rate * seconds)
    latencies: list[float] = []

    async def one(due: float) -> None:
        await publish(MESSAGE)
        latencies.append((loop.time() - due) * 1000)

    tasks = []
    begin = cpu_times()
    start = loop.time() + 0.01
    for i in range(count):
        due = start + i / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    end = cpu_times()
    cpu = (end[0] - begin[0] + end[1] - begin[1]) * 1000 / count
    return cpu, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def publish_load(endpoint: str, rates: list[float], seconds: float) -> list[LoadRun]:
    """Direct publishes against the group-committed Publisher, rate by rate."""
    aws = AwsSettings(region=REGION, endpoint_url=endpoint)
    suffix = uuid.uuid4().hex[:8]
    topology = await create_topology(
        aws,
        TopologyNames(f"load-{suffix}", f"load-{suffix}", f"load-dlq-{suffix}", f"load-{suffix}"),
    )
    config = client_config(pool_size=100, read_timeout=10)
    runs: list[LoadRun] = []
    async with get_session().create_client(
        "sns", region_name=REGION, endpoint_url=endpoint, config=config
    ) as sns:
        arn = topology.topic_arn

        async def nothing(_: str) -> None:
            await asyncio.sleep(0)

        async def direct(message: str) -> None:
            await sns.publish(TopicArn=arn, Message=message)

        modes: dict[str, Callable[[], Publisher | None]] = {
            "publish each": lambda: None,
            "group commit, 1 call in flight": lambda: Publisher(sns, arn, 5, concurrency=1),
            "group commit, 2 in flight": lambda: Publisher(sns, arn, 5, concurrency=2),
            "group commit, 4 in flight": lambda: Publisher(sns, arn, 5, concurrency=4),
            "group commit, 2 in flight, 2 ms linger": lambda: Publisher(
                sns, arn, 5, concurrency=2, linger=0.002
            ),
        }
        # The subscribed queue is left to fill: the local AWS allows one purge a minute, and
        # its sends stay O(1) whatever the backlog.
        await open_loop(direct, 50, 0.5)  # warm the connection pool
        for rate in rates:
            base_cpu, _ = await open_loop(nothing, rate, seconds)
            for mode, make in modes.items():
                publisher = make()
                calls_before = 0
                if publisher is None:
                    cpu, latencies = await open_loop(direct, rate, seconds)
                    calls = len(latencies)
                else:
                    calls_before = publisher.stats.calls
                    cpu, latencies = await open_loop(publisher.publish, rate, seconds)
                    calls = publisher.stats.calls - calls_before
                    await publisher.close()
                runs.append(
                    LoadRun(
                        rate=rate,
                        mode=mode,
                        messages=len(latencies),
                        calls=calls,
                        cpu_ms=round(cpu - base_cpu, 4),
                        p50_ms=round(percentile(latencies, 0.5), 2),
                        p99_ms=round(percentile(latencies, 0.99), 2),
                    )
                )
                print(f"  {rate:g}/s {mode}: done", file=sys.stderr, flush=True)
    return runs


def render_load(runs: list[LoadRun]) -> str:
    lines = [
        "| orders/s | mode | SNS calls per message | client CPU ms per message | p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {r.rate:g} | {r.mode} | {r.calls / r.messages:.3f} | {r.cpu_ms:.3f} | "
            f"{r.p50_ms:.1f} | {r.p99_ms:.1f} |"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.client_cost", description=__doc__)
    parser.add_argument("--calls", type=int, default=300, help="calls per round (300)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--warmup", type=int, default=30, help="uncounted calls first (30)")
    parser.add_argument("--config", choices=("both", "lean", "default"), default="both")
    parser.add_argument(
        "--ops",
        type=lambda v: tuple(v.split(",")),
        default=tuple(op.name for op in OPERATIONS),
        help="operations to measure, comma-separated (all)",
    )
    parser.add_argument("--ablation", action="store_true", help="also each lean option alone")
    parser.add_argument("--skip-load", action="store_true", help="only the per-call figures")
    parser.add_argument(
        "--rates",
        type=lambda v: [float(x) for x in v.split(",")],
        default=[120.0, 480.0],
        help="open-loop publish rates, orders/s (120,480)",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="per rate and mode (4)")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop the clients run on (uvloop must be installed)",
    )
    parser.add_argument("--json", help="write the figures here")
    return parser


def _write_json(path: str, meta: dict[str, Any], summary: Any, runs: list[LoadRun]) -> None:
    with open(path, "wb") as f:
        figures = {"meta": meta, "results": summary, "publish_load": [asdict(r) for r in runs]}
        f.write(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The local AWS takes any credentials; never let a developer's real ones be used.
    isolate(os.environ)
    named = configs(args.ablation, args.config)
    ops = tuple(op for op in OPERATIONS if op.name in args.ops)
    if not ops:
        print(f"--ops: none of {', '.join(args.ops)} is known", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    runs: list[LoadRun] = []
    loop_factory = None
    if args.loop == "uvloop":
        try:
            loop_factory = import_module("uvloop").new_event_loop
        except ImportError:
            print("--loop uvloop: uvloop is not installed (pip install uvloop)", file=sys.stderr)
            return 2
    with local_aws_server() as server, asyncio.Runner(loop_factory=loop_factory) as runner:
        samples = runner.run(
            measure(server.endpoint, named, ops, args.calls, args.rounds, args.warmup)
        )
        if not args.skip_load:
            runs = runner.run(publish_load(server.endpoint, args.rates, args.seconds))
    summary = summarise(samples)
    meta = {
        "calls": args.calls,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "python": sys.version.split()[0],
        "loop": args.loop,
    }
    print(render(summary))
    if runs:
        print(f"\nPublishing under open-loop arrivals (lean config, {args.loop} loop):\n")
        print(render_load(runs))
    print(f"\nload average {meta['load_average'][0]} at start, {meta['load_average'][1]} at end")
    if args.json:
        _write_json(args.json, meta, summary, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

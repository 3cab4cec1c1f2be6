"""The log shipper's batching follows PutLogEvents' limits; its settings fail clearly."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import orjson
import pytest

from devstack.follow import ServiceProcess, run_to_exit
from devstack.logship import (
    EVENT_OVERHEAD,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    LogShipper,
    ShipSettings,
    batches,
    log_group,
    split,
)
from devstack.topology import TopologyNames
from services.common.settings import AwsSettings, SettingsError
from tests.devstack.test_dashboard_page import stack_env
from tests.helpers import aws_client, service_env


def test_batches_stop_at_10000_events_or_1_mib_counting_26_bytes_each() -> None:
    many = [(i, "x") for i in range(MAX_BATCH_EVENTS + 1)]
    assert [len(b) for b in batches(many)] == [MAX_BATCH_EVENTS, 1]
    # 100 KiB lines: as many per batch as fit in 1 MiB, each counted with its 26 bytes.
    line = "y" * (100 * 1024)
    per_batch = MAX_BATCH_BYTES // (len(line) + EVENT_OVERHEAD)
    cut = batches([(i, line) for i in range(25)])
    assert [len(b) for b in cut] == [per_batch, per_batch, 25 - 2 * per_batch]
    assert all(sum(len(m) + EVENT_OVERHEAD for _, m in b) <= MAX_BATCH_BYTES for b in cut)
    # Order is kept across batches.
    assert [ts for b in cut for ts, _ in b] == list(range(25))


def test_a_line_longer_than_an_event_is_split_on_character_boundaries() -> None:
    assert split("short") == ["short"]
    long = "é" * MAX_EVENT_BYTES  # two bytes each
    pieces = split(long)
    assert "".join(pieces) == long
    assert all(len(p.encode()) <= MAX_EVENT_BYTES for p in pieces)


def test_settings() -> None:
    assert ShipSettings.from_env({}) == ShipSettings(True, 5.0, "orderflow")
    assert not ShipSettings.from_env({"LOG_SHIPPING": "off"}).enabled
    with pytest.raises(SettingsError, match="LOG_SHIPPING must be 'on' or 'off'"):
        ShipSettings.from_env({"LOG_SHIPPING": "yes"})


async def test_a_bad_shipping_setting_is_one_clear_line() -> None:
    code, stderr = await run_to_exit("devstack", stack_env(8080, LOG_SHIP_SECONDS="soon"))
    assert code == 2
    assert stderr.strip() == "stack: LOG_SHIP_SECONDS must be a number, got 'soon'"


async def test_a_followed_process_ships_its_lines_and_stop_sends_what_is_left(
    aws: AwsSettings,
) -> None:
    # A long flush interval: only stop() can have sent the lines.
    shipper = LogShipper(aws, ShipSettings(flush_seconds=60, name=f"ship-{uuid.uuid4().hex[:8]}"))
    shipper.start()
    sink = shipper.sink("api")
    names = TopologyNames(topic=f"t-{uuid.uuid4().hex[:8]}", queue="q-ship", dlq="d-ship")
    env = service_env(aws) | {"ORDER_TOPIC_NAME": names.topic, "ORDER_QUEUE_NAME": names.queue,
                              "ORDER_DLQ_NAME": names.dlq}  # fmt: skip
    process = await ServiceProcess("devstack.topology", env, ship=sink).start()
    assert await process.wait() == 0
    stats = shipper.stop()
    assert (stats.sent, stats.dropped) == (1, 0)
    group = log_group(shipper.settings.name, "api")
    async with aws_client(aws, "logs") as logs:
        [stream] = (await logs.describe_log_streams(logGroupName=group))["logStreams"]
        got = await logs.get_log_events(
            logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True
        )
    assert [orjson.loads(e["message"]) for e in got["events"]] == process.events


async def test_a_stream_is_created_when_its_process_is_registered(aws: AwsSettings) -> None:
    # A long flush interval: only registering the process can have created its stream.
    shipper = LogShipper(aws, ShipSettings(flush_seconds=60, name=f"ship-{uuid.uuid4().hex[:8]}"))
    shipper.start()
    try:
        shipper.sink("worker")
        group = log_group(shipper.settings.name, "worker")
        async with aws_client(aws, "logs") as logs, asyncio.timeout(10):
            while True:
                with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
                    found = await logs.describe_log_streams(logGroupName=group)
                    if found["logStreams"]:
                        break
                await asyncio.sleep(0.05)
        assert [s["logStreamName"].split("/")[:2] for s in found["logStreams"]] == [
            ["worker", "worker"]
        ]
    finally:
        stats = shipper.stop()
    assert (stats.sent, stats.dropped, stats.batches) == (0, 0, 0)

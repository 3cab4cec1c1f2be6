"""`--target URL`: compare, flash-sale and pipeline against a stack the bench did not start.

One small stack (local AWS, API and worker, order state on, as `make run` runs them) is
started here, outside the scenarios; each scenario then runs against its URL at toy size.
Latency comes from the client, completion from GET /orders/{id}, and no CPU figure appears.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import cli
from bench.harness.load import open_loop
from bench.harness.remote import RemoteOrders
from bench.harness.stack import ApiRun, local_stack

TOY = {
    "compare": [
        "--users", "2", "--spawn-rate", "2", "--duration", "2", "--pacing", "0.5",
        "--payment-seconds", "0.05", "--min-samples", "4",
    ],
    "flash-sale": ["--rate", "5", "--duration", "1", "--payment-seconds", "0.1"],
    "pipeline": [
        "--rates", "5,10", "--duration", "1", "--payment-seconds", "0.1", "--min-rate", "10",
        "--warmup", "0.5", "--refine", "0",
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def running() -> Iterator[ApiRun]:
    """A running stack the scenarios did not start: its API."""
    with (
        local_stack("target", order_state=True) as stack,
        stack.api(0.1) as api,
        stack.worker(slots=20, payment_seconds=0.1, grace_seconds=0.1),
    ):
        yield api


def _run(name: str, url: str, tmp_path: Path) -> Any:
    args = cli.build_parser([name]).parse_args(
        [name, "--out", str(tmp_path), "--target", url, *TOY[name]]
    )
    result: Any = orjson.loads(orjson.dumps(cli.run_scenario(name, args)))
    assert cli.section(name, result).startswith("## ")
    return result


@pytest.mark.parametrize("name", ["compare", "flash-sale"])
def test_a_scenario_runs_against_the_target_and_sees_every_order_paid(
    name: str, running: ApiRun, tmp_path: Path
) -> None:
    result = _run(name, running.url, tmp_path)
    assert result["target"] == running.url
    (paid,) = [t for t in result["targets"] if "GET /orders/{id}" in t["name"]]
    assert paid["measured"] == 0 and paid["met"]
    assert not [t for t in result["targets"] if "ledger" in t["name"]]


def test_the_pipeline_on_a_target_has_no_cpu_columns(running: ApiRun, tmp_path: Path) -> None:
    result = _run("pipeline", running.url, tmp_path)
    steps = result["steps"]
    assert [s["rate"] for s in steps] == [5.0, 10.0]
    for step in steps:
        assert step["accepted"] > 0 and step["paid"] == step["accepted"]
        assert step["cpu_ms_per_order"] == {}
        assert step["requests_per_order"] is None
    assert "CPU ms/order" not in cli.section("pipeline", result)
    assert not [t for t in result["targets"] if "CPU" in t["name"]]


def test_orders_accepted_and_never_paid_are_seen_not_paid() -> None:
    async def accepted(url: str) -> tuple[bool, RemoteOrders, set[str]]:
        load = await open_loop(
            url + "/orders/async", rate=5, duration=0.4, request_timeout=5, desc="x"
        )
        ids = {o.order_id for o in load.outcomes if o.status == 202}
        orders = RemoteOrders(url)
        return await orders.wait_until_paid(ids, 3.0), orders, ids

    # No worker: every order is accepted (GET shows it) and none is ever paid.
    with local_stack("unpaid", order_state=True) as stack, stack.api(0.1) as api:
        done, orders, ids = asyncio.run(accepted(api.url))
    assert ids and not done
    assert orders.paid_ids() == set()


def test_the_cli_refuses_what_a_target_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["receive", "--target", "http://127.0.0.1:9"]) == 2
    assert "--target runs compare, flash-sale, pipeline only" in capsys.readouterr().err
    assert cli.main(["pipeline", "--target", "http://example.com"]) == 2
    assert "--remote-ok" in capsys.readouterr().err

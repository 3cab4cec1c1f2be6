"""Every scenario's run() at toy size: real local AWS, API and worker processes, seconds each.

The figures at this size mean nothing (and their targets are mostly unmet); what is checked
is that each scenario runs end to end, says which order state it ran with, gives its targets
in the one shape, keeps the invariants that hold at any size, and renders its report from
the JSON it saved.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import cli

TOY = {
    "compare": [
        "--users", "2", "--spawn-rate", "2", "--duration", "2", "--pacing", "0.5",
        "--payment-seconds", "0.05", "--slots", "5", "--min-samples", "4",
    ],
    "scaling": ["--slots", "2", "--rate", "5", "--payment-seconds", "0.1", "--duration", "1"],
    "flash-sale": ["--rate", "5", "--duration", "1", "--payment-seconds", "0.1", "--slots", "5"],
    # Its check is a flash sale (run above): here only the plan.
    "plan": ["--rate", "5", "--payment-seconds", "0.1", "--no-check"],
    "receive": [
        "--slots", "20", "--payment-seconds", "0.2", "--backlog", "200", "--time-limit", "10",
    ],
    "concurrency": [
        "--slots", "50", "--payment-seconds", "0.5", "--backlog", "200", "--time-limit", "20",
    ],
    # Declines, not transient failures: those would wait out their backoff.
    "soak": [
        "--rate", "5", "--duration", "2", "--payment-seconds", "0.1", "--failure-rate", "0",
        "--decline-rate", "0.2",
    ],
    "pipeline": [
        "--rates", "5,10", "--duration", "1", "--slots", "20", "--payment-seconds", "0.1",
        "--min-rate", "10", "--warmup", "0.5", "--refine", "0",
    ],
    # A few lines for the query: its scan-rate target is then not measured (not met).
    "logs": [
        "--rate", "5", "--duration", "1", "--payment-seconds", "0.1", "--slots", "5",
        "--warmup", "0", "--query-lines", "2000",
    ],
    "emulator": [
        "--backlogs", "10,100", "--samples", "2", "--stock-max-backlog", "100",
        "--ceiling-backlog", "100", "--ceiling-seconds", "1", "--idle-polls", "20",
    ],
}  # fmt: skip
TARGET_KEYS = {"name", "measured", "op", "limit", "unit", "met", "note"}


def test_every_scenario_has_a_toy_size() -> None:
    assert set(TOY) == set(cli.SCENARIOS)


def _args(name: str, tmp_path: Path, *extra: str) -> argparse.Namespace:
    args = cli.build_parser().parse_args([name, "--out", str(tmp_path), *TOY[name], *extra])
    return args


def _run(name: str, args: argparse.Namespace) -> Any:
    # Through JSON and back: the report renders from what --json saved.
    result: Any = orjson.loads(orjson.dumps(cli.run_scenario(name, args)))
    assert cli.section(name, result).startswith("## ")
    # The machine's speed around the scenario, beside its figures.
    assert set(result["python_ms"]) == {"before", "after"}
    assert all(ms > 0 for ms in result["python_ms"].values())
    for target in result.get("targets", []):
        assert set(target) == TARGET_KEYS
        assert isinstance(target["met"], bool)
    for chart in result.get("charts", []):
        assert (args.out / chart).stat().st_size > 0
    return result


@pytest.mark.parametrize("name", ["compare", "scaling", "flash-sale"])
def test_a_scenario_runs_with_order_state_by_default(name: str, tmp_path: Path) -> None:
    result = _run(name, _args(name, tmp_path))
    assert result["settings"]["order_state"] is True
    if "charged_twice" in result:
        assert result["charged_twice"] == 0


def test_plan_runs_without_its_check(tmp_path: Path) -> None:
    result = _run("plan", _args("plan", tmp_path))
    assert result["check"] is None
    assert result["plan"]["slots"] >= result["plan"]["min_slots"]


def test_receive_counts_whole_periods_and_asks_for_the_rate_it_measures(tmp_path: Path) -> None:
    result = _run("receive", _args("receive", tmp_path, "--stateless"))
    assert result["settings"]["order_state"] is False
    batched = result["runs"]["batched"]
    assert batched["queued"] == 200
    assert batched["periods_measured"] == len(batched["per_period_per_s"])
    assert not batched["order_state"]
    (rate,) = [t for t in result["targets"] if "sustained rate" in t["name"]]
    assert rate["measured"] == batched["of_ideal_pct"]


def test_concurrency_times_the_drain_whole_and_counts_requests(tmp_path: Path) -> None:
    result = _run("concurrency", _args("concurrency", tmp_path))
    assert result["queued"] == 200
    assert result["drained"] and result["paid"] == 200
    assert result["charges"] == result["paid_reported"] == 200
    assert result["drain_s"] >= result["ideal_drain_s"]
    assert result["aws_requests_per_order"] > 0
    assert result["worker_rss_max_mb"] > 0


def test_the_pipeline_counts_aws_requests_and_cpu_per_order(tmp_path: Path) -> None:
    result = _run("pipeline", _args("pipeline", tmp_path))
    assert result["settings"]["order_state"] is True
    assert result["charged_twice"] == 0
    steps = result["steps"]
    assert [s["rate"] for s in steps] == [5.0, 10.0]
    for step in steps:
        assert step["accepted"] > 0
        # A keyed and an unkeyed order both publish once; the local AWS counted it.
        assert step["requests_per_order"]["sns"] >= 1
        assert step["requests_per_order"]["dynamodb"] > 0
        assert all(v is not None and v > 0 for v in step["cpu_ms_per_order"].values())


def test_soak_keeps_its_invariants_from_the_ledger(tmp_path: Path) -> None:
    result = _run("soak", _args("soak", tmp_path))
    assert result["settings"]["order_state"] is True
    assert result["charged_twice"] == 0
    assert result["accepted"] == result["paid"] + result["failed"] + result["unsettled"]
    assert result["dlq"] == result["failed"]


def test_the_emulator_scenario_runs_at_toy_size(tmp_path: Path) -> None:
    result = _run("emulator", _args("emulator", tmp_path))
    assert set(result["servers"]) == {"stock", "patched"}


def test_logs_ships_every_line_with_shipping_on_and_none_with_it_off(tmp_path: Path) -> None:
    result = _run("logs", _args("logs", tmp_path))
    off, on = result["runs"]["off"], result["runs"]["on"]
    assert off["shipping"] is False and on["shipping"] is True
    # Off: the relays passed lines on and nothing was looked for in CloudWatch Logs.
    assert off["lines_read"] > 0 and off["lines_stored"] is None
    # On: every line the services wrote is in the log groups, counted by FilterLogEvents.
    assert on["lines_read"] > 0 and on["lines_stored"] == on["lines_read"]
    assert on["lines_in_window"] > 0 and on["dropped"] == 0
    for run in (off, on):
        assert run["accepted"] == run["paid"] == 5
        # Every process was read (a relay may take less than psutil's 10 ms tick here).
        assert all(v is not None for v in run["cpu_ms_per_order"].values())
        assert run["cpu_ms_per_order"]["total"] > 0
    assert result["query"]["lines_scanned"] == 2000
    got = {t["name"]: t for t in result["targets"]}
    lost = got["logs: lines written by the services and not in CloudWatch Logs"]
    assert lost["measured"] == 0 and lost["met"]
    # 2,000 lines are too few for the scan rate to count: not measured, not met.
    scan = next(t for name, t in got.items() if "lines scanned per second" in name)
    assert scan["measured"] is None and not scan["met"]

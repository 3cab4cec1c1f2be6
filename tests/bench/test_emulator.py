"""`bench.tools.emulator` end to end on a tiny plan: both servers measured, figures in place."""

from __future__ import annotations

import argparse

import orjson
import pytest

from bench.tools import emulator, emulator_load


@pytest.mark.slow
def test_tiny_emulator_run_reports_both_servers() -> None:
    parser = argparse.ArgumentParser()
    emulator.add_arguments(parser)
    args = parser.parse_args(
        [
            "--backlogs=10,40",
            "--samples=3",
            "--stock-max-backlog=10",
            "--ceiling-backlog=10",
            "--ceiling-seconds=1",
            "--idle-polls=20",
            "--publishers=1",
            "--consumers=2",
        ]
    )
    args.quick = True
    result = emulator.run(args, {})
    orjson.dumps(result)  # the suite writes it as JSON

    patched, stock = result["servers"]["patched"], result["servers"]["stock"]
    assert sorted(patched["costs"]) == ["10", "40"]
    assert sorted(stock["costs"]) == ["10"]
    assert stock["skipped_backlogs"] == [40]
    for server in (patched, stock):
        assert set(server["costs"]["10"]) == set(emulator_load.OPS)
        ceiling = server["ceiling"]
        assert ceiling is not None
        assert ceiling["messages_per_s"] > 0
        # Nothing was ever sent to the idle queue, so no poll may have been answered.
        assert server["idle_polls"]["answered_during_window"] == 0
        # ...and they were waiting: one message answered exactly one of them.
        assert server["idle_polls"]["answered_after_one_send"] == 1
    assert stock["idle_polls"]["server_threads"] > patched["idle_polls"]["server_threads"]
    assert {t["name"] for t in result["targets"]} >= {"20 idle long polls"}

    text = emulator.report(result)
    assert "| 40 | receive-10 | not measured |" in text
    assert "## Local AWS" in text

"""Reports render from result dicts alone (as read back from --json), and the CLI's shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import cli
from bench.harness.capacity import plan as make_plan
from bench.harness.results import Result
from bench.report import readme
from bench.report.markdown import fmt, table, target, targets_table
from bench.report.reference import REFERENCE
from bench.scenarios import compare, pipeline, plan, receive, scaling


def test_table_aligns_numbers_right_and_formats_them() -> None:
    text = table(["name", "n"], [["a", 1234], ["b", None]])
    assert text.splitlines() == ["| name | n |", "| --- | ---: |", "| a | 1,234 |", "| b | - |"]


def test_fmt_says_what_a_person_reads() -> None:
    assert fmt(None) == "-"
    assert fmt(True) == "yes"
    assert fmt(3.14159, 2) == "3.14"
    assert fmt(float("inf")) == "∞"


def test_a_target_not_measured_is_not_met() -> None:
    assert target("x", None, ">=", 1)["met"] is False
    assert target("x", 0.2, "<=", 0.25)["met"] is True
    assert target("x", 2, ">=", 2)["met"] is True
    assert target("x", 0.3, "<=", 0.25)["met"] is False
    assert "**not met**" in targets_table([target("speed-up", 25.0, ">=", 300, "x")])


def test_the_exit_status_names_unmet_targets_and_failed_scenarios(
    capsys: pytest.CaptureFixture[str],
) -> None:
    met: Result = {"targets": [target("a: fast", 1.0, "<=", 2)]}
    missed: Result = {"targets": [target("b: cheap", 3.0, "<=", 2)]}
    assert cli.verdict({"a": met}) == 0
    assert cli.verdict({"a": met, "b": missed}) == 1
    assert "target not met: b: cheap" in capsys.readouterr().err
    assert cli.verdict({"b": missed, "c": {"error": "RuntimeError: boom"}}) == 2
    assert "scenario c failed" in capsys.readouterr().err


def test_stateless_is_a_common_flag_and_state_is_the_default() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["receive"]).stateless is False
    assert parser.parse_args(["--stateless"]).stateless is True
    assert parser.parse_args(["pipeline", "--stateless"]).stateless is True
    common = parser.parse_args(["--stateless"])
    assert cli.scenario_args("receive", common).stateless is True


@pytest.mark.parametrize("scenario_first", [False, True], ids=["flags first", "scenario first"])
def test_common_flags_hold_on_either_side_of_the_scenario(scenario_first: bool) -> None:
    # argparse let the scenario's copy of a flag reset it to its default: `--out X receive`
    # wrote to bench/results and `--json Y receive` wrote no JSON at all.
    flags = ["--out", "/tmp/x", "--json", "/tmp/y.json", "--full", "--stateless"]
    flags += ["--target", "http://127.0.0.1:1", "--remote-ok"]
    argv = ["receive", *flags] if scenario_first else [*flags, "receive"]
    args = cli.build_parser().parse_args(argv)
    assert (args.out, args.json) == (Path("/tmp/x"), Path("/tmp/y.json"))
    assert args.quick is False and args.stateless is True and args.remote_ok is True
    assert args.target == "http://127.0.0.1:1"
    plain = cli.build_parser().parse_args(["receive"])
    assert (plain.out, plain.json, plain.quick, plain.target) == (cli.DEFAULT_OUT, None, True, None)


def _latency(p50: float) -> dict[str, Any]:
    return {"count": 10, "min": p50, "mean": p50, "p50": p50, "p95": p50, "p99": p50, "max": p50}


def test_compare_report_states_the_speedup_and_the_reference() -> None:
    endpoint = {"requests": 10, "failures": 0, "requests_per_s": 5.7, "latencies_ms": [1.0]}
    # Only what the report reads: Any, not CompareResult.
    result: Any = {
        "settings": {
            "users": 20,
            "spawn_rate": 10,
            "duration_s": 60,
            "pacing_s": 3.5,
            "payment_seconds": 3.0,
            "worker_slots": 100,
            "order_state": True,
        },
        "runs": {
            "sync, reference shape": endpoint | {"latency_ms": _latency(3003.0)},
            "async, reference shape": endpoint | {"latency_ms": _latency(7.5)},
            "async, jittered": endpoint | {"latency_ms": _latency(6.5)},
        },
        "speedup_p50": 400.4,
        "async_accepted": 10,
        "async_lost": 0,
        "reference": REFERENCE,
    }
    text = compare.report(result)
    assert "400x faster" in text
    # The reference's ratio is computed from its figures: 3,024 / 39.
    assert "3,024 / 39 ms = 78x" in text
    assert "| reference sync (AWS) | 321 | 0 | 3,024.0 |" in text
    assert "| async, jittered | 10 | 0 | 6.5 |" in text


def test_scaling_report_marks_who_falls_behind() -> None:
    def run(slots: int, end: int) -> dict[str, Any]:
        return {
            "slots": slots,
            "capacity_per_s": slots / 3,
            "processing_per_s": min(slots / 3, 6),
            "depth_start": 0,
            "depth_end": end,
            "depth_max": end,
            "keeps_up": end <= 6,
            "depth": {"t": [0.0], "visible": [end], "in_flight": [0]},
            "arrivals_s": 60.0,
        }

    # Only what the report reads: Any, not ScalingResult.
    result: Any = {
        "settings": {"slots": [1, 20], "rate": 6.0, "payment_seconds": 3.0, "duration_s": 60.0},
        "runs": [run(1, 340), run(20, 0)],
    }
    rows = [line for line in scaling.report(result).splitlines() if line.startswith("| 1 ")]
    assert rows and rows[0].endswith("| **no** |")
    assert "| 20 | 6.67 |" in scaling.report(result)


def test_receive_report_says_why_a_strategy_did_not_run() -> None:
    result: Any = {
        "settings": {
            "slots": 1000,
            "payment_seconds": 3.0,
            "backlog": 3000,
            "time_limit_s": 30.0,
            "strategies": ["per-task", "batched"],
        },
        "runs": {
            "per-task": {
                "strategy": "per-task",
                "queued": 800,
                "preload_s": 15.0,
                "receive_probe_ms": 900.0,
                "skipped": "one receive takes 900 ms",
            },
            "batched": {
                "strategy": "batched",
                "queued": 3000,
                "preload_s": 2.0,
                "receive_probe_ms": 2.0,
                "drained": True,
                "paid": 3000,
                "periods_measured": 2,
                "per_period_per_s": [333.0, 320.0],
                "requests_per_order": 0.2,
                "worker": {"receive_calls": 300, "empty_receives": 1, "delete_calls": 300},
            },
        },
    }
    text = receive.report(result)
    assert "`per-task` not run: one receive takes 900 ms." in text
    assert "queued only 800 of 3,000" in text
    assert "| batched | 3,000 | 3,000 | 2 |" in text
    assert "`batched` orders/s per period: 333, 320" in text


def _pipeline_step(rate: float, p99: float, *, paid: bool = True) -> Any:
    return {
        "rate": rate,
        "sent": 100,
        "accepted": 100,
        "all_paid": paid,
        "latency_ms": {"p50": 5.0, "p99": p99},
    }


def test_the_pipeline_bisects_between_the_highest_rate_carried_and_the_next() -> None:
    sweep = [_pipeline_step(120, 20), _pipeline_step(240, 90), _pipeline_step(480, 900)]
    assert pipeline._next_bisection(sweep) == 360
    # 360 not carried: between 240 and 360; carried: between 360 and 480.
    assert pipeline._next_bisection([*sweep, _pipeline_step(360, 150)]) == 300
    assert pipeline._next_bisection([*sweep, _pipeline_step(360, 60)]) == 420
    # An order left unpaid is not carried, whatever its latency.
    assert pipeline._next_bisection([*sweep[:1], _pipeline_step(240, 10, paid=False)]) == 180
    # Nothing above the highest carried rate, or nothing carried: nothing to bisect.
    assert pipeline._next_bisection(sweep[:2]) is None
    assert pipeline._next_bisection([_pipeline_step(30, 500)]) is None


def test_plan_report_without_a_check_is_just_the_plan() -> None:
    result: Any = {
        "plan": make_plan(60.0, 3.0, 0.1).as_dict(),
        "other_rates": [],
        "check": None,
    }
    text = plan.report(result)
    assert "| 60.0 | 180.0 | 180 | 191 |" in text
    assert "Checked against" not in text


def test_the_suite_report_lists_targets_then_sections(tmp_path: Path) -> None:
    meta: dict[str, Any] = {
        "command": "python -m bench",
        "mode": "quick",
        "machine_start": cli.machine(),
        "machine_end": cli.machine(),
        "wall_seconds": 1.0,
    }
    results: dict[str, Any] = {
        "plan": {
            "plan": make_plan(6, 3, 0.1).as_dict(),
            "other_rates": [],
            "check": None,
            "targets": [target("plan: something", 1.0, "==", 1.0)],
            "charts": ["plan.png"],
        },
        "receive": {"error": "RuntimeError: boom"},
    }
    text = cli.render(results, meta)
    assert meta["machine_start"]["python_ms"] > 0
    speed = meta["machine_start"]["python_ms"], meta["machine_end"]["python_ms"]
    assert f"took {speed[0]} ms of CPU at the start and {speed[1]} ms at the end" in text
    assert text.index("## Targets") < text.index("## plan")
    assert "![plan: plan](plan.png)" in text
    assert "**Failed:** `RuntimeError: boom`" in text


def test_every_scenario_is_a_subcommand_with_quick_as_the_default() -> None:
    parser = cli.build_parser()
    for name in cli.SCENARIOS:
        args = parser.parse_args([name])
        assert args.scenario == name
        assert args.quick is True
    assert parser.parse_args(["scaling", "--full"]).quick is False
    assert parser.parse_args([]).scenario is None


def test_plan_reuses_the_flash_sale_result_the_suite_passes_it() -> None:
    args = cli.build_parser().parse_args(["plan"])
    slots = make_plan(args.rate, args.payment_seconds, args.target_wait, args.slots_per_task).slots
    spec = {
        "rate": args.rate,
        "duration_s": 10,
        "payment_seconds": args.payment_seconds,
        "slots": slots,
        "timeout_s": args.timeout,
        "target_wait_s": args.target_wait,
        "order_state": True,
    }
    earlier: Any = {"flash-sale": {"settings": spec, "async": {"ok_pct": 100}}}
    check = plan._check(args, slots, earlier)
    assert check == {"reused": "flash-sale", "settings": spec, "async": {"ok_pct": 100}}


def _doc(stateless: bool, p99: float) -> dict[str, Any]:
    start = cli.machine() | {"commit": "abc1234", "dirty": True}
    meta = {
        "command": "python -m bench",
        "mode": "quick",
        "stateless": stateless,
        "machine_start": start,
        "machine_end": start,
        "wall_seconds": 1.0,
    }
    step = {
        "rate": 60.0,
        "latency_ms": _latency(10.0) | {"p99": p99},
        "cpu_ms_per_order": {"api": 1.5, "worker": 0.5, "local_aws": 9.0},
    }
    pipeline = {
        "steps": [step],
        "targets": [target("pipeline: p99 at 60 orders/s", p99, "<=", 25, "ms")],
    }
    return {"meta": meta, "scenarios": {"pipeline": pipeline, "soak": {"error": "boom"}}}


def test_the_readme_table_is_written_from_the_json_alone(tmp_path: Path) -> None:
    docs = [(tmp_path / "a.json", _doc(False, 30.0)), (tmp_path / "b.json", _doc(True, 12.0))]
    for path, doc in docs:
        path.write_bytes(orjson.dumps(doc))
    readme_file = tmp_path / "README.md"
    readme_file.write_text(f"# x\n\n{readme.START}\nstale\n{readme.END}\n\nrest\n")
    args = [str(p) for p, _ in docs] + ["--readme", str(readme_file)]
    assert readme.main([*args, "--check"]) == 1  # the stale table is caught
    assert readme.main(args) == 0
    text = readme_file.read_text()
    assert "stale" not in text and text.endswith("\n\nrest\n")
    assert "order state on (quick) | this bench, stateless (quick) |" in text
    assert "60/s: p50 10.0 ms, p99 30.0 ms" in text and "p99 12.0 ms" in text
    assert "| 0 of 1 met; failed to run: soak | 1 of 1 met; failed to run: soak |" in text
    assert "commit `abc1234`, uncommitted changes" in text
    assert readme.main([*args, "--check"]) == 0

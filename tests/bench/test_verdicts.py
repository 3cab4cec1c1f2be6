"""Every ledger, drain and carried-rate verdict fails when fed the input it exists to catch."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.cli import code_changes
from bench.harness.ledger import Ledger, ledger_targets
from bench.harness.stats import drain_rate, sustained_rate
from bench.report import readme
from bench.scenarios import concurrency, logs, pipeline, receive


def _met(targets: list[Any]) -> dict[str, bool]:
    return {t["name"].split(": ", 1)[1]: t["met"] for t in targets}


def test_a_ledger_that_was_not_read_cannot_pass() -> None:
    got = _met(ledger_targets("x", Ledger(), accepted=None, paid=5))
    assert got["charges in the processor's ledger = orders paid"] is False
    # ...while no double charge is visible in it: that verdict alone would have passed.
    assert got["orders charged twice (processor's ledger)"] is True


def test_a_double_charge_fails_twice_and_the_count() -> None:
    ledger = Ledger.of(Counter({"a": 1}), Counter({"a": 1, "b": 1}))
    got = _met(ledger_targets("x", ledger, accepted={"a", "b"}, paid=2))
    assert got["orders charged twice (processor's ledger)"] is False
    assert got["charges in the processor's ledger = orders paid"] is False
    assert got["accepted orders never charged (processor's ledger)"] is True


def test_an_accepted_order_with_no_charge_is_lost() -> None:
    ledger = Ledger.of(Counter({"a": 1}))
    got = _met(ledger_targets("x", ledger, accepted={"a", "b"}, paid=1))
    assert got["accepted orders never charged (processor's ledger)"] is False
    assert ledger.lost({"a", "b"}) == {"b"}


def test_a_clean_ledger_meets_every_verdict() -> None:
    ledger = Ledger.of(Counter({"a": 1}), Counter({"b": 1}))
    assert all(_met(ledger_targets("x", ledger, accepted={"a", "b"}, paid=2)).values())


def _cycles(slots: int, pay: float, lost: float, waves: int) -> tuple[list[float], list[float]]:
    """Every slot pays `waves` times in a row, losing `lost` s between payments."""
    starts = [slot / slots + w * (pay + lost) for slot in range(slots) for w in range(waves)]
    return starts, [s + pay for s in starts]


def test_a_worker_losing_time_between_payments_scores_below_ideal_per_period() -> None:
    # 0.3 s lost per 3 s payment: 91 % of ideal. Counting finished payments per period saw
    # one whole wave in every period and scored 100 %.
    starts, finished = _cycles(1000, 3.0, 0.3, 10)
    got = sustained_rate(finished, 3.0, until=max(starts), started=starts, since=0.0)
    assert got.per_s is not None
    assert 100 * got.per_s / (1000 / 3.0) == pytest.approx(100 * 3.0 / 3.3, abs=1.5)


def test_the_whole_drain_counts_the_ramp_and_the_tail() -> None:
    # The reference's drain: 10,000 orders, 1,000 slots, 3 s payments, 31.8 s in all.
    drain = drain_rate(0.0, 31.8, 10_000, 1000, 3.0)
    assert drain.ideal_seconds == 30.0
    assert drain.of_ideal_pct == pytest.approx(94.3, abs=0.1)


def _receive(drain_pct: float | None) -> Any:
    batched = {
        "queued": 10_000,
        "drain_of_ideal_pct": drain_pct,
        "of_ideal_pct": 100.0,
        "requests_per_order": 0.2,
        "cpu_ms_per_order": 0.4,
        "charged_twice": 0,
        "charges": 10_000,
        "paid_reported": 10_000,
    }
    settings = {"slots": 1000, "payment_seconds": 3.0, "order_state": True}
    return {"settings": settings, "runs": {"batched": batched}}


@pytest.mark.parametrize(("pct", "met"), [(94.3, False), (None, False), (96.5, True)])
def test_receive_judges_the_whole_drain(pct: float | None, met: bool) -> None:
    (whole,) = [t for t in receive.targets(_receive(pct)) if "whole drain" in t["name"]]
    assert whole["met"] is met


def test_an_order_paid_long_after_arrivals_stop_was_not_carried() -> None:
    assert pipeline._in_time([10.0, 17.9], arrivals_ended=10.0, payment_seconds=3.0)
    # A worker capped below the rate drains its queue after arrivals stop: not carried.
    assert not pipeline._in_time([10.0, 18.5], arrivals_ended=10.0, payment_seconds=3.0)


def _step(rate: float, *, api: float, worker: float, aws: float, paid: bool = True) -> Any:
    return {
        "rate": rate,
        "sent": 100,
        "accepted": 100,
        "paid": 100,
        "all_paid": paid,
        "latency_ms": {"p50": 5.0, "p99": 20.0},
        "cpu_ms_per_order": {"api": api, "worker": worker, "local_aws": aws},
    }


def _pipeline_result(steps: list[Any]) -> Any:
    settings = {"keyed_share": 0.5, "order_state": True}
    return {
        "settings": settings,
        "steps": steps,
        "charged_twice": 0,
        "charges": 200,
        "paid_reported": 200,
    }


def test_cpu_is_judged_at_the_highest_rate_carried() -> None:
    steps = [
        _step(60, api=5.0, worker=2.5, aws=6.0),
        _step(240, api=1.4, worker=0.5, aws=2.4),
        _step(480, api=0.9, worker=0.3, aws=1.0, paid=False),  # not carried: not judged
    ]
    got = {t["name"]: t for t in pipeline.targets(_pipeline_result(steps))}
    cpu = [t for name, t in got.items() if "CPU per order" in name]
    assert len(cpu) == 3 and all(t["met"] for t in cpu)
    assert all("(240/s)" in t["name"] for t in cpu)
    steps[1] = _step(240, api=1.6, worker=0.5, aws=2.4)
    got = {t["name"]: t for t in pipeline.targets(_pipeline_result(steps))}
    assert not got["pipeline: API CPU per order at the highest rate carried (240/s)"]["met"]


def test_no_rate_carried_is_no_cpu_figure_and_no_verdict_met() -> None:
    steps = [_step(60, api=1.0, worker=0.5, aws=2.0, paid=False)]
    cpu = [t for t in pipeline.targets(_pipeline_result(steps)) if "CPU per order" in t["name"]]
    assert cpu and all(t["measured"] is None and not t["met"] for t in cpu)


def _concurrency(**figures: Any) -> Any:
    good = {
        "settings": {"slots": 10_000, "payment_seconds": 30.0, "order_state": True},
        "queued": 30_000,
        "drain_of_ideal_pct": 95.0,
        "worker_cpu_ms_per_order": 0.5,
        "aws_requests_per_order": 0.4,
        "worker_rss_max_mb": 200.0,
        "charged_twice": 0,
        "charges": 30_000,
        "paid_reported": 30_000,
    }
    return good | figures


@pytest.mark.parametrize(
    "bad",
    [
        {"drain_of_ideal_pct": 72.0},  # 125 s for 90 s of payments, as measured before
        {"drain_of_ideal_pct": None},
        {"worker_cpu_ms_per_order": 1.52},
        {"aws_requests_per_order": 0.6},
        {"worker_rss_max_mb": 320.0},
        {"worker_rss_max_mb": None},
        {"charged_twice": 1, "charges": 30_001},
        {"charges": 0},  # the ledger was not read
    ],
)
def test_each_concurrency_target_fails_on_its_input(bad: dict[str, Any]) -> None:
    assert all(t["met"] for t in concurrency.targets(_concurrency(), lost=0))
    unmet = [t["name"] for t in concurrency.targets(_concurrency(**bad), lost=0) if not t["met"]]
    assert unmet


def test_concurrency_counts_an_uncharged_order_as_lost() -> None:
    got = _met(concurrency.targets(_concurrency(), lost=3))
    assert got["accepted orders never charged (processor's ledger)"] is False


def test_dirty_reflects_code_not_outputs() -> None:
    status = "\n".join(
        [
            " M bench/reference/results.json",  # a reference the suite just wrote
            " M bench/reference/stateless/report.md",
            " M out/results.json",  # this run's --json
            " M README.md",  # docs, the generated table among them
        ]
    )
    outputs = [Path("out/results.json")]
    assert code_changes(status, outputs) == []
    changed = code_changes(status + "\n M services/worker/worker.py", outputs)
    assert changed == ["services/worker/worker.py"]
    # Without naming the run's output, that file is a change like any other.
    assert "out/results.json" in code_changes(status)
    assert code_changes("R  bench/a.py -> bench/harness/a.py") == ["bench/harness/a.py"]


def _suite_doc(speedup: float | None) -> Any:
    start = {"commit": "abc1234", "cpus": 2, "python": "3.11", "load_average": [1.0, 1.0, 1.0]}
    meta = {
        "command": "python -m bench",
        "mode": "quick",
        "stateless": False,
        "machine_start": start,
        "machine_end": start,
    }
    compare = {
        "speedup_p50": speedup,
        "targets": [{"name": "compare: x", "measured": speedup, "met": False}],
    }
    return {"meta": meta, "scenarios": {"compare": compare}}


def test_headline_figures_show_min_median_max_over_runs() -> None:
    runs = [_suite_doc(93.0), _suite_doc(479.0), _suite_doc(137.0)]
    text = readme.table([(Path("r.json"), runs[-1])], [runs])
    dash, times = readme.NONE, readme.TIMES
    assert f"median (min{dash}max) of 3 runs" in text
    assert f"speed-up {times} 137.0 (93.0{dash}479.0)" in text
    # A run that did not measure the figure is not dropped silently.
    gap = readme.table([(Path("r.json"), runs[-1])], [[*runs[:2], _suite_doc(None)]])
    assert "2 of 3 runs" in gap
    # One run: no spread row; the paragraph under the table names what was missed.
    single = readme.table([(Path("r.json"), runs[-1])], [runs[:1]])
    assert "runs |" not in single
    assert "Not met in every column: compare: x." in single


def _shipping(total_ms: float | None, gauge: float | None = 5.0) -> Any:
    """A run's CPU per order: `gauge` split between the API and the worker."""
    half = None if gauge is None else gauge / 2
    return {"cpu_ms_per_order": {"api": half, "worker": half, "total": total_ms}}


CPU_TARGET = "CPU per order, shipping on vs off (API + worker + local AWS + log relays)"


def test_shipping_that_costs_more_than_5_percent_cpu_per_order_fails() -> None:
    overhead = logs.overhead_pct(_shipping(10.0), _shipping(10.6))
    assert overhead == pytest.approx(6.0)
    got = _met(logs.shipping_targets(overhead, lines_read=100, lines_stored=100))
    assert got[CPU_TARGET] is False
    cheap = logs.overhead_pct(_shipping(10.0), _shipping(10.4))
    assert all(_met(logs.shipping_targets(cheap, lines_read=100, lines_stored=100)).values())


def test_a_machine_slower_in_one_run_is_not_counted_as_shipping_and_hides_none() -> None:
    # Every process 10 % slower in the on run, the API and the worker too: no overhead,
    # where the plain ratio would read +10 % and fail.
    slower = logs.overhead_pct(_shipping(10.0, 5.0), _shipping(11.0, 5.5))
    assert slower == pytest.approx(0.0)
    assert logs.raw_overhead_pct(_shipping(10.0, 5.0), _shipping(11.0, 5.5)) == pytest.approx(10)
    # The relays and the local AWS 1.2 ms per order dearer on a machine 10 % faster: +12 %
    # at the off run's speed, though the plain ratio reads +1.5 % and would pass.
    faster = logs.overhead_pct(_shipping(10.0, 5.0), _shipping(10.15, 4.5))
    assert faster == pytest.approx(12.8, abs=0.1)
    assert _met(logs.shipping_targets(faster, lines_read=1, lines_stored=1))[CPU_TARGET] is False


def test_shipping_cost_not_measured_fails() -> None:
    # A process that was gone (total None, or the API's or worker's None) or an empty off run
    # cannot pass.
    assert logs.overhead_pct(_shipping(None), _shipping(10.0)) is None
    assert logs.overhead_pct(_shipping(0.0), _shipping(10.0)) is None
    assert logs.overhead_pct(_shipping(10.0, None), _shipping(10.0)) is None
    assert logs.overhead_pct(_shipping(10.0), _shipping(10.0, 0.0)) is None
    got = _met(logs.shipping_targets(None, lines_read=100, lines_stored=100))
    assert got[CPU_TARGET] is False


def _pair(overhead: float | None) -> Any:
    """A round whose overhead at the machine's speed is `overhead` % (None: not measured)."""
    on = None if overhead is None else 10.0 * (1 + overhead / 100)
    return {"off": _shipping(10.0), "on": _shipping(on)}


def test_the_median_round_is_the_verdict_and_one_dear_round_is_not() -> None:
    rounds = [_pair(1.0), _pair(9.0), _pair(3.0)]
    chosen, overhead = logs.median_round(rounds)
    assert chosen is rounds[2] and overhead == pytest.approx(3.0)
    # Two dear rounds of three: the median is dear, and the verdict fails.
    _, dear = logs.median_round([_pair(6.0), _pair(9.0), _pair(3.0)])
    assert dear == pytest.approx(6.0)
    assert _met(logs.shipping_targets(dear, lines_read=1, lines_stored=1))[CPU_TARGET] is False
    # An even count takes the lower middle round, an actual round the table can show.
    chosen, overhead = logs.median_round([_pair(4.0), _pair(2.0), _pair(8.0), _pair(6.0)])
    assert overhead == pytest.approx(4.0)


def test_a_round_not_measured_leaves_no_verdict_to_pass() -> None:
    assert logs.median_round([_pair(1.0), _pair(None), _pair(2.0)]) == (None, None)
    assert logs.median_round([]) == (None, None)


def test_rounds_put_off_and_on_first_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[bool] = []

    def one(shipping: bool, s: Any) -> Any:
        ran.append(shipping)
        made = _round(10.5 if shipping else 10.0, 5, 5 if shipping else None)
        shown = ("accepted", "paid", "lines_per_s", "lines_per_order", "ship_delay_ms")
        return {**made, **dict.fromkeys(shown), "shipping": shipping}

    monkeypatch.setattr(logs, "_one", one)
    parser = argparse.ArgumentParser()
    logs.add_arguments(parser)
    args = parser.parse_args(["--rounds", "4", "--query-lines", "0"])
    args.quick, args.stateless = True, False
    result = logs.run(args, {})
    assert ran == [False, True, True, False, False, True, True, False]
    assert [list(r) for r in result["rounds"]] == [["off", "on"]] * 4
    assert result["cpu_overhead_pct"] == pytest.approx(5.0)
    assert "| 2 | on |" in logs.report(result)


def test_a_line_missing_from_cloudwatch_logs_fails_and_an_uncounted_one_too() -> None:
    name = "lines written by the services and not in CloudWatch Logs"
    assert _met(logs.shipping_targets(1.0, lines_read=100, lines_stored=99))[name] is False
    assert _met(logs.shipping_targets(1.0, lines_read=100, lines_stored=None))[name] is False
    assert _met(logs.shipping_targets(1.0, lines_read=None, lines_stored=100))[name] is False


def _query(scanned: int, per_s: int) -> dict[str, Any]:
    return {"lines_scanned": scanned, "lines_per_s_wall": per_s, "lines_per_s_cpu": per_s}


def test_a_slow_query_fails_and_a_fast_one_over_too_few_lines_is_not_measured() -> None:
    assert logs.query_target(_query(200_000, 150_000), 200_000)["met"] is False
    assert logs.query_target(_query(200_000, 250_000), 200_000)["met"] is True
    few = logs.query_target(_query(2_000, 900_000), 200_000)
    assert few["measured"] is None and few["met"] is False
    assert logs.query_target(None, 200_000)["met"] is False


def _round(total_ms: float, read: int, stored: int | None) -> Any:
    return {
        "cpu_ms_per_order": {"api": 2.5, "worker": 2.5, "total": total_ms},
        "lines_read": read,
        "lines_stored": stored,
        "lost": 0,
        "charged_twice": 0,
        "charges": 10,
        "paid_reported": 10,
    }


def test_a_line_lost_in_any_round_fails_though_the_median_round_lost_none() -> None:
    rounds = [
        {"off": _round(10.0, 50, None), "on": _round(10.2, 50, 50)},
        {"off": _round(11.0, 50, None), "on": _round(11.5, 50, 49)},
    ]
    runs, overhead = logs.median_round(rounds)
    assert runs is rounds[0] and overhead == pytest.approx(2.0)
    result: Any = {"rounds": rounds, "runs": runs, "cpu_overhead_pct": overhead}
    got = _met(logs.targets(result))
    assert got["lines written by the services and not in CloudWatch Logs"] is False
    assert got[CPU_TARGET] is True

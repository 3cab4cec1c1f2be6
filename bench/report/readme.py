"""`python -m bench readme`: README.md's benchmark table, written from results JSON files.

The table sits between two markers in README.md and is only ever written by this command,
from the JSON a bench run saved (`--json`), so the README cannot say what no run measured.
Each JSON is one column, labelled by its order state; repeated runs in a `runs/` folder
beside it (make bench-reference writes three) give the headline figures as median (min-max);
under the table, one generated paragraph names the targets each column misses. `--check`
exits 1 if the README's table differs from what the JSON gives (nothing is written then).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..harness.speed import speed
from .reference import REFERENCE, REFERENCE_SPEEDUP

START = "<!-- bench-table: written by `python -m bench readme`, do not edit by hand -->"
END = "<!-- /bench-table -->"
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JSON = (
    ROOT / "bench" / "reference" / "results.json",
    ROOT / "bench" / "reference" / "stateless" / "results.json",
)

# Written as escapes: ruff flags the characters themselves as look-alikes.
NONE = "\u2013"  # en dash: not measured
TIMES = "\u00d7"

Results = Mapping[str, Any]
Cell = Callable[[Mapping[str, Any]], str]


def _n(value: object, digits: int = 0) -> str:
    if value is None:
        return NONE
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _compare(s: Mapping[str, Any]) -> str:
    runs = s.get("runs") or {}
    sync = (runs.get("sync, reference shape") or {}).get("latency_ms") or {}
    ref = (runs.get("async, reference shape") or {}).get("latency_ms") or {}
    jit = (runs.get("async, jittered") or {}).get("latency_ms") or {}
    if not ref:
        return NONE
    settings = s.get("settings") or {}
    mode = (
        "--full run"
        if settings.get("full")
        else f"quick run, sync {_n(settings.get('duration_s'))} s with "
        f"{_n((runs.get('sync, reference shape') or {}).get('requests'))} requests"
    )
    return (
        f"{mode}: {_n(ref.get('p50'), 1)} ms vs {_n(sync.get('p50'))} ms "
        f"({_n(s.get('speedup_p50'))}{TIMES}); async p99 {_n(ref.get('p99'), 1)} ms "
        f"({_n(ref.get('count'))} samples); jittered ± "
        f"{(s.get('settings') or {}).get('jitter', 0) * 100:g} %: p50 {_n(jit.get('p50'), 1)} "
        f"ms, p99 {_n(jit.get('p99'), 1)} ms"
    )


def _flash(s: Mapping[str, Any]) -> str:
    a = s.get("async")
    if not a:
        return NONE
    slots = (s.get("settings") or {}).get("slots")
    return (
        f"{_n(a['accepted'])}/{_n(a['sent'])} accepted, {_n(a['paid'])} paid, "
        f"{_n(a['lost'])} lost (ledger), p99 {_n(a['latency_ms'].get('p99'), 1)} ms; drained "
        f"{_n(a.get('drain_s'), 1)} s after arrivals stop with {_n(slots)} slots (as planned)"
    )


def _pipeline_step(s: Mapping[str, Any], rate: float) -> Mapping[str, Any] | None:
    return next((st for st in s.get("steps", []) if st["rate"] == rate), None)


def _pipeline(s: Mapping[str, Any]) -> str:
    steps = s.get("steps")
    if not steps:
        return NONE
    at60 = _pipeline_step(s, 60.0)
    carried = next((t for t in s.get("targets", []) if "highest rate" in t["name"]), None)
    top = None if not carried or carried["measured"] is None else carried["measured"]
    at_top = None if top is None else _pipeline_step(s, top)
    slots = (s.get("settings") or {}).get("slots")
    parts = []
    if at60:
        lat = at60["latency_ms"]
        parts.append(f"60/s: p50 {_n(lat.get('p50'), 1)} ms, p99 {_n(lat.get('p99'), 1)} ms")
    parts.append(f"highest rate carried (p99 ≤ 100 ms, paid in time): {_n(top)}/s")
    if at_top:
        cpu = at_top["cpu_ms_per_order"]
        parts.append(
            f"CPU ms per order there: API {_n(cpu.get('api'), 2)}, worker "
            f"{_n(cpu.get('worker'), 2)}, local AWS {_n(cpu.get('local_aws'), 2)}"
        )
    parts.append(f"{_n(slots)} worker slots")
    return "; ".join(parts)


def _receive(s: Mapping[str, Any]) -> str:
    runs = s.get("runs") or {}
    spec = s.get("settings") or {}
    parts = [
        f"{_n(spec.get('slots'))} slots, {spec.get('payment_seconds', 0):g} s payment, "
        f"{_n(spec.get('backlog'))} queued:"
    ]
    for name in ("batched", "per-task"):
        r = runs.get(name)
        if not r or "skipped" in r:
            continue
        drained = "" if r.get("drained") else f", not drained ({_n(r.get('paid'))} paid)"
        parts.append(
            f"`{name}` {_n(r.get('sustained_per_s'), 1)} orders/s "
            f"({_n(r.get('of_ideal_pct'), 1)} % of ideal over {_n(r.get('periods_measured'))} "
            f"periods{drained}), {_n(r.get('requests_per_order'), 2)} SQS requests and "
            f"{_n(r.get('cpu_ms_per_order'), 2)} ms worker CPU per order, local AWS "
            f"{_n(r.get('local_aws_cpu_ms_per_order'), 1)} ms"
        )
    return " ".join(parts[:1]) + " " + "; ".join(parts[1:]) if len(parts) > 1 else NONE


def _soak(s: Mapping[str, Any]) -> str:
    if "accepted" not in s:
        return NONE
    growth = [w["memory"].get("growth_pct") for w in s.get("workers", [])]
    return (
        f"{_n(s['accepted'])} accepted = {_n(s['paid'])} paid + {_n(s['failed'])} failed "
        f"({_n(s['dlq'])} in the DLQ, {_n(s['unsettled'])} unsettled), "
        f"{_n(s.get('charged_twice'))} charged twice (ledger), worker RSS "
        f"{'/'.join(f'{g:+.1f} %' for g in growth if g is not None) or NONE}"
    )


def _emulator(s: Mapping[str, Any]) -> str:
    found = next((t for t in s.get("targets", []) if t["name"].startswith("receive-10")), None)
    return NONE if found is None else f"{_n(found['measured'], 2)}{TIMES}"


def _targets(doc: Results) -> str:
    targets = [t for s in doc["scenarios"].values() for t in s.get("targets", [])]
    unmet = [t["name"] for t in targets if not t["met"]]
    errors = [name for name, s in doc["scenarios"].items() if "error" in s]
    text = f"{len(targets) - len(unmet)} of {len(targets)} met"
    if errors:
        text += f"; failed to run: {', '.join(errors)}"
    return text


ROWS: Sequence[tuple[str, str, str, Cell]] = (
    (
        "compare",
        "async vs sync median, 20 Locust users (the report's shape; same payment, loopback "
        "here vs the internet there)",
        f"{REFERENCE['async_p50_ms']} ms vs {REFERENCE['sync_p50_ms']:,} ms "
        f"({REFERENCE_SPEEDUP:.0f}{TIMES})",
        _compare,
    ),
    ("flash-sale", "60 orders/s flash sale", "not run (182 slots estimated)", _flash),
    ("pipeline", "the whole pipeline, open loop, half keyed", NONE, _pipeline),
    ("receive", "one worker draining a preloaded backlog", NONE, _receive),
    ("soak", "soak: payment failures, a worker restart", NONE, _soak),
    ("emulator", "local AWS: receive-10 at 10,000 queued vs 10", NONE, _emulator),
)


def _label(doc: Results) -> str:
    state = "stateless" if doc["meta"].get("stateless") else "order state on"
    return f"this bench, {state} ({doc['meta']['mode']})"


def _made(doc: Results, path: Path) -> str:
    meta = doc["meta"]
    start, end = meta["machine_start"], meta["machine_end"]
    dirty = ", uncommitted changes" if start.get("dirty") else ""
    versions = ", ".join(f"{k} {v}" for k, v in (start.get("versions") or {}).items())
    try:
        shown = path.resolve().relative_to(ROOT)
    except ValueError:
        shown = path
    return (
        f"- {_label(doc)}: `{meta['command']}` → `{shown}`, commit `{start.get('commit')}`"
        f"{dirty}; {start.get('cpus')} CPUs, Python {start.get('python')}, {versions}; load "
        f"average {start['load_average'][0]} at the start, {end['load_average'][0]} at the end; "
        f"{speed(meta)}"
    )


def _scenario(doc: Results, name: str) -> Mapping[str, Any]:
    found: Mapping[str, Any] = doc["scenarios"].get(name) or {}
    return {} if "error" in found else found


def _measured(doc: Results, scenario: str, fragment: str) -> float | None:
    found = [t for t in _scenario(doc, scenario).get("targets", []) if fragment in t["name"]]
    value = found[0]["measured"] if found else None
    return float(value) if isinstance(value, int | float) else None


def _receive_drain(doc: Results) -> float | None:
    batched = (_scenario(doc, "receive").get("runs") or {}).get("batched") or {}
    value = batched.get("drain_of_ideal_pct")
    return float(value) if isinstance(value, int | float) else None


# The figures a reader takes away, each shown as median (min-max) over the reference's runs.
HEADLINES: Sequence[tuple[str, Callable[[Results], float | None]]] = (
    (f"compare p50 speed-up {TIMES}", lambda d: _scenario(d, "compare").get("speedup_p50")),
    (
        "flash-sale async p99 ms",
        lambda d: ((_scenario(d, "flash-sale").get("async") or {}).get("latency_ms") or {}).get(
            "p99"
        ),
    ),
    ("pipeline highest rate carried /s", lambda d: _measured(d, "pipeline", "highest rate")),
    ("receive whole drain % of ideal", _receive_drain),
    (
        "concurrency whole drain % of ideal",
        lambda d: _scenario(d, "concurrency").get("drain_of_ideal_pct"),
    ),
)


def spread(values: Sequence[float | None]) -> str:
    """median (min-max) of the runs that measured the figure, and how many did."""
    got = sorted(v for v in values if v is not None)
    if not got:
        return NONE
    text = f"{_n(float(statistics.median(got)), 1)} ({_n(got[0], 1)}{NONE}{_n(got[-1], 1)})"
    return text if len(got) == len(values) else f"{text}, {len(got)} of {len(values)} runs"


def _spread_cell(runs: Sequence[Results]) -> str:
    if len(runs) < 2:
        return NONE
    return "; ".join(f"{name} {spread([get(d) for d in runs])}" for name, get in HEADLINES)


def _unmet_paragraph(docs: Sequence[tuple[Path, Results]]) -> str:
    """Which targets each column misses, from the JSON alone: the one paragraph of reading."""
    unmet = [
        {t["name"] for s in doc["scenarios"].values() for t in s.get("targets", []) if not t["met"]}
        for _, doc in docs
    ]
    if not unmet:
        return ""
    common = set.intersection(*unmet)
    parts = [f"Not met in every column: {', '.join(sorted(common)) or 'none'}."]
    if len(docs) > 1:
        for (_, doc), names in zip(docs, unmet, strict=True):
            only = names - common
            if only:
                parts.append(f"Only in {_label(doc)}: {', '.join(sorted(only))}.")
    return " ".join(parts)


def table(
    docs: Sequence[tuple[Path, Results]], runs: Sequence[Sequence[Results]] | None = None
) -> str:
    """The README's benchmark table (and how each column was made) from results JSONs;
    `runs`, per column, the repeated runs whose headline figures' spread is shown."""
    header = ["", "reference report (AWS)", *(_label(doc) for _, doc in docs)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for scenario, what, reference, cell in ROWS:
        values = []
        for _, doc in docs:
            s = doc["scenarios"].get(scenario) or {}
            values.append(NONE if "error" in s else cell(s))
        lines.append("| " + " | ".join([what, reference, *values]) + " |")
    lines.append(
        f"| targets (bench/README.md) | {NONE} | "
        + " | ".join(_targets(doc) for _, doc in docs)
        + " |"
    )
    if runs and any(len(r) > 1 for r in runs):
        counts = "/".join(str(len(r)) for r in runs)
        lines.append(
            f"| headline figures, median (min{NONE}max) of {counts} runs | {NONE} | "
            + " | ".join(_spread_cell(r) for r in runs)
            + " |"
        )
    lines += ["", *(_made(doc, path) for path, doc in docs)]
    paragraph = _unmet_paragraph(docs)
    if paragraph:
        lines += ["", paragraph]
    return "\n".join(lines)


def run_files(path: Path) -> list[Path]:
    """The repeated runs beside a results file (`runs/*.json`, as make bench-reference writes
    them): their headline figures are shown as a spread."""
    return sorted((path.parent / "runs").glob("*.json"))


def replace(text: str, generated: str) -> str:
    """`text` with the part between the markers replaced by `generated`."""
    if START not in text or END not in text:
        raise ValueError(f"README has no {START!r} ... {END!r} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{generated}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench readme", description=__doc__)
    parser.add_argument(
        "json",
        nargs="*",
        type=Path,
        help="results files, one column each (default: bench/reference/results.json and, "
        "if present, bench/reference/stateless/results.json)",
    )
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    args = parser.parse_args(argv)
    paths = args.json or [p for p in DEFAULT_JSON if p.exists()]
    try:
        docs = [(p, orjson.loads(p.read_bytes())) for p in paths]
        runs = [[orjson.loads(r.read_bytes()) for r in run_files(p)] for p in paths]
        current = args.readme.read_text()
        updated = replace(current, table(docs, runs))
    except (OSError, ValueError, KeyError) as exc:
        print(f"bench readme: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if updated != current:
            names = ", ".join(str(p) for p in paths)
            print(f"bench readme: {args.readme}'s table differs from {names}", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(updated)
    print(f"bench readme: wrote the table in {args.readme} from {len(docs)} file(s)")
    return 0

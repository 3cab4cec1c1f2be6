"""`python -m bench [SCENARIO] [--quick|--full] [--stateless] [--out DIR] [--json PATH]`.

Each scenario is a module in bench/scenarios (or bench/tools) with add_arguments(parser),
run(args, earlier) -> result (`earlier`: the results of the scenarios the suite ran before
it) and report(result) -> str; optionally charts(result, out_dir) -> list of PNG file names.
A scenario's module is imported only when it is run or its flags are asked for, so `--help`
loads none of them. Without a scenario the whole suite runs, one scenario after the other,
into one report. Exit status: 0 every target met, 1 a target not met (each named on
stderr), 2 a scenario failed to run. `python -m bench readme` writes README.md's benchmark
table from a results JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, NamedTuple

import orjson

from .harness.results import Result
from .harness.speed import python_ms, speed
from .harness.targets import unmet
from .report.markdown import targets_table


class Scenario(NamedTuple):
    module: str
    summary: str
    """Its one-line help, here so that listing the scenarios imports none of them."""


# Order matters for the suite: `plan` checks itself against the `flash-sale` run before it.
SCENARIOS = {
    "compare": Scenario(
        "bench.scenarios.compare", "sync vs async under Locust, as in the reference report"
    ),
    "scaling": Scenario(
        "bench.scenarios.scaling", "worker slots 1 to 1,000 under one arrival rate"
    ),
    "flash-sale": Scenario(
        "bench.scenarios.flash_sale", "open-loop arrivals at a fixed rate on async, then sync"
    ),
    "plan": Scenario("bench.scenarios.plan", "slots and ECS tasks for a rate, checked by a sale"),
    "receive": Scenario(
        "bench.scenarios.receive", "per-task vs batched receiving, draining a backlog"
    ),
    "concurrency": Scenario(
        "bench.scenarios.concurrency", "10,000 concurrent payments in one worker, drained whole"
    ),
    "soak": Scenario(
        "bench.scenarios.soak", "sustained load, payment failures, a worker restart midway"
    ),
    "pipeline": Scenario("bench.scenarios.pipeline", "the whole system at rising open-loop rates"),
    "logs": Scenario(
        "bench.scenarios.logs", "shipping logs to CloudWatch Logs (CPU, lines/s), Insights' speed"
    ),
    "emulator": Scenario("bench.tools.emulator", "the local AWS's own costs"),
}
DEFAULT_OUT = Path(__file__).parent / "results"
# The scenarios that can run against a stack they did not start (--target).
ON_TARGET = ("compare", "flash-sale", "pipeline")


def load(name: str) -> ModuleType:
    """The scenario's module, imported only when asked for (each pulls in its own tools)."""
    return importlib.import_module(SCENARIOS[name].module)


def add_common(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    """The flags every scenario takes, before or after its name. `defaults=False` for the
    scenario's own copy: argparse lets a subparser's defaults overwrite what was given before
    the scenario's name (`--out X receive` wrote to the default --out), so there an absent
    flag sets nothing."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="quick",
        action="store_true",
        default=default(True),
        help="shorter runs (and, in scaling, a shorter payment); the default",
    )
    mode.add_argument(
        "--full",
        dest="quick",
        action="store_false",
        default=default(True),
        help="the reference report's own settings",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=default(DEFAULT_OUT),
        help=f"report and charts go here ({DEFAULT_OUT})",
    )
    parser.add_argument(
        "--json", type=Path, default=default(None), help="also write every figure to this JSON file"
    )
    parser.add_argument(
        "--target",
        metavar="URL",
        default=default(None),
        help="run compare, flash-sale and pipeline against this running stack (make run's "
        "API, say) instead of starting one: latency from the client, completion from GET "
        "/orders/{id}, no CPU figures; 127.0.0.1 only unless --remote-ok",
    )
    parser.add_argument(
        "--remote-ok",
        action="store_true",
        default=default(False),
        help="allow a --target that is not 127.0.0.1 (a deployed ALB): you own it",
    )
    parser.add_argument(
        "--stateless",
        action="store_true",
        default=default(False),
        help="run the services without order state (no ORDERS_TABLE); default: with it, "
        "as `make run` ships them",
    )


def build_parser(flags_of: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The CLI; only the scenarios in `flags_of` (default: all) are imported for their flags."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="The sync-vs-async experiment, on this machine."
    )
    add_common(parser)
    subparsers = parser.add_subparsers(dest="scenario", metavar="SCENARIO")
    wanted = set(SCENARIOS if flags_of is None else flags_of)
    for name, scenario in SCENARIOS.items():
        # `resolve`: a scenario may redefine a common flag without breaking the whole CLI.
        sub = subparsers.add_parser(
            name, help=scenario.summary, description=scenario.summary, conflict_handler="resolve"
        )
        add_common(sub, defaults=False)
        if name in wanted:
            load(name).add_arguments(sub)
    return parser


def scenario_args(name: str, common: argparse.Namespace) -> argparse.Namespace:
    """A scenario's defaults, with the suite's common flags applied."""
    args = build_parser([name]).parse_args([name])
    args.quick, args.out, args.json = common.quick, common.out, None
    args.stateless = common.stateless
    args.target, args.remote_ok = common.target, common.remote_ok
    return args


def _git(*command: str) -> str | None:
    try:
        got = subprocess.run(
            ["git", *command],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return got.stdout.strip()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# What a run writes (reports, charts, JSON, the README's table) and docs: not code, so a
# change there does not make the figures "not the commit's alone".
NOT_CODE = ("bench/reference/", "bench/results/")
DOC_SUFFIXES = (".md",)


def code_changes(status: str, outputs: Sequence[Path] = ()) -> list[str]:
    """Tracked files with uncommitted changes (`git status --porcelain` lines) that are code:
    neither this run's outputs, nor a reference's or results' file, nor a doc."""
    root = Path(__file__).resolve().parents[1]
    skip = list(NOT_CODE)
    for out in outputs:
        with contextlib.suppress(ValueError):
            relative = out.resolve().relative_to(root).as_posix()
            skip.append(relative if out.suffix else relative.rstrip("/") + "/")
    changed = []
    for line in status.splitlines():
        fields = line.split(None, 1)  # "XY path", or "R  old -> new"
        if len(fields) < 2:
            continue
        path = fields[1].split(" -> ")[-1].strip('"')
        if path.endswith(DOC_SUFFIXES) or any(path == s or path.startswith(s) for s in skip):
            continue
        changed.append(path)
    return changed


def machine(outputs: Sequence[Path] = ()) -> dict[str, Any]:
    """What the figures were measured on, and how busy it was."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    dirty = code_changes(status or "", outputs)
    return {
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        # The machine's speed (bench/harness/speed.py): were two runs' machines alike?
        "python_ms": python_ms(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        # Uncommitted changes to code: the figures are not the commit's alone. Outputs
        # (--out, --json, the references) and docs do not count.
        "dirty": bool(dirty),
        "dirty_paths": dirty,
        "versions": {p: _version(p) for p in ("moto", "aiobotocore", "aiohttp")},
    }


def run_scenario(
    name: str, args: argparse.Namespace, earlier: Mapping[str, Result] = MappingProxyType({})
) -> Result:
    """Run one scenario; `earlier` holds the results the suite has so far (plan reuses one)."""
    module = load(name)
    print(f"== {name} ({'quick' if args.quick else 'full'})", file=sys.stderr, flush=True)
    speed_before = python_ms()
    started = time.monotonic()
    result: Result = module.run(args, earlier)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    # A suite runs for many minutes, and the machine's speed moves within that time.
    result["python_ms"] = {"before": speed_before, "after": python_ms()}
    draw = getattr(module, "charts", None)
    if draw is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        result["charts"] = draw(result, args.out)
    return result


def section(name: str, result: Result) -> str:
    """A scenario's Markdown: its own report, then its charts."""
    if "error" in result:
        return f"## {name}\n\n**Failed:** `{result['error']}`\n"
    module = load(name)
    text: str = module.report(result).rstrip() + "\n"
    for chart in result.get("charts", []):
        text += f"\n![{name}: {Path(chart).stem}]({chart})\n"
    return text


def render(results: Mapping[str, Result], meta: dict[str, Any]) -> str:
    """The whole report: how it was made, every target, then each scenario."""
    load_start, load_end = (
        meta["machine_start"]["load_average"],
        meta["machine_end"]["load_average"],
    )
    start = meta["machine_start"]
    versions = ", ".join(f"{k} {v}" for k, v in (start.get("versions") or {}).items())
    dirty = " (with uncommitted changes)" if start.get("dirty") else ""
    state = "off (`--stateless`)" if meta.get("stateless") else "on (as `make run` ships it)"
    lines = [
        "# orderflow bench",
        "",
        f"`{meta['command']}` ({meta['mode']}), order state {state}; commit "
        f"`{start['commit']}`{dirty}, {start['time_utc']}, {start['cpus']} CPUs, Python "
        f"{start['python']}, {versions}; load average {load_start[0]} at the start and "
        f"{load_end[0]} at the end, {meta['wall_seconds']} s in all; {speed(meta)}.",
        "",
    ]
    targets = [t for result in results.values() for t in result.get("targets", [])]
    if targets:
        lines += ["## Targets", "", targets_table(targets), ""]
    lines += [section(name, result) for name, result in results.items()]
    return "\n".join(lines)


def run_suite(names: Sequence[str], common: argparse.Namespace, command: str) -> int:
    outputs = [common.out, *([common.json] if common.json is not None else [])]
    started, meta_start = time.monotonic(), machine(outputs)
    results: dict[str, Result] = {}
    for name in names:
        args = common if getattr(common, "scenario", None) == name else scenario_args(name, common)
        try:
            results[name] = run_scenario(name, args, results)
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    meta = {
        "command": command,
        "mode": "quick" if common.quick else "full",
        "stateless": common.stateless,
        "machine_start": meta_start,
        "machine_end": machine(outputs),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    text = render(results, meta)
    common.out.mkdir(parents=True, exist_ok=True)
    report_path = common.out / "report.md"
    report_path.write_text(text)
    print(text)
    print(f"report: {report_path}", file=sys.stderr)
    if common.json is not None:
        common.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"meta": meta, "scenarios": results}
        common.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        print(f"json: {common.json}", file=sys.stderr)
    return verdict(results)


def verdict(results: Mapping[str, Result]) -> int:
    """The exit status: 2 if a scenario failed to run, 1 if a target was not met, else 0."""
    failed = [name for name, result in results.items() if "error" in result]
    missed = unmet(results)
    for name in failed:
        print(f"bench: scenario {name} failed: {results[name]['error']}", file=sys.stderr)
    for name in missed:
        print(f"bench: target not met: {name}", file=sys.stderr)
    return 2 if failed else 1 if missed else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["readme"]:
        from .report.readme import main as readme_main

        return readme_main(argv[1:])
    named = [arg for arg in argv if arg in SCENARIOS][:1]
    args = build_parser(named).parse_args(argv)
    command = " ".join(["python -m bench", *argv])
    names = list(SCENARIOS) if args.scenario is None else [args.scenario]
    if args.target is not None:
        from .harness.remote import target_url  # here: --help must not import the stack

        try:
            args.target = target_url(args.target, remote_ok=args.remote_ok)
        except ValueError as exc:
            print(f"bench: --target: {exc}; add --remote-ok if you mean it", file=sys.stderr)
            return 2
        if args.scenario is not None and args.scenario not in ON_TARGET:
            print(
                f"bench: --target runs {', '.join(ON_TARGET)} only, not {args.scenario}",
                file=sys.stderr,
            )
            return 2
        names = [name for name in names if name in ON_TARGET]
    return run_suite(names, args, command)

"""What the code reads from the environment and which log events it writes, found in its AST.

The docs' settings table (docs/settings.md) and log-event table (docs/logs.md) are written by
hand, for the reader; `tests/docs/test_docs_drift.py` checks them against what this finds, so
a setting or event added, renamed or removed in the code fails the suite until the docs say
so. `python -m tests.docs.code_names` prints both lists and what the docs miss or still name.

Read from the source, not by running it: a setting read only on one branch, or an event only
logged on a failure path, is found all the same. A name the walker cannot resolve to string
literals (an event name built at run time from something other than a parameter or a local
variable) is an error, so a new way of naming things cannot slip past the check unseen.
"""

from __future__ import annotations

import ast
import operator
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Where settings are read and events written: the two services and `make run`'s harness.
SOURCES = ("services", "devstack")

# The operating system's own variables, read by `devstack/prereqs.py` to find programs: not
# settings of this project, so not in docs/settings.md.
NOT_SETTINGS = frozenset({"PATH", "HOME", "XDG_CACHE_HOME"})

LEVELS = ("debug", "info", "warning", "error", "exception", "critical")
# The launcher's own lines (devstack/stack.py `say`) carry no level; documented as "-".
NO_LEVEL = "-"
SETTING = re.compile(r"[A-Z][A-Z0-9_]*\Z")
EVENT = re.compile(r"[a-z][a-z0-9_]*\Z")


UNKNOWN = object()  # a default computed at run time: not compared with the docs


class Unresolved(Exception):
    """A setting or event name that is not a string literal the walker can follow."""


@dataclass
class Found:
    """Setting names, and each event's levels, with where they occur (for the messages)."""

    settings: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    defaults: dict[str, set[object]] = field(default_factory=lambda: defaultdict(set))
    """Each setting's default as an `env_*` reader is given it (normalised; UNKNOWN if computed)."""
    events: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    event_sites: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def source_files() -> Iterator[Path]:
    for top in SOURCES:
        yield from sorted((ROOT / top).rglob("*.py"))


def scan() -> Found:
    found = Found()
    for path in source_files():
        Module(path, found).walk()
    return found


class Module:
    """One source file's settings reads and log calls, added to `found`."""

    def __init__(self, path: Path, found: Found, root: Path = ROOT) -> None:
        self.path = path
        self.where = path.relative_to(root).as_posix()
        self.tree = ast.parse(path.read_text(), filename=self.where)
        self.found = found
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(self.tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def walk(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self._call(node)
            elif (
                isinstance(node, ast.Subscript)
                and isinstance(node.ctx, ast.Load)
                and _is_environ(node.value)
            ):
                self._setting(node.slice, node)

    def _call(self, call: ast.Call) -> None:
        func = call.func
        site = f"{self.where}:{call.lineno}"
        # env_str(environ, "NAME", ...), env_int, env_float, env_choice, env_bool
        if isinstance(func, ast.Name) and func.id.startswith("env_") and len(call.args) >= 2:
            default = call.args[2] if len(call.args) >= 3 else None
            self._setting(call.args[1], call, default)
        # environ.get("NAME"), os.environ.get("NAME")
        elif isinstance(func, ast.Attribute) and func.attr == "get" and _is_environ(func.value):
            if call.args:
                self._setting(call.args[0], call)
        # log.info("event", ...), log.warning(...), ... on any logger named *log*
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in LEVELS
            and isinstance(func.value, ast.Name)
            and "log" in func.value.id.lower()
            and call.args
        ):
            level = "error" if func.attr == "exception" else func.attr
            for name in self._strings(call.args[0], call):
                self.found.events[name].add(level)
                self.found.event_sites[name].add(site)
        # say("event", ...): the launcher's own lines
        elif isinstance(func, ast.Name) and func.id == "say" and call.args:
            for name in self._strings(call.args[0], call):
                self.found.events[name].add(NO_LEVEL)
                self.found.event_sites[name].add(site)

    def _setting(self, expr: ast.expr, at: ast.AST, default: ast.expr | None = None) -> None:
        if any(scope.name.startswith("env_") for scope in self._scopes(at)):
            return  # inside a reader itself: its callers name the setting, and are scanned
        for name in self._strings(expr, at):
            if SETTING.match(name) and name not in NOT_SETTINGS:
                self.found.settings[name].add(self.where)
                if default is not None:
                    self.found.defaults[name].add(normalise(self._value(default, at)))

    def _value(self, expr: ast.expr, at: ast.AST) -> object:
        """A default's value: a literal, constant arithmetic, `cls.FIELD` of the enclosing
        class, or a module-level constant; UNKNOWN for anything computed at run time."""
        if isinstance(expr, ast.Constant):
            return expr.value
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.USub):
            operand = self._value(expr.operand, at)
            return -operand if isinstance(operand, (int, float)) else UNKNOWN
        if isinstance(expr, ast.BinOp) and type(expr.op) in _ARITHMETIC:
            left, right = self._value(expr.left, at), self._value(expr.right, at)
            if isinstance(left, (int, float)) and isinstance(right, (int, float)):
                return _ARITHMETIC[type(expr.op)](left, right)
            return UNKNOWN
        if isinstance(expr, ast.Attribute) and _is_name(expr.value, "cls"):
            owner = next((n for n in self._ancestors(at) if isinstance(n, ast.ClassDef)), None)
            return UNKNOWN if owner is None else self._assigned(owner.body, expr.attr, at)
        if isinstance(expr, ast.Name):
            return self._assigned(self.tree.body, expr.id, at)
        return UNKNOWN

    def _assigned(self, body: list[ast.stmt], name: str, at: ast.AST) -> object:
        for stmt in body:
            if isinstance(stmt, ast.AnnAssign) and _is_name(stmt.target, name) and stmt.value:
                return self._value(stmt.value, at)
            if isinstance(stmt, ast.Assign) and any(_is_name(t, name) for t in stmt.targets):
                return self._value(stmt.value, at)
        return UNKNOWN

    def _ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        while node in self.parents:
            node = self.parents[node]
            yield node

    def _strings(self, expr: ast.expr, at: ast.AST) -> list[str]:
        """The string values `expr` can take: a literal, an f-string over resolvable names,
        a conditional of those, a local variable assigned them, or a parameter of the
        enclosing function given literals by every call to it in this module."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return [expr.value]
        if isinstance(expr, ast.IfExp):
            return self._strings(expr.body, at) + self._strings(expr.orelse, at)
        if isinstance(expr, ast.JoinedStr):
            values = [""]
            for part in expr.values:
                if isinstance(part, ast.FormattedValue):
                    options = self._strings(part.value, at)
                else:
                    options = self._strings(part, at)
                values = [v + o for v in values for o in options]
            return values
        if isinstance(expr, ast.Name):
            return self._name(expr.id, at)
        raise Unresolved(f"{self.where}:{getattr(at, 'lineno', '?')}: {ast.unparse(expr)}")

    def _name(self, name: str, at: ast.AST) -> list[str]:
        for scope in self._scopes(at):
            assigned = [
                node.value
                for node in ast.walk(scope)
                if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            ]
            if assigned:
                return [s for value in assigned for s in self._strings(value, value)]
            params = [a.arg for a in scope.args.posonlyargs + scope.args.args]
            if name in params or name in [a.arg for a in scope.args.kwonlyargs]:
                return self._arguments(scope, name)
        raise Unresolved(f"{self.where}:{getattr(at, 'lineno', '?')}: {name}")

    def _scopes(self, node: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
        while node in self.parents:
            node = self.parents[node]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield node

    def _arguments(self, func: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> list[str]:
        """What every call to `func` in this module passes as its parameter `name`."""
        positional = [a.arg for a in func.args.posonlyargs + func.args.args]
        if positional[:1] in (["self"], ["cls"]):
            positional = positional[1:]
        values: list[str] = []
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func
            called = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
            if called != func.name:
                continue
            given = [k.value for k in node.keywords if k.arg == name]
            if name in positional and positional.index(name) < len(node.args):
                given.append(node.args[positional.index(name)])
            for expr in given:
                values += self._strings(expr, node)
        if not values:
            raise Unresolved(f"{self.where}:{func.lineno}: no call passes {func.name}({name}=...)")
        return values


_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], object]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.LShift: operator.lshift,
    ast.Pow: operator.pow,
}


def _is_name(expr: ast.expr, name: str) -> bool:
    return isinstance(expr, ast.Name) and expr.id == name


def normalise(value: object) -> object:
    """One spelling for the code's defaults and the docs' (`10` is 10.0, False is `false`)."""
    if value is UNKNOWN:
        return UNKNOWN
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value.lower()
    return UNKNOWN


def _is_environ(expr: ast.expr) -> bool:
    """`environ` or `os.environ`: the mapping every settings reader takes."""
    if isinstance(expr, ast.Name):
        return expr.id == "environ"
    return isinstance(expr, ast.Attribute) and expr.attr == "environ"


# --- the docs' side ---------------------------------------------------------------------

DOCS = ROOT / "docs"
SETTINGS_DOC = DOCS / "settings.md"
LOGS_DOC = DOCS / "logs.md"
_CODE = re.compile(r"`([^`]+)`")


def table_rows(text: str) -> Iterator[list[str]]:
    """The cells of every Markdown table body row (not headers, not the --- rows)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        is_rule = all(set(c) <= set("-: ") for c in cells)
        is_header = i + 1 < len(lines) and lines[i + 1].startswith("| ---")
        if not is_rule and not is_header:
            yield cells


def documented_settings(text: str) -> set[str]:
    """Every `NAME` in the first column of docs/settings.md's tables."""
    return {
        name
        for cells in table_rows(text)
        for name in _CODE.findall(cells[0])
        if SETTING.match(name)
    }


def documented_defaults(text: str) -> dict[str, object]:
    """docs/settings.md's default column where it is literal: `a`, `b` for the names `A`, `B`
    in the row's first cell, or one `value` for them all; a prose default is not read."""
    defaults: dict[str, object] = {}
    for cells in table_rows(text):
        names = [n for n in _CODE.findall(cells[0]) if SETTING.match(n)]
        values = _CODE.findall(cells[1]) if len(cells) > 1 else []
        if not names or not values:
            continue
        if len(values) == 1:
            values = values * len(names)
        if len(values) == len(names):
            defaults.update((n, normalise(v)) for n, v in zip(names, values, strict=True))
    return defaults


def documented_events(text: str) -> dict[str, set[str]]:
    """docs/logs.md's event table: every `event` in the first column, with its level cell."""
    events: dict[str, set[str]] = {}
    for cells in table_rows(text):
        names = [n for n in _CODE.findall(cells[0]) if EVENT.match(n)]
        if not names or len(cells) < 2:
            continue
        levels = {lv.strip() for lv in cells[1].split(",") if lv.strip()}
        for name in names:
            events[name] = levels
    return events


def main() -> int:
    found = scan()
    settings_doc = documented_settings(SETTINGS_DOC.read_text())
    events_doc = documented_events(LOGS_DOC.read_text())
    print("settings read by the code:", ", ".join(sorted(found.settings)))
    print("  not in docs/settings.md:", ", ".join(sorted(set(found.settings) - settings_doc)))
    print("  in the docs, not the code:", ", ".join(sorted(settings_doc - set(found.settings))))
    print("events written by the code:")
    for name in sorted(found.events):
        levels = ", ".join(sorted(found.events[name]))
        documented = events_doc.get(name)
        note = "" if documented == found.events[name] else f"  <- docs: {documented}"
        print(f"  {name} [{levels}]{note}")
    gone = sorted(set(events_doc) - set(found.events))
    print("  in the docs, not the code:", ", ".join(gone))
    return 0


if __name__ == "__main__":
    sys.exit(main())

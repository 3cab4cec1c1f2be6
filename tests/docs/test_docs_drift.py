"""The docs cannot drift from the code: settings, log events and links are checked here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.report import readme
from tests.docs import code_names
from tests.docs.code_names import ROOT, Found, Unresolved


def test_every_setting_the_code_reads_is_documented_and_no_other() -> None:
    read = set(code_names.scan().settings)
    documented = code_names.documented_settings(code_names.SETTINGS_DOC.read_text())
    assert read - documented == set(), "read by the code, missing from docs/settings.md"
    assert documented - read == set(), "in docs/settings.md, read by no code"


def test_every_literal_default_in_the_docs_is_the_code_s() -> None:
    # Compared where both sides are literal: the code's env_* default (a constant, `cls.FIELD`
    # or a module constant) and a `value` in docs/settings.md's default column.
    found = code_names.scan()
    documented = code_names.documented_defaults(code_names.SETTINGS_DOC.read_text())
    differ = {
        name: (documented[name], *values)
        for name, values in found.defaults.items()
        if name in documented and len(values) == 1 and code_names.UNKNOWN not in values
        if documented[name] not in values
    }
    assert differ == {}, "docs/settings.md's default vs the code's (documented, code)"
    compared = [n for n, v in found.defaults.items() if n in documented and len(v) == 1]
    assert len(compared) >= 20  # the check compares most settings, not none


def test_every_event_the_code_writes_is_documented_at_its_levels_and_no_other() -> None:
    found = code_names.scan()
    documented = code_names.documented_events(code_names.LOGS_DOC.read_text())
    missing = {e: sorted(found.event_sites[e]) for e in found.events if e not in documented}
    assert missing == {}, "written by the code, missing from docs/logs.md"
    assert set(documented) - set(found.events) == set(), "in docs/logs.md, written by no code"
    levels = {
        event: (sorted(documented[event]), sorted(written))
        for event, written in found.events.items()
        if documented[event] != written
    }
    assert levels == {}, "docs/logs.md's level column vs the code's (documented, written)"


def test_the_scanner_follows_each_way_a_name_is_given(tmp_path: Path) -> None:
    # The forms the services use; if the scanner missed one, the tests above could not fail.
    source = tmp_path / "sample.py"
    source.write_text(
        "import os\n"
        "PORT = 8 * 1024\n"
        "def from_env(environ):\n"
        "    def rate(name):\n"
        "        return env_float(environ, name, 0.0)\n"
        "    region = environ.get('A_REGION') or os.environ['B_URL']\n"
        "    return env_int(environ, 'C_PORT', PORT), rate('D_RATE'), environ.get('PATH')\n"
        "def env_float(environ, name, default):\n"
        "    return environ.get(name, default)\n"
        "class W:\n"
        "    def pay(self, declined):\n"
        "        event = 'paid_no' if declined else 'paid_yes'\n"
        "        log.info(event)\n"
        "        log.exception('crashed')\n"
        "        self._retry(lambda: None, 'delete')\n"
        "    def _retry(self, call, what):\n"
        "        def on_error():\n"
        "            log.warning(f'{what}_retry', detail=1)\n"
        "def launcher():\n"
        "    say('stack_ready')\n"
    )
    found = Found()
    code_names.Module(source, found, root=tmp_path).walk()
    assert set(found.settings) == {"A_REGION", "B_URL", "C_PORT", "D_RATE"}
    assert dict(found.defaults) == {"C_PORT": {8192.0}, "D_RATE": {0.0}}
    assert dict(found.events) == {
        "paid_no": {"info"},
        "paid_yes": {"info"},
        "crashed": {"error"},
        "delete_retry": {"warning"},
        "stack_ready": {code_names.NO_LEVEL},
    }


def test_a_name_the_scanner_cannot_follow_is_an_error_not_a_silent_miss(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text("def f(names):\n    log.info(names[0])\n")
    with pytest.raises(Unresolved, match=r"sample.py:2: names\[0\]"):
        code_names.Module(source, Found(), root=tmp_path).walk()


def test_the_tables_are_read_from_their_first_columns() -> None:
    text = (
        "| setting | default |\n| --- | --- |\n| `A_B`, `C` | `D_E` |\n\n"
        "| event | level | fields |\n| --- | --- | --- |\n"
        "| `x_y`, `z` | info, warning | `order_id` |\n| `stack_ready` | - | |\n"
    )
    assert code_names.documented_settings(text) == {"A_B", "C"}
    assert code_names.documented_events(text) == {
        "x_y": {"info", "warning"},
        "z": {"info", "warning"},
        "stack_ready": {"-"},
    }


# --- links: the README is a front door, so every door it and the docs name must open -----

LINKED = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] + [
    ROOT / d / "README.md" for d in ("bench", "infra", "localaws")
]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", LINKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_opens_a_file_and_anchor_that_exist(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing_anchor = (
            file.exists()
            and anchor != ""
            and file.suffix == ".md"
            and anchor not in anchors(file.read_text())
        )
        if not file.exists() or missing_anchor:
            broken.append(target)
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(readme) if "docs/" in t}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set()


def test_the_readme_benchmark_table_is_the_one_the_reference_json_gives() -> None:
    # The README is rewritten by hand around the table; the table itself only by `bench readme`.
    assert readme.main(["--check"]) == 0

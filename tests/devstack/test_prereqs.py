"""devstack/prereqs.py: each missing prerequisite of `make test` / `make run` is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack.prereqs import check_python, find_chromium

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "devstack" / "prereqs.py"


def _fake_terraform(bin_dir: Path, version: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "terraform"
    fake.write_text(f'#!/bin/sh\necho \'{{"terraform_version": "{version}"}}\'\n')
    fake.chmod(0o755)


def _prereqs(target: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # Nothing from this machine: a PATH of the fakes only, a HOME with no Playwright browsers.
    return subprocess.run(
        [sys.executable, str(SCRIPT), target],
        env={"PATH": str(tmp / "bin"), "HOME": str(tmp), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_terraform_is_one_line_and_exit_1(tmp_path: Path) -> None:
    proc = _prereqs("test", tmp_path, CHROMIUM="/bin/sh")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "prereqs: Terraform >= 1.10 is needed by make test and is not on PATH: "
        "https://developer.hashicorp.com/terraform/install (or `brew install terraform`)"
    ]


def test_an_old_terraform_is_named_with_its_version(tmp_path: Path) -> None:
    _fake_terraform(tmp_path / "bin", "1.9.8")
    proc = _prereqs("test", tmp_path, CHROMIUM="/bin/sh")
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"prereqs: Terraform >= 1.10 is needed by make test, {tmp_path}/bin/")
    assert "terraform is 1.9.8: https://developer.hashicorp.com/terraform/install" in line


def test_missing_chromium_is_one_line(tmp_path: Path) -> None:
    _fake_terraform(tmp_path / "bin", "1.11.4")
    proc = _prereqs("test", tmp_path, CHROMIUM=str(tmp_path / "no-chromium"))
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        f"prereqs: make test drives a Chromium for the dashboard test, and CHROMIUM={tmp_path}"
    )
    assert "`apt-get install chromium`, `.venv/bin/playwright install chromium`" in line


def test_both_missing_are_two_lines(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    proc = _prereqs("test", tmp_path, CHROMIUM=str(tmp_path / "no-chromium"))
    assert proc.returncode == 1
    assert [line.split(" ")[1] for line in proc.stderr.splitlines()] == ["Terraform", "make"]


def test_all_there_is_silent(tmp_path: Path) -> None:
    _fake_terraform(tmp_path / "bin", "1.11.4")
    proc = _prereqs("test", tmp_path, CHROMIUM="/bin/sh")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_make_run_needs_neither_terraform_nor_chromium(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    proc = _prereqs("run", tmp_path, CHROMIUM=str(tmp_path / "no-chromium"))
    assert (proc.returncode, proc.stderr) == (0, "")


@pytest.mark.parametrize(
    "binary",
    [
        "chromium_headless_shell-1187/chrome-linux/headless_shell",
        "chromium-1187/chrome-linux/chrome",
    ],
)
def test_playwrights_own_browser_counts(tmp_path: Path, binary: str) -> None:
    browser = tmp_path / "browsers" / binary
    browser.parent.mkdir(parents=True)
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    environ = {"HOME": str(tmp_path), "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "browsers")}
    found = find_chromium(environ)
    # Debian's chromium wins where it is installed; Playwright's is the fallback.
    assert found in {str(browser), "/usr/bin/chromium"}
    _fake_terraform(tmp_path / "bin", "1.11.4")
    assert _prereqs("test", tmp_path, PLAYWRIGHT_BROWSERS_PATH=environ[
        "PLAYWRIGHT_BROWSERS_PATH"]).returncode == 0  # fmt: skip


def test_an_old_python_is_named_with_its_version() -> None:
    assert check_python((3, 10, 4), "/usr/bin/python3") == (
        "Python >= 3.11 is needed, /usr/bin/python3 is 3.10.4: install 3.11 or later "
        "(python.org, `brew install python@3.12`, `apt-get install python3.11`), "
        "then `make PYTHON=python3.11 ...`"
    )
    assert check_python(tuple(sys.version_info[:3]), sys.executable) is None

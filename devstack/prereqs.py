"""What `make run` and `make test` need from the machine, checked before anything is installed.

    python3 devstack/prereqs.py run|test

Prints one line per missing prerequisite, saying how to get it, and exits 1; prints nothing and
exits 0 when all are there. Run as a file by whatever `python3` the Makefile found (so it runs
before .venv exists, and on an interpreter too old for the project: keep its syntax plain).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

PYTHON_MIN = (3, 11)
TERRAFORM_MIN = (1, 10)
# Debian's package; .ci/run installs it.
SYSTEM_CHROMIUM = "/usr/bin/chromium"
# Playwright's own browsers (`playwright install chromium`), per platform, under its cache.
_PLAYWRIGHT_BINARIES = (
    "chromium_headless_shell-*/chrome-*/headless_shell",
    "chromium-*/chrome-linux*/chrome",
    "chromium-*/chrome-mac*/Chromium.app/Contents/MacOS/Chromium",
    "chromium-*/chrome-mac*/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing",
)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.lstrip("v").split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_python(version: tuple[int, ...], executable: str) -> str | None:
    """Python >= 3.11, able to make a virtualenv with pip in it."""
    if tuple(version[:2]) < PYTHON_MIN:
        found = ".".join(str(v) for v in version[:3])
        return (
            f"Python >= 3.11 is needed, {executable} is {found}: install 3.11 or later "
            "(python.org, `brew install python@3.12`, `apt-get install python3.11`), "
            "then `make PYTHON=python3.11 ...`"
        )
    try:
        import ensurepip  # noqa: F401  # what `python -m venv` uses to put pip in .venv
    except ImportError:
        return (
            f"{executable} cannot put pip in a virtualenv (no ensurepip): "
            "`apt-get install python3-venv` (Debian, Ubuntu)"
        )
    return None


def check_terraform(environ: Mapping[str, str]) -> str | None:
    """Terraform >= 1.10 on PATH (the infra checks apply the module to the local AWS)."""
    how = "https://developer.hashicorp.com/terraform/install (or `brew install terraform`)"
    binary = shutil.which("terraform", path=environ.get("PATH", ""))
    if binary is None:
        return f"Terraform >= 1.10 is needed by make test and is not on PATH: {how}"
    try:
        proc = subprocess.run(
            [binary, "version", "-json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**environ, "CHECKPOINT_DISABLE": "1"},
        )
        found = str(json.loads(proc.stdout)["terraform_version"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return f"Terraform >= 1.10 is needed by make test; `{binary} version -json` fails: {how}"
    if _version(found)[:2] < TERRAFORM_MIN:
        return f"Terraform >= 1.10 is needed by make test, {binary} is {found}: {how}"
    return None


def find_chromium(environ: Mapping[str, str]) -> str | None:
    """A Chromium for the dashboard's browser test: CHROMIUM, /usr/bin/chromium or Playwright's."""
    chosen = environ.get("CHROMIUM", "").strip()
    if chosen:
        # Named on purpose: nothing else stands in for it.
        return chosen if os.access(chosen, os.X_OK) else None
    if os.access(SYSTEM_CHROMIUM, os.X_OK):
        return SYSTEM_CHROMIUM
    return playwright_chromium(environ)


def playwright_chromium(environ: Mapping[str, str]) -> str | None:
    """The browser `playwright install chromium` downloaded, if any."""
    root = environ.get("PLAYWRIGHT_BROWSERS_PATH", "").strip()
    if not root:
        home = environ.get("HOME", os.path.expanduser("~"))
        if sys.platform == "darwin":
            root = os.path.join(home, "Library", "Caches", "ms-playwright")
        else:
            cache = environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(home, ".cache")
            root = os.path.join(cache, "ms-playwright")
    for pattern in _PLAYWRIGHT_BINARIES:
        for path in sorted(glob.glob(os.path.join(root, pattern)), reverse=True):
            if os.access(path, os.X_OK):
                return path
    return None


def check_chromium(environ: Mapping[str, str]) -> str | None:
    if find_chromium(environ) is not None:
        return None
    if environ.get("CHROMIUM", "").strip():
        where = f"CHROMIUM={environ['CHROMIUM']} is not an executable"
    else:
        where = f"no Chromium at CHROMIUM, {SYSTEM_CHROMIUM} or in Playwright's browsers"
    return (
        f"make test drives a Chromium for the dashboard test, and {where}: "
        "`apt-get install chromium`, `.venv/bin/playwright install chromium`, "
        "or CHROMIUM=/path/to/chromium"
    )


def missing(target: str, environ: Mapping[str, str]) -> list[str]:
    """One line per prerequisite of `make <target>` this machine lacks."""
    problems = [check_python(tuple(sys.version_info[:3]), sys.executable)]
    if target == "test":
        problems += [check_terraform(environ), check_chromium(environ)]
    return [f"prereqs: {p}" for p in problems if p is not None]


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("run", "test"):
        print("usage: python3 devstack/prereqs.py run|test", file=sys.stderr)
        return 2
    lines = missing(argv[1], os.environ)
    for line in lines:
        print(line, file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The lock files: every requirement of pyproject.toml pinned, hashed, and the same in both."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .images import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(lock: str) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes), from a `uv pip compile` output."""
    found: dict[str, tuple[Version, int]] = {}
    text = (ROOT / lock).read_text()
    for block in re.split(r"\n(?=\S)", text):
        match = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if match:
            name = canonicalize_name(match.group(1))
            found[name] = (Version(match.group(2)), block.count("--hash=sha256:"))
    return found


def _unpinned(requirements: list[str], locked: dict[str, tuple[Version, int]]) -> list[str]:
    problems = []
    for raw in requirements:
        requirement = Requirement(raw)
        name = canonicalize_name(requirement.name)
        if name == "orderflow":
            continue  # the project's own extras, expanded below
        if name not in locked:
            problems.append(f"{raw}: not in the lock")
        elif not requirement.specifier.contains(locked[name][0], prereleases=True):
            problems.append(f"{raw}: the lock pins {locked[name][0]}")
    return problems


def test_runtime_lock_covers_the_dependencies() -> None:
    locked = pins("requirements.lock")
    assert not _unpinned(PYPROJECT["project"]["dependencies"], locked), "run `make lock`"
    # Nothing of the dev, bench or local-AWS extras reaches the images.
    assert "moto" not in locked and "pytest" not in locked


def test_dev_lock_covers_every_extra() -> None:
    locked = pins("requirements-dev.lock")
    extras = PYPROJECT["project"]["optional-dependencies"]
    wanted = PYPROJECT["project"]["dependencies"] + [r for group in extras.values() for r in group]
    assert not _unpinned(wanted, locked), "run `make lock`"


def test_every_pin_has_hashes_and_both_locks_agree() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert runtime and dev
    assert all(hashes for _, hashes in (runtime | dev).values())
    # The images install exactly the versions the tests ran.
    assert {name: runtime[name][0] for name in runtime} == {name: dev[name][0] for name in runtime}


def test_the_check_sees_a_stale_lock() -> None:
    locked = pins("requirements.lock")
    assert _unpinned(["structlog>=999"], locked) == [
        "structlog>=999: the lock pins " + str(locked["structlog"][0])
    ]
    assert _unpinned(["not-a-locked-package"], locked) == ["not-a-locked-package: not in the lock"]

"""The patches are written against one moto release: fail loudly when moto moves under them."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from localaws import patches

GUARDED = sorted({name for patch in patches.PATCHES for name in patch.guarded})


def test_installed_moto_is_the_supported_release() -> None:
    assert version("moto") == patches.SUPPORTED_MOTO


def test_pyproject_pins_the_supported_release() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = [
        spec
        for spec in pyproject["project"]["optional-dependencies"]["localaws"]
        if spec.startswith("moto")
    ]
    assert [re.sub(r"^moto(\[[^]]*\])?", "", pin) for pin in pins] == [
        f"=={patches.SUPPORTED_MOTO}"
    ]


@pytest.mark.parametrize("qualname", GUARDED)
def test_patched_moto_function_is_unchanged(qualname: str) -> None:
    got = patches.digest(qualname)
    assert got == patches.GUARDS[qualname], (
        f"moto's {qualname} changed (digest {got}, patches written for "
        f"{patches.GUARDS[qualname]}): re-read it, port the patch that touches it, "
        "then update localaws.patches.GUARDS"
    )


def test_every_guard_belongs_to_a_patch() -> None:
    assert sorted(patches.GUARDS) == GUARDED


def test_apply_refuses_a_moved_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(patches.GUARDS, "Queue.attributes", "0" * 16)
    with pytest.raises(patches.MotoDrift, match=r"Queue\.attributes"):
        patches.apply()

"""Everything here is marked `infra`: `make infra-test` runs it, the quick suite leaves it out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import isolate_aws_env
from .images import BuiltImage, build_all

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.infra)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuiltImage]:
    """Both images' virtualenvs, built once per session the way their Dockerfiles build them."""
    return build_all(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def module_aws_env() -> Iterator[None]:
    """The suite's AWS isolation for module-scoped fixtures, set up before any of them runs."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_aws_env(monkeypatch)
        yield

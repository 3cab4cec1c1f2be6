"""The dashboard's one setting, parsed with the rest of `make run`'s."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.settings import env_int

DEFAULT_PORT = 8081


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    port: int = DEFAULT_PORT
    """DASHBOARD_PORT: 0 picks a free port (the tests); the URL is in `stack_ready`."""
    host: str = "127.0.0.1"
    """Loopback only: the page shows order ids and failure reasons, and has no login."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DashboardSettings:
        return cls(port=env_int(environ, "DASHBOARD_PORT", DEFAULT_PORT, minimum=0, maximum=65535))

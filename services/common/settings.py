"""Settings parsing shared by both services: typed reads of an environ mapping, one clear error."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message is one line meant for the operator."""


def env_str(environ: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = environ.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise SettingsError(f"{name} is required")
    return default


def env_int(
    environ: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_float(
    environ: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float
) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum:g} and {maximum:g}, got {raw}")
    return value


def env_choice(environ: Mapping[str, str], name: str, default: _T, choices: Mapping[str, _T]) -> _T:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        return choices[raw]
    except KeyError:
        allowed = ", ".join(sorted(choices))
        raise SettingsError(f"{name} must be one of {allowed}, got {raw!r}") from None


def env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    truthy = {"1": True, "true": True, "yes": True, "on": True}
    falsy = {"0": False, "false": False, "no": False, "off": False}
    return env_choice(environ, name, default, truthy | falsy)


_LOG_LEVELS = {name: name for name in ("debug", "info", "warning", "error")}


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """Where AWS is. `endpoint_url` is None on AWS and the local emulator's URL locally."""

    region: str
    endpoint_url: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AwsSettings:
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        endpoint = environ.get("AWS_ENDPOINT_URL", "").strip() or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise SettingsError(f"AWS_ENDPOINT_URL must be an http(s) URL, got {endpoint!r}")
        return cls(region=region.strip(), endpoint_url=endpoint)


def log_level(environ: Mapping[str, str]) -> str:
    return env_choice(environ, "LOG_LEVEL", "info", _LOG_LEVELS)

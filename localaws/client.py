"""The local AWS's own endpoints from Python (tests, bench, scripts): counts and faults."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

Rules = Sequence[Mapping[str, Any]]


class ControlError(Exception):
    """The local AWS refused a control request (its JSON error is in the text)."""


async def _call(method: str, url: str, json: Rules | None = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=json) as response,
    ):
        body = await response.json()
        if response.status != 200:
            raise ControlError(f"{method} {url}: {response.status} {body}")
        return body


async def request_counts(endpoint: str) -> dict[str, dict[str, int]]:
    """AWS requests the server received so far, by service and operation."""
    counts: dict[str, dict[str, int]] = await _call("GET", f"{endpoint}/_localaws/requests")
    return counts


def counts_between(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    """The requests made between two `request_counts` snapshots (operations with none left out)."""
    made: dict[str, dict[str, int]] = {}
    for service, operations in after.items():
        for operation, count in operations.items():
            if n := count - before.get(service, {}).get(operation, 0):
                made.setdefault(service, {})[operation] = n
    return made


async def get_faults(endpoint: str) -> list[dict[str, Any]]:
    """The fault rules in force, with their defaults filled in."""
    rules: list[dict[str, Any]] = await _call("GET", f"{endpoint}/_localaws/chaos/faults")
    return rules


async def set_faults(endpoint: str, rules: Rules) -> list[dict[str, Any]]:
    """Replace the fault rules (`[]` clears them); returns them as the server holds them."""
    held: list[dict[str, Any]] = await _call("POST", f"{endpoint}/_localaws/chaos/faults", rules)
    return held


@asynccontextmanager
async def faults(endpoint: str, rules: Rules) -> AsyncIterator[list[dict[str, Any]]]:
    """Install `rules` for the block and clear every rule when it ends, however it ends."""
    held = await set_faults(endpoint, rules)
    try:
        yield held
    finally:
        await set_faults(endpoint, [])

"""The local AWS's own endpoints from Python (tests, bench, scripts): request counts."""

from __future__ import annotations

import aiohttp


class ControlError(Exception):
    """The local AWS refused a control request (its JSON error message is the text)."""


async def request_counts(endpoint: str) -> dict[str, dict[str, int]]:
    """AWS requests the server received so far, by service and operation."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{endpoint}/_localaws/requests") as response,
    ):
        body = await response.json()
        if response.status != 200:
            raise ControlError(f"{response.status}: {body}")
        counts: dict[str, dict[str, int]] = body
        return counts

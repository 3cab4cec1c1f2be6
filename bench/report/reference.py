"""The reference report's own figures (AWS, 20 Locust users), read by compare and the README."""

from __future__ import annotations

from typing import TypedDict


class Reference(TypedDict):
    """The reference report's figures (AWS, 20 Locust users)."""

    sync_p50_ms: int
    sync_rps: float
    async_p50_ms: int
    async_rps: float


# The reference report's figures (the seed report, HW7); ours are judged
# against the targets, and its speed-up is computed from these, not typed.
REFERENCE: Reference = {"sync_p50_ms": 3024, "sync_rps": 5.7, "async_p50_ms": 39, "async_rps": 5.4}
REFERENCE_SPEEDUP = REFERENCE["sync_p50_ms"] / REFERENCE["async_p50_ms"]

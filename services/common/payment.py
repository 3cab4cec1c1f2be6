"""The simulated payment processor, shared by /orders/sync and the worker."""

from __future__ import annotations

import asyncio
import time

from .messages import OrderMessage


class PaymentProcessor:
    """Takes `seconds` per payment without blocking the event loop, like a remote processor."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def charge(self, order: OrderMessage) -> float:
        """Charge the order; return how long the payment took, in milliseconds."""
        started = time.perf_counter()
        await asyncio.sleep(self.seconds)
        return (time.perf_counter() - started) * 1000

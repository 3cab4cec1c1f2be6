"""The simulated payment processor, shared by /orders/sync and the worker.

It behaves like a remote processor: a fixed latency awaited without blocking the loop, and
failures at configurable rates. It keeps its own ledger, as a real processor's dashboard
would: one log line per call, `payment_charged` for every charge it actually made (with
`order_id`, `amount`, `attempt`), `payment_declined` or `payment_unavailable` otherwise.
Charges are counted from these lines, never from a field the order workflow writes.

Like a card network's test cards, a few customer ids always
take one path, so tests can pick an outcome without depending on chance:
`decline@test` is declined, `unavailable@test` always fails transiently, `flaky@test` fails
transiently on its first attempt only, `timeout@test` never answers.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.logging import get_logger
from services.common.settings import env_float, env_int

from .errors import PaymentDeclined, PaymentError, PaymentUnavailable
from .messages import OrderMessage

log = get_logger()


# A claim's lease is the payment timeout plus this: a claim written up to half of it before
# its charge starts covers the charge without a renewal (see the worker's lease_for_charge).
LEASE_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class PaymentSettings:
    seconds: float = 3.0
    """PAYMENT_SECONDS: how long each payment takes."""
    timeout: float = 10.0
    """PAYMENT_TIMEOUT_SECONDS: a payment still running after this counts as a transient failure."""
    failure_rate: float = 0.0
    """PAYMENT_FAILURE_RATE: share of payments failing transiently."""
    decline_rate: float = 0.0
    """PAYMENT_DECLINE_RATE: share of payments declined (permanent)."""
    timeout_rate: float = 0.0
    """PAYMENT_TIMEOUT_RATE: share of payments that hang until PAYMENT_TIMEOUT_SECONDS."""
    seed: int | None = None
    """PAYMENT_SEED: makes the failure draws repeatable."""

    @property
    def lease_seconds(self) -> float:
        """How long a claim to pay is leased, by the worker and /orders/sync alike: a payment
        always ends by its timeout; the margin covers the writes around it."""
        return self.timeout + LEASE_MARGIN_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PaymentSettings:
        def rate(name: str) -> float:
            return env_float(environ, name, 0.0, minimum=0.0, maximum=1.0)

        seed = env_int(environ, "PAYMENT_SEED", -1, minimum=-1, maximum=2**31)
        return cls(
            seconds=env_float(environ, "PAYMENT_SECONDS", cls.seconds, minimum=0, maximum=600),
            timeout=env_float(
                environ, "PAYMENT_TIMEOUT_SECONDS", cls.timeout, minimum=0.1, maximum=900
            ),
            failure_rate=rate("PAYMENT_FAILURE_RATE"),
            decline_rate=rate("PAYMENT_DECLINE_RATE"),
            timeout_rate=rate("PAYMENT_TIMEOUT_RATE"),
            seed=None if seed < 0 else seed,
        )


class PaymentProcessor:
    """Charges orders; `charge` returns the payment's duration in ms or raises PaymentError."""

    def __init__(self, settings: PaymentSettings) -> None:
        self.settings = settings
        self._random = random.Random(settings.seed)

    async def charge(
        self, order: OrderMessage, attempt: int = 1, *, idempotency_key: str | None = None
    ) -> float:
        """Charge `order`; `idempotency_key` (default: its order_id) goes to the processor,
        so a real one that honours it charges a retried order once (this one only logs it)."""
        key = idempotency_key or order.order_id
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.timeout):
                await self._call(order, attempt)
        except TimeoutError:
            reason = f"payment timed out after {self.settings.timeout:g} s"
            log.info("payment_unavailable", order_id=order.order_id, attempt=attempt, reason=reason)
            raise PaymentUnavailable(reason) from None
        except PaymentError as exc:
            declined = isinstance(exc, PaymentDeclined)
            event = "payment_declined" if declined else "payment_unavailable"
            log.info(event, order_id=order.order_id, attempt=attempt, reason=str(exc))
            raise
        # The ledger line: written once the money moved, before anyone records it.
        log.info(
            "payment_charged",
            order_id=order.order_id,
            amount=order.total,
            attempt=attempt,
            idempotency_key=key,
        )
        return (time.perf_counter() - started) * 1000

    async def _call(self, order: OrderMessage, attempt: int) -> None:
        s = self.settings
        outcome = _TEST_CUSTOMERS.get(str(order.customer_id))
        if outcome is None:
            draw = self._random.random()
            for name, share in (
                ("decline", s.decline_rate),
                ("unavailable", s.failure_rate),
                ("timeout", s.timeout_rate),
            ):
                if draw < share:
                    outcome = name
                    break
                draw -= share
        elif outcome == "flaky":
            outcome = "unavailable" if attempt <= 1 else None
        if outcome == "timeout":
            await asyncio.sleep(s.timeout * 2)
        await asyncio.sleep(s.seconds)
        if outcome == "decline":
            raise PaymentDeclined("card declined")
        if outcome == "unavailable":
            raise PaymentUnavailable("payment processor unavailable")


_TEST_CUSTOMERS = {
    "decline@test": "decline",
    "unavailable@test": "unavailable",
    "flaky@test": "flaky",
    "timeout@test": "timeout",
}

"""What should happen to a message once the worker is done with it, decided in one value.

Processing returns one of these; `Settler.settle` (services/worker/settling.py) alone applies
it (the SQS call, the counters, the log line), so the fate of every message is decided in one
place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paid:
    """Charged and recorded: delete the message."""

    payment_ms: float


@dataclass(frozen=True)
class Duplicate:
    """A redelivery of an order already paid: delete it, charge nothing."""


@dataclass(frozen=True)
class DeadLetter:
    """Never payable (declined, out of retries, undecodable): park it in the DLQ with why."""

    reason: str


@dataclass(frozen=True)
class RetryAfter:
    """Try again later: the message stays invisible this long (SQS is the retry timer)."""

    seconds: int


@dataclass(frozen=True)
class HandBack:
    """Not ours to finish (shutting down): visible again at once, claim given back."""


@dataclass(frozen=True)
class Keep:
    """Leave the message as it is: its visibility timeout decides when it comes back."""

    reason: str


@dataclass(frozen=True)
class Unrecorded:
    """Charged, but the paid-mark never landed (shutdown): never released, never visible
    early; hidden as long as SQS allows, with an error line to reconcile from."""


Outcome = Paid | Duplicate | DeadLetter | RetryAfter | HandBack | Keep | Unrecorded

"""Counters the worker keeps about itself, logged at shutdown and read by tests and the bench."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(slots=True)
class WorkerStats:
    received: int = 0
    paid: int = 0
    failed: int = 0
    duplicates: int = 0
    """Redeliveries of orders already paid, deleted without paying again."""
    claims_refused: int = 0
    """Claims refused because another claimant holds the order (the message waits)."""
    claims_lost_after_payment: int = 0
    """Charged, then found the claim taken over: an alert, never counted as paid."""
    dead_lettered: int = 0
    """Messages this worker moved to the dead-letter queue (declined, out of retries, junk)."""
    state_retries: int = 0
    """DynamoDB calls retried in process through an outage."""
    lease_renewals: int = 0
    payment_retries: int = 0
    visibility_extensions: int = 0
    """Held messages whose visibility timeout renewal extended."""
    undecodable: int = 0
    delete_failures: int = 0
    handed_back: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    """The most payments ever running at once (counted, not timed)."""
    receive_calls: int = 0
    empty_receives: int = 0
    receive_errors: int = 0
    delete_calls: int = 0
    state_batches: int = 0
    """DynamoDB write calls (claims, paid-marks, ...), each carrying one or more orders."""

    @property
    def sqs_requests(self) -> int:
        return self.receive_calls + self.delete_calls

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

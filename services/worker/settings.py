"""Worker settings, parsed once in __main__ from the environment."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from services.common.settings import (
    AwsSettings,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_str,
    log_level,
)
from services.domain.payment import PaymentSettings

from .liveness import LivenessSettings

ReceiveStrategy = Literal["per-task", "batched"]
_STRATEGIES: dict[str, ReceiveStrategy] = {"per-task": "per-task", "batched": "batched"}

# SQS returns at most 10 messages per ReceiveMessage and deletes at most 10 per batch.
SQS_BATCH = 10


@dataclass(frozen=True)
class WorkerSettings:
    queue_url: str
    """ORDER_QUEUE_URL: the queue SNS fans orders out to."""
    aws: AwsSettings
    slots: int = 100
    """NUM_WORKERS: concurrent payment slots, each an asyncio task."""
    orders_table: str | None = None
    """ORDERS_TABLE: DynamoDB order state; None runs without it (no exactly-once guarantee)."""
    payment: PaymentSettings = field(default_factory=PaymentSettings)
    """PAYMENT_*: the simulated payment processor."""
    retry_backoff_seconds: float = 2.0
    """RETRY_BACKOFF_SECONDS: first delay after a transient payment failure; doubles per try."""
    receive_strategy: ReceiveStrategy = "batched"
    """RECEIVE_STRATEGY: `per-task` (every slot polls for one message) or `batched`."""
    wait_time_seconds: int = 20
    """WAIT_TIME_SECONDS: the long-poll wait of each ReceiveMessage."""
    pollers: int = 0
    """RECEIVE_POLLERS: concurrent batched receives; 0 means one per 10 slots, at most 4."""
    prefetch: int | None = None
    """RECEIVE_PREFETCH: messages received and claimed beyond the slots, ready to start the
    moment a slot frees (batched only); None (unset) means as many as the slots, 0 none."""
    shutdown_grace_seconds: float = 25.0
    """SHUTDOWN_GRACE_SECONDS: time in-flight payments get after SIGTERM (< ECS stopTimeout)."""
    liveness: LivenessSettings = field(default_factory=LivenessSettings)
    """HEARTBEAT_*: the file the loop touches for the container health check (liveness.py)."""
    burst: bool = False
    """BURST: stop by itself once a receive finds the queue empty (tests, batch jobs)."""
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerSettings:
        return cls(
            queue_url=env_str(environ, "ORDER_QUEUE_URL"),
            aws=AwsSettings.from_env(environ),
            slots=env_int(environ, "NUM_WORKERS", cls.slots, minimum=1, maximum=10_000),
            orders_table=environ.get("ORDERS_TABLE", "").strip() or None,
            payment=PaymentSettings.from_env(environ),
            retry_backoff_seconds=env_float(
                environ, "RETRY_BACKOFF_SECONDS", cls.retry_backoff_seconds, minimum=0, maximum=300
            ),
            receive_strategy=env_choice(
                environ, "RECEIVE_STRATEGY", cls.receive_strategy, _STRATEGIES
            ),
            wait_time_seconds=env_int(
                environ, "WAIT_TIME_SECONDS", cls.wait_time_seconds, minimum=0, maximum=20
            ),
            pollers=env_int(environ, "RECEIVE_POLLERS", cls.pollers, minimum=0, maximum=100),
            prefetch=(
                env_int(environ, "RECEIVE_PREFETCH", 0, minimum=0, maximum=10_000)
                if environ.get("RECEIVE_PREFETCH", "").strip()
                else None
            ),
            shutdown_grace_seconds=env_float(
                environ,
                "SHUTDOWN_GRACE_SECONDS",
                cls.shutdown_grace_seconds,
                minimum=0,
                maximum=600,
            ),
            liveness=LivenessSettings.from_env(environ),
            burst=env_bool(environ, "BURST", cls.burst),
            log_level=log_level(environ),
        )

    @property
    def receive_concurrency(self) -> int:
        """How many ReceiveMessage calls may be in flight at once."""
        if self.receive_strategy == "per-task":
            return self.slots
        return self.pollers or min(4, math.ceil(self.slots / SQS_BATCH))

    @property
    def held(self) -> int:
        """How many messages a batched worker holds at most: its slots and those ready next."""
        if self.receive_strategy == "per-task":
            return self.slots
        # A whole wave in line by default: the next wave starts as the last one ends, and the
        # pollers refill the line over a whole payment instead of racing the wave's end (where
        # settling the payments that end takes its share of the CPU).
        return self.slots + (self.slots if self.prefetch is None else self.prefetch)

    @property
    def lease_seconds(self) -> float:
        return self.payment.lease_seconds

    @property
    def line_lease_seconds(self) -> float:
        """The lease of a claim that waits in line for a slot: a whole lease after the wait,
        which lasts at most one payment timeout while the line is no longer than the slots (a
        longer wait renews before the charge, as any short lease does)."""
        return self.lease_seconds + self.payment.timeout

    @property
    def pool_size(self) -> int:
        # Every pending long poll holds a connection; deletes and hand-backs need a few more.
        return self.receive_concurrency + 2 * SQS_BATCH

    @property
    def state_pool_size(self) -> int:
        # Claims and paid-marks are short calls: a bounded pool, shared by every slot.
        return min(100, self.slots + 10)

    @property
    def read_timeout(self) -> float:
        # Above the long-poll wait, or every empty poll would end in a timeout error.
        return self.wait_time_seconds + 10.0

"""API settings, parsed once in __main__ from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.common.settings import (
    AwsSettings,
    env_float,
    env_int,
    env_str,
    log_level,
)
from services.domain.payment import PaymentSettings


@dataclass(frozen=True)
class ApiSettings:
    topic_arn: str
    """ORDER_TOPIC_ARN: where accepted orders are published."""
    aws: AwsSettings
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 64 * 1024
    orders_table: str | None = None
    """ORDERS_TABLE: DynamoDB table of order state and idempotency keys (None: stateless)."""
    payment: PaymentSettings = field(default_factory=PaymentSettings)
    """PAYMENT_*: the simulated processor, for /orders/sync."""
    body_timeout: float = 10.0
    """BODY_TIMEOUT_SECONDS: a client slower than this to send its body gets a 408."""
    publish_timeout: float = 5.0
    """PUBLISH_TIMEOUT_SECONDS: past this an SNS publish counts as failed (503)."""
    shutdown_timeout: float = 10.0
    """SHUTDOWN_TIMEOUT_SECONDS: how long in-flight requests may finish after SIGTERM."""
    idle_timeout: float = 75.0
    """IDLE_TIMEOUT_SECONDS: a connection without a complete request for this long is closed
    (an idle keep-alive, or a client that stalls in the middle of its headers)."""
    log_level: str = "info"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApiSettings:
        return cls(
            topic_arn=env_str(environ, "ORDER_TOPIC_ARN"),
            aws=AwsSettings.from_env(environ),
            host=env_str(environ, "HOST", cls.host),
            port=env_int(environ, "PORT", cls.port, minimum=0, maximum=65535),
            max_body_bytes=env_int(
                environ, "MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024, maximum=16 << 20
            ),
            orders_table=environ.get("ORDERS_TABLE", "").strip() or None,
            payment=PaymentSettings.from_env(environ),
            body_timeout=env_float(
                environ, "BODY_TIMEOUT_SECONDS", cls.body_timeout, minimum=0.1, maximum=300
            ),
            publish_timeout=env_float(
                environ, "PUBLISH_TIMEOUT_SECONDS", cls.publish_timeout, minimum=0.1, maximum=60
            ),
            shutdown_timeout=env_float(
                environ, "SHUTDOWN_TIMEOUT_SECONDS", cls.shutdown_timeout, minimum=0, maximum=120
            ),
            idle_timeout=env_float(
                environ, "IDLE_TIMEOUT_SECONDS", cls.idle_timeout, minimum=0.1, maximum=3600
            ),
            log_level=log_level(environ),
        )

"""API settings, parsed once in __main__ from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.common.settings import (
    AwsSettings,
    env_float,
    env_int,
    env_str,
    log_level,
)


@dataclass(frozen=True)
class ApiSettings:
    topic_arn: str
    """ORDER_TOPIC_ARN: where accepted orders are published."""
    aws: AwsSettings
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 64 * 1024
    payment_seconds: float = 3.0
    """PAYMENT_SECONDS: the simulated processor's latency, for /orders/sync."""
    publish_timeout: float = 5.0
    """PUBLISH_TIMEOUT_SECONDS: past this an SNS publish counts as failed (503)."""
    shutdown_timeout: float = 10.0
    """SHUTDOWN_TIMEOUT_SECONDS: how long in-flight requests may finish after SIGTERM."""
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
            payment_seconds=env_float(
                environ, "PAYMENT_SECONDS", cls.payment_seconds, minimum=0, maximum=600
            ),
            publish_timeout=env_float(
                environ, "PUBLISH_TIMEOUT_SECONDS", cls.publish_timeout, minimum=0.1, maximum=60
            ),
            shutdown_timeout=env_float(
                environ, "SHUTDOWN_TIMEOUT_SECONDS", cls.shutdown_timeout, minimum=0, maximum=120
            ),
            log_level=log_level(environ),
        )

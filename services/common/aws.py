"""AWS client configuration shared by both services (one client per service per process)."""

from __future__ import annotations

from aiobotocore.config import AioConfig


def client_config(*, pool_size: int, read_timeout: float, max_attempts: int = 3) -> AioConfig:
    return AioConfig(
        # botocore's default pool of 10 would make the 11th concurrent long poll wait for a
        # connection; callers pass the concurrency they actually run.
        max_pool_connections=pool_size,
        connect_timeout=3,
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts},
    )

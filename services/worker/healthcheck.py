"""`python -m services.worker.healthcheck`: exit 0 if the worker's heartbeat is fresh, 1 if not.

The container healthCheck of the worker's task definition runs this. It reads only the
HEARTBEAT_* settings, so it needs neither AWS nor the worker's other variables.
"""

from __future__ import annotations

import os
import sys

from services.common.settings import SettingsError

from .liveness import LivenessSettings, age_seconds


def main() -> int:
    try:
        settings = LivenessSettings.from_env(os.environ)
    except SettingsError as exc:
        # 1, not 2: Docker reserves exit code 2 of a health check.
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 1
    age = age_seconds(settings.path)
    if age is None:
        print(f"healthcheck: no heartbeat at {settings.path}", file=sys.stderr)
        return 1
    if age > settings.max_age_seconds:
        print(
            f"healthcheck: heartbeat {age:.1f}s old (max {settings.max_age_seconds:g}s)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

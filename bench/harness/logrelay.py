"""`python -m bench.harness.logrelay SERVICE STATS_PATH`: stdout passed on, and shipped.

`make run`'s launcher reads each child's stdout and hands every line to devstack's
`LogShipper` (the awslogs driver's part on ECS). The bench's own process cannot play that
part: it is the load generator, and shipping there would take CPU from the open loop. So
each service's stdout goes through this relay process instead, which writes every line on
to its own stdout unchanged (where the bench reads it, as before) and, with
`LOG_SHIPPING=on`, into the same `LogShipper` with the same settings (`LOG_SHIP_SECONDS`,
`LOG_GROUP_NAME`). With `LOG_SHIPPING=off` it only passes lines on: the same processes
either way, so on minus off is what shipping costs.

At the end of its input it closes its stdout first (the bench's reader sees the end at
once), sends what is left, and writes `{"read", "sent", "dropped", "batches"}` to
STATS_PATH.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import orjson

from devstack.logship import LogShipper, ShipSettings
from services.common.settings import AwsSettings, SettingsError


def relay(service: str, stats_path: Path) -> int:
    try:
        shipping = ShipSettings.from_env(os.environ)
        aws = AwsSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"logrelay: {exc}", file=sys.stderr)
        return 2
    shipper = LogShipper(aws, shipping) if shipping.enabled else None
    if shipper is not None:
        shipper.start()
    put = shipper.sink(service) if shipper is not None else None
    out = sys.stdout.buffer
    read = 0
    for line in sys.stdin.buffer:
        read += 1
        out.write(line)
        # Line by line, as the launcher's tee: the bench's reader follows the worker live.
        out.flush()
        if put is not None:
            put(line, time.time())
    out.close()
    stats = {"read": read, "sent": 0, "dropped": 0, "batches": 0}
    if shipper is not None:
        shipped = shipper.stop()
        stats |= {"sent": shipped.sent, "dropped": shipped.dropped, "batches": shipped.batches}
    stats_path.write_bytes(orjson.dumps(stats))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m bench.harness.logrelay SERVICE STATS_PATH", file=sys.stderr)
        return 2
    return relay(args[0], Path(args[1]))


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m localaws [--host H] [--port P]`: run the local AWS until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import orjson

from .server import LocalAws, Server, StockMoto


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localaws", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566, help="0 picks a free port")
    parser.add_argument(
        "--stock",
        action="store_true",
        help="serve unmodified moto on werkzeug's threaded server (for comparison)",
    )
    args = parser.parse_args(argv)

    # One line per request on stderr would drown the services' logs under `make run`.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        server: Server = (StockMoto if args.stock else LocalAws)(args.host, args.port).start()
    except OSError as exc:
        print(f"localaws: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    # The first stdout line tells a parent process where we listen (port 0 included).
    line = {
        "event": "localaws_ready",
        "service": "localaws",
        "endpoint": server.endpoint,
        "mode": "stock" if args.stock else "patched",
        "pid": os.getpid(),
    }
    sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
    sys.stdout.flush()
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

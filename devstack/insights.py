"""`python -m devstack.insights QUERY_OR_FILE [--since 15m] [--group api|worker|all]`.

Runs a CloudWatch Logs Insights query against the running `make run` (the log groups its
launcher ships to, `devstack/logship.py`) with the same StartQuery / GetQueryResults calls
`aws logs start-query` makes, and prints the result as a table. QUERY_OR_FILE is the query's
text or a file holding it (`infra/terraform/queries/*.logsinsights`). The local AWS is
`make run`'s: http://127.0.0.1:$LOCALAWS_PORT (4566 unless set), or `--endpoint`.
`make insights Q=...` does the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from services.common.aws import client_config

from .env import LOOPBACK, REGION, client_args
from .logship import log_group

GROUPS = {"api": ("api",), "worker": ("worker",), "all": ("api", "worker")}
_DURATION = re.compile(r"(\d+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DONE = frozenset({"Complete", "Failed", "Cancelled", "Timeout", "Unknown"})


class QueryError(Exception):
    """The query could not run: a clear one-line reason for a person or a page."""


@dataclass
class QueryResult:
    status: str
    rows: list[dict[str, str]]
    """Each row as field -> value, in the order the fields came, without `@ptr`."""
    statistics: dict[str, float] = field(default_factory=dict)

    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)


def parse_since(text: str) -> int:
    """`15m`, `2h`, `30s`, `1d` as seconds; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"--since wants a duration like 15m, 2h or 1d, got {text!r}")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def query_text(query_or_file: str) -> str:
    """The query itself, read from the file if QUERY_OR_FILE names one."""
    path = Path(query_or_file)
    if query_or_file.endswith(".logsinsights") or path.is_file():
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise QueryError(f"cannot read {query_or_file}: {exc.strerror}") from None
    return query_or_file.strip()


def group_names(group: str, name: str = "orderflow") -> list[str]:
    return [log_group(name, service) for service in GROUPS[group]]


def _rows(results: Sequence[Sequence[Mapping[str, str]]]) -> list[dict[str, str]]:
    return [
        {cell["field"]: cell.get("value", "") for cell in row if cell["field"] != "@ptr"}
        for row in results
    ]


async def run_query(
    logs: Any,
    query: str,
    groups: Sequence[str],
    start: int,
    end: int,
    *,
    within: float = 60,
) -> QueryResult:
    """StartQuery, then GetQueryResults until the query is done (QueryError if it fails)."""
    try:
        started = await logs.start_query(
            logGroupNames=list(groups), startTime=start, endTime=end, queryString=query
        )
        query_id = started["queryId"]
        deadline = time.monotonic() + within
        while True:
            got = await logs.get_query_results(queryId=query_id)
            if got["status"] in DONE:
                break
            if time.monotonic() > deadline:
                await logs.stop_query(queryId=query_id)
                raise QueryError(f"the query was still {got['status']} after {within:g} s")
            await asyncio.sleep(0.1)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise QueryError(f"{error.get('Code', 'Error')}: {error.get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise QueryError(str(exc)) from None
    if got["status"] != "Complete":
        raise QueryError(f"the query ended {got['status']}")
    stats = {k: float(v) for k, v in got.get("statistics", {}).items()}
    return QueryResult(got["status"], _rows(got["results"]), stats)


def table(result: QueryResult) -> str:
    """The rows as a plain text table, then what the query scanned."""
    columns = result.columns()
    lines = []
    if columns:
        widths = {c: max(len(c), *(len(row.get(c, "")) for row in result.rows)) for c in columns}
        lines.append("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
        lines.append("  ".join("-" * widths[c] for c in columns))
        for row in result.rows:
            lines.append("  ".join(row.get(c, "").ljust(widths[c]) for c in columns).rstrip())
    stats = result.statistics
    lines.append(
        f"{len(result.rows)} rows; {stats.get('recordsMatched', 0):g} records matched, "
        f"{stats.get('recordsScanned', 0):g} scanned"
    )
    return "\n".join(lines)


def default_endpoint(environ: Mapping[str, str]) -> str:
    return f"http://{LOOPBACK}:{environ.get('LOCALAWS_PORT') or 4566}"


async def query_stack(
    endpoint: str, query: str, groups: Sequence[str], since_seconds: int
) -> QueryResult:
    """One query against the local AWS at `endpoint`, over the last `since_seconds`."""
    end = int(time.time()) + 1
    config = client_config(pool_size=1, read_timeout=30, max_attempts=1)
    session: Any = get_session()  # Any: no logs stubs in the locked set
    async with session.create_client("logs", **client_args(endpoint, config, REGION)) as logs:
        return await run_query(logs, query, groups, end - since_seconds, end)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.insights", description=__doc__)
    parser.add_argument("query", help="the query text, or a file holding it")
    parser.add_argument("--since", default="15m", help="how far back (15m, 2h, 1d)")
    parser.add_argument("--group", choices=sorted(GROUPS), default="all")
    parser.add_argument("--endpoint", default=default_endpoint(os.environ))
    args = parser.parse_args(argv)
    try:
        since = parse_since(args.since)
        query = query_text(args.query)
        if not query:
            raise QueryError("the query is empty")
        result = asyncio.run(query_stack(args.endpoint, query, group_names(args.group), since))
    except (ValueError, QueryError) as exc:
        print(f"insights: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The dashboard's query box: Logs Insights queries against `make run`'s shipped logs.

One logs client for the dashboard's life (the services keep theirs the same way); each query
is StartQuery then GetQueryResults, as `python -m devstack.insights` runs it.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from aiobotocore.session import get_session

from services.common.aws import client_config
from services.common.settings import AwsSettings

from ..env import client_args
from ..insights import GROUPS, QueryError, QueryResult, group_names, parse_since, run_query

# The shipped queries, when the repository is there (`make run` runs from it).
SHIPPED = Path(__file__).parents[2] / "infra" / "terraform" / "queries"


def shipped_queries() -> dict[str, str]:
    """{name: query} of infra/terraform/queries, or {} outside a checkout."""
    return {p.stem: p.read_text().strip() for p in sorted(SHIPPED.glob("*.logsinsights"))}


class QueryBox:
    """`run(query, since, group)` between `async with` and its end."""

    def __init__(self, aws: AwsSettings, log_name: str = "orderflow") -> None:
        self._aws = aws
        self._log_name = log_name
        self._stack = AsyncExitStack()
        self._logs: Any = None

    async def __aenter__(self) -> QueryBox:
        config = client_config(pool_size=2, read_timeout=30, max_attempts=1)
        session: Any = get_session()  # Any: no logs stubs in the locked set
        self._logs = await self._stack.enter_async_context(
            session.create_client(
                "logs", **client_args(self._aws.endpoint_url, config, self._aws.region)
            )
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def run(self, query: str, since: str, group: str) -> QueryResult:
        """QueryError (or ValueError for a bad `since`) with a one-line reason if it fails."""
        if group not in GROUPS:
            raise QueryError(f"group must be one of {sorted(GROUPS)}, got {group!r}")
        if not query.strip():
            raise QueryError("the query is empty")
        end = int(time.time()) + 1
        start = end - parse_since(since)
        return await run_query(
            self._logs, query, group_names(group, self._log_name), start, end, within=30
        )

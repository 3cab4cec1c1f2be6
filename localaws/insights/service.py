"""StartQuery, GetQueryResults, StopQuery, DescribeQueries and GetLogRecord over moto's logs.

A query's events are snapshotted when it starts (moto's lists of events, copied by
reference, on the server's thread: moto's state has no locks and is only touched there);
it then runs on a worker thread, so the server answers other requests meanwhile and a
`GetQueryResults` right after `StartQuery` sees it `Scheduled` or `Running`, as on AWS.
`StopQuery` sets a flag the scan reads every few thousand events.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from .engine import Cancelled, Row, Statistics, Stream, compile_text, render_rows, run
from .errors import MalformedQuery
from .records import Source

_log = logging.getLogger(__name__)

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 100_000
PAGE = 10_000
KEPT_QUERIES = 1_000
"""Finished queries kept for GetQueryResults/DescribeQueries (AWS keeps results 7 days)."""
QUERY_LANGUAGE = "CWLI"


class ApiError(Exception):
    def __init__(self, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra or {}


def _invalid(message: str) -> ApiError:
    return ApiError("InvalidParameterException", message)


@dataclass
class Job:
    query_id: str
    text: str
    groups: list[str]
    account: str
    region: str
    created_ms: int
    status: str = "Scheduled"
    statistics: Statistics = field(default_factory=Statistics)
    rows: list[Row] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    duration_ms: int | None = None


class Insights:
    """The queries of one server process, across accounts and regions."""

    def __init__(self, workers: int = 2) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        # Two workers: one long query does not hold the next one back, and on a 2-CPU box
        # more would only share the same interpreter lock.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="insights")

    def cancel_all(self) -> None:
        """Stop every unfinished query (the server is stopping: exit need not wait for them)."""
        for job in list(self._jobs.values()):
            if job.status in ("Scheduled", "Running"):
                job.cancel.set()

    # -- StartQuery
    def start(self, backend: Any, params: dict[str, Any]) -> str:
        language = params.get("queryLanguage")
        if language not in (None, QUERY_LANGUAGE):
            raise _invalid(f"queryLanguage {language}: only {QUERY_LANGUAGE} is emulated locally")
        groups = _log_groups(backend, params)
        start_time, end_time = params.get("startTime"), params.get("endTime")
        if not isinstance(start_time, int) or not isinstance(end_time, int):
            raise _invalid("startTime and endTime are required (epoch seconds)")
        if end_time < start_time:
            raise _invalid("endTime must not be before startTime")
        limit = params.get("limit")
        if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT):
            raise _invalid(f"limit must be between 1 and {MAX_LIMIT}")
        text = params.get("queryString")
        if not isinstance(text, str) or not text.strip():
            raise _invalid("queryString is required")
        try:
            plan = compile_text(text)
        except MalformedQuery as exc:
            raise ApiError(
                "MalformedQueryException",
                exc.message,
                {"queryCompileError": exc.compile_error()},
            ) from None
        streams = [
            Stream(Source(group.name, name, backend.account_id), list(stream.events))
            for group in groups
            for name, stream in list(group.streams.items())
        ]
        job = Job(
            str(uuid.uuid4()),
            text,
            [g.name for g in groups],
            backend.account_id,
            backend.region_name,
            int(time.time() * 1000),
        )
        self._remember(job)
        # Both ends are inclusive; the end second is included whole.
        start_ms, end_ms = start_time * 1000, end_time * 1000 + 999
        cap = limit or DEFAULT_LIMIT

        def work() -> None:
            if job.cancel.is_set():
                return
            job.status = "Running"
            began = time.monotonic()
            try:
                rows = run(plan, streams, start_ms, end_ms, job.statistics, job.cancel)
                job.rows = render_rows(plan, rows[:cap])
                job.status = "Complete"
            except Cancelled:
                job.status = "Cancelled"
            except Exception:  # a bug in the engine: the query fails, the server goes on
                _log.exception("Logs Insights query %s failed: %s", job.query_id, job.text)
                job.status = "Failed"
            job.duration_ms = int((time.monotonic() - began) * 1000)

        self._pool.submit(work)
        return job.query_id

    def _remember(self, job: Job) -> None:
        self._jobs[job.query_id] = job
        while len(self._jobs) > KEPT_QUERIES:
            oldest = next(iter(self._jobs.values()))
            if oldest.status in ("Scheduled", "Running"):
                break
            self._jobs.popitem(last=False)

    def _job(self, backend: Any, query_id: Any) -> Job:
        job = self._jobs.get(query_id) if isinstance(query_id, str) else None
        if job is None or (job.account, job.region) != (backend.account_id, backend.region_name):
            raise ApiError("ResourceNotFoundException", "The specified query does not exist.")
        return job

    # -- GetQueryResults
    def results(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        job = self._job(backend, params.get("queryId"))
        size = params.get("maxItems") or PAGE
        if not isinstance(size, int) or not 1 <= size <= PAGE:
            raise _invalid(f"maxItems must be between 1 and {PAGE}")
        offset = 0
        token = params.get("nextToken")
        if token is not None:
            try:
                offset = int(base64.urlsafe_b64decode(token).decode())
            except ValueError:
                raise _invalid("The nextToken is not valid.") from None
        done = job.status == "Complete"
        page = job.rows[offset : offset + size] if done else []
        answer: dict[str, Any] = {
            "queryLanguage": QUERY_LANGUAGE,
            "results": page,
            "statistics": job.statistics.as_api(),
            "status": job.status,
        }
        if done and offset + size < len(job.rows):
            answer["nextToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
        return answer

    # -- StopQuery
    def stop(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        job = self._job(backend, params.get("queryId"))
        if job.status not in ("Scheduled", "Running"):
            raise _invalid(f"Query {job.query_id} is not running (status {job.status}).")
        job.cancel.set()
        if job.status == "Scheduled":
            job.status = "Cancelled"
        return {"success": True}

    # -- DescribeQueries
    def describe(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        group, status = params.get("logGroupName"), params.get("status")
        size = params.get("maxResults") or 1000
        if not isinstance(size, int) or not 1 <= size <= 1000:
            raise _invalid("maxResults must be between 1 and 1000")
        jobs = [
            j
            for j in reversed(self._jobs.values())
            if (j.account, j.region) == (backend.account_id, backend.region_name)
            and (group is None or group in j.groups)
            and (status is None or j.status == status)
        ]
        offset = int(params.get("nextToken") or 0)
        answer: dict[str, Any] = {
            "queries": [_info(j) for j in jobs[offset : offset + size]],
        }
        if offset + size < len(jobs):
            answer["nextToken"] = str(offset + size)
        return answer

    # -- GetLogRecord
    def log_record(self, backend: Any, params: dict[str, Any]) -> dict[str, Any]:
        pointer = params.get("logRecordPointer")
        try:
            account, group, stream, event_id = (
                base64.urlsafe_b64decode(str(pointer)).decode().split("\x00")
            )
            wanted = int(event_id)
        except ValueError:
            raise _invalid("logRecordPointer is not valid") from None
        found = backend.groups.get(group)
        events = found.streams.get(stream).events if found and stream in found.streams else []
        for event in events:
            if event.event_id == wanted:
                return {"logRecord": _record_fields(account, group, stream, event)}
        raise ApiError("ResourceNotFoundException", "The specified log record does not exist.")


def _info(job: Job) -> dict[str, Any]:
    info: dict[str, Any] = {
        "queryLanguage": QUERY_LANGUAGE,
        "queryId": job.query_id,
        "queryString": job.text,
        "status": job.status,
        "createTime": job.created_ms,
        "logGroupName": job.groups[0],
    }
    if job.duration_ms is not None:
        info["queryDuration"] = job.duration_ms
        info["bytesScanned"] = float(job.statistics.bytes_scanned)
    return info


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _flatten(f"{prefix}.{index}", inner, out)
    elif value is not None:
        out[prefix] = value if isinstance(value, str) else orjson.dumps(value).decode().strip('"')


def _record_fields(account: str, group: str, stream: str, event: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    if event.message[:1] == "{":
        with contextlib.suppress(orjson.JSONDecodeError):
            _flatten("", orjson.loads(event.message), fields)
    fields.update(
        {
            "@timestamp": str(event.timestamp),
            "@ingestionTime": str(event.ingestion_time),
            "@log": f"{account}:{group}",
            "@logStream": stream,
            "@message": event.message,
        }
    )
    return fields


def _log_groups(backend: Any, params: dict[str, Any]) -> list[Any]:
    given = [k for k in ("logGroupName", "logGroupNames", "logGroupIdentifiers") if params.get(k)]
    if len(given) != 1:
        raise _invalid(
            "Exactly one of logGroupName, logGroupNames or logGroupIdentifiers is required."
        )
    key = given[0]
    names: list[str] = [params[key]] if key == "logGroupName" else list(params[key])
    if len(names) > 50:
        raise _invalid("A query can include up to 50 log groups.")
    groups = []
    for name in names:
        if key == "logGroupIdentifiers" and name.startswith("arn:"):
            # arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]
            name = name.split(":log-group:", 1)[-1].removesuffix(":*")
        group = backend.groups.get(name)
        if group is None:
            raise ApiError("ResourceNotFoundException", f"Log group '{name}' does not exist.")
        groups.append(group)
    return groups


# One per server process; the moto patch calls into it.
INSIGHTS = Insights()

Handler = Callable[[Any, dict[str, Any]], dict[str, Any]]

"""The Logs Insights API around the language: log group selection, time range, limit,
statistics, pagination, DescribeQueries, StopQuery, GetLogRecord and their errors."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localaws.insights.service import Insights

from .insights_fixture import ACCOUNT, Fixture, fmt_ts, logs_client, ship
from .test_insights_conformance import as_dicts, run_query

REGION_ARN = "arn:aws:logs:us-east-1"


@pytest.fixture(scope="module")
def fixture(endpoint: str) -> Fixture:
    return ship(endpoint)


@pytest.fixture(scope="module")
def logs(endpoint: str) -> Any:
    return logs_client(endpoint)


def _error(raised: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = raised.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_statistics_count_what_was_scanned_and_matched(logs: Any, fixture: Fixture) -> None:
    answer = run_query(logs, 'filter event = "order_paid" | stats count(*) as n', [fixture.worker])
    lines = fixture.of(fixture.worker)
    paid = sum(1 for x in lines if x.get("event") == "order_paid")
    assert as_dicts(answer["results"]) == [{"n": str(paid)}]
    stats = answer["statistics"]
    assert stats["recordsScanned"] == len(lines)
    assert stats["recordsMatched"] == paid
    assert stats["bytesScanned"] == sum(len(x.message) for x in lines)


def test_time_range_is_inclusive_seconds(logs: Any, fixture: Fixture) -> None:
    lines = sorted(fixture.of(fixture.api), key=lambda x: x.ts)
    start, end = lines[10].ts // 1000, lines[20].ts // 1000
    answer = run_query(logs, "stats count(*) as n", [fixture.api], start=start, end=end)
    want = sum(1 for x in lines if start * 1000 <= x.ts < (end + 1) * 1000)
    assert as_dicts(answer["results"]) == [{"n": str(want)}]


def test_log_group_identifiers_take_names_and_arns(logs: Any, fixture: Fixture) -> None:
    now = int(time.time())
    query_id = logs.start_query(
        logGroupIdentifiers=[f"{REGION_ARN}:{ACCOUNT}:log-group:{fixture.api}:*", fixture.worker],
        startTime=now - 86_400,
        endTime=now + 60,
        queryString="stats count(*) as n by @log",
    )["queryId"]
    deadline = time.monotonic() + 30
    while (answer := logs.get_query_results(queryId=query_id))["status"] != "Complete":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    counts = {row["@log"]: row["n"] for row in as_dicts(answer["results"])}
    assert counts == {
        f"{ACCOUNT}:{fixture.api}": str(len(fixture.of(fixture.api))),
        f"{ACCOUNT}:{fixture.worker}": str(len(fixture.of(fixture.worker))),
    }


def test_limit_parameter_caps_the_rows_and_pages_follow(logs: Any, fixture: Fixture) -> None:
    answer = run_query(logs, "fields @timestamp | sort @timestamp desc", [fixture.api], limit=7)
    newest = sorted((x.ts for x in fixture.of(fixture.api)), reverse=True)
    assert [r["@timestamp"] for r in as_dicts(answer["results"])] == [
        fmt_ts(ts) for ts in newest[:7]
    ]
    first = logs.get_query_results(queryId=answer["queryId"], maxItems=4)
    second = logs.get_query_results(
        queryId=answer["queryId"], maxItems=4, nextToken=first["nextToken"]
    )
    assert "nextToken" not in second
    assert as_dicts(first["results"]) + as_dicts(second["results"]) == as_dicts(answer["results"])


def test_ptr_gets_the_whole_record(logs: Any, fixture: Fixture) -> None:
    answer = run_query(
        logs, 'filter event = "order_paid" | sort @timestamp asc | limit 1', [fixture.worker]
    )
    (row,) = as_dicts(answer["results"])
    record = logs.get_log_record(logRecordPointer=row["@ptr"])["logRecord"]
    first = min(
        (x for x in fixture.of(fixture.worker) if x.get("event") == "order_paid"),
        key=lambda x: x.ts,
    )
    assert record["@message"] == first.message
    assert record["order_id"] == first.get("order_id")
    assert record["@logStream"] == first.stream
    assert record["@timestamp"] == str(first.ts)


def test_describe_queries_lists_them_by_group_and_status(logs: Any, fixture: Fixture) -> None:
    answer = run_query(logs, "stats count(*) as n", [fixture.sortable])
    queries = logs.describe_queries(logGroupName=fixture.sortable)["queries"]
    assert [q["queryId"] for q in queries] == [answer["queryId"]]
    (info,) = queries
    assert info["status"] == "Complete"
    assert info["queryString"] == "stats count(*) as n"
    assert info["logGroupName"] == fixture.sortable
    assert logs.describe_queries(logGroupName=fixture.sortable, status="Running")["queries"] == []


def test_errors_are_aws_errors(logs: Any, fixture: Fixture) -> None:
    now = int(time.time())
    with pytest.raises(ClientError) as raised:
        logs.start_query(
            logGroupName="/no/such/group", startTime=now - 60, endTime=now, queryString="limit 1"
        )
    assert _error(raised) == ("ResourceNotFoundException", 400)
    with pytest.raises(ClientError) as raised:
        logs.start_query(
            logGroupName=fixture.api,
            logGroupNames=[fixture.worker],
            startTime=now - 60,
            endTime=now,
            queryString="limit 1",
        )
    assert _error(raised) == ("InvalidParameterException", 400)
    with pytest.raises(ClientError) as raised:
        logs.get_query_results(queryId="00000000-0000-0000-0000-000000000000")
    assert _error(raised) == ("ResourceNotFoundException", 400)
    done = run_query(logs, "limit 1", [fixture.api])
    with pytest.raises(ClientError) as raised:
        logs.stop_query(queryId=done["queryId"])
    assert _error(raised) == ("InvalidParameterException", 400)


def test_stop_query_cancels_a_query_that_has_not_finished() -> None:
    """In process: a worker held busy keeps the query Scheduled until StopQuery."""
    insights = Insights(workers=1)
    release = threading.Event()
    insights._pool.submit(release.wait, 30)
    event = SimpleNamespace(timestamp=1_000, message='{"a": 1}', ingestion_time=1_001, event_id=1)
    group = SimpleNamespace(name="/g", streams={"s": SimpleNamespace(events=[event])})
    backend = SimpleNamespace(account_id=ACCOUNT, region_name="us-east-1", groups={"/g": group})
    params = {"logGroupName": "/g", "startTime": 0, "endTime": 10, "queryString": "limit 1"}
    query_id = insights.start(backend, params)
    assert insights.results(backend, {"queryId": query_id})["status"] == "Scheduled"
    assert insights.stop(backend, {"queryId": query_id}) == {"success": True}
    release.set()
    insights._pool.shutdown(wait=True)
    answer = insights.results(backend, {"queryId": query_id})
    assert (answer["status"], answer["results"]) == ("Cancelled", [])
    # The same query not stopped completes.
    finished = Insights(workers=1)
    other = finished.start(backend, params)
    finished._pool.shutdown(wait=True)
    assert finished.results(backend, {"queryId": other})["status"] == "Complete"

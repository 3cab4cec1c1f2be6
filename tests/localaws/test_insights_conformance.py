"""Logs Insights conformance: queries from AWS's query-syntax pages (and each command and
function the local AWS supports) over a fixed log, through boto3 against the local AWS.

Every expected answer is computed in this file from the fixture's lines in plain Python
(`insights_fixture`), not by the engine; values are compared as AWS renders them (strings),
floats that are means or deviations within 1e-9 relative.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .insights_fixture import (
    ACCOUNT,
    Fixture,
    Line,
    floor_to,
    fmt_num,
    fmt_ts,
    logs_client,
    nearest_rank,
    ship,
)

Expected = list[dict[str, Any]]


@pytest.fixture(scope="module")
def fixture(endpoint: str) -> Fixture:
    return ship(endpoint)


@pytest.fixture(scope="module")
def logs(endpoint: str) -> Any:
    return logs_client(endpoint)


def run_query(
    logs: Any,
    query: str,
    groups: list[str],
    start: int | None = None,
    end: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """StartQuery, then GetQueryResults until the query is no longer Scheduled/Running."""
    now = int(time.time())
    query_id = logs.start_query(
        logGroupNames=groups,
        startTime=start if start is not None else now - 86_400,
        endTime=end if end is not None else now + 60,
        queryString=query,
        **extra,
    )["queryId"]
    deadline = time.monotonic() + 30
    while True:
        answer: dict[str, Any] = logs.get_query_results(queryId=query_id)
        if answer["status"] not in ("Scheduled", "Running"):
            answer["queryId"] = query_id
            return answer
        assert time.monotonic() < deadline, f"query still {answer['status']} after 30 s"
        time.sleep(0.02)


def as_dicts(results: list[list[dict[str, str]]]) -> list[dict[str, str]]:
    return [{cell["field"]: cell["value"] for cell in row} for row in results]


def _same(actual: str | None, expected: Any) -> bool:
    if isinstance(expected, float) and actual is not None:
        return math.isclose(float(actual), expected, rel_tol=1e-9, abs_tol=1e-12)
    return bool(actual == expected)


def assert_rows(actual: list[dict[str, str]], expected: Expected, ordered: bool) -> None:
    actual = [{k: v for k, v in row.items() if k != "@ptr"} for row in actual]
    assert len(actual) == len(expected), f"{len(actual)} rows, want {len(expected)}: {actual}"
    if not ordered:
        actual = sorted(actual, key=_row_key)
        expected = sorted(expected, key=_row_key)
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert set(got) == set(want), f"row {index}: fields {sorted(got)}, want {sorted(want)}"
        for name, value in want.items():
            assert _same(got.get(name), value), (
                f"row {index} {name}: {got.get(name)!r} != {value!r}"
            )


def _row_key(row: dict[str, Any]) -> str:
    """A row's order-free identity: numbers rounded, so 2.5 and "2.5" agree."""
    return json.dumps({k: str(_num_or(v)) for k, v in row.items()}, sort_keys=True)


def _num_or(value: Any) -> Any:
    if isinstance(value, float):
        return value
    try:
        return round(float(value), 6)
    except (TypeError, ValueError):
        return str(value)


# -- expected answers, from the fixture's lines


def newest_first(lines: list[Line]) -> list[Line]:
    return sorted(lines, key=lambda line: line.ts, reverse=True)


def oldest_first(lines: list[Line]) -> list[Line]:
    return sorted(lines, key=lambda line: line.ts)


def present(row: dict[str, Any]) -> dict[str, Any]:
    """A row as GetQueryResults gives it: fields without a value are left out."""
    return {k: v for k, v in row.items() if v is not None}


def text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return fmt_num(value)
    return str(value)


def services(f: Fixture) -> list[Line]:
    return f.of(f.api, f.worker)


def e_fields_sort_limit(f: Fixture) -> Expected:
    return [
        {"@timestamp": fmt_ts(x.ts), "@message": x.message} for x in newest_first(services(f))[:25]
    ]


def e_filter_only(f: Fixture) -> Expected:
    hits = [x for x in services(f) if (x.get("duration_ms") or 0) > 30]
    return [{"@timestamp": fmt_ts(x.ts), "@message": x.message} for x in newest_first(hits)]


def e_fields_or(f: Fixture) -> Expected:
    rows = []
    for x in oldest_first(services(f)):
        status, duration = x.get("status"), x.get("duration_ms")
        if (status == 400) or (duration is not None and duration > 50):
            rows.append(present({"status": text(status), "duration_ms": text(duration)}))
    return rows


def e_status_2xx(f: Fixture) -> Expected:
    n = sum(1 for x in services(f) if re.search(r"2\d\d", str(x.get("status") or "")))
    return [{"n": str(n)}]


def e_in(f: Fixture) -> Expected:
    counts = Counter(x.get("status") for x in services(f) if x.get("status") in (400, 500))
    return [{"status": str(s), "n": str(counts[s])} for s in sorted(counts)]


def e_not_in(f: Fixture) -> Expected:
    counts = Counter(
        x.get("event")
        for x in services(f)
        if x.get("event") is not None and x.get("event") not in ("http_request", "order_paid")
    )
    return [{"event": e, "n": str(n)} for e, n in counts.items()]


def e_like_text(f: Fixture) -> Expected:
    return [{"n": str(sum(1 for x in services(f) if "Exception" in x.message))}]


def e_regex_ci_end(f: Fixture) -> Expected:
    pattern = re.compile(r"dataintegrityexception1$", re.I)
    return [{"n": str(sum(1 for x in services(f) if pattern.search(x.message)))}]


def e_regex_exact_ci(f: Fixture) -> Expected:
    return [{"n": str(sum(1 for x in services(f) if x.get("code") == "invalid_body"))}]


def e_alias_abs(f: Fixture) -> Expected:
    rows = []
    for x in newest_first(services(f))[:5]:
        d = x.get("duration_ms")
        rows.append(
            present(
                {
                    "AbsoluteValuemyField": text(abs(d - 20)) if d is not None else None,
                    "status": text(x.get("status")),
                }
            )
        )
    return rows


def e_avg_alias_sort(f: Fixture) -> Expected:
    # Events without the `by` field make a group of their own (here: no payment_ms, no
    # average), and a missing value sorts last.
    by_mode: dict[str | None, list[float]] = defaultdict(list)
    for x in services(f):
        by_mode[x.get("mode")]
        if x.get("payment_ms") is not None:
            by_mode[x.get("mode")].append(x.get("payment_ms"))
    means = sorted(((sum(v) / len(v), m) for m, v in by_mode.items() if v), reverse=True)
    rows: Expected = [{"mode": m, "myAvg": avg} for avg, m in means]
    return rows + [present({"mode": m}) for m, v in by_mode.items() if not v]


def e_comment(f: Fixture) -> Expected:
    return [
        {"@timestamp": fmt_ts(x.ts), "@message": x.message} for x in newest_first(services(f))[:20]
    ]


def e_display_parse(f: Fixture) -> Expected:
    rows = []
    for x in newest_first(services(f)):
        m = re.search(r"\[(.*?)\] (.*)", x.message, re.S)
        if m and m.group(1) == "ERROR":
            rows.append({"loggingMessage": m.group(2)})
    return rows


def e_concat(f: Fixture) -> Expected:
    hits = [x for x in oldest_first(services(f)) if x.get("status") is not None][:3]
    return [{"opStatus": f"{x.get('event')}-{x.get('status')}"} for x in hits]


def e_parse_error(f: Fixture) -> Expected:
    rows = []
    for x in oldest_first(services(f)):
        m = re.search(r"\[(.*?)\] (.*?) The error was: (.*)", x.message, re.S)
        if m:
            rows.append({"lvl": m.group(1), "config": m.group(2), "exception": m.group(3)})
    return rows[:3]


def e_parse_latency(f: Fixture) -> Expected:
    groups: dict[tuple[str, str] | None, list[int]] = defaultdict(list)
    for x in services(f):
        m = re.search(r"user=(.*?), method:(.*?), latency := (.*)", x.message)
        if m:
            groups[(m.group(2), m.group(1))].append(int(m.group(3)))
        else:
            groups[None]  # the lines parse does not match: one group, no average
    return [
        {"@method": key[0], "@user": key[1], "avg(@latency)": sum(v) / len(v)} if key else {}
        for key, v in groups.items()
    ]


def e_dedup(f: Fixture) -> Expected:
    seen: set[str] = set()
    rows = []
    for x in newest_first(services(f)):
        server = x.get("server")
        if server is None or server in seen:
            continue
        seen.add(server)
        rows.append({"@timestamp": fmt_ts(x.ts), "server": server, "mode": x.get("mode")})
    return rows


def e_two_stats(f: Fixture) -> Expected:
    sizes: dict[int, int] = defaultdict(int)
    for x in services(f):
        sizes[floor_to(x.ts, 300_000)] += len(x.message)
    values = list(sizes.values())
    return [
        {
            "peak": str(max(values)),
            "low": str(min(values)),
            "mean": sum(values) / len(values),
        }
    ]


def e_two_stats_filter(f: Fixture) -> Expected:
    # The events without ctx.user.id are one more group (key null).
    requests: Counter[str | None] = Counter(x.get("ctx.user.id") for x in services(f))
    busy = [n for n in requests.values() if n > 5]
    return [{"users": str(len(busy)), "total": str(sum(busy))}]


def e_count_by_event_bin(f: Fixture) -> Expected:
    counts = Counter((x.get("event"), floor_to(x.ts, 3_600_000)) for x in services(f))
    return [
        present({"event": event, "bin(1h)": fmt_ts(hour), "count(*)": str(n)})
        for (event, hour), n in counts.items()
    ]


def e_all_aggregates(f: Fixture) -> Expected:
    paid = [x for x in services(f) if x.get("event") == "order_paid"]
    values = [x.get("payment_ms") for x in paid]
    ordered = oldest_first(paid)
    return [
        {
            "n": str(len(paid)),
            "with_id": str(sum(1 for x in paid if x.get("order_id"))),
            "servers": str(len({x.get("server") for x in paid})),
            "total": fmt_num(sum(values)),
            "mean": sum(values) / len(values),
            "low": fmt_num(min(values)),
            "high": fmt_num(max(values)),
            "sd": statistics.stdev(values),
            "p50": fmt_num(nearest_rank(values, 50)),
            "p99": fmt_num(nearest_rank(values, 99)),
            "first_id": ordered[0].get("order_id"),
            "last_id": ordered[-1].get("order_id"),
        }
    ]


def e_pct_by_bin(f: Fixture) -> Expected:
    groups: dict[int, list[float]] = defaultdict(list)
    for x in services(f):
        if x.get("event") == "order_paid" and x.get("mode") == "async":
            groups[floor_to(x.ts, 1_800_000)].append(x.get("payment_ms"))
    return [
        {"bin(30m)": fmt_ts(b), "p90": fmt_num(nearest_rank(v, 90)), "n": str(len(v))}
        for b, v in groups.items()
    ]


def e_string_functions(f: Fixture) -> Expected:
    # The values AWS's documentation gives for its examples.
    return [
        {
            "l": "fooxyZ",
            "r": "xyZfoo",
            "t": "foo",
            "s": "foo",
            "rep": "f00",
            "c1": "1",
            "c0": "0",
            "n": "5",
            "up": "AB",
            "low": "ab",
        }
    ]


def e_numeric_functions(f: Fixture) -> Expected:
    return [
        {
            "a": "2.5",
            "c": "3",
            "fl": "2",
            "g": "7",
            "le": "2",
            "sq": "4",
            "ln": "0",
            "p": "8",
            "m": "1",
            "d": "3.5",
            "pw": "1024",
        }
    ]


def e_presence(f: Fixture) -> Expected:
    rows = []
    hits = [
        x for x in oldest_first(services(f)) if x.get("event") in ("order_rejected", "http_request")
    ]
    for x in hits[:12]:
        reason = x.get("reason")
        coalesced = x.get("code") if x.get("code") is not None else x.get("status")
        rows.append(
            {
                "has_status": "1" if x.get("status") is not None else "0",
                "empty": "1" if not reason else "0",
                "blank": "1" if reason is None or not reason.strip() else "0",
                "c": text(coalesced) or "none",
            }
        )
    return rows


def e_trim(f: Fixture) -> Expected:
    x = next(x for x in newest_first(services(f)) if x.get("reason"))
    return [{"t": x.get("reason").strip(), "n": str(len(x.get("reason")))}]


def e_datetime(f: Fixture) -> Expected:
    rows = []
    for x in oldest_first(services(f))[:3]:
        hour = floor_to(x.ts, 3_600_000)
        rows.append(
            {
                "h": fmt_ts(hour),
                "hc": fmt_ts(hour if hour == x.ts else hour + 3_600_000),
                "b": fmt_ts(floor_to(x.ts, 300_000)),
                "ms": str(x.ts),
                "later": fmt_ts(x.ts + 1000),
            }
        )
    return rows


def e_builtins(f: Fixture) -> Expected:
    return [
        {"@timestamp": fmt_ts(x.ts), "@logStream": x.stream, "@log": f"{ACCOUNT}:{x.group}"}
        for x in oldest_first(services(f))[:4]
    ]


def e_nested(f: Fixture) -> Expected:
    hits = [x for x in oldest_first(services(f)) if x.get("ctx.user.id") is not None][:5]
    return [{"uid": x.get("ctx.user.id"), "second": x.get("tags.1")} for x in hits]


def e_string_number_equal(f: Fixture) -> Expected:
    return [{"n": str(sum(1 for x in services(f) if x.get("status") == 400))}]


def e_arith_filter(f: Fixture) -> Expected:
    durations = [x.get("duration_ms") for x in services(f)]
    n = sum(1 for d in durations if d is not None and d * 2 > 60)
    return [{"n": str(n)}]


def e_not_and(f: Fixture) -> Expected:
    requests = [x for x in services(f) if x.get("event") == "http_request"]
    n = sum(1 for x in requests if not (x.get("status") == 202))  # noqa: SIM201 - as queried
    return [{"n": str(n)}]


def e_leading_ispresent(f: Fixture) -> Expected:
    return [{"n": str(sum(1 for x in services(f) if x.get("code") is not None))}]


def e_leading_value(f: Fixture) -> Expected:
    hits = [x for x in services(f) if x.get("server") == "w1" and x.get("mode") != "sync"]
    return [{"n": str(len(hits))}]


def e_shadowed_then_filtered(f: Fixture) -> Expected:
    return [{"n": str(sum(1 for x in services(f) if x.get("mode") == "async"))}]


def _journey_id(f: Fixture) -> str:
    paid = [x for x in services(f) if x.get("event") == "order_paid"]
    return str(paid[7].get("order_id"))


def e_journey(f: Fixture) -> Expected:
    wanted = _journey_id(f)
    hits = [x for x in oldest_first(services(f)) if x.get("order_id") == wanted]
    return [
        {
            "@timestamp": fmt_ts(x.ts),
            "event": x.get("event"),
            "payment_ms": text(x.get("payment_ms")),
        }
        for x in hits
    ]


def e_sum_of_comparison(f: Fixture) -> Expected:
    requests = [x for x in services(f) if x.get("event") == "http_request"]
    errors = sum(1 for x in requests if x.get("status") >= 500)
    return [{"errors": str(errors), "rate": errors / len(requests)}]


def e_sort_by_aggregate_text(f: Fixture) -> Expected:
    counts = Counter(x.get("event") for x in services(f) if x.get("event") is not None)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"event": e, "count(*)": str(n)} for e, n in ranked if n > 50]


def e_multi_key_sort(f: Fixture) -> Expected:
    paid = [x for x in services(f) if x.get("event") == "order_paid"]
    paid.sort(key=lambda x: x.get("order_id"))
    paid.sort(key=lambda x: x.get("payment_ms"), reverse=True)
    return [
        {"order_id": x.get("order_id"), "payment_ms": fmt_num(x.get("payment_ms"))}
        for x in paid[:4]
    ]


def e_sort_natural(f: Fixture) -> Expected:
    return [{"v": v} for v in f.sort_values]


@dataclass(frozen=True)
class Case:
    id: str
    query: str
    expected: Callable[[Fixture], Expected]
    ordered: bool = True
    sortable: bool = False
    """Run over the sort-order group instead of the two service groups."""


CASES = [
    # From the syntax pages' examples, adapted to the fixture's field names.
    Case("fields-sort-limit", "fields @timestamp, @message | sort @timestamp desc | limit 25",
         e_fields_sort_limit),
    Case("filter-alone-shows-timestamp-message", "filter (duration_ms>30)", e_filter_only),
    Case("fields-filter-or", "fields status, duration_ms | filter (status=400 or duration_ms>50)"
         " | sort @timestamp asc", e_fields_or),
    Case("like-regex-2xx", r"fields status | filter status like /2\d\d/ | stats count(*) as n",
         e_status_2xx),
    Case("in-list", "filter status in [400,500] | stats count(*) as n by status"
         " | sort status asc", e_in),
    Case("not-in-list", 'filter event not in ["http_request","order_paid"] | stats count(*) as n'
         " by event", e_not_in, ordered=False),
    Case("like-substring", 'filter @message like "Exception" | stats count(*) as n', e_like_text),
    Case("regex-case-insensitive", "filter @message =~ /(?i)dataintegrityexception1$/"
         " | stats count(*) as n", e_regex_ci_end),
    Case("regex-exact-flag-after-caret", "filter code =~ /^(?i)INVALID_BODY$/"
         " | stats count(*) as n", e_regex_exact_ci),
    Case("alias-of-function", "fields abs(duration_ms - 20) as AbsoluteValuemyField, status"
         " | sort @timestamp desc | limit 5", e_alias_abs),
    Case("stats-alias-sorted", "stats avg(payment_ms) as myAvg by mode | sort myAvg desc",
         e_avg_alias_sort),
    Case("comment-line", "fields @timestamp, @message\n    # | filter @message like /delay/\n"
         "    | limit 20", e_comment),
    Case("display-after-parse", 'fields @message | parse @message "[*] *" as loggingType,'
         ' loggingMessage | filter loggingType = "ERROR" | display loggingMessage',
         e_display_parse),
    Case("concat-alias", "fields concat(event, '-', status) as opStatus | filter ispresent(status)"
         " | sort @timestamp asc | limit 3", e_concat),
    Case("parse-glob", 'parse @message "[*] * The error was: *" as lvl, config, exception'
         " | filter ispresent(exception) | display lvl, config, exception"
         " | sort @timestamp asc | limit 3", e_parse_error),
    Case("parse-regex", r"parse @message /\[(?<lvl>\S+)\]\s+(?<config>\{.*\})\s+The error was:"
         r" (?<exception>\S+)/ | filter ispresent(exception) | display lvl, config, exception"
         " | sort @timestamp asc | limit 3", e_parse_error),
    Case("parse-glob-stats", 'parse @message "user=*, method:*, latency := *" as @user, @method,'
         " @latency | stats avg(@latency) by @method, @user", e_parse_latency, ordered=False),
    Case("dedup-newest-per-server", "fields @timestamp, server, mode | filter ispresent(server)"
         " | sort @timestamp desc | dedup server", e_dedup),
    Case("two-stats", "FIELDS strlen(@message) AS message_length | STATS sum(message_length) AS"
         " bytes BY bin(5m) | STATS max(bytes) AS peak, min(bytes) AS low, avg(bytes) AS mean",
         e_two_stats),
    Case("two-stats-with-filter", "stats count(*) as requests by ctx.user.id"
         " | filter requests > 5 | stats count(*) as users, sum(requests) as total",
         e_two_stats_filter),
    Case("count-by-field-and-bin", "stats count(*) by event, bin(1h)", e_count_by_event_bin,
         ordered=False),
    # Each aggregate, pct by bin (the query shape the bench times).
    Case("every-aggregate", 'filter event = "order_paid" | stats count(*) as n, count(order_id)'
         " as with_id, count_distinct(server) as servers, sum(payment_ms) as total,"
         " avg(payment_ms) as mean, min(payment_ms) as low, max(payment_ms) as high,"
         " stddev(payment_ms) as sd, pct(payment_ms, 50) as p50, pct(payment_ms, 99) as p99,"
         " earliest(order_id) as first_id, latest(order_id) as last_id", e_all_aggregates),
    Case("pct-by-bin", 'filter event = "order_paid" and mode = "async" | stats'
         " pct(payment_ms, 90) as p90, count(*) as n by bin(30m)", e_pct_by_bin, ordered=False),
    # Functions, with the documentation's own example values where it gives them.
    Case("string-functions", 'fields ltrim("xyZfooxyZ","xyZ") as l,'
         ' rtrim("xyZfooxyZ","xyZ") as r, trim("xyZfooxyZ","xyZ") as t,'
         ' substr("xyZfooxyZ",3,3) as s, replace("foo","o","0") as rep,'
         ' strcontains("foo","oo") as c1, strcontains("foo","x") as c0,'
         ' strlen("héllo") as n, toupper("ab") as up, tolower("AB") as low | limit 1',
         e_string_functions),
    Case("numeric-functions-and-operators", "fields abs(-2.5) as a, ceil(2.1) as c,"
         " floor(2.9) as fl, greatest(1, 7, 3) as g, least(4, 2, 9) as le, sqrt(16) as sq,"
         " log(1) as ln,"
         " 2 ^ 3 as p, 10 % 3 as m, 7 / 2 as d, pow(2, 10) as pw | limit 1",
         e_numeric_functions),
    Case("presence-functions", "fields ispresent(status) as has_status, isempty(reason) as empty,"
         ' isblank(reason) as blank, coalesce(code, status, "none") as c'
         ' | filter event in ["order_rejected", "http_request"] | sort @timestamp asc | limit 12',
         e_presence),
    Case("trim-one-argument", "fields trim(reason) as t, strlen(reason) as n"
         " | filter ispresent(reason) and not isempty(reason) | limit 1", e_trim),
    Case("datetime-functions", "fields datefloor(@timestamp, 1h) as h, dateceil(@timestamp, 1h)"
         " as hc, bin(5m) as b, toMillis(@timestamp) as ms,"
         " fromMillis(toMillis(@timestamp) + 1000) as later | sort @timestamp asc | limit 3",
         e_datetime),
    Case("built-in-fields", "fields @timestamp, @logStream, @log | sort @timestamp asc | limit 4",
         e_builtins),
    Case("nested-json-and-array", "fields ctx.user.id as uid, tags.1 as second"
         " | filter ispresent(uid) | sort @timestamp asc | limit 5", e_nested),
    Case("number-equals-its-text", 'filter status = "400" | stats count(*) as n',
         e_string_number_equal),
    Case("arithmetic-in-filter", "filter duration_ms * 2 > 60 | stats count(*) as n",
         e_arith_filter),
    Case("not-and-precedence", 'filter not (status = 202) and event = "http_request"'
         " | stats count(*) as n", e_not_and),
    # Leading filters also prefilter messages by text: the answers must not change.
    Case("leading-ispresent", "filter ispresent(code) | stats count(*) as n", e_leading_ispresent),
    Case("leading-value-and-negation", 'filter server = "w1" and mode != "sync"'
         " | stats count(*) as n", e_leading_value),
    Case("field-made-then-filtered", 'fields concat(mode, "x") as mode | filter mode = "asyncx"'
         " | stats count(*) as n", e_shadowed_then_filtered),
    Case("one-order-journey", "fields @timestamp, event, payment_ms | filter order_id = \"{id}\""
         " | sort @timestamp asc", e_journey),
    Case("comparison-counts-as-one", 'filter event = "http_request"'
         " | stats sum(status >= 500) as errors, avg(status >= 500) as rate",
         e_sum_of_comparison),
    Case("aggregate-named-by-its-text", "filter ispresent(event) | stats count(*) by event"
         " | filter count(*) > 50 | sort count(*) desc, event asc", e_sort_by_aggregate_text),
    Case("multi-key-sort", 'filter event = "order_paid" | sort payment_ms desc, order_id asc'
         " | limit 4 | display order_id, payment_ms", e_multi_key_sort),
    Case("sort-natural-order-documented", "fields v | sort v asc", e_sort_natural, sortable=True),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_query_answers_as_documented(logs: Any, fixture: Fixture, case: Case) -> None:
    groups = [fixture.sortable] if case.sortable else [fixture.api, fixture.worker]
    query = case.query.replace("{id}", _journey_id(fixture))
    answer = run_query(logs, query, groups)
    assert answer["status"] == "Complete"
    rows = as_dicts(answer["results"])
    assert_rows(rows, case.expected(fixture), case.ordered)
    aggregated = "stats" in case.query.lower()
    for row in rows:
        # @ptr on every event row (GetLogRecord takes it), none on a stats row.
        assert ("@ptr" in row) is not aggregated


def _malformed() -> Iterator[tuple[str, str, int]]:
    # (query, why, offset of the offending text)
    yield "fields a |", "nothing after the pipe", len("fields a |")
    yield "filter a = $", "a character the language has no use for", len("filter a = ")
    yield "stats count(*) by", "by without a field", len("stats count(*) by")
    yield "fields a | sort a asc desc", "two directions", len("fields a | sort a asc ")
    yield "fieldz a", "unknown command", 0
    yield "fields nosuchfn(a)", "unknown function", len("fields ")
    yield "fields pct(a, 50)", "aggregate outside stats", len("fields ")
    yield "filter a like /(/", "a regex that does not compile", len("filter a like ")
    yield 'parse @message "*-*" as a', "two wildcards, one name", len("parse @message ")
    yield "fields a | dedup a | sort a", "only limit may follow dedup", len("fields a | dedup a | ")
    yield (
        "stats count(*) as c | stats count(*) as d | stats count(*) as e",
        "three stats",
        len("stats count(*) as c | stats count(*) as d | "),
    )
    yield (
        "stats count(*) as c by a | sort c | stats sum(c)",
        "sort before the second stats",
        len("stats count(*) as c by a | "),
    )
    yield "fields a | limit 0", "limit below 1", len("fields a | limit ")


MALFORMED = list(_malformed())


@pytest.mark.parametrize(("query", "why", "offset"), MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_query_is_refused_with_its_position(
    logs: Any, fixture: Fixture, query: str, why: str, offset: int
) -> None:
    now = int(time.time())
    with pytest.raises(ClientError) as raised:
        logs.start_query(
            logGroupName=fixture.api, startTime=now - 3600, endTime=now, queryString=query
        )
    response: Any = raised.value.response
    assert response["Error"]["Code"] == "MalformedQueryException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    location = response["queryCompileError"]["location"]
    assert location["startCharOffset"] == offset, response["Error"]["Message"]
    assert location["endCharOffset"] >= offset
    assert response["queryCompileError"]["message"] == response["Error"]["Message"]

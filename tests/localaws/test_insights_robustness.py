"""Any query text either compiles or is a MalformedQuery (never a crash), and a compiled
query runs over odd events (plain, JSON, nested, arrays, non-object JSON) without raising:
a query that would crash the engine is a 500 and a Failed query for the user."""

from __future__ import annotations

import json
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localaws.insights.engine import Statistics, Stream, compile_text, render_rows, run
from localaws.insights.errors import MalformedQuery
from localaws.insights.records import Source

TOKENS = [
    "fields", "filter", "stats", "sort", "limit", "parse", "dedup", "display", "by", "as",
    "asc", "desc", "and", "or", "not", "in", "like", "=~", "|", ",", "(", ")", "[", "]",
    "=", "!=", "<", ">=", "+", "-", "*", "/", "%", "^", "@timestamp", "@message", "a",
    "b.c", "n", "`x-y`", '"text"', "'q'", "/re(?<g>x)/", "/(/", "5m", "1h", "3", "2.5",
    "count(*)", "sum(n)", "pct(n, 90)", "avg(n)", "bin(5m)", "ispresent(a)", "strlen(a)",
    "coalesce(a, n)", "datefloor(@timestamp, 1h)", "concat(a, 'x')", "#c\n", "\n",
    '"[*] *"', "min(a)", "max(@timestamp)", "earliest(a)", "toMillis(@timestamp)",
]  # fmt: skip

EVENTS = [
    SimpleNamespace(timestamp=1_000 + i, message=m, ingestion_time=2_000 + i, event_id=i)
    for i, m in enumerate(
        [
            json.dumps({"a": "x", "n": 3, "b": {"c": [1, 2]}}),
            json.dumps({"a": None, "n": "7", "b": "flat"}),
            json.dumps({"a": True, "n": 2.5, "x-y": {"deep": 1}}),
            "[ERROR] plain text n=4",
            "[1, 2, 3]",
            "{not json",
            "",
            json.dumps({"n": -1, "a": "é", "b": {"c": {"d": "e"}}}),
        ]
    )
]
STREAMS = [Stream(Source("/g", "s", "123456789012"), EVENTS)]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12))
def test_any_text_compiles_or_is_malformed_and_runs(tokens: list[str]) -> None:
    text = " ".join(tokens)
    try:
        plan = compile_text(text)
    except MalformedQuery as exc:
        assert 0 <= exc.start <= exc.end <= len(text)
        return
    rows = run(plan, STREAMS, 0, 10**12, Statistics())
    for row in render_rows(plan, rows):
        assert all(isinstance(cell["value"], str) for cell in row)


COMMANDS = [
    "fields a, n, b.c.0, @timestamp",
    "fields n * 2 as m, concat(a, '-', n) as s, strlen(a) as l",
    "fields abs(n) as z, ceil(n) as c, floor(n) as f, greatest(n, 1) as g, log(n) as lg",
    "fields sqrt(n) as q, pow(n, 2) as p, n / 0 as d, n % 0 as r, substr(a, 1, 2) as sb",
    "fields trim(a) as t, toupper(a) as u, replace(a, 'x', 'y') as rp, strcontains(a, 'x') as sc",
    "fields fromMillis(n) as fm, toMillis(@timestamp) as tm, dateceil(@timestamp, 1mo) as dc",
    "fields isValidIp(a) as ip, isIpInSubnet(a, '10.0.0.0/8') as sub, isblank(a) as bl",
    "display a, n",
    "filter n > 2",
    "filter a like /x/ or a =~ 'é'",
    'filter a in ["x", 1, true] and not ispresent(b.c)',
    "filter n != 3",
    'parse @message "[*] *" as lvl, rest',
    "parse @message /n=(?<num>\\d+)/",
    "stats count(*) as c, sum(n) as s, avg(n), min(a), max(n), stddev(n) by a",
    "stats pct(n, 50) as p, count_distinct(a) as d, earliest(a), latest(n) by bin(1m)",
    "stats sortsFirst(a) as sf, sortsLast(n) as sl, count(a) as ca by b.c",
    "sort n desc",
    "sort a asc, @timestamp desc",
    "limit 3",
    "dedup a",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=5))
def test_command_pipelines_compile_or_are_malformed_and_run(commands: list[str]) -> None:
    text = " | ".join(commands)
    try:
        plan = compile_text(text)
    except MalformedQuery as exc:
        assert 0 <= exc.start <= exc.end <= len(text)
        return
    rows = run(plan, STREAMS, 0, 10**12, Statistics())
    for row in render_rows(plan, rows):
        assert all(isinstance(cell["value"], str) for cell in row)

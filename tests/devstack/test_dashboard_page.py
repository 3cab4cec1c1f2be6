"""`make run`'s dashboard in a real headless Chromium: it loads cleanly and shows a burst."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright

from devstack.follow import ServiceProcess, run_to_exit, wait_healthy
from devstack.prereqs import check_chromium, find_chromium
from tests.helpers import order_body

pytestmark = pytest.mark.slow

# CHROMIUM, else Debian's chromium (.ci/run installs it), else Playwright's own download: the
# same search `make test`'s prerequisite check makes (devstack/prereqs.py).
# Without the background-networking flags Chromium phones home at start, and this closed
# network refuses it with errors of its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BURST = 30


def stack_env(api_port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return env | {"LOCALAWS_PORT": "0", "PORT": str(api_port), "DASHBOARD_PORT": "0"} | extra


def chromium_path() -> str:
    found = find_chromium(os.environ)
    if found is None:
        pytest.fail(check_chromium(os.environ) or "no Chromium")
    return found


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_dashboard(chromium: Browser, url: str, errors: list[str]) -> Page:
    page = await chromium.new_page(viewport={"width": 1280, "height": 1000})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    await page.wait_for_selector("#status.live")
    return page


async def post_orders(stack: ServiceProcess, api_url: str, bodies: list[dict[str, Any]]) -> None:
    await wait_healthy(stack, api_url)
    async with aiohttp.ClientSession() as http:

        async def post(body: dict[str, Any]) -> None:
            async with http.post(f"{api_url}/orders/async", json=body) as resp:
                assert resp.status == 202

        await asyncio.gather(*(post(body) for body in bodies))


async def tile(page: Page, name: str) -> str:
    return await page.text_content(f"#tile-{name}") or ""


async def query_box_shows(
    page: Page, shipped: str, text: str, rows: int | None = 1, tries: int = 40
) -> None:
    """Pick a shipped query and run it until its table shows `text` (the logs ship in batches)."""
    await page.select_option("#query-shipped", label=shipped)
    for _ in range(tries):
        await page.click("#query-run")
        await page.wait_for_function(
            "document.getElementById('query-status').textContent !== 'running…'"
        )
        if text in (await page.text_content("#query-result") or ""):
            status = await page.text_content("#query-status") or ""
            assert rows is None or status.startswith(f"{rows} rows;"), status
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"the query box never showed {text!r}")


async def test_the_dashboard_shows_a_burst_of_orders_live(unused_tcp_port_factory: Any) -> None:
    api_port = unused_tcp_port_factory()
    env = stack_env(api_port, PAYMENT_SECONDS="1", LOG_SHIP_SECONDS="0.5")
    stack = await ServiceProcess("devstack", env).start()
    errors: list[str] = []
    try:
        [ready] = await stack.wait_for(lambda e: e["event"] == "stack_ready")
        await stack.wait_for(lambda e: e["event"] == "worker_started")
        assert ready["dashboard"].startswith("http://127.0.0.1:")
        async with browser() as chromium:
            page = await open_dashboard(chromium, ready["dashboard"], errors)
            assert await tile(page, "paid-total") == "0"
            declined = order_body(customer_id="decline@test")
            bodies = [order_body()] * BURST + [declined]
            await post_orders(stack, f"http://127.0.0.1:{api_port}", bodies)
            await stack.wait_for(lambda e: e["event"] == "order_paid", count=BURST)
            await stack.wait_for(lambda e: e["event"] == "message_dead_lettered")
            # The page catches up within a push or two of the last line.
            await page.wait_for_function(
                f"document.getElementById('tile-paid-total').textContent === '{BURST}'"
            )
            await page.wait_for_function(
                "document.querySelector('#failures-latest').textContent.includes('card declined')"
            )
            await page.wait_for_function("document.getElementById('tile-dlq').textContent === '1'")
            assert await tile(page, "accepted-total") == str(BURST + 1)
            assert await tile(page, "slots") == "100"
            assert float(await tile(page, "api-p99")) > 0
            assert float((await tile(page, "queue-p99")).replace(",", "")) >= 0
            # What the charts hold: uPlot's own data arrays, series by series.
            sums = await page.evaluate(
                """() => Object.fromEntries(Object.entries(window.dashboardCharts).map(
                    ([name, chart]) => [name, chart.data.slice(1).map(
                        (s) => s.reduce((a, v) => a + (v || 0), 0))]))"""
            )
            assert sums["orders"] == [BURST + 1, BURST]
            # A 10 s trailing mean: how much of it the chart holds yet depends on the moment.
            assert sums["busy"][0] > 0
            assert sums["api"][1] > 0
            assert sums["queue"][1] > 0, "the burst was seen in flight"
            assert sums["queue"][2] > 0, "and the declined order in the DLQ"
            width = await page.evaluate("document.querySelector('#chart-orders canvas').width")
            assert width > 100
            # The queries' vocabulary: the ledger, final failures, nothing left pending.
            assert await tile(page, "ledger-paid") == str(BURST)
            assert await tile(page, "charged") == str(BURST)
            assert await tile(page, "charged-twice") == "0"
            assert await tile(page, "failures-final") == "1"
            await page.wait_for_function(
                "document.getElementById('tile-oldest-pending').textContent === 'none'"
            )
            await query_box_shows(page, "dlq-arrivals-by-reason", "card declined")
    finally:
        # Ctrl-C even when the test failed: a killed launcher would orphan its children.
        stack.signal(signal.SIGINT)
        code = await stack.wait(timeout=30)
        await stack.stop()
    assert code == 0
    assert errors == []
    # The launcher passed every child's line through unchanged, and stopped last.
    assert not [e for e in stack.events if e["event"] == "non_json_line"]
    assert stack.events[-1]["event"] == "stack_stopped"


async def test_a_bad_dashboard_port_is_one_clear_line() -> None:
    code, stderr = await run_to_exit("devstack", stack_env(8080, DASHBOARD_PORT="eighty"))
    assert code == 2
    assert stderr.strip() == "stack: DASHBOARD_PORT must be an integer, got 'eighty'"

"""The README's dashboard screenshot: a flash sale on `make run`'s stack, seen by Chromium.

`.venv/bin/python -m tests.devstack.dashboard_screenshot [PATH]` (default docs/dashboard.png):
60 orders/s for 40 s against one worker of 100 slots and 3 s payments, a few of them declined,
then the query box running the shipped api-latency-by-route query.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import aiohttp
from PIL import Image

from devstack.follow import ServiceProcess
from tests.devstack.test_dashboard_page import browser, query_box_shows, stack_env
from tests.helpers import order_body

RATE, SECONDS, DECLINE_EVERY = 60, 40, 150


async def flash_sale(api_url: str) -> None:
    async with aiohttp.ClientSession() as http:

        async def post(i: int) -> None:
            customer: Any = "decline@test" if i % DECLINE_EVERY == DECLINE_EVERY - 1 else i + 1
            async with http.post(f"{api_url}/orders/async", json=order_body(customer_id=customer)):
                pass

        started = time.monotonic()
        tasks = []
        for i in range(RATE * SECONDS):
            # Open loop: orders arrive on schedule whether or not earlier ones were answered.
            await asyncio.sleep(max(0.0, started + i / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)


async def main(path: str) -> None:
    stack = await ServiceProcess("devstack", stack_env(18180)).start()
    try:
        [ready] = await stack.wait_for(lambda e: e["event"] == "stack_ready")
        await stack.wait_for(lambda e: e["event"] == "worker_started")
        async with browser() as chromium:
            page = await chromium.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(ready["dashboard"])
            await asyncio.sleep(10)
            await flash_sale("http://127.0.0.1:18180")
            await asyncio.sleep(8)
            await query_box_shows(page, "api-latency-by-route", "/orders/async", rows=None)
            await page.screenshot(path=path, full_page=True)
    finally:
        stack.signal(signal.SIGINT)
        await stack.wait(timeout=60)
        await stack.stop()
    # A palette of 64 colours keeps the README's PNG small; the page has few colours.
    with Image.open(path) as shot:
        shot.quantize(colors=64).save(path, optimize=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png"))

"""The open-loop generator: its own garbage collections never delay a send."""

from __future__ import annotations

import gc

from aiohttp import web
from aiohttp.test_utils import TestServer

from bench.harness.load import open_loop


async def test_the_collector_sleeps_while_load_is_sent_and_wakes_after() -> None:
    seen: list[bool] = []

    async def order(request: web.Request) -> web.Response:
        seen.append(gc.isenabled())  # the server runs in the generator's own process
        return web.json_response({"order_id": "x"}, status=202)

    app = web.Application()
    app.router.add_post("/orders/async", order)
    async with TestServer(app, host="127.0.0.1") as server:
        assert gc.isenabled()
        run = await open_loop(
            str(server.make_url("/orders/async")),
            rate=200,
            duration=0.1,
            request_timeout=5,
            desc="test",
        )
    assert [o.status for o in run.outcomes] == [202] * 20
    assert seen == [False] * 20
    assert gc.isenabled()

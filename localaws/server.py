"""Serve moto's SNS/SQS (and friends) over HTTP on loopback: patched (default) or stock.

The patched server runs moto on one asyncio event loop (aiohttp, HTTP/1.1 keep-alive):
every request runs inside moto to completion on the loop's thread, one at a time, so moto's
unlocked state is never touched by two requests at once (no message handed to two
receivers), and a long poll waiting for messages is a parked future, not a thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Protocol

from aiohttp import web
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from . import calls, chaos, control, iam_gate, longpoll, patches, wsgi
from .insights.service import INSIGHTS


class Server(Protocol):
    @property
    def endpoint(self) -> str: ...

    def start(self) -> Server: ...

    def stop(self) -> None: ...


class StockMoto:
    """Unmodified moto on werkzeug's threaded server: one thread per connection."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="localaws", daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://{self._server.host}:{self._server.port}"

    def start(self) -> StockMoto:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


class LocalAws:
    """Patched moto on an asyncio loop in a background thread."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, enforce_iam: bool = False
    ) -> None:
        patches.apply()
        # Checked in _handle, before either of moto's paths (Flask or direct_dispatch) runs.
        self._gate = iam_gate.Gate() if enforce_iam else None
        self._app = DomainDispatcherApplication(create_backend_app)
        self._polls = longpoll.Registry()
        self._counts = calls.Counts()
        self._faults = chaos.Faults()
        self._control = control.Control(self._counts, self._faults)
        self._loop = asyncio.new_event_loop()
        # Binding here, not in the thread, so a taken port fails the constructor (OSError).
        # handler_cancellation: a poll whose client hung up stops waiting at once, so it can
        # never take a message off the queue and write it to a closed connection.
        server = web.Server(self._handle, loop=self._loop, handler_cancellation=True)
        # Parked long polls are not waited for on shutdown: the clients will retry elsewhere.
        self._runner = web.ServerRunner(server, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        self._site = web.TCPSite(self._runner, host, port, backlog=2048)
        self._loop.run_until_complete(self._site.start())
        sock = self._site._server.sockets[0]  # type: ignore[union-attr]
        self._host, self._port = sock.getsockname()[:2]
        self._thread = threading.Thread(target=self._loop.run_forever, name="localaws")

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self._port}"

    def start(self) -> LocalAws:
        self._thread.start()
        return self

    def stop(self) -> None:
        INSIGHTS.cancel_all()
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        await self._runner.cleanup()
        # Polls still parked (their clients never hung up) end here, not at interpreter exit.
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        if control.is_control(request.path):
            return await self._control.handle(request)
        # Read the whole body first: moto wants it all, and aiohttp's read() caps at 1 MiB.
        body = await request.content.read()
        query = request.raw_path.partition("?")[2]
        call = calls.identify(request.method, request.headers, query, body)
        # Counted once here, so a long poll that parks and runs again is one request.
        self._counts.add(call)
        fault = await self._faults.before(call) if self._faults.rules else None
        if fault is not None and fault.error is not None and not fault.lost_answer:
            return chaos.error_response(fault.error, call)
        if (
            self._gate is not None
            and (refused := self._gate.check(call, request.headers, query, body)) is not None
        ):
            return refused
        return self._faults.after(fault, call, await self._serve(request, body))

    async def _serve(self, request: web.BaseRequest, body: bytes) -> web.Response:
        poll = longpoll.LongPoll()
        response = self._run(wsgi.environ(request, body), poll)
        while (index := poll.parked_on) is not None:
            poll.parked_on = None
            wake = await self._polls.wait(poll, index)
            if wake == "ended":
                break
            # Another receiver may have taken the message meanwhile: then this run comes
            # back empty and the poll parks again, at the back of the line.
            response = self._run(wsgi.environ(request, body), poll)
            if wake == "message":
                self._polls.ran_again(index)
        return response

    def _run(self, env: dict[str, object], poll: longpoll.LongPoll) -> web.Response:
        longpoll.current = poll
        try:
            return wsgi.call(self._app, env)
        finally:
            longpoll.current = None
            self._polls.wake_ready()

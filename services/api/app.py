"""The aiohttp application factory: no I/O here; clients open in cleanup_ctx."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiobotocore.session import get_session
from aiohttp import web

from services.common.aws import client_config
from services.common.payment import PaymentProcessor

from .errors import error_middleware
from .handlers import routes
from .keys import PAYMENTS, SETTINGS, SNS
from .settings import ApiSettings

# Concurrent SNS publishes one API process may have in flight before they queue for a connection.
SNS_POOL_SIZE = 100


async def _sns_client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    config = client_config(pool_size=SNS_POOL_SIZE, read_timeout=settings.publish_timeout)
    async with get_session().create_client(
        "sns",
        region_name=settings.aws.region,
        endpoint_url=settings.aws.endpoint_url,
        config=config,
    ) as sns:
        app[SNS] = sns
        yield


def create_app(settings: ApiSettings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[PAYMENTS] = PaymentProcessor(settings.payment_seconds)
    app.cleanup_ctx.append(_sns_client)
    app.add_routes(routes)
    return app

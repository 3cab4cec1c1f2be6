"""The aiohttp application factory: no I/O here; clients open in cleanup_ctx."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiobotocore.session import get_session
from aiohttp import web

from services.adapters.publisher import Publisher
from services.common.aws import client_config, open_client
from services.common.awserrors import AwsHealth
from services.domain.latewrites import LateWrites
from services.domain.orders import NullStore, OrderStore
from services.domain.payment import PaymentProcessor
from services.domain.workflow import OrderWorkflow

from .checks import check_table, check_topic
from .errors import error_middleware
from .handlers import routes
from .keys import AWS_HEALTH, LATE_WRITES, ORDERS, PAYMENTS, SETTINGS, SNS, WORKFLOW
from .settings import ApiSettings

# Concurrent calls to one AWS service (SNS, DynamoDB) that one API process may have in
# flight before they queue for a connection. Both clients share the publish timeout: it is
# the API's bound on any AWS call a request waits for.
AWS_POOL_SIZE = 100


async def _sns_client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    config = client_config(pool_size=AWS_POOL_SIZE, read_timeout=settings.publish_timeout)
    async with open_client(get_session(), "sns", settings.aws, config) as sns:
        await check_topic(sns, settings.topic_arn)
        app[SNS] = sns
        yield


async def _order_store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.orders_table is None:
        app[ORDERS] = NullStore()
        yield
        return
    config = client_config(pool_size=AWS_POOL_SIZE, read_timeout=settings.publish_timeout)
    async with open_client(get_session(), "dynamodb", settings.aws, config) as dynamodb:
        await check_table(dynamodb, settings.orders_table)
        app[ORDERS] = OrderStore(dynamodb, settings.orders_table, health=app[AWS_HEALTH])
        yield


async def _workflow(app: web.Application) -> AsyncIterator[None]:
    """The order workflow over the clients opened before it; its late writes land on close."""
    settings = app[SETTINGS]
    late_writes = app[LATE_WRITES] = LateWrites()
    # Concurrent orders share PublishBatch calls; a lone order is published at once.
    publisher = Publisher(
        app[SNS], settings.topic_arn, settings.publish_timeout, health=app[AWS_HEALTH]
    )
    app[WORKFLOW] = OrderWorkflow(
        app[ORDERS],
        publisher.publish,
        app[PAYMENTS],
        late_writes,
        publish_timeout=settings.publish_timeout,
    )
    yield
    # Runs before the clients close (cleanup_ctx unwinds in reverse).
    await publisher.close()
    await app[WORKFLOW].close()
    await late_writes.close(settings.shutdown_timeout)


def create_app(settings: ApiSettings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app[AWS_HEALTH] = AwsHealth()
    app[PAYMENTS] = PaymentProcessor(settings.payment)
    app.cleanup_ctx.append(_sns_client)
    app.cleanup_ctx.append(_order_store)
    app.cleanup_ctx.append(_workflow)
    app.add_routes(routes)
    return app

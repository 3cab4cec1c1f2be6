"""Typed application state: every AppKey the API uses, declared in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from services.common.awserrors import AwsHealth
from services.domain.latewrites import LateWrites
from services.domain.orders import OrderStore
from services.domain.payment import PaymentProcessor
from services.domain.workflow import OrderWorkflow

from .settings import ApiSettings

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient

SETTINGS = web.AppKey("settings", ApiSettings)
# Permanent AWS errors of this process (SNS and DynamoDB): /health answers 503 after a few.
AWS_HEALTH = web.AppKey("aws_health", AwsHealth)
SNS: web.AppKey[SNSClient] = web.AppKey("sns")
PAYMENTS = web.AppKey("payments", PaymentProcessor)
# A NullStore when ORDERS_TABLE is unset: no order state, no idempotency, GET /orders/{id} is 404.
ORDERS: web.AppKey[OrderStore] = web.AppKey("orders")
LATE_WRITES = web.AppKey("late_writes", LateWrites)
WORKFLOW = web.AppKey("workflow", OrderWorkflow)

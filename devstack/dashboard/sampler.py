"""The queue panel's data: SQS GetQueueAttributes on the queue and the DLQ, once a second."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from services.common.aws import client_config
from services.common.settings import AwsSettings

from ..env import client_args
from ..topology import queue_counts

INTERVAL_SECONDS = 1.0

Sink = Callable[[float, int, int, int], None]
"""Takes (time, visible, in flight, DLQ visible)."""


async def sample_queues(
    aws: AwsSettings, queue_url: str, dlq_url: str, sink: Sink, stop: asyncio.Event
) -> None:
    """Sample until `stop` is set; a failed sample is a gap in the chart, not a crash."""
    # One client for the process's life, as the services keep theirs; one attempt per
    # sample, since the next sample is a second away anyway.
    config = client_config(pool_size=2, read_timeout=5, max_attempts=1)
    async with get_session().create_client(
        "sqs", **client_args(aws.endpoint_url, config, aws.region)
    ) as sqs:
        while not stop.is_set():
            started = time.time()
            try:
                (visible, in_flight), (dlq, _) = await asyncio.gather(
                    queue_counts(sqs, queue_url), queue_counts(sqs, dlq_url)
                )
            except (BotoCoreError, ClientError):
                pass
            else:
                sink(started, visible, in_flight, dlq)
            delay = max(0.0, INTERVAL_SECONDS - (time.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

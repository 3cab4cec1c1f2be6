"""AWS client configuration shared by both services (one client per service per process).

Per call, an aiobotocore client spends about 1 ms of CPU on its own (signing, serialising,
hooks, parsing). `python -m bench.tools.client_cost` measures it; what the profile showed worth
changing is kept here, each with its reason, as plain `Config` options (`LEAN_OPTIONS`).
Together they cut the client's instructions per call (valgrind, sequential calls against
the local AWS) from 3.6 to 2.7 million for SNS Publish and DynamoDB UpdateItem, 5.9 to 4.6
million for a PublishBatch of 10 and 8.2 to 4.9 million for a 10-item TransactWriteItems.
"""

from __future__ import annotations

import platform
from contextlib import AbstractAsyncContextManager
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Literal

from aiobotocore.config import AioConfig

from . import wirejson

if TYPE_CHECKING:
    from aiobotocore.session import AioSession

    from .settings import AwsSettings

# botocore builds its default User-Agent afresh for every request, twice (once for the
# request dict, once more as the request is created, to add feature ids): 15-20 % of a call's
# client CPU in the profile. A fixed string is botocore's documented override; it still names the
# SDK and Python versions for anyone reading AWS-side logs (aiobotocore's session appends
# "botocore/<version>" to it). Feature-id telemetry is lost.
USER_AGENT = f"orderflow aiobotocore/{version('aiobotocore')} Python/{platform.python_version()}"

LEAN_OPTIONS: dict[str, Any] = {
    "user_agent": USER_AGENT,
    # Client-side validation walks every parameter against the model: ~30 % of the client
    # CPU of a 10-item TransactWriteItems (which group commit makes the common call), little
    # for a single Publish. AWS validates the same rules and answers a 400 ValidationException
    # (a definite failure, nothing written), and every request shape the services build runs
    # in the tests against the local AWS. Caveat, local only: moto answers a request missing
    # a required member with a 500 (botocore retries it), where AWS answers a 400.
    "parameter_validation": False,
}
"""Config options that cut client CPU per call; the requests that succeed are unchanged.

Looked at and left alone: `request_checksum_calculation` / `response_checksum_validation`
("when_required") change nothing for SNS, SQS and DynamoDB (no operation we call has a
checksum trait); client-side monitoring registers no handler (seen on a live client); legacy
retry mode only swaps the standard mode's quota bookkeeping for a CRC32 of every DynamoDB
response. What remains is signing, serialising, parsing and the loopback send itself;
of serialising, `open_client` keeps only what converts anything (wirejson.py).
"""


def client_config(
    *, pool_size: int, read_timeout: float, max_attempts: int = 3, lean: bool = True
) -> AioConfig:
    """The services' client config; `lean=False` keeps botocore's defaults (for benches)."""
    options: dict[str, Any] = {
        # botocore's default pool of 10 would make the 11th concurrent long poll wait for a
        # connection; callers pass the concurrency they actually run.
        "max_pool_connections": pool_size,
        "connect_timeout": 3,
        "read_timeout": read_timeout,
        # total_max_attempts counts the first try; botocore reads `max_attempts` as retries.
        "retries": {"mode": "standard", "total_max_attempts": max_attempts},
    }
    if lean:
        options |= LEAN_OPTIONS
    return AioConfig(**options)


def open_client(
    session: AioSession,
    service: Literal["sns", "sqs", "dynamodb"],
    aws: AwsSettings,
    config: AioConfig,
) -> AbstractAsyncContextManager[Any]:
    """One service's client, closed when the block ends; with the lean config, JSON-protocol
    requests (DynamoDB, SQS) are serialized directly where the model would only copy."""
    return _Installed(
        session.create_client(
            service, region_name=aws.region, endpoint_url=aws.endpoint_url, config=config
        )
    )


class _Installed:
    """aiobotocore's client context with wirejson installed on entry. A class, not an async
    generator: a generator left open inside an aiohttp cleanup context that fails at start-up
    is closed by the garbage collector, which then prints a traceback on stderr."""

    def __init__(self, creating: AbstractAsyncContextManager[Any]) -> None:
        self._creating = creating

    async def __aenter__(self) -> Any:
        client = await self._creating.__aenter__()
        wirejson.install(client)
        return client

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._creating.__aexit__(*exc_info)

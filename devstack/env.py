"""Environment isolation: every process the harness starts gets fake credentials, never real ones.

A developer's `AWS_PROFILE`, `~/.aws` files or `AWS_*` variables must never steer the local
stack, a test or the bench toward a real account, so each is dropped and replaced here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, TypedDict

from aiobotocore.config import AioConfig

from services.common.settings import AwsSettings

REGION = "us-east-1"
LOOPBACK = "127.0.0.1"

# Credentials the local AWS accepts; real AWS never sees them.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class ClientCredentials(TypedDict):
    """The fake credentials as aiobotocore's `create_client` keyword arguments."""

    aws_access_key_id: str
    aws_secret_access_key: str


CLIENT_CREDENTIALS = ClientCredentials(
    aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
)


def client_args(
    endpoint_url: str | None, config: AioConfig, region: str = REGION
) -> dict[str, Any]:
    """aiobotocore `create_client` keyword arguments for the local AWS, fake credentials in."""
    return {
        "region_name": region,
        "endpoint_url": endpoint_url,
        "config": config,
        **CLIENT_CREDENTIALS,
    }


def isolated(environ: Mapping[str, str], region: str = REGION) -> dict[str, str]:
    """`environ` without any AWS_* variable, plus fake credentials and no config files."""
    env = {k: v for k, v in environ.items() if not k.startswith("AWS_")}
    return env | aws_variables(region)


def aws_variables(region: str = REGION, endpoint_url: str | None = None) -> dict[str, str]:
    """Every AWS_* variable a process of the harness needs (the endpoint if one is given)."""
    variables = FAKE_CREDENTIALS | {
        "AWS_DEFAULT_REGION": region,
        # No config or credentials file: a developer's profile can never be picked up.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    if endpoint_url is not None:
        variables["AWS_ENDPOINT_URL"] = endpoint_url
    return variables


def service_env(aws: AwsSettings, **extra: str) -> dict[str, str]:
    """A service child process's environment: this one isolated, the local AWS, `extra`."""
    env = isolated(os.environ, aws.region) | aws_variables(aws.region, aws.endpoint_url or "")
    return env | {"PYTHONUNBUFFERED": "1"} | extra


def isolate(environ: MutableMapping[str, str], region: str = REGION) -> None:
    """Isolate `environ` in place (this process's, so its own AWS clients find fake ones)."""
    for name in [k for k in environ if k.startswith("AWS_")]:
        del environ[name]
    environ.update(aws_variables(region))


@contextmanager
def isolated_process_env(aws: AwsSettings) -> Iterator[None]:
    """Point this process's AWS variables at the local AWS, with fake credentials; restore after."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    isolate(os.environ, aws.region)
    os.environ["AWS_ENDPOINT_URL"] = aws.endpoint_url or ""
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[name]
        os.environ.update(saved)

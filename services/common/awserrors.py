"""AWS errors classified once, at the adapter boundary: transient, or permanent and loud.

Transient (throttling, 5xx, timeouts, connection errors) is an outage: the caller retries it
in process. Permanent (access denied, KMS, a missing resource, a request AWS will never take,
bad credentials) is a setting or a bug that retrying cannot fix: each is logged at error
level with the service, operation and AWS error code, counted, and after a few in a row the
process reports itself unhealthy (the worker's liveness file, the API's /health), so ECS
replaces the task and the deployment circuit breaker and the error-line alarm see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from .logging import get_logger

log = get_logger()

# Codes that mean "never, as things stand": whatever the HTTP status they came with.
PERMANENT_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",  # SNS
        "AuthFailure",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "ExpiredToken",
        "ExpiredTokenException",
        "ResourceNotFoundException",
        "NotFound",
        "NotFoundException",
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "ValidationException",
        "SerializationException",
        "InvalidParameter",
        "InvalidParameterValue",
        "InvalidParameterException",
        "InvalidAddress",
        "InvalidSecurity",
        "OptInRequired",
    }
)
# Prefixes of permanent families: AccessDenied*, and every KMS error (KMSAccessDenied,
# KMSDisabled, KMSInvalidState, KMSNotFound, KMS.* in SNS and SQS).
PERMANENT_PREFIXES = ("AccessDenied", "KMS")
# In a row, without a success between them, before the process calls itself unhealthy: one
# is a blip (a policy being rolled out), a few is a service doing nothing.
UNHEALTHY_AFTER = 3


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def is_permanent(exc: BaseException) -> bool:
    """True for an AWS error that retrying cannot fix; connection errors never are."""
    if isinstance(exc, BotoCoreError) or not isinstance(exc, ClientError):
        return False
    code = error_code(exc) or ""
    return code in PERMANENT_CODES or code.startswith(PERMANENT_PREFIXES)


@dataclass
class AwsHealth:
    """Permanent AWS errors of one process: counted, logged, and judged for liveness.

    Runs are counted per service: a DynamoDB write that succeeds says nothing about SNS, so
    an API whose every publish is denied is unhealthy however its DynamoDB calls go. Any
    success of a service ends its run, so a process that recovers is healthy again at its
    next call to that service. (One operation denied while others of the same service are
    allowed stays loud, an error line each time, but does not fail the liveness check:
    replacing the task would not fix a policy.)
    """

    threshold: int = UNHEALTHY_AFTER
    permanent_errors: int = 0
    """All permanent errors seen since start."""
    runs: dict[str, int] = field(default_factory=dict)
    """Permanent errors of each service (dynamodb, sqs, sns) since its last success."""

    @property
    def in_a_row(self) -> int:
        """The longest run of permanent errors of any one service."""
        return max(self.runs.values(), default=0)

    @property
    def healthy(self) -> bool:
        return self.in_a_row < self.threshold

    def succeeded(self, service: str) -> None:
        self.runs.pop(service, None)

    def failed(self, service: str, operation: str, exc: BaseException) -> bool:
        """Note a failed call; True (after logging it at error) if it is permanent."""
        if not is_permanent(exc):
            return False
        self.permanent_errors += 1
        run = self.runs[service] = self.runs.get(service, 0) + 1
        error = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
        log.error(
            "aws_permanent_error",
            # Not `service`: that field names the process (api, worker) on every line.
            aws_service=service,
            # AWS's own name (UpdateItem), as CloudTrail and IAM policies spell it.
            operation=getattr(exc, "operation_name", None) or operation,
            code=error_code(exc),
            detail=str(error.get("Message", ""))[:300],
            in_a_row=run,
            healthy=self.healthy,
        )
        return True

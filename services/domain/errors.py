"""The order error family: every way an order request ends without its success answer.

Raised by the domain (the workflow, order state, payment) and by the adapters that call AWS
for it (services/adapters/), each in the domain's words: what happened to the order, never
which HTTP status that is. The API chooses status, body `code`, message and Retry-After
for each in one table (services/api/errors.py); the worker reads the same errors as outcomes.
"""

from __future__ import annotations


class OrderError(Exception):
    """An order request that ended without its success answer."""


# -- the request itself -----------------------------------------------------------------------


class KeyReused(OrderError):
    """The key (or order_id) was used with a different request."""


class InProgress(OrderError):
    """The first request with this key is still being processed."""


# -- queueing: two siblings, because the client's next step depends on which -----------------


class PublishError(OrderError):
    """SNS did not acknowledge the order; `code` is SNS's error code or the failure's kind."""

    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.code = code


class PublishFailed(PublishError):
    """Not published: SNS refused it, or no request carrying it ever reached SNS."""


class PublishAmbiguous(PublishError):
    """Perhaps published: a request went out and no answer came (it will then be paid)."""


# -- payment ----------------------------------------------------------------------------------


class PaymentError(OrderError):
    """The payment did not go through."""


class PaymentDeclined(PaymentError):
    """Permanent: retrying cannot help (card declined, fraud check)."""


class PaymentUnavailable(PaymentError):
    """Transient: the processor failed or timed out; the same order may be retried."""


# -- order state (DynamoDB) -------------------------------------------------------------------


class StateUnavailable(OrderError):
    """DynamoDB could not be reached or refused the call: an outage, not the client's fault."""


class StateRefused(StateUnavailable):
    """DynamoDB refused the call for a reason retrying cannot fix (access denied, KMS, a
    missing table, a request it will never take): logged at error and counted where the
    call was made (services/common/awserrors.py); `code` is AWS's error code."""

    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.code = code

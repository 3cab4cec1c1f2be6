"""The order errors' one table: every kind has an answer, and docs/api.md tells the same."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.api.errors import ANSWERS, answer
from services.domain.errors import (
    OrderError,
    PaymentDeclined,
    PublishAmbiguous,
    PublishError,
    PublishFailed,
    StateRefused,
    StateUnavailable,
)

API_DOC = Path(__file__).parents[2] / "docs" / "api.md"


def _family(kind: type[OrderError] = OrderError) -> list[type[OrderError]]:
    return [kind, *(k for sub in kind.__subclasses__() for k in _family(sub))]


@pytest.mark.parametrize("kind", [k for k in _family() if not k.__subclasses__()])
def test_every_kind_of_order_error_has_an_answer(kind: type[OrderError]) -> None:
    error = kind("detail", "Code") if issubclass(kind, PublishError | StateRefused) else kind("x")
    answered = answer(error)
    assert answered is not None, f"{kind.__name__} has no row in ANSWERS"
    # An outage (503) or a request still in flight (409) says when to come back.
    assert ("Retry-After" in answered.headers) == (answered.status in (409, 503))


def test_the_most_specific_row_wins() -> None:
    refused, unavailable = answer(StateRefused("x", "AccessDenied")), answer(StateUnavailable("x"))
    assert refused is not None and unavailable is not None
    assert (refused.status, refused.code) == (500, "state_refused")
    assert (unavailable.status, unavailable.code) == (503, "state_unavailable")
    # Siblings, not parent and child: "not queued" never catches "perhaps queued".
    assert not issubclass(PublishAmbiguous, PublishFailed)
    ambiguous, failed = answer(PublishAmbiguous("x", "Timeout")), answer(PublishFailed("x", "Y"))
    assert ambiguous is not None and failed is not None
    assert ambiguous.message != failed.message and "may have been queued" in ambiguous.message
    declined = answer(PaymentDeclined("card declined"))
    assert declined is not None and declined.message == "card declined"


def test_the_api_doc_lists_every_answer_with_its_status() -> None:
    rows = set(re.findall(r"^\| (\d{3}) \| `(\w+)` \|", API_DOC.read_text(), re.MULTILINE))
    table = {(str(row.status), row.code) for row in ANSWERS.values()}
    assert table - rows == set(), "in ANSWERS, missing from docs/api.md's error table"

"""The errors a query can cause, in the shape CloudWatch Logs answers them."""

from __future__ import annotations


class MalformedQuery(Exception):
    """A query that does not parse or names what does not exist: `MalformedQueryException`.

    AWS answers it with HTTP 400, `message` and a `queryCompileError` whose `location` holds
    the character offsets (`startCharOffset`, `endCharOffset`) of the offending text.
    """

    def __init__(self, message: str, start: int, end: int) -> None:
        super().__init__(message)
        self.message = message
        self.start = start
        self.end = end

    def compile_error(self) -> dict[str, object]:
        return {
            "location": {"startCharOffset": self.start, "endCharOffset": self.end},
            "message": self.message,
        }


def line_and_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and 0-based position in that line of a character offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1)

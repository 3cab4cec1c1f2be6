"""The scalar functions AWS documents (general, string, numeric, datetime, IP address).

Each takes evaluated argument values; a missing argument (None) gives None unless the
function is about presence (`ispresent`, `isempty`, `isblank`, `coalesce`). Booleans come
back as 1 or 0, which is how Logs Insights shows them (`fields ispresent(x) as p`).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .values import Timestamp, as_text, number


@dataclass(frozen=True)
class Function:
    min_args: int
    max_args: int | None
    impl: Callable[..., Any]


def _num(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        values = [number(a) for a in args]
        if any(v is None for v in values):
            return None
        try:
            return fn(*values)
        except (ValueError, ZeroDivisionError, OverflowError):
            return None

    return wrapped


def _str(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(first: Any, *rest: Any) -> Any:
        if first is None or any(r is None for r in rest):
            return None
        return fn(as_text(first), *rest)

    return wrapped


def _bit(value: bool) -> int:
    return 1 if value else 0


def _isempty(value: Any) -> int:
    return _bit(value is None or as_text(value) == "")


def _isblank(value: Any) -> int:
    return _bit(value is None or as_text(value).strip() == "")


def _coalesce(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _trim(kind: str) -> Callable[..., Any]:
    def trim(text: str, chars: Any = None) -> str:
        strip = {"l": str.lstrip, "r": str.rstrip, "": str.strip}[kind]
        return strip(text) if chars is None else strip(text, as_text(chars))

    return _str(trim)


def _substr(text: str, start: Any, length: Any = None) -> Any:
    begin = number(start)
    if begin is None:
        return None
    begin = max(int(begin), 0)
    if length is None:
        return text[begin:]
    count = number(length)
    return None if count is None else text[begin : begin + max(int(count), 0)]


def _int_if_whole(value: float) -> int | float:
    return int(value) if math.isfinite(value) and value.is_integer() else value


def _ip(kind: type[Any] | None) -> Callable[[Any], int]:
    def valid(value: Any) -> int:
        try:
            address = ipaddress.ip_address(as_text(value))
        except ValueError:
            return 0
        return _bit(kind is None or isinstance(address, kind))

    return valid


def _in_subnet(kind: type[Any] | None) -> Callable[[Any, Any], int]:
    def inside(value: Any, subnet: Any) -> int:
        try:
            address = ipaddress.ip_address(as_text(value))
            network = ipaddress.ip_network(as_text(subnet), strict=False)
        except ValueError:
            return 0
        if kind is not None and not isinstance(address, kind):
            return 0
        return _bit(address.version == network.version and address in network)

    return inside


def _from_millis(value: Any) -> Any:
    n = number(value)
    return None if n is None else Timestamp(int(n))


def _to_millis(value: Any) -> Any:
    n = number(value)
    return None if n is None else int(n)


FUNCTIONS: dict[str, Function] = {
    # general
    "ispresent": Function(1, 1, lambda v: _bit(v is not None)),
    "coalesce": Function(1, None, _coalesce),
    # string
    "isempty": Function(1, 1, _isempty),
    "isblank": Function(1, 1, _isblank),
    "concat": Function(1, None, lambda *v: "".join(as_text(x) for x in v if x is not None)),
    "ltrim": Function(1, 2, _trim("l")),
    "rtrim": Function(1, 2, _trim("r")),
    "trim": Function(1, 2, _trim("")),
    "strlen": Function(1, 1, _str(len)),
    "toupper": Function(1, 1, _str(str.upper)),
    "tolower": Function(1, 1, _str(str.lower)),
    "substr": Function(2, 3, _str(_substr)),
    "replace": Function(3, 3, _str(lambda s, a, b: s.replace(as_text(a), as_text(b)))),
    "strcontains": Function(2, 2, _str(lambda s, sub: _bit(as_text(sub) in s))),
    # numeric
    "abs": Function(1, 1, _num(abs)),
    "ceil": Function(1, 1, _num(math.ceil)),
    "floor": Function(1, 1, _num(math.floor)),
    "round": Function(1, 1, _num(lambda v: math.floor(v + 0.5))),
    "greatest": Function(1, None, _num(lambda *v: max(v))),
    "least": Function(1, None, _num(lambda *v: min(v))),
    "log": Function(1, 1, _num(math.log)),
    "sqrt": Function(1, 1, _num(math.sqrt)),
    "pow": Function(2, 2, _num(lambda a, b: _int_if_whole(float(a) ** b))),
    # datetime (bin, datefloor and dateceil take a period: see the compiler)
    "frommillis": Function(1, 1, _from_millis),
    "tomillis": Function(1, 1, _to_millis),
    # IP address
    "isvalidip": Function(1, 1, _ip(None)),
    "isvalidipv4": Function(1, 1, _ip(ipaddress.IPv4Address)),
    "isvalidipv6": Function(1, 1, _ip(ipaddress.IPv6Address)),
    "isipinsubnet": Function(2, 2, _in_subnet(None)),
    "isipv4insubnet": Function(2, 2, _in_subnet(ipaddress.IPv4Address)),
    "isipv6insubnet": Function(2, 2, _in_subnet(ipaddress.IPv6Address)),
}

# Functions of time periods, compiled specially (their period is a constant).
PERIOD_FUNCTIONS = {"bin": 1, "datefloor": 2, "dateceil": 2}

# Functions that take a field itself, not its value: a missing field is their answer.
PRESENCE = {"ispresent", "isempty", "isblank", "coalesce", "concat"}

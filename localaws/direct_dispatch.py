"""A request for DynamoDB, SNS or SQS goes straight to moto's handler, not through Flask.

Once the DynamoDB calls themselves were cheap, most of a request's CPU was moto's generic
path around them: a Flask request context, URL map binding and matching, after-request
hooks, and `method_names_from_class` listing the handler's methods with
`inspect.getmembers` on every call. For these three services moto's Flask app does nothing
but call the service's `dispatch` through `convert_to_flask_response` (the rule for the
path `/` names that callback), then run its one after-request hook, flask-cors. So a POST
to `/` is handed to the same dispatch, with the same normalised request class (given the
limits Flask's config would give it), answered with the same response class, and given
the headers flask-cors computes from the app's own CORS settings. Each app is inspected
once: one with any other hook (a moto that changed), and any other request (another
service or path, an `Origin` header) take the Flask app as before.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import moto.core.responses as core_responses
from botocore.exceptions import ClientError
from flask import Flask, Response
from flask_cors.core import ACL_ORIGIN, get_cors_headers, try_match_pattern
from moto.core.utils import method_names_from_class
from moto.dynamodb.responses import DynamoHandler
from moto.moto_api import recorder
from moto.moto_api._internal.moto_random import MotoRandom
from moto.moto_server.werkzeug_app import BackendRequest, DomainDispatcherApplication
from moto.sns.responses import SNSResponse
from moto.sqs.responses import SQSResponse

# The services served directly, by the name moto's app for them carries.
HANDLERS: dict[str, Any] = {"dynamodb": DynamoHandler, "sns": SNSResponse, "sqs": SQSResponse}

_original_call: Any = None


@dataclass(frozen=True)
class _Direct:
    dispatch: Callable[..., Any]
    cors: list[Any]
    """flask-cors's (path pattern, options) for the app; empty when CORS is off."""
    limits: dict[str, Any]
    """The request limits Flask's config gives a request of this app."""


_apps: dict[int, _Direct | None] = {}


def _inspect(app: Flask) -> _Direct | None:
    """How to serve `app`'s requests directly; None if the app is not as expected."""
    handler = HANDLERS.get(getattr(app, "service", ""))
    if handler is None:
        return None
    hooks: list[Any] = [fns for fns in app.before_request_funcs.values() if fns]
    hooks += [fns for fns in app.url_value_preprocessors.values() if fns]
    hooks += [fns for fns in app.teardown_request_funcs.values() if fns]
    after: list[Any] = [fn for fns in app.after_request_funcs.values() for fn in fns]
    try:
        endpoint, _ = app.url_map.bind("localhost").match("/", method="POST")
    except Exception:  # no rule for `/`: Flask answers it
        return None
    view = getattr(app.view_functions.get(endpoint), "callback", None)
    if hooks or view != handler.dispatch:
        return None
    limits = {
        "max_content_length": app.config["MAX_CONTENT_LENGTH"],
        "max_form_memory_size": app.config["MAX_FORM_MEMORY_SIZE"],
        "max_form_parts": app.config["MAX_FORM_PARTS"],
    }
    if not after:
        return _Direct(handler.dispatch, [], limits)  # CORS off (MOTO_DISABLE_GLOBAL_CORS)
    if len(after) != 1 or after[0].__name__ != "cors_after_request":
        return None
    cells = dict(zip(after[0].__code__.co_freevars, after[0].__closure__ or (), strict=True))
    resources = cells.get("resources")
    if resources is None:
        return None
    return _Direct(handler.dispatch, list(resources.cell_contents), limits)


def _serve(
    direct: _Direct, environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    """What the app's one view and its CORS hook do for this request, without the app."""
    request = BackendRequest(environ)
    for name, value in direct.limits.items():
        setattr(request, name, value)
    recorder._record_request(request)
    try:
        result = direct.dispatch(request, request.raw_url, dict(request.headers))
    except ClientError as exc:
        result = 400, {}, exc.response["Error"]["Message"]
    if len(result) == 3:
        status, headers, content = result
    else:
        status, headers, content = 200, {}, result
    response = Response(response=content, status=status, headers=headers)
    # flask-cors's after-request hook, with this request in place of Flask's proxy.
    if not response.headers.get(ACL_ORIGIN):
        for pattern, options in direct.cors:
            if try_match_pattern("/", pattern, caseSensitive=True):
                for k, v in get_cors_headers(options, request.headers, request.method).items():
                    response.headers.add(k, v)
                break
    return response(environ, start_response)


def _call(
    self: DomainDispatcherApplication,
    environ: dict[str, Any],
    start_response: Callable[..., Any],
) -> Iterable[bytes]:
    if (
        environ.get("PATH_INFO") == "/"
        and environ.get("REQUEST_METHOD") == "POST"
        and "HTTP_ORIGIN" not in environ
    ):
        app = self.get_application(environ)
        if id(app) not in _apps:
            _apps[id(app)] = _inspect(app)
        direct = _apps[id(app)]
        if direct is not None:
            return _serve(direct, environ, start_response)
    return _original_call(self, environ, start_response)  # type: ignore[no-any-return]


@functools.cache
def _method_names(clazz: type) -> tuple[str, ...]:
    # A response class's methods never change while the server runs.
    return tuple(method_names_from_class(clazz))


def _method_names_cached(clazz: object) -> list[str]:
    return list(_method_names(clazz))


def install() -> None:
    global _original_call
    if _original_call is None:
        _original_call = DomainDispatcherApplication.__call__
    DomainDispatcherApplication.__call__ = _call  # type: ignore[method-assign]
    core_responses.method_names_from_class = _method_names_cached  # type: ignore[attr-defined]


def _random_string(
    self: MotoRandom, length: int = 20, include_digits: bool = True, lower_case: bool = False
) -> str:
    # moto's get_random_string with one `choices(k=length)` call instead of `length` calls
    # of `choice`: the same alphabet, length and generator (values are random either way).
    pool = string.ascii_letters + string.digits if include_digits else string.ascii_letters
    random_str = "".join(self.choices(pool, k=length))
    return random_str.lower() if lower_case else random_str


def install_fast_random_strings() -> None:
    """Every response's 52-character request id (and moto's other ids) in one draw."""
    MotoRandom.get_random_string = _random_string  # type: ignore[method-assign]

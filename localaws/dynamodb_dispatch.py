"""DynamoDB patch: a DynamoDB request goes straight to moto's handler, not through Flask.

Once the DynamoDB calls themselves were cheap, most of a request's CPU was moto's generic
path around them: a Flask request context, URL map binding and matching, after-request
hooks, and `method_names_from_class` listing the handler's methods with
`inspect.getmembers` on every call. For a request moto serves with its DynamoDB app, the
Flask app does nothing but call `DynamoHandler.dispatch` through
`convert_to_flask_response` (its one URL rule matches every path the check below lets
through), then run its one after-request hook, flask-cors. So such a request is handed to the same
dispatch, with the same normalised request class, answered with the same response class,
and given the headers flask-cors computes from the app's own CORS settings. The app is
checked first: one with any other hook or view (a moto that changed), a request for another
service or path, and one with an `Origin` header take the Flask app as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import moto.core.responses as core_responses
from botocore.exceptions import ClientError
from flask import Flask, Response
from flask_cors.core import ACL_ORIGIN, get_cors_headers, try_match_pattern
from moto.core.utils import method_names_from_class
from moto.dynamodb.responses import DynamoHandler
from moto.moto_api import recorder
from moto.moto_server.werkzeug_app import BackendRequest, DomainDispatcherApplication

_original_call: Any = None
_TARGET = "DynamoDB_20120810."


_cors: dict[int, list[Any] | None] = {}


def _cors_resources(app: Flask) -> list[Any] | None:
    """flask-cors's (pattern, options) list for `app`; None if the app is not as expected."""
    key = id(app)
    if key not in _cors:
        _cors[key] = _inspect(app)
    return _cors[key]


def _inspect(app: Flask) -> list[Any] | None:
    hooks: list[Any] = [fns for fns in app.before_request_funcs.values() if fns]
    hooks += [fns for fns in app.url_value_preprocessors.values() if fns]
    after: list[Any] = [fn for fns in app.after_request_funcs.values() for fn in fns]
    views = [getattr(f, "callback", None) for f in app.view_functions.values()]
    if hooks or views != [DynamoHandler.dispatch]:
        return None
    if not after:
        return []  # CORS disabled (MOTO_DISABLE_GLOBAL_CORS)
    if len(after) != 1 or after[0].__name__ != "cors_after_request":
        return None
    cells = dict(zip(after[0].__code__.co_freevars, after[0].__closure__ or (), strict=True))
    resources = cells.get("resources")
    return list(resources.cell_contents) if resources is not None else None


def _direct(
    environ: dict[str, Any], start_response: Callable[..., Any], cors: list[Any]
) -> Iterable[bytes]:
    """What the DynamoDB Flask app's one view does for this request, without the app."""
    request = BackendRequest(environ)
    recorder._record_request(request)
    try:
        result = DynamoHandler.dispatch(request, request.raw_url, dict(request.headers))
    except ClientError as exc:
        result = 400, {}, exc.response["Error"]["Message"]
    if len(result) == 3:
        status, headers, content = result
    else:
        status, headers, content = 200, {}, result
    response = Response(response=content, status=status, headers=headers)
    # flask-cors's after-request hook, with this request in place of Flask's proxy.
    if not response.headers.get(ACL_ORIGIN):
        for pattern, options in cors:
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
        environ.get("HTTP_X_AMZ_TARGET", "").startswith(_TARGET)
        and environ.get("PATH_INFO") == "/"
        and environ.get("REQUEST_METHOD") == "POST"
        and "HTTP_ORIGIN" not in environ
    ):
        app = self.get_application(environ)
        cors = _cors_resources(app) if getattr(app, "service", None) == "dynamodb" else None
        if cors is not None:
            return _direct(environ, start_response, cors)
    return _original_call(self, environ, start_response)  # type: ignore[no-any-return]


@functools.cache
def _method_names(clazz: type) -> list[str]:
    # A response class's methods never change while the server runs.
    return method_names_from_class(clazz)


def _method_names_cached(clazz: object) -> list[str]:
    return list(_method_names(clazz))


def install() -> None:
    global _original_call
    if _original_call is None:
        _original_call = DomainDispatcherApplication.__call__
    DomainDispatcherApplication.__call__ = _call  # type: ignore[method-assign]
    core_responses.method_names_from_class = _method_names_cached  # type: ignore[attr-defined]

"""Named patches that take moto's hot paths (SQS, DynamoDB, dispatch) off per-call costs.

Each patch replaces or wraps a few moto functions and must not change what any API call
returns. Every moto function a patch replaces, wraps or relies on is listed in `GUARDS`
with a digest of its source in the pinned moto: `apply()` refuses to patch a moto whose
code differs (and `tests/localaws/test_patch_guards.py` says which function moved), because
a patch written against other code could silently change behaviour.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flask_cors.core
import flask_cors.extension
import moto.cloudwatch.models as cloudwatch_models
import moto.core.responses as core_responses
import moto.core.utils as core_utils
import moto.dynamodb.comparisons as dynamodb_comparisons
import moto.dynamodb.models as dynamodb_models
import moto.dynamodb.parsing.ast_nodes as dynamodb_ast
import moto.dynamodb.parsing.executors as dynamodb_executors
import moto.dynamodb.parsing.expressions as dynamodb_expressions_parsing
import moto.dynamodb.parsing.validators as dynamodb_validators
import moto.dynamodb.responses as dynamodb_responses
import moto.logs.metric_filters as logs_metric_filters
import moto.logs.models as logs_models
import moto.logs.responses as logs_responses
import moto.logs.utils as logs_utils
import moto.sqs.models as sqs_models
import moto.sqs.utils as sqs_utils
from moto.dynamodb.models.dynamo_type import Item as DynamoItem
from moto.moto_api._internal.moto_random import MotoRandom
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from . import (
    direct_dispatch,
    dynamodb_expressions,
    dynamodb_patches,
    dynamodb_update,
    emf,
    longpoll,
    percentiles,
    sqs_patches,
    wsgi,
)
from .insights import moto_patch as insights_patch

SUPPORTED_MOTO = "5.2.5"

# The unpatched functions, captured before `apply()` replaces them.
_originals: dict[str, Any] = {}


@dataclass(frozen=True)
class Patch:
    name: str
    why: str
    guarded: tuple[str, ...]
    """moto functions (`Class.attr`, `module.function`) it replaces, wraps or relies on."""
    install: Callable[[], None]


class MotoDrift(RuntimeError):
    """The installed moto's patched code is not the code the patches were written for."""


# Where the names in `Patch.guarded` live.
_NAMESPACES: dict[str, object] = {
    "Queue": sqs_models.Queue,
    "Message": sqs_models.Message,
    "SQSBackend": sqs_models.SQSBackend,
    "sqs.utils": sqs_utils,
    "DomainDispatcherApplication": DomainDispatcherApplication,
    "DynamoDBBackend": dynamodb_models.DynamoDBBackend,
    "DynamoHandler": dynamodb_responses.DynamoHandler,
    "core.utils": core_utils,
    "convert_to_flask_response": core_utils.convert_to_flask_response,
    "flask_cors.core": flask_cors.core,
    "MotoRandom": MotoRandom,
    "flask_cors.extension": flask_cors.extension,
    "BaseResponse": core_responses.BaseResponse,
    "Item": DynamoItem,
    "UpdateExpressionParser": dynamodb_expressions_parsing.UpdateExpressionParser,  # type: ignore[attr-defined]
    "dynamodb.comparisons": dynamodb_comparisons,
    "ConditionExpressionParser": dynamodb_comparisons.ConditionExpressionParser,
    "AttributeValue": dynamodb_comparisons.AttributeValue,
    "FuncBetween": dynamodb_comparisons.FuncBetween,
    "Node": dynamodb_ast.Node,  # type: ignore[attr-defined]
    "UpdateExpressionValidator": dynamodb_validators.UpdateExpressionValidator,
    "ExpressionAttributeValueProcessor": dynamodb_validators.ExpressionAttributeValueProcessor,
    "ExpressionAttributeResolvingProcessor": (
        dynamodb_validators.ExpressionAttributeResolvingProcessor
    ),
    "ExpressionPathResolver": dynamodb_validators.ExpressionPathResolver,
    "UpdateExpressionFunctionEvaluator": dynamodb_validators.UpdateExpressionFunctionEvaluator,
    "TypeMismatchValidator": dynamodb_validators.TypeMismatchValidator,
    "EmptyStringKeyValueValidator": dynamodb_validators.EmptyStringKeyValueValidator,
    "UpdateExpressionExecutor": dynamodb_executors.UpdateExpressionExecutor,
    "SetExecutor": dynamodb_executors.SetExecutor,
    "AddExecutor": dynamodb_executors.AddExecutor,
    "RemoveExecutor": dynamodb_executors.RemoveExecutor,
    "LogsBackend": logs_models.LogsBackend,
    "Statistics": cloudwatch_models.Statistics,
    "MetricFilters": logs_metric_filters.MetricFilters,
    "LogsResponse": logs_responses.LogsResponse,
    "LogEvent": logs_models.LogEvent,
    "LogStream": logs_models.LogStream,
    "LogGroup": logs_models.LogGroup,
    "EventMessageFilter": logs_utils.EventMessageFilter,
}


def _original(qualname: str) -> Any:
    namespace, _, attr = qualname.rpartition(".")
    member = inspect.getattr_static(_NAMESPACES[namespace], attr)
    return member.fget if isinstance(member, property) else member


def moto_source(qualname: str) -> str:
    """The source of a guarded moto function as moto shipped it (read before patching)."""
    if qualname not in _originals:
        _originals[qualname] = _original(qualname)
    return inspect.getsource(_originals[qualname])


def digest(qualname: str) -> str:
    return hashlib.sha256(moto_source(qualname).encode()).hexdigest()[:16]


PATCHES = (
    Patch(
        name="sqs-retention-check-o1",
        why="every received message computed all queue attributes (3 full scans) "
        "to read MessageRetentionPeriod",
        guarded=("SQSBackend.is_message_valid_based_on_retention_period",),
        install=sqs_patches.install_retention,
    ),
    Patch(
        name="sqs-attribute-reads-o1",
        why="each send (and SNS fan-out) read ContentBasedDeduplication through "
        "Queue.attributes; GetQueueAttributes rebuilt it up to 3x per name",
        guarded=("Queue.attributes", "SQSBackend.get_queue_attributes"),
        install=sqs_patches.install_attributes,
    ),
    Patch(
        name="sqs-message-index",
        why="approximate counts, the ready-message walk on receive, delete and "
        "ChangeMessageVisibility all scanned every message in the queue",
        guarded=(
            "Queue.__init__",
            "Queue.messages",
            "Queue.add_message",
            "Queue.delete_message",
            "Queue.wait_for_messages",
            "Queue.approximate_number_of_messages",
            "Queue.approximate_number_of_messages_not_visible",
            "Queue.approximate_number_of_messages_delayed",
            "Message.change_visibility",
            "Message.delay",
            "Message.mark_received",
            "SQSBackend.receive_message",
            "SQSBackend.change_message_visibility",
            "SQSBackend.purge_queue",
        ),
        install=sqs_patches.install_index,
    ),
    Patch(
        name="sqs-receipt-handles-fast",
        why="generating a receipt handle drew 185 random letters one call at a time",
        guarded=("sqs.utils.generate_receipt_handle", "Message.mark_received"),
        install=sqs_patches.install_receipt_handles,
    ),
    Patch(
        name="moto-dispatch-cache",
        why="finding the backend for a request listed moto's ~200 package directories "
        "(os.listdir + isdir each) and tried every URL pattern, on every request",
        guarded=("DomainDispatcherApplication.get_backend_for_host",),
        install=wsgi.install_dispatch_cache,
    ),
    Patch(
        name="sqs-long-poll-parks",
        why="a long poll blocked a server thread, waking every second; the server now "
        "parks it on the event loop (see localaws.longpoll)",
        guarded=("SQSBackend.receive_message",),
        install=longpoll.install,
    ),
    Patch(
        name="dynamodb-transact-touched-items",
        why="TransactWriteItems deep-copied every table it named (for rollback) on every "
        "call: O(table size), and the worker marks orders paid 10 per transaction",
        guarded=("DynamoDBBackend.transact_write_items",),
        install=dynamodb_patches.install_transact_snapshot,
    ),
    Patch(
        name="dynamodb-expressions-parsed-once",
        why="every write parsed its update and condition expressions up to three times "
        "(handler checks, transaction condition, backend); the services send ~10 texts",
        guarded=(
            "UpdateExpressionParser.make",
            "dynamodb.comparisons.create_condition_expression_parser",
            "dynamodb.comparisons.get_filter_expression",
            "ConditionExpressionParser.parse",
            "ConditionExpressionParser._lookup_expression_attribute_value",
            "AttributeValue.__init__",
            "FuncBetween.__init__",
        ),
        install=dynamodb_expressions.install,
    ),
    Patch(
        name="dynamodb-update-plans",
        why="UpdateItem deep-copied its expression tree and ran ten rewriting passes over it "
        "per call (twice for a new item): ~60 % of a 10-item claim transaction",
        guarded=(
            "DynamoDBBackend.update_item",
            "UpdateExpressionValidator.get_ast_processors",
            "ExpressionAttributeValueProcessor.replace_expression_attribute_value_with_value",
            "ExpressionAttributeResolvingProcessor.pre_processing_of_child",
            "ExpressionAttributeResolvingProcessor.process_expression_path_node",
            "ExpressionPathResolver.resolve_expression_path_nodes",
            "UpdateExpressionFunctionEvaluator.process_function",
            "TypeMismatchValidator.check_for_type_mismatch",
            "EmptyStringKeyValueValidator.check_for_empty_string_key_value",
            "Node.normalize",
            "UpdateExpressionExecutor.execute",
            "SetExecutor.set",
            "AddExecutor.execute",
            "RemoveExecutor.execute",
        ),
        install=dynamodb_update.install,
    ),
    Patch(
        name="dynamodb-update-no-item-copy",
        why="UpdateItem's handler deep-copied the item only to serialise the copy, which "
        "`Item.to_json` already builds afresh",
        guarded=("DynamoHandler.update_item", "Item.to_json"),
        install=dynamodb_patches.install_handler_item_copy,
    ),
    Patch(
        name="moto-direct-dispatch",
        why="once DynamoDB's own work was cheap, Flask's request context, URL matching and "
        "hooks, and listing the handler's methods per call were most of a request's CPU "
        "(DynamoDB, SNS and SQS alike)",
        guarded=(
            "DomainDispatcherApplication.__call__",
            "DomainDispatcherApplication.get_application",
            "convert_to_flask_response.__call__",
            "core.utils.method_names_from_class",
            "BaseResponse.call_action",
            "BaseResponse.dispatch",
            "flask_cors.extension.make_after_request_function",
            "flask_cors.core.set_cors_headers",
            "flask_cors.core.get_cors_headers",
        ),
        install=direct_dispatch.install,
    ),
    Patch(
        name="moto-request-ids-fast",
        why="every response drew its 52-character request id one `random.choice` call at a "
        "time: ~7 % of a cheap request's CPU",
        guarded=("MotoRandom.get_random_string",),
        install=direct_dispatch.install_fast_random_strings,
    ),
    # The ones below add AWS behaviour moto lacks, rather than speed (emf.py, percentiles.py,
    # insights/).
    Patch(
        name="logs-emf-metrics",
        why="CloudWatch Logs extracts Embedded Metric Format lines into metrics as they are "
        "ingested, and counts metric filters' matches; moto stores the lines as text only, so "
        "the dashboard's metrics and the alarms' log metrics stayed empty",
        guarded=("LogsBackend.put_log_events", "MetricFilters.get_matching_filters"),
        install=emf.install,
    ),
    Patch(
        name="cloudwatch-percentiles",
        why="GetMetricData with a percentile Stat (p50, p99) answered HTTP 500 in moto",
        guarded=("Statistics.get_statistics_for_type",),
        install=percentiles.install,
    ),
    Patch(
        name="logs-insights",
        why="moto's StartQuery understands only fields, sort and limit, runs inside the "
        "request and has no StopQuery: localaws.insights answers the query language AWS "
        "documents from the events moto stores",
        guarded=(
            "LogsResponse.start_query",
            "LogsResponse.get_query_results",
            "LogsResponse.describe_queries",
            "LogsResponse.logs_backend",
            "LogEvent.__init__",
            "LogStream.__init__",
            "LogStream.put_log_events",
            "LogGroup.__init__",
        ),
        install=insights_patch.install,
    ),
    Patch(
        name="logs-filter-patterns",
        why="moto's FilterLogEvents knows only single terms and quoted phrases and lets any "
        "other pattern (a JSON one, `-term`, `?term`) match every event",
        guarded=(
            "EventMessageFilter.__init__",
            "EventMessageFilter.matches",
            "LogStream.filter_log_events",
        ),
        install=insights_patch.install_filter_patterns,
    ),
)

# Source digests of the guarded functions in moto SUPPORTED_MOTO (see `digest`).
GUARDS: dict[str, str] = {
    "SQSBackend.is_message_valid_based_on_retention_period": "cca23b94a5f3af9d",
    "Queue.attributes": "40cb990b121628d5",
    "SQSBackend.get_queue_attributes": "58417223da457b5a",
    "Queue.__init__": "0a4781ed5a21a050",
    "Queue.messages": "03a531dbcbcf9aee",
    "Queue.add_message": "f27c9231c1f20433",
    "Queue.delete_message": "fa6fd5b9bd2cafb4",
    "Queue.wait_for_messages": "58432562ccf2e13e",
    "Queue.approximate_number_of_messages": "d357a9506a56d2f8",
    "Queue.approximate_number_of_messages_not_visible": "5dbecc4dda174358",
    "Queue.approximate_number_of_messages_delayed": "c3c1dadb0c42ed5f",
    "Message.change_visibility": "fcde8986de1390dc",
    "Message.delay": "4af4d292f3a61eaa",
    "Message.mark_received": "98e7ec115c7fcb9f",
    "SQSBackend.receive_message": "065f3e5e7d214408",
    "SQSBackend.change_message_visibility": "f0e9df5f66627114",
    "SQSBackend.purge_queue": "443ea1ae7b15230c",
    "sqs.utils.generate_receipt_handle": "10853f98152c8dab",
    "DomainDispatcherApplication.get_backend_for_host": "1f41972c1e4e660f",
    "DynamoDBBackend.transact_write_items": "81db2cb7d94e39c9",
    "UpdateExpressionParser.make": "2c00ed96d6e191f2",
    "dynamodb.comparisons.create_condition_expression_parser": "a667986752c086a5",
    "dynamodb.comparisons.get_filter_expression": "0bb9e2d345c7f17f",
    "ConditionExpressionParser.parse": "5c9b63c5f49ed5d5",
    "ConditionExpressionParser._lookup_expression_attribute_value": "a7ac783bd94ea73b",
    "AttributeValue.__init__": "e62e733b27c0da31",
    "FuncBetween.__init__": "e69b0334d29bbe79",
    "DynamoDBBackend.update_item": "218984588dd689a5",
    "UpdateExpressionValidator.get_ast_processors": "918400bbecd67e83",
    "ExpressionAttributeValueProcessor.replace_expression_attribute_value_with_value": "a6fefee1548af8ab",  # noqa: E501
    "ExpressionAttributeResolvingProcessor.pre_processing_of_child": "09b25132a241ca9d",
    "ExpressionAttributeResolvingProcessor.process_expression_path_node": "f39fb15e1cfb66d1",
    "ExpressionPathResolver.resolve_expression_path_nodes": "d957a599a08ad835",
    "UpdateExpressionFunctionEvaluator.process_function": "536966a18d2a7414",
    "TypeMismatchValidator.check_for_type_mismatch": "1f26120bea5917fc",
    "EmptyStringKeyValueValidator.check_for_empty_string_key_value": "bea7647628829057",
    "Node.normalize": "c24d303e8eb1e237",
    "UpdateExpressionExecutor.execute": "f51a6ec13dc10316",
    "SetExecutor.set": "a8b5f69f92794b46",
    "AddExecutor.execute": "dadbc08d83f73bdb",
    "RemoveExecutor.execute": "2f81b6fc36ad8933",
    "DynamoHandler.update_item": "638893af1afd43d2",
    "Item.to_json": "cf0a9332389d6fd9",
    "DomainDispatcherApplication.__call__": "7b12179deceda48d",
    "DomainDispatcherApplication.get_application": "0ff6939685bde917",
    "convert_to_flask_response.__call__": "2c82766d05909ebb",
    "core.utils.method_names_from_class": "9dbac89d082b655f",
    "BaseResponse.call_action": "26076963fd17fd1a",
    "BaseResponse.dispatch": "f384bce8f69d7e94",
    "flask_cors.extension.make_after_request_function": "3e1f12121eb348b5",
    "flask_cors.core.set_cors_headers": "de266239ae2bb639",
    "flask_cors.core.get_cors_headers": "80f37277960ef3d7",
    "MotoRandom.get_random_string": "942eb93ebea1f80a",
    "LogsBackend.put_log_events": "9413dbc08c425c24",
    "Statistics.get_statistics_for_type": "d10becd72eee65f1",
    "MetricFilters.get_matching_filters": "cb6334208e10b010",
    "LogsResponse.start_query": "21374a37260bd26e",
    "LogsResponse.get_query_results": "3532339a004c025b",
    "LogsResponse.describe_queries": "1cf43b44976fc8aa",
    "LogsResponse.logs_backend": "fc60ef01a53a09f8",
    "LogEvent.__init__": "bb6367725c297f27",
    "LogStream.__init__": "3facaa5f12d0cef1",
    "LogStream.put_log_events": "b07b0d5ae328f7dd",
    "LogGroup.__init__": "fda907e3f5eb6ab6",
    "EventMessageFilter.__init__": "0e1ed97a67756862",
    "EventMessageFilter.matches": "91f6bb55eb3d0ceb",
    "LogStream.filter_log_events": "26285fdf86c34c85",
}

_applied = False


def drift() -> dict[str, tuple[str, str]]:
    """Guarded functions whose source differs from the pinned moto: {name: (want, got)}."""
    names = [name for patch in PATCHES for name in patch.guarded]
    got = {name: digest(name) for name in names}
    return {
        name: (GUARDS.get(name, "?"), got[name]) for name in names if GUARDS.get(name) != got[name]
    }


def apply() -> None:
    """Install every patch once, after checking moto is the code they were written for."""
    global _applied
    if _applied:
        return
    moved = drift()
    if moved:
        raise MotoDrift(
            f"localaws patches target moto {SUPPORTED_MOTO}; changed since: {sorted(moved)}. "
            "Re-read each function, port the patch, then update GUARDS."
        )
    for patch in PATCHES:
        for name in patch.guarded:
            moto_source(name)  # remember the original before it is replaced
        patch.install()
    _applied = True

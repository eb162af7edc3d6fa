"""API Gateway HTTP API 2.0 events ↔ the protocols' :class:`Request`/:class:`Reply`.

Both the fast path and the resolver build a request with :func:`request` and write the reply
with :func:`lambda_response`, so they answer identically: status, ``{"error": ...}`` body,
``Content-Type`` and the protocol's headers, base64 for binary bodies
(``tests/functional/test_fast_path.py`` sends the recorded events through both).
"""

from __future__ import annotations

import base64
from typing import Any

from layers.dataplane import Hooks
from layers.errors import ModelfnError
from layers.limits import check_invocation_event
from layers.messages import JSON, Reply, Request
from layers.v2_wire import dump_json


class _EventSize:
    """Lambda's 6 MB applies to the whole event, base64 body included (:mod:`layers.limits`)."""

    __slots__ = ("event", "limit")

    def __init__(self, event: dict[str, Any], limit: int) -> None:
        self.event, self.limit = event, limit

    def __call__(self, fix: str) -> None:
        check_invocation_event(self.event, self.limit, fix=fix)


def request(event: dict[str, Any], method: str, path: str, params: dict[str, str], limit: int,
            context: Any) -> Request:
    """The request an HTTP API 2.0 ``event`` carries, routed with path ``params``."""
    headers = event.get("headers") or {}
    return Request(
        method=method, path=path, params=params,
        headers={k.lower(): v for k, v in headers.items()},
        raw_body=event.get("body") or "", is_base64=bool(event.get("isBase64Encoded")),
        query=event.get("queryStringParameters") or {},
        limit=limit, check_size=_EventSize(event, limit), context=context,
    )


def lambda_response(reply: Reply) -> dict[str, Any]:
    """A :class:`Reply` as Powertools' resolver writes an HTTP API 2.0 response."""
    headers = dict(reply.headers) if reply.headers else {}
    headers["Content-Type"] = reply.content_type
    body = reply.body
    if reply.stream is not None:  # Lambda's buffered response: the chunks joined
        parts = list(reply.stream)
        body = b"".join(p.encode() if isinstance(p, str) else p for p in parts)
    if isinstance(body, bytes):
        text, b64 = base64.b64encode(body).decode(), True
    else:
        text, b64 = body, False
    return {"statusCode": reply.status, "body": text, "isBase64Encoded": b64, "headers": headers, "cookies": []}


def error_reply(exc: ModelfnError, hooks: Hooks) -> Reply:
    """A client error → its status and ``{"error": message}`` (+ ``Allow`` for a 405)."""
    hooks.on_client_error(exc)
    allow = getattr(exc, "allow", "")
    return Reply(exc.status, JSON, dump_json(exc.body()), {"Allow": allow} if allow else None)


def internal_error_reply(exc: Exception, hooks: Hooks, context: Any) -> Reply:
    """A bug, never a client's fault: the trace goes to the log, the client gets the request id."""
    request_id = getattr(context, "aws_request_id", None) or "unknown"
    hooks.on_internal_error(exc, request_id)
    return Reply(500, JSON, dump_json({"error": f"internal error; request id {request_id}"}))


def event_method_path(event: Any) -> tuple[str, str]:
    """(upper-case method, stage-stripped path) as Powertools' ``APIGatewayProxyEventV2``;
    raises KeyError/TypeError/AttributeError on what is not an HTTP API 2.0 event."""
    ctx = event["requestContext"]
    method = ctx["http"]["method"].upper()
    path, stage = event["rawPath"], ctx["stage"]
    if stage != "$default":
        path = path[len(stage) + 1:]
    return method, path

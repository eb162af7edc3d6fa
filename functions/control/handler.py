"""Lambda entry point for one model's control routes on AWS (``functions.control.handler.handler``).

The HTTP API routes ``/v2/models/<name>/train…``, ``…/versions…`` and ``…/rollback``
(``Scope.CONTROL`` rows of the route table) here, always with IAM authorization: training and
moving the live version are never public, whatever the model's inference ``auth``. The routes' operations are
:mod:`layers.protocols.control`'s, over :class:`~functions.control.stepfunctions.StepFunctionsControl`.
Stdlib + boto3 only (a zip function): the event is read here, not with the model functions'
Powertools binding.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from layers.errors import MethodNotAllowed
from layers.messages import Request
from layers.protocols.control import dispatch, json_reply, match

LOG = logging.getLogger("modelfn.control")
_backend = None


def backend():
    global _backend
    if _backend is None:
        from functions.control.stepfunctions import StepFunctionsControl

        _backend = StepFunctionsControl.from_env()
    return _backend


def _response(reply) -> dict[str, Any]:
    body = reply.body.decode() if isinstance(reply.body, bytes) else reply.body
    return {"statusCode": reply.status, "headers": {"Content-Type": reply.content_type, **(reply.headers or {})},
            "body": body, "isBase64Encoded": False}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event → HTTP response."""
    http = event["requestContext"]["http"]
    method, path = http["method"].upper(), event.get("rawPath") or http["path"]
    try:
        hit = match(method, path)
    except MethodNotAllowed as exc:
        return _response(json_reply(405, exc.body(), {"Allow": exc.allow}))
    if hit is None:
        return _response(json_reply(404, {"error": f"no control route {method} {path}"}))
    route, params = hit
    body = event.get("body") or ""
    if event.get("isBase64Encoded") and body:
        body = base64.b64decode(body)
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    request = Request(method=method, path=path, params=params, headers=headers, raw_body=body,
                      query=event.get("queryStringParameters") or {}, context=context)
    return _response(dispatch(backend(), request, route, LOG))

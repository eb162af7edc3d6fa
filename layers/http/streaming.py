"""Lambda response streaming: a :class:`~layers.messages.Reply` written chunk by chunk.

Lambda streams a response only when the runtime posts it in streaming mode (the Runtime API's
``Lambda-Runtime-Function-Response-Mode: streaming`` with a chunked body); the managed Python
runtime (``awslambdaric``) never does, so generative models get a second function on the same
image whose entry point is our own runtime loop (``functions/stream``), behind a function URL
in ``RESPONSE_STREAM`` invoke mode (HTTP APIs cannot stream; see the README's "Streaming").

A function URL reads the streamed body as an HTTP integration response: the content type
:data:`CONTENT_TYPE`, then a JSON prelude (``statusCode``, ``headers``, ``cookies``), eight NUL
bytes, then the body as it is written. :func:`response_parts` yields exactly that for any
reply: a streamed one (server-sent events) chunk by chunk, any other in one piece, so the
streaming function answers every route (errors in their protocol's shape included).

Function URL events are HTTP API payload 2.0 events, so :func:`request_from_event` is the
HTTP binding's own :func:`layers.http.apigw.request`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from layers.http.apigw import event_method_path, request
from layers.messages import Reply, Request

#: the Runtime API content type of a streamed HTTP integration response (prelude + body)
CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
#: what separates the JSON prelude from the body
DELIMITER = b"\0" * 8
#: Runtime API request headers that switch an invocation response to streaming
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"
STREAMING = "streaming"
#: trailers that report a failure after the body started (the status is already sent)
ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"


def prelude(reply: Reply) -> bytes:
    """The HTTP integration response's head: status and headers as JSON, then the delimiter."""
    headers = dict(reply.headers) if reply.headers else {}
    headers["Content-Type"] = reply.content_type
    if reply.stream is not None:
        # proxies between the URL and the client must not hold events back
        headers.setdefault("Cache-Control", "no-cache")
        headers.setdefault("X-Accel-Buffering", "no")
    doc = {"statusCode": reply.status, "headers": headers, "cookies": []}
    return json.dumps(doc, separators=(",", ":")).encode() + DELIMITER


def response_parts(reply: Reply) -> Iterator[bytes]:
    """The prelude, then the body: each chunk of a streamed reply as it is produced (empty
    chunks skipped: a zero-length chunk would end the HTTP chunked body)."""
    yield prelude(reply)
    if reply.stream is None:
        body = reply.body
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        if data:
            yield data
        return
    for part in reply.stream:
        data = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        if data:
            yield data


def request_from_event(event: dict[str, Any], limit: int, context: Any) -> Request:
    """A function URL (payload 2.0) event → the request the router matches."""
    method, path = event_method_path(event)
    return request(event, method, path, {}, limit, context)

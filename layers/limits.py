"""Payload limits measured where AWS enforces them, shared by every HTTP entry point.

Lambda's 6 MB synchronous limit applies to the whole invocation event, not to the decoded
request body: API Gateway sends binary bodies base64-encoded (4/3 larger) inside a JSON event
that also carries the headers and request context. :func:`check_invocation_event` measures
the event the way Lambda counts it (its JSON), so the API function and the SageMaker proxy
answer ``413`` with the real size and limit for the same requests everywhere: on the local
stack (whose gateway forwards up to HTTP API's 10 MB) and in the tests, which build events
the size API Gateway sends. On AWS an event over the limit never reaches the function:
Lambda refuses the invoke and HTTP API answers with its own error, so clients should keep
requests under the limit this check reports (binary bodies: about 4.5 MB of tensor bytes).
"""

from __future__ import annotations

import json
import os
from typing import Any

from layers import names
from layers.errors import PayloadTooLarge

try:  # every model image has orjson; the SageMaker proxy's zip runs on the stdlib alone
    from orjson import dumps as _dumps
except ImportError:  # pragma: no cover - exercised by the proxy's zip on Lambda
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

#: Headers + request context of an HTTP API event stay far below this (HTTP API caps headers
#: at 10 KB); a body this much under the limit cannot push the event over it.
_EVENT_OVERHEAD_BOUND = 64 * 1024
#: JSON escaping makes a text body at most this many times larger (``\\u0000``).
_WORST_ESCAPE = 6


def max_request_bytes() -> int:
    """The invocation limit (``MODELFN_MAX_REQUEST_BYTES``, default Lambda's 6 MB)."""
    raw = os.environ.get(names.ENV_MAX_REQUEST_BYTES, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else names.LAMBDA_SYNC_PAYLOAD_BYTES


def invocation_event_bytes(event: dict[str, Any]) -> int:
    """The size of ``event`` as Lambda counts it: its JSON, body as sent (base64 included)."""
    body = event.get("body")
    rest = {k: v for k, v in event.items() if k != "body"}
    size = len(_dumps(rest))
    if isinstance(body, str):  # UTF-8, escaping only what JSON requires, as Lambda
        size += len(',"body":') + (len(body) + 2 if event.get("isBase64Encoded") and body.isascii()
                                   else len(_dumps(body)))
    return size


def check_invocation_event(event: dict[str, Any], limit: int | None = None, *, fix: str) -> None:
    """Raise :class:`PayloadTooLarge` naming the event's size and ``limit`` if it is over.

    :param fix: what the client can do instead (shown after the sizes).
    """
    limit = max_request_bytes() if limit is None else limit
    body = event.get("body")
    if not isinstance(body, str) or len(body) * _WORST_ESCAPE + _EVENT_OVERHEAD_BOUND <= limit:
        return  # cannot be over: skip serializing the event
    size = invocation_event_bytes(event)
    if size <= limit:
        return
    how = (f"{len(body):,} bytes of it the body, base64-encoded as API Gateway sends binary bodies"
           if event.get("isBase64Encoded") else f"{len(body):,} characters of it the body")
    raise PayloadTooLarge(
        f"the request is {size:,} bytes as Lambda receives it ({how}); the limit is {limit:,} bytes "
        f"(Lambda's synchronous invocation payload). {fix}"
    )

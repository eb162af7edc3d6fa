"""API Gateway HTTP API payload format 2.0 on the local stack: HTTP request → event (the
runtime's one builder, :mod:`layers.http.events`), function result → response, read the way
API Gateway reads it, including the "inferred" format for results without ``statusCode``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from layers.http.events import ACCOUNT_ID, API_ID, HttpRequest, is_text, request_id, to_event

__all__ = ["ACCOUNT_ID", "API_ID", "HttpRequest", "HttpResponse", "from_result", "gateway_error",
           "is_text", "to_event"]


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: a streamed body (server-sent events), written chunk by chunk instead of ``body``
    #: (:mod:`infra.local.streaming`)
    chunks: Iterable[bytes] | None = None

    @classmethod
    def json(cls, status: int, doc: object, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
        return cls(status, json.dumps(doc).encode(), [("content-type", "application/json"), *(headers or [])])


def gateway_error(status: int, message: str) -> HttpResponse:
    """API Gateway's own error responses: ``{"message": "..."}`` with its apigw-requestid."""
    return HttpResponse.json(status, {"message": message}, [("apigw-requestid", request_id())])


def from_result(payload: bytes) -> HttpResponse:
    """Read a function's result as API Gateway does (format 2.0); malformed → 500."""
    try:
        result = json.loads(payload)
    except ValueError:
        return gateway_error(500, "Internal Server Error")
    if not isinstance(result, dict) or "statusCode" not in result:
        # "inferred" response: valid JSON without statusCode is the body of a 200
        return HttpResponse(200, payload, [("content-type", "application/json")])
    try:
        status = int(result["statusCode"])
        headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
        for k, values in (result.get("multiValueHeaders") or {}).items():
            headers += [(str(k), str(v)) for v in values]
        headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
        body = result.get("body") or ""
        if not isinstance(body, str):
            raise TypeError("body must be a string")
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
    except (TypeError, ValueError, AttributeError):
        return gateway_error(500, "Internal Server Error")
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("content-type", "application/json"))
    return HttpResponse(status, raw, headers)

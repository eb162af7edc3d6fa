"""The inference route without the resolver: ``POST /v2/models/<name>[/versions/<v>]/infer``.

Inference is the one route where microseconds count, so :func:`match_infer` recognises it
from the raw HTTP API 2.0 event (method, stage-stripped path, the same path-segment
characters Powertools' resolver accepts) and :func:`respond` serves it straight through the
protocol; every other request, and any event this cannot read plainly, goes to the resolver
in :mod:`functions.api.routes`, whose inference routes call the same :func:`serve_infer`.
Both paths build the same Lambda response: status, ``{"error": ...}`` body, ``Content-Type``
and ``Inference-Header-Content-Length`` headers, base64 for binary bodies
(``tests/functional/test_direct_path.py`` sends the recorded events through both).

Nothing here imports the Powertools event handler (~28 ms at import, see
``bench/bench_coldstart.py``), so a cold start that begins with an inference never loads it.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from typing import Any

from layers.errors import BadRequest, ModelfnError, NotFound, PayloadTooLarge, UnsupportedMediaType
from layers.limits import check_invocation_event, max_request_bytes  # noqa: F401 (re-exported)
from layers.model import Model
from layers.protocol import HEADER_LENGTH, InferResult, dump_json, infer, join_body, split_body

JSON = "application/json"
BINARY = "application/octet-stream"
_ACCEPTED_TYPES = ("application/json", "application/octet-stream", "application/vnd.")

# A path segment as Powertools' resolver matches ``<name>`` (its _SAFE_URI, _UNSAFE_URI and \w),
# so a path this takes is a path the resolver would route to the same inference route.
_SEGMENT = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
_INFER_PATH = re.compile(rf"^/v2/models/(?P<name>{_SEGMENT})(?:/versions/(?P<version>{_SEGMENT}))?/infer$")


class Hooks:
    """What the entry point observes (logs, metrics); the defaults do nothing."""

    def on_infer(self, result: InferResult, payload_bytes: int) -> None: ...

    def on_client_error(self, exc: ModelfnError) -> None: ...

    def on_internal_error(self, exc: Exception, request_id: str) -> None: ...


@dataclass(frozen=True)
class Reply:
    """An HTTP answer before it becomes a Lambda response (or a Powertools ``Response``)."""

    status: int
    content_type: str
    body: str | bytes
    headers: dict[str, str] | None = None


def match_infer(event: Any) -> tuple[str, str | None] | None:
    """``(name, version or None)`` when ``event`` is a plain inference request, else None."""
    try:
        ctx = event["requestContext"]
        if ctx["http"]["method"].upper() != "POST":
            return None
        path, stage = event["rawPath"], ctx["stage"]
        if stage != "$default":  # as Powertools' APIGatewayProxyEventV2.path
            path = path[len(stage) + 1:]
        m = _INFER_PATH.match(path)
    except (KeyError, TypeError, AttributeError):
        return None  # the resolver reads (and answers) events this cannot
    return (m["name"], m["version"]) if m else None


def check_model(model: Model, name: str, version: str | None = None) -> None:
    if name != model.name:
        raise NotFound(
            f"model {name!r} is not served here; this endpoint serves {model.name!r} "
            f"(GET /v2/models/{model.name})."
        )
    if version is not None and version != model.version:
        raise NotFound(
            f"model {model.name!r} version {version!r} is not deployed; the deployed version is "
            f"{model.version!r} (or leave /versions/... out of the path)."
        )


def serve_infer(model: Model, hooks: Hooks, event: dict[str, Any], name: str, version: str | None,
                limit: int) -> Reply:
    """One inference request (raw HTTP API 2.0 event) → :class:`Reply`; client errors raise."""
    check_model(model, name, version)
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    content_type = (headers.get("content-type") or "").strip().lower()
    if content_type and not content_type.startswith(_ACCEPTED_TYPES):
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; send application/json (curl: "
            "-H 'Content-Type: application/json'), or application/octet-stream with "
            "Inference-Header-Content-Length for the binary tensor extension."
        )
    # Lambda's 6 MB applies to the whole event, base64 body included (layers/limits.py)
    check_invocation_event(event, limit, fix=(
        "Send fewer rows per request, use the binary tensor extension, or drop a file into the "
        "batch bucket."))
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body: bytes | str = _b64decode(raw)
        size = len(body)
    else:  # text body: parsed as str, no encode/decode round trip
        body, size = raw, len(raw) if raw.isascii() else len(raw.encode("utf-8"))
    request, binary = split_body(body, headers.get(HEADER_LENGTH.lower()))
    result = infer(model, request, binary)
    hooks.on_infer(result, size)
    if not result.binary:
        text = dump_json(result.response)
        _check_response_size(len(text) if text.isascii() else len(text.encode()), limit)
        return Reply(200, JSON, text)
    payload, header_length = join_body(result)
    _check_response_size(4 * math.ceil(len(payload) / 3), limit)  # base64 in the Lambda response
    return Reply(200, BINARY, payload, {HEADER_LENGTH: str(header_length)})


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


def respond(model: Model, hooks: Hooks, event: dict[str, Any], context: Any,
            route: tuple[str, str | None], limit: int) -> dict[str, Any]:
    """The direct path: an inference event → the Lambda response the resolver would build."""
    try:
        reply = serve_infer(model, hooks, event, route[0], route[1], limit)
    except ModelfnError as exc:
        reply = error_reply(exc, hooks)
    except Exception as exc:
        reply = internal_error_reply(exc, hooks, context)
    return lambda_response(reply)


def lambda_response(reply: Reply) -> dict[str, Any]:
    """A :class:`Reply` as Powertools' resolver writes an HTTP API 2.0 response."""
    headers = dict(reply.headers) if reply.headers else {}
    headers["Content-Type"] = reply.content_type
    if isinstance(reply.body, bytes):
        body, b64 = base64.b64encode(reply.body).decode(), True
    else:
        body, b64 = reply.body, False
    return {"statusCode": reply.status, "body": body, "isBase64Encoded": b64, "headers": headers, "cookies": []}


def _check_response_size(size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(
            f"the response would be {size:,} bytes; the limit is {limit:,} bytes. Send fewer "
            "rows per request, request fewer outputs, or use batch inference."
        )


def _b64decode(raw: str) -> bytes:
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise BadRequest(
            "the body is marked isBase64Encoded but is not valid base64; send the request bytes "
            "base64-encoded, or as text with isBase64Encoded false."
        ) from None

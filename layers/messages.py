"""An HTTP request and reply as the protocols see them, whatever transport carried them.

Every transport (the Lambda HTTP binding, the SageMaker server, the local stack) turns what
it received into a :class:`Request` and writes the :class:`Reply` back in its own format; the
protocols' operations (:mod:`layers.protocols`) only ever see these two.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from layers.errors import BadRequest, UnsupportedMediaType
from layers.jsonfast import loads

JSON = "application/json"
BINARY = "application/octet-stream"


def _no_check(fix: str) -> None:
    return None


@dataclass
class Request:
    """One HTTP request routed to an operation.

    ``raw_body`` is the body as the transport holds it: text, or base64 text with
    ``is_base64`` (API Gateway's encoding of binary bodies), or bytes. :meth:`body` decodes it
    on first use, so an operation checks what it must (model, content type, size) first.
    """

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)  #: path parameters of the route
    headers: dict[str, str] = field(default_factory=dict)  #: lower-cased names
    raw_body: str | bytes = ""
    is_base64: bool = False
    query: dict[str, str] = field(default_factory=dict)
    #: the largest request/response the transport carries, in bytes
    limit: int = 0
    #: the transport's own request-size check (Lambda counts the whole event); raises
    #: :class:`~layers.errors.PayloadTooLarge` with ``fix`` (what the client can do instead)
    check_size: Callable[[str], None] = _no_check
    #: the transport's invocation context (a Lambda context: ``aws_request_id``)
    context: Any = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def body(self) -> tuple[str | bytes, int]:
        """(body, its size in bytes): text stays text (no encode/decode round trip)."""
        raw = self.raw_body
        if isinstance(raw, bytes):
            return raw, len(raw)
        if self.is_base64:
            data = _b64decode(raw)
            return data, len(data)
        return raw, len(raw) if raw.isascii() else len(raw.encode("utf-8"))

    @property
    def request_id(self) -> str:
        return getattr(self.context, "aws_request_id", None) or "unknown"


def json_body(req: Request, *, size_fix: str, not_json: Callable[[Exception], str]) -> Any:
    """The body of a JSON-only route, after the checks every such route makes in this order:
    the content type (415), the transport's size limit (413, ``size_fix`` says what to send
    instead), then JSON (400 with ``not_json(exc)``, the protocol's own wording)."""
    content_type = (req.headers.get("content-type") or JSON).lower()
    if not content_type.startswith(JSON):
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not supported; send application/json.")
    req.check_size(size_fix)
    body, _ = req.body()
    try:
        return loads(body)
    except (ValueError, TypeError) as exc:
        raise BadRequest(not_json(exc)) from None


@dataclass(frozen=True)
class Reply:
    """An HTTP answer before a transport writes it.

    ``body`` is text or bytes. A streamed answer (server-sent events, for generative models)
    sets ``stream`` to an iterable of chunks, written in order by transports that can stream
    and joined by those that cannot; ``body`` is then empty.
    """

    status: int
    content_type: str
    body: str | bytes
    headers: dict[str, str] | None = None
    stream: Iterable[str | bytes] | None = None


def json_reply(status: int, doc: Any, headers: dict[str, str] | None = None) -> Reply:
    from layers.jsonfast import dumps  # orjson: not needed by the stdlib-only control function

    return Reply(status, JSON, dumps(doc), headers)


def _b64decode(raw: str) -> bytes:
    """Strict base64 (alphabet, padding), as ``b64decode(validate=True)`` but without its regex
    pass over the whole body first (API Gateway's binary bodies and SAM's events are base64)."""
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except ValueError:
        raise BadRequest(
            "the body is marked isBase64Encoded but is not valid base64; send the request bytes "
            "base64-encoded, or as text with isBase64Encoded false."
        ) from None

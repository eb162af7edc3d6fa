"""A generative model's streamed answers on the local stack, written chunk by chunk.

On AWS a streamed completion leaves the function as it is generated (a Lambda function URL in
``RESPONSE_STREAM`` mode, or SageMaker's ``InvokeEndpointWithResponseStream``); API Gateway's
HTTP API cannot stream and joins the events into one response. Locally the gateway stands in
for the streaming endpoint on the same base URL: a request that asks to stream (``POST …/
generate_stream``, or an OpenAI completions/chat request with ``"stream": true``) is answered by
:class:`StreamingIntegration` in the gateway's own process — the runtime's HTTP binding over the
same model directory, its :attr:`~layers.messages.Reply.stream` written as HTTP/1.1 chunked
transfer, one event as soon as the model has it. Every other request goes to the model's
function as before (API Gateway's behaviour, limits and timeouts).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infra.local.http_api_events import HttpRequest, HttpResponse

log = logging.getLogger("modelfn.local.streaming")

#: the operations whose replies may stream: V2's generate_stream always, OpenAI's when asked
STREAM_ALWAYS = frozenset({"generate_stream"})
STREAM_WHEN_ASKED = frozenset({"completions", "chat_completions"})


class StreamingIntegration:
    """The streaming endpoint of one generative model, loaded on its first streamed request."""

    def __init__(self, name: str, model_dir: Path) -> None:
        self.name, self.model_dir = name, Path(model_dir)
        self._binding: Any = None
        self._lock = threading.Lock()

    def wants(self, req: HttpRequest) -> bool:
        """Whether ``req`` asks for a streamed answer (its route's operation, and for OpenAI the
        body's ``"stream": true``)."""
        from layers.protocols import route_table

        for route in route_table().served():
            if route.method == req.method and route.pattern().match(req.path):
                if route.operation in STREAM_ALWAYS:
                    return True
                if route.operation in STREAM_WHEN_ASKED:
                    try:
                        return json.loads(req.body).get("stream") is True
                    except (ValueError, AttributeError, UnicodeDecodeError):
                        return False
                return False
        return False

    def binding(self):
        with self._lock:
            if self._binding is None:
                from layers.dataplane import DataPlane
                from layers.http.binding import HttpBinding
                from layers.model import load_model

                self._binding = HttpBinding(DataPlane(load_model(self.model_dir)))
            return self._binding

    def __call__(self, req: HttpRequest) -> HttpResponse:
        from urllib.parse import parse_qsl

        from layers.manifest import ManifestError
        from layers.messages import Request

        try:
            binding = self.binding()
        except ManifestError as exc:
            return HttpResponse.json(503, {"error": f"model {self.name!r} cannot stream: {exc}"})
        request = Request(method=req.method, path=req.path, headers={k.lower(): v for k, v in req.headers},
                          raw_body=req.body, query=dict(parse_qsl(req.query)), limit=binding.limit)
        reply = binding.handle(request)
        headers = [("content-type", reply.content_type), *((reply.headers or {}).items())]
        if reply.stream is None:
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            return HttpResponse(reply.status, body, headers)
        return HttpResponse(reply.status, b"", headers, chunks=_encoded(reply.stream))


def _encoded(stream) -> Iterator[bytes]:
    for part in stream:
        yield part.encode() if isinstance(part, str) else part

"""The SageMaker container transport: ``GET /ping`` and ``POST /invocations`` over the HTTP
binding, with no API Gateway event in between.

``POST /invocations`` is V2 inference for the model. With the custom attribute
``route=<METHOD> <PATH>`` (:mod:`layers.sagemaker_wire`; optionally the binary extension's
header length, since InvokeEndpoint forwards no other headers) it serves any route of the
table instead, through :meth:`HttpBinding.handle` (the table's router, the protocols'
operations, the same errors as the Lambda resolver); a binary response carries the header
length back as the response's custom attribute. The SageMaker proxy Lambda and the local
gateway use this so every route works unchanged for sagemaker-target models. Other paths
(``/v2/...``, ``/docs``) are served directly, which helps when running the container locally.

A reply that streams (a generative model's ``generate_stream``, or OpenAI's ``"stream": true``)
is written as HTTP/1.1 chunked transfer, one server-sent event per chunk as the model produces
it: SageMaker's ``InvokeEndpointWithResponseStream`` relays each chunk as a PayloadPart;
``InvokeEndpoint`` (and so the proxy function behind the HTTP API) gets the events joined.

``route=POST /batch`` is the asynchronous batch path of a heavy model (the async-batch glue):
the body is an S3 event notification for one object under ``<model>/in/``, run by the same
batch job as the Lambda batch function (:mod:`layers.batch`), answering a small JSON summary
that SageMaker stores as the inference's output.

Requests are handled one at a time (a lock): one inference already uses every core through
onnxruntime's intra-op threads, and Powertools' Metrics/Logger keep per-invocation state.
``/ping`` does not take the lock, so health checks answer during a long inference.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from layers import names, sagemaker_wire
from layers.http.binding import HttpBinding
from layers.http.events import HttpRequest, to_event
from layers.limits import check_invocation_event
from layers.messages import Reply, Request
from layers.observability import Observability


@dataclass
class InvocationContext:
    """What Powertools reads from a Lambda context, for one SageMaker invocation."""

    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "sagemaker"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 0
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return names.SAGEMAKER_TIMEOUT_S * 1000


@dataclass
class BatchInvocationContext(InvocationContext):
    """An asynchronous invocation: the batch job's deadline counts down from its start."""

    started: float = field(default_factory=time.monotonic)
    budget_s: int = names.SAGEMAKER_ASYNC_TIMEOUT_S

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.budget_s - time.monotonic()) * 1000))


class _LambdaEventSize:
    """The request measured as Lambda would receive it behind the proxy (the one event
    builder's event), so the container answers the 413s the Lambda function answers."""

    __slots__ = ("limit", "req")

    def __init__(self, req: HttpRequest, limit: int) -> None:
        self.req, self.limit = req, limit

    def __call__(self, fix: str) -> None:
        if len(self.req.body) * 2 + (64 << 10) <= self.limit:
            return  # base64 (4/3) of the body plus headers cannot reach the limit
        check_invocation_event(to_event(self.req, route_key="$default", path_parameters=None),
                               self.limit, fix=fix)


def make_server(binding: HttpBinding, obs: Observability, *, host: str = "0.0.0.0", port: int = 8080,
                batch_service: Callable[[], Any]) -> ThreadingHTTPServer:
    """The container's HTTP server over ``binding``; ``batch_service()`` builds the batch job
    on the first batch invocation. Call ``serve_forever()``."""
    logger = obs.logger
    lock = threading.Lock()
    handle = obs.entry_point(binding.handle)  # Logger context, EMF flush, ColdStart
    model_name = binding.plane.model.name
    limit = binding.limit
    raw = os.environ.get(names.ENV_MAX_REQUEST_BYTES, "").strip()
    body_limit = int(raw) if raw.isdigit() and int(raw) > 0 else names.SAGEMAKER_PAYLOAD_BYTES

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "modelfn"

        def do_GET(self) -> None:
            if self.path == "/ping":
                self._send(200, {"Content-Type": "application/json"}, b'{"status":"ok"}')
            else:
                self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        do_PUT = do_PATCH = do_DELETE = do_POST

        def _dispatch(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > body_limit:
                self.close_connection = True
                remaining = length  # drain it, so the client reads our answer, not a reset
                while remaining > 0:
                    remaining -= len(self.rfile.read(min(remaining, 1 << 16)) or b"\0" * remaining)
                body = json.dumps({"error": (
                    f"the request body is {length:,} bytes; the limit is {body_limit:,} bytes (SageMaker's "
                    "real-time payload). Send fewer rows per request or use batch inference.")})
                self._send(413, {"Content-Type": "application/json"}, body.encode())
                return
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            method, target = self.command, self.path
            if urlsplit(target).path == "/invocations":
                attrs = sagemaker_wire.parse(self.headers.get(sagemaker_wire.HEADER))
                if sagemaker_wire.is_batch(attrs):
                    self._batch(body)
                    return
                method = attrs.method or "POST"
                target = attrs.path or f"/v2/models/{model_name}/infer"
                if attrs.header_length is not None:
                    headers[sagemaker_wire.HEADER_LENGTH] = attrs.header_length
            url = urlsplit(target)
            try:
                text: str | bytes = body.decode("utf-8")
            except UnicodeDecodeError:
                text = body
            context = InvocationContext()
            size = _LambdaEventSize(HttpRequest(method, url.path, url.query, list(headers.items()), body), limit)
            req = Request(method=method, path=url.path, headers=headers, raw_body=text,
                          query=dict(parse_qsl(url.query, keep_blank_values=True)), limit=limit,
                          check_size=size, context=context)
            with lock:
                reply = handle(req, context)
                if reply.stream is not None:  # generating: the model is busy until the last event
                    self._send_stream(reply)
                    return
            self._send_reply(reply)

        def _batch(self, body: bytes) -> None:
            try:
                event = json.loads(body)
            except (ValueError, RecursionError):
                self._send(400, {"Content-Type": "application/json"}, json.dumps(
                    {"error": "a batch invocation's body must be an S3 event notification (JSON)"}).encode())
                return
            from layers.batch.service import metrics as batch_metrics

            with lock:
                try:
                    result = batch_service().handle(event, BatchInvocationContext())
                finally:  # one EMF record per object, as the batch function's decorator does
                    batch_metrics.flush_metrics(raise_on_empty_metrics=False)
            self._send(200, {"Content-Type": "application/json"}, json.dumps(result, default=str).encode())

        def _send_reply(self, reply: Reply) -> None:
            headers = dict(reply.headers) if reply.headers else {}
            headers["Content-Type"] = reply.content_type
            body = reply.body if reply.stream is None else b"".join(
                p.encode() if isinstance(p, str) else p for p in reply.stream)
            payload = body.encode("utf-8") if isinstance(body, str) else body
            length = next((v for k, v in headers.items() if k.lower() == names.HEADER_LENGTH.lower()), None)
            if length is not None:
                # InvokeEndpoint returns only this header to the caller (as CustomAttributes), so
                # the proxy function can restore Inference-Header-Content-Length from it.
                headers[sagemaker_wire.HEADER] = sagemaker_wire.response_attributes(length)
            self._send(reply.status, headers, payload)

        def _send_stream(self, reply: Reply) -> None:
            """A streamed reply (server-sent events) as HTTP/1.1 chunked transfer, each chunk
            sent as the model produces it: what ``InvokeEndpointWithResponseStream`` relays as
            PayloadParts (``InvokeEndpoint`` receives the whole body). A failure after the
            status went out closes the connection without the last chunk, so the caller sees a
            broken stream (SageMaker's ``ModelStreamError``), never a silently short answer."""
            self.send_response(reply.status)
            for key, value in (reply.headers or {}).items():
                if key.lower() not in ("content-length", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for part in reply.stream:
                    data = part.encode("utf-8") if isinstance(part, str) else bytes(part)
                    if data:
                        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the caller left: stop generating
            except Exception:
                logger.exception("the stream failed after it started")
                self.close_connection = True
            finally:
                close = getattr(reply.stream, "close", None)
                if close is not None:
                    close()

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("http " + format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server

"""SageMaker serving entry point: ``python -m functions.sagemaker.serve [--host H] [--port P]``.

Implements the SageMaker inference container contract (``GET /ping``, ``POST /invocations``
on port 8080) on the *same* handler as the Lambda API function: each HTTP request becomes
an API Gateway HTTP API 2.0 event and goes through ``functions.api.handler.handler``, so
every route, limit and error message is the one line of code the Lambda function runs.

``POST /invocations`` is V2 inference for the model. With the header
``X-Amzn-SageMaker-Custom-Attributes: route=<METHOD> <PATH>`` (optionally
``;inference-header-content-length=<n>`` for the binary extension, since InvokeEndpoint
forwards no other headers) it serves any V2 route instead; a binary response carries the
same attribute back in its ``X-Amzn-SageMaker-Custom-Attributes`` response header; the SageMaker proxy Lambda and
the local gateway use this so V2 routes work unchanged for sagemaker-target models. Other
paths (``/v2/...``, ``/docs``) are served directly, which helps when running the container
locally.

``route=POST /batch`` is the asynchronous-inference batch path of a heavy model
(functions/async_batch/handler.py): the body is an S3 event notification for one object under
``<model>/in/``, and the container runs the same batch job as the Lambda batch function
(layers/batch: ``out/<key>.jsonl`` or ``errors/<key>.json``, idempotent per object version),
answering a small JSON summary that SageMaker stores as the inference's output.

Requests are handled one at a time (a lock around the handler): one inference already uses
every core through onnxruntime's intra-op threads, and Powertools' Metrics/Logger keep
per-invocation state. ``/ping`` does not take the lock, so health checks answer during a
long inference. SIGTERM/SIGINT stop the server cleanly.

Observability is the setup every entry point shares (:mod:`layers.observability`): each
invocation is one EMF record and Logger context from the API handler (function name
``sagemaker``, ``ColdStart`` on the container's first invocation), and the HTTP access lines
go to the same Logger at DEBUG.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from layers import names
from layers.observability import setup
from layers.protocol import HEADER_LENGTH

CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
BATCH_ROUTE = names.SAGEMAKER_BATCH_ROUTE


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


def parse_custom_attributes(value: str | None) -> tuple[str | None, str | None, str | None]:
    """``route=<METHOD> <PATH>;inference-header-content-length=<n>`` → (method, path, n)."""
    method = path = header_length = None
    for part in (value or "").split(";"):
        key, _, val = part.strip().partition("=")
        key = key.strip().lower()
        if key == "route":
            method, _, path = val.strip().partition(" ")
            method, path = method.strip().upper() or None, path.strip() or None
        elif key == "inference-header-content-length":
            header_length = val.strip()
    return method, path, header_length


def http_api_event(method: str, target: str, headers: dict[str, str], body: bytes,
                   request_id: str) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event for one HTTP request."""
    url = urlsplit(target)
    try:
        text, b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, b64 = base64.b64encode(body).decode("ascii"), True
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "accountId": "sagemaker", "apiId": "sagemaker", "domainName": "localhost",
            "domainPrefix": "localhost", "requestId": request_id, "routeKey": "$default",
            "stage": "$default", "time": "", "timeEpoch": 0,
            "http": {"method": method, "path": url.path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent", "")},
        },
        "body": text,
        "isBase64Encoded": b64,
    }


def make_server(host: str = "0.0.0.0", port: int = 8080) -> ThreadingHTTPServer:
    """Load the model (through the API handler module) and bind; call ``serve_forever()``."""
    os.environ.setdefault(names.ENV_MODEL_DIR, names.SAGEMAKER_MODEL_DIR)
    from functions.api import handler as api  # loads and verifies the model

    logger = setup().logger  # the one the API handler binds the model to
    lock = threading.Lock()
    services: list[Any] = []

    def batch_service():
        """The batch job over the same model, built on the first batch invocation."""
        if not services:
            from layers.batch.service import BatchService

            services.append(BatchService(api.model))
        return services[0]
    limit = int(os.environ.get(names.ENV_MAX_REQUEST_BYTES, "0") or 0) or names.SAGEMAKER_PAYLOAD_BYTES

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
            if length > limit:
                self.close_connection = True
                remaining = length  # drain it, so the client reads our answer, not a reset
                while remaining > 0:
                    remaining -= len(self.rfile.read(min(remaining, 1 << 16)) or b"\0" * remaining)
                body = json.dumps({"error": (
                    f"the request body is {length:,} bytes; the limit is {limit:,} bytes (SageMaker's "
                    "real-time payload). Send fewer rows per request or use batch inference.")})
                self._send(413, {"Content-Type": "application/json"}, body.encode())
                return
            body = self.rfile.read(length) if length else b""
            headers = dict(self.headers.items())
            method, target = self.command, self.path
            if urlsplit(target).path == "/invocations":
                r_method, r_path, r_len = parse_custom_attributes(self.headers.get(CUSTOM_ATTRIBUTES))
                if (r_method, r_path) == ("POST", BATCH_ROUTE):
                    self._batch(body)
                    return
                method = r_method or "POST"
                target = r_path or f"/v2/models/{api.model.name}/infer"
                if r_len is not None:
                    headers[HEADER_LENGTH] = r_len
            context = InvocationContext()
            event = http_api_event(method, target, headers, body, context.aws_request_id)
            with lock:
                response = api.handler(event, context)
            self._send_lambda_response(response)

        def _batch(self, body: bytes) -> None:
            try:
                event = json.loads(body)
            except (ValueError, RecursionError):  # RecursionError: a body nested too deep
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

        def _send_lambda_response(self, response: dict[str, Any]) -> None:
            raw = response.get("body") or ""
            payload = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode("utf-8")
            headers = dict(response.get("headers") or {})
            for key, values in (response.get("multiValueHeaders") or {}).items():
                headers[key] = ", ".join(values)
            length = next((v for k, v in headers.items() if k.lower() == HEADER_LENGTH.lower()), None)
            if length is not None:
                # InvokeEndpoint returns only this header to the caller (as CustomAttributes), so
                # the proxy function can restore Inference-Header-Content-Length from it.
                headers[CUSTOM_ATTRIBUTES] = f"inference-header-content-length={length}"
            self._send(int(response.get("statusCode", 200)), headers, payload)

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.sagemaker.serve",
                                     description="Serve one model with the SageMaker container contract.")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"],
                        help="SageMaker starts containers with 'serve'")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port)

    def stop(signum: int, _frame: Any) -> None:
        # shutdown() waits for serve_forever() to return, so it must not run on this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"modelfn serving on http://{host}:{port} (GET /ping, POST /invocations)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A local implementation of the documented Lambda Runtime API, for one execution environment.

The real ``awslambdaric`` inside a function process talks to this server exactly as it talks
to Lambda's: it long-polls ``GET /2018-06-01/runtime/invocation/next`` for an event, then
posts ``…/invocation/{id}/response`` or ``…/invocation/{id}/error``; a failed init posts
``/2018-06-01/runtime/init/error``. Under SnapStart the process also calls
``GET …/restore/next`` once its before-snapshot hooks ran (answered at once: the local
"restore") and reports a failed after-restore hook on ``…/restore/error``. A runtime that
streams (``functions/stream``: ``Lambda-Runtime-Function-Response-Mode: streaming``, a chunked
body, error trailers) is read chunk by chunk: each part reaches the invocation's ``on_part`` as
it arrives, and the outcome keeps the parts, their arrival times and the trailers. One server per process, as Lambda gives each execution
environment its own endpoint, so an outcome always belongs to exactly one process.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from layers import names

PREFIX = "/2018-06-01/runtime"
_ID_ROUTE = re.compile(rf"^{PREFIX}/invocation/(?P<id>[^/]+)/(?P<what>response|error)$")
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_HEADER = "Lambda-Runtime-Function-Error-Body"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"


@dataclass
class Outcome:
    """What an invoke returned: the payload on success, or Lambda's error document."""

    ok: bool
    payload: bytes
    error_type: str | None = None
    #: a streamed response: its Runtime API content type, each part with its arrival time
    #: (``time.monotonic()``), and the trailers (an error after the body started)
    streamed: bool = False
    content_type: str | None = None
    parts: list[tuple[float, bytes]] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, error_type: str, message: str) -> Outcome:
        body = {"errorType": error_type, "errorMessage": message}
        return cls(ok=False, payload=json.dumps(body).encode(), error_type=error_type)

    @property
    def error_message(self) -> str:
        try:
            return str(json.loads(self.payload).get("errorMessage", ""))
        except (ValueError, AttributeError):
            return self.payload[:500].decode("utf-8", "replace")


@dataclass
class Invocation:
    payload: bytes
    deadline_ms: int
    function_arn: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    trace_id: str = field(default_factory=lambda: _trace_id())
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    #: called with each part of a streamed response as it arrives (a gateway relays it)
    on_part: Callable[[bytes], None] | None = None

    def finish(self, outcome: Outcome) -> bool:
        """Record the outcome once; later outcomes (a crash after a response) are ignored."""
        if self.done.is_set():
            return False
        self.outcome = outcome
        self.done.set()
        return True


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


class RuntimeApi:
    """The Runtime API endpoint of one function process (``AWS_LAMBDA_RUNTIME_API``)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._pending: queue.Queue[Invocation | None] = queue.Queue()
        self._lock = threading.Lock()
        self.current: Invocation | None = None
        self.initialized = threading.Event()  # set by the first /next or by /init/error
        self.init_error: Outcome | None = None
        self.restored = threading.Event()  # SnapStart: set by /restore/next (after the snapshot)
        self._server = _QuietServer((host, 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"runtime-api-{self.port}")

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> RuntimeApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._pending.put(None)  # release a parked /next
        self._server.shutdown()
        self._server.server_close()

    def submit(self, invocation: Invocation) -> None:
        self._pending.put(invocation)

    def fail(self, outcome: Outcome) -> None:
        """The process is gone: fail the invocation it held (or was about to take) and init."""
        with self._lock:
            inv, self.current = self.current, None
        if inv is None:
            try:
                inv = self._pending.get_nowait()
            except queue.Empty:
                inv = None
        if inv is not None:
            inv.finish(outcome)
        if not self.initialized.is_set():
            self.init_error = self.init_error or outcome
            self.initialized.set()

    # --- called by the request handler --------------------------------------------------
    def _next(self) -> Invocation | None:
        self.initialized.set()
        inv = self._pending.get()
        with self._lock:
            self.current = inv
        return inv

    def _owns(self, request_id: str) -> Invocation | None:
        with self._lock:
            inv = self.current
        return inv if inv is not None and inv.request_id == request_id else None

    def _finish(self, request_id: str, outcome: Outcome) -> bool:
        with self._lock:
            inv = self.current
            if inv is None or inv.request_id != request_id:
                return False
            self.current = None
        inv.finish(outcome)
        return True


class _QuietServer(ThreadingHTTPServer):
    """A dropped connection means the process died; the pool reports that, not a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


def _handler_for(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes

        def log_message(self, format: str, *args) -> None:  # quiet: the function logs instead
            pass

        def do_GET(self) -> None:
            if self.path == f"{PREFIX}/restore/next":
                # SnapStart: the before-snapshot hooks ran; Lambda would snapshot here and
                # answer when an environment is restored from it. Locally, restore at once.
                api.restored.set()
                return self._send(200, b"", {"Content-Type": "application/json"})
            if self.path != f"{PREFIX}/invocation/next":
                return self._reply(404, {"errorType": "NotFound", "errorMessage": self.path})
            inv = api._next()
            if inv is None:  # shutting down
                return self._reply(410, {"errorType": "Shutdown", "errorMessage": "stopping"})
            headers = {
                "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": inv.function_arn,
                "Lambda-Runtime-Trace-Id": inv.trace_id,
                "Content-Type": "application/json",
            }
            self._send(200, inv.payload, headers)

        def do_POST(self) -> None:
            m = _ID_ROUTE.match(self.path)
            if m and m["what"] == "response" and self.headers.get(RESPONSE_MODE_HEADER) == "streaming":
                return self._streamed(m["id"])
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path in (f"{PREFIX}/init/error", f"{PREFIX}/restore/error"):
                err_type = self.headers.get(ERROR_TYPE_HEADER) or "Runtime.Unknown"
                api.init_error = Outcome(ok=False, payload=body, error_type=err_type)
                api.initialized.set()
                return self._reply(202, {"status": "OK"})
            m = _ID_ROUTE.match(self.path)
            if not m:
                return self._reply(404, {"errorType": "NotFound", "errorMessage": self.path})
            if m["what"] == "response" and len(body) > names.LAMBDA_SYNC_PAYLOAD_BYTES:
                # Lambda rejects the oversize response and fails the invoke
                outcome = Outcome.error(
                    "Function.ResponseSizeTooLarge",
                    f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload "
                    f"size ({names.LAMBDA_SYNC_PAYLOAD_BYTES} bytes).")
                api._finish(m["id"], outcome)
                return self._reply(413, {"errorType": "RequestEntityTooLarge",
                                         "errorMessage": "Exceeded maximum allowed payload size"})
            if m["what"] == "response":
                outcome = Outcome(ok=True, payload=body)
            else:
                err_type = self.headers.get(ERROR_TYPE_HEADER) or _error_type(body)
                outcome = Outcome(ok=False, payload=body, error_type=err_type)
            if not api._finish(m["id"], outcome):
                return self._reply(400, {"errorType": "InvalidRequestID",
                                         "errorMessage": f"unknown request id {m['id']}"})
            self._reply(202, {"status": "OK"})

        def _streamed(self, request_id: str) -> None:
            """A streamed response: chunked parts relayed as they come, then the trailers."""
            inv = api._owns(request_id)
            if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                return self._reply(400, {"errorType": "InvalidStreamingRequest",
                                         "errorMessage": "a streamed response must be chunked"})
            outcome = Outcome(ok=True, payload=b"", streamed=True,
                              content_type=self.headers.get("Content-Type"))
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                part = self.rfile.read(size)
                self.rfile.readline()  # the CRLF after the chunk
                outcome.parts.append((time.monotonic(), part))
                data += part
                if inv is not None and inv.on_part is not None:
                    inv.on_part(part)
            while (line := self.rfile.readline().strip()):  # trailers, then the blank line
                name, _, value = line.decode("latin-1").partition(":")
                outcome.trailers[name.strip()] = value.strip()
            outcome.payload = bytes(data)
            if err := outcome.trailers.get(ERROR_TYPE_HEADER):
                outcome.ok, outcome.error_type = False, err
            if not api._finish(request_id, outcome):
                return self._reply(400, {"errorType": "InvalidRequestID",
                                         "errorMessage": f"unknown request id {request_id}"})
            self._reply(202, {"status": "OK"})

        def _reply(self, status: int, doc: dict) -> None:
            self._send(status, json.dumps(doc).encode(), {"Content-Type": "application/json"})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _error_type(body: bytes) -> str:
    try:
        return str(json.loads(body).get("errorType") or "Unhandled")
    except (ValueError, AttributeError):
        return "Unhandled"

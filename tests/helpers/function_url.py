"""A Lambda function URL in front of the local Runtime API, for stock HTTP clients (the
``openai`` client) in tests: each request becomes the payload 2.0 event a URL with auth NONE
sends (no IAM identity), and the streamed response (the HTTP integration prelude, eight NUL
bytes, then the body) is relayed to the client chunk by chunk as the function produces it."""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from infra.local.http_api_events import HttpRequest, to_event
from infra.local.runtime_api import Invocation, RuntimeApi
from layers.http.streaming import DELIMITER

ARN = "arn:aws:lambda:us-east-1:123456789012:function:modelfn-test-stream:live"


class FunctionUrl:
    """``url``: the base URL (``http://127.0.0.1:<port>``). A context manager (stops the server)."""

    def __init__(self, api: RuntimeApi, *, timeout_s: float = 300) -> None:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                front._serve(self)

            do_POST = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.api, self.timeout_s = api, timeout_s
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __enter__(self) -> FunctionUrl:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        path, _, query = h.path.partition("?")
        event = to_event(HttpRequest(h.command, path, query, list(h.headers.items()), body),
                         route_key="$default", path_parameters=None)
        parts: queue.Queue[bytes | None] = queue.Queue()
        inv = Invocation(payload=json.dumps(event).encode(), function_arn=ARN, on_part=parts.put,
                         deadline_ms=int((time.time() + self.timeout_s) * 1000))
        self.api.submit(inv)
        threading.Thread(target=lambda: (inv.done.wait(self.timeout_s), parts.put(None)), daemon=True).start()
        buffered = b""
        while DELIMITER not in buffered:
            part = parts.get()
            if part is None:  # the function failed before its prelude: Lambda answers 502
                self._send(h, 502, {"Content-Type": "application/json"}, [b'{"message":"Internal Server Error"}'])
                return
            buffered += part
        head, _, rest = buffered.partition(DELIMITER)
        prelude = json.loads(head)

        def chunks():
            if rest:
                yield rest
            while (part := parts.get()) is not None:
                yield part

        self._send(h, prelude["statusCode"], prelude.get("headers") or {}, chunks())

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, headers: dict, chunks) -> None:
        h.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "transfer-encoding"):
                h.send_header(k, v)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for chunk in chunks:
            h.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
            h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

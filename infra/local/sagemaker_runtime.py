"""SageMaker Runtime's two invoke operations, locally: what boto3's ``sagemaker-runtime`` client
calls, in front of the serving containers (:class:`infra.local.sagemaker.SageMakerServer`).

``POST /endpoints/<name>/invocations`` is ``InvokeEndpoint`` (the container's answer, whole);
``POST /endpoints/<name>/invocations-response-stream`` is ``InvokeEndpointWithResponseStream``:
the container's ``/invocations`` answer relayed as it arrives, each chunk one ``PayloadPart``
event of AWS's event-stream encoding (the binary framing boto3 parses: prelude with lengths and
CRC32s, ``:message-type``/``:event-type``/``:content-type`` headers, the payload, a message CRC).
The request's ``X-Amzn-SageMaker-Custom-Attributes`` (the route) and content type go to the
container as SageMaker forwards them. A container 4xx/5xx is SageMaker's ``ModelError`` (424,
the container's status and body in the message), as on AWS. Signatures are not checked.

    server = SageMakerRuntime({"my-endpoint": container_port}).start()
    boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1", ...)
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import zlib
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from layers import sagemaker_wire

_ROUTE = re.compile(r"^/endpoints/(?P<name>[^/]+)/(?P<op>invocations|invocations-response-stream)$")
EVENTSTREAM = "application/vnd.amazon.eventstream"


def event_message(event_type: str, payload: bytes, content_type: str = "application/octet-stream") -> bytes:
    """One event of AWS's event-stream encoding (string headers, CRC32 prelude and message)."""
    headers = b""
    for name, value in ((":message-type", "event"), (":event-type", event_type), (":content-type", content_type)):
        raw = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + len(raw).to_bytes(2, "big") + raw
    total = 12 + len(headers) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(headers).to_bytes(4, "big")
    message = prelude + zlib.crc32(prelude).to_bytes(4, "big") + headers + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


class SageMakerRuntime:
    """``endpoints``: endpoint name → the port its container serves ``/invocations`` on."""

    def __init__(self, endpoints: Mapping[str, int], host: str = "127.0.0.1", timeout_s: float = 60.0) -> None:
        self.endpoints = dict(endpoints)
        self.timeout_s = timeout_s
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="sagemaker-runtime")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SageMakerRuntime:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(rt: SageMakerRuntime) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            m = _ROUTE.match(self.path.split("?")[0])
            port = rt.endpoints.get(m["name"]) if m else None
            if port is None:
                return self._error(400 if m else 404, "ValidationError",
                                   f"Endpoint {m['name'] if m else self.path} not found.")
            headers = {"Content-Type": self.headers.get("Content-Type") or "application/octet-stream",
                       "Accept": self.headers.get("X-Amzn-SageMaker-Accept") or "*/*"}
            if attrs := self.headers.get(sagemaker_wire.HEADER):
                headers[sagemaker_wire.HEADER] = attrs
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=rt.timeout_s)
            try:
                conn.request("POST", "/invocations", body=body, headers=headers)
                resp = conn.getresponse()
                if resp.status >= 400:
                    return self._error(424, "ModelError", f"Received client error ({resp.status}) from primary "
                                       f"with message \"{resp.read().decode('utf-8', 'replace')}\".")
                if m["op"] == "invocations":
                    return self._whole(resp)
                self._stream(resp)
            finally:
                conn.close()

        def _whole(self, resp: http.client.HTTPResponse) -> None:
            data = resp.read()
            self.send_response(200)
            self.send_header("Content-Type", resp.getheader("Content-Type") or "application/octet-stream")
            self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
            if attrs := resp.getheader(sagemaker_wire.HEADER):
                self.send_header(sagemaker_wire.HEADER, attrs)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, resp: http.client.HTTPResponse) -> None:
            self.send_response(200)
            self.send_header("Content-Type", EVENTSTREAM)
            self.send_header("X-Amzn-SageMaker-Content-Type", resp.getheader("Content-Type") or "application/octet-stream")
            self.send_header("x-Amzn-Invoked-Production-Variant", "AllTraffic")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := resp.read1(65536):
                frame = event_message("PayloadPart", chunk)
                self.wfile.write(b"%X\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        def _error(self, status: int, error_type: str, message: str) -> None:
            data = json.dumps({"message": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("x-amzn-ErrorType", error_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler

"""SageMaker-target models served locally through their real serving entry point.

The container's ``python -m functions.sagemaker.serve`` runs as a child process on a free
port (``GET /ping``, ``POST /invocations``); the gateway forwards every V2 route to
``/invocations`` with ``X-Amzn-SageMaker-Custom-Attributes: route=<METHOD> <PATH>``, the
same header the deployed proxy function sends to the endpoint, so routes work unchanged. A
reply the container streams (chunked: a generative model's events) is relayed chunk by chunk,
as SageMaker's ``InvokeEndpointWithResponseStream`` relays it.
"""

from __future__ import annotations

import collections
import http.client
import sys
import time
from dataclasses import dataclass, field

from infra.local import processes
from infra.local.http_api_events import HttpRequest, HttpResponse, gateway_error
from layers import names, sagemaker_wire

CUSTOM_ATTRIBUTES = sagemaker_wire.HEADER
_HOP_HEADERS = {"content-length", "connection", "transfer-encoding", "keep-alive", "date", "server"}


@dataclass
class SageMakerServer:
    """One model's serving container, emulated by a child process."""

    name: str
    env: dict[str, str]
    cwd: str
    log: processes.LogSink | None = None
    start_timeout_s: float = 60.0
    port: int = 0
    failure: str | None = None
    proc: object = None
    _tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))

    def start(self) -> None:
        """Start serving and wait for ``/ping`` 200; on failure set :attr:`failure`."""
        self.port = processes.free_port()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": self.cwd,
               "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = self._spawn(env)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.failure = (f"serving process exited with status {self.proc.returncode}: "
                                + (" / ".join(list(self._tail)[-3:]) or "no output"))
                return
            if self._ping():
                return
            time.sleep(0.1)
        self.failure = f"/ping did not answer 200 within {self.start_timeout_s:.0f} s"
        self.stop()

    def _spawn(self, env: dict[str, str]):
        """The serving process (a container in infra/local/containers.py)."""
        return processes.spawn(
            [sys.executable, "-m", names.SAGEMAKER_SERVE_MODULE, "--host", "127.0.0.1",
             "--port", str(self.port)], env=env, cwd=self.cwd, log=self._remember)

    def _remember(self, line: str) -> None:
        self._tail.append(line)
        if self.log:
            self.log(line)

    def _ping(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/ping")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop_group(self.proc)


@dataclass
class SageMakerIntegration:
    """What the deployed proxy function does: API route → ``/invocations`` + route attribute."""

    server: SageMakerServer

    def __call__(self, req: HttpRequest, route_key: str, path_parameters: dict[str, str] | None,
                 timeout_s: float) -> HttpResponse:
        if self.server.failure:
            return HttpResponse.json(503, {"error": f"model {self.server.name!r} is not serving: "
                                                    f"{self.server.failure}"})
        if len(req.body) > names.SAGEMAKER_PAYLOAD_BYTES:
            return HttpResponse.json(413, {"error": (
                f"request body is {len(req.body)} bytes; a SageMaker endpoint accepts at most "
                f"{names.SAGEMAKER_PAYLOAD_BYTES} bytes. Send fewer rows per request or use "
                "batch inference through S3.")})
        attrs = sagemaker_wire.request_attributes(req.method, req.path, req.header(names.HEADER_LENGTH))
        headers = {CUSTOM_ATTRIBUTES: attrs,
                   "Content-Type": req.header("Content-Type") or "application/json",
                   "Accept": req.header("Accept") or "application/json"}
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=timeout_s)
            conn.request("POST", "/invocations", body=req.body, headers=headers)
            resp = conn.getresponse()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS]
            if resp.getheader("Transfer-Encoding", "").lower() == "chunked":
                # a streamed reply (server-sent events): relayed as the container sends each
                # chunk, as InvokeEndpointWithResponseStream relays PayloadParts
                return HttpResponse(resp.status, b"", out, chunks=_relay(conn, resp))
            body = resp.read()
            conn.close()
        except TimeoutError:
            return gateway_error(503, "Service Unavailable")
        except OSError:
            return gateway_error(500, "Internal Server Error")
        return HttpResponse(resp.status, body, out)


def _relay(conn: http.client.HTTPConnection, resp: http.client.HTTPResponse):
    """The container's chunked body, piece by piece as it arrives; the connection closes after."""
    try:
        while chunk := resp.read1(65536):
            yield chunk
    finally:
        conn.close()

"""tritonclient.http with the SigV4 plugin, against a server that checks every request's
signature the way API Gateway's IAM authorizer does (403 otherwise)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest
import tritonclient.http as triton
from botocore.credentials import Credentials
from tritonclient.utils import InferenceServerException

from infra.client import SigV4Plugin, SigV4Signer
from tests.client.sigv4_verifier import ACCESS_KEY, SECRET, verify

METADATA = {"name": "m", "versions": ["1"], "platform": "onnxruntime_onnx",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]}


class _IamCheckingServer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict]] = []

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        ok, fields = verify(self.command, path, query, dict(self.headers.items()), body)
        self.seen.append({"method": self.command, "path": path, "ok": ok, "fields": fields})
        if not ok:
            return self._reply(403, {"message": "Forbidden"})
        if self.command == "GET" and path == "/v2/models/m":
            return self._reply(200, METADATA)
        if self.command == "POST" and path == "/v2/models/m/infer":
            n = int(self.headers.get("Inference-Header-Content-Length") or len(body))
            request = json.loads(body[:n])
            (inp,) = request["inputs"]
            x = (np.frombuffer(body[n:], np.float32) if n < len(body)
                 else np.asarray(inp["data"], np.float32))
            return self._reply(200, {"model_name": "m", "outputs": [
                {"name": "y", "datatype": "FP32", "shape": inp["shape"], "data": (x * 2).tolist()}]})
        return self._reply(404, {"error": "no route"})

    do_GET = do_POST = _serve


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict]]]:
    _IamCheckingServer.seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _IamCheckingServer)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}", _IamCheckingServer.seen
    finally:
        srv.shutdown()
        srv.server_close()


def signer() -> SigV4Signer:
    return SigV4Signer(region="eu-west-1", credentials=Credentials(ACCESS_KEY, SECRET))


@pytest.mark.parametrize("binary", [True, False])
def test_signed_tritonclient_passes_iam_and_gets_results(server, binary):
    # given a stock tritonclient with the plugin registered
    url, seen = server
    client = SigV4Plugin(signer()).register(triton.InferenceServerClient(url))
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    # when
    meta = client.get_model_metadata("m")
    out = client.infer("m", [inp], headers={"Authorization": "stale"}).as_numpy("y")
    # then every request carried a valid signature for execute-api in the region
    assert meta["inputs"][0]["name"] == "x"
    np.testing.assert_array_equal(out, x * 2)
    assert [(s["method"], s["path"], s["ok"]) for s in seen] == [
        ("GET", "/v2/models/m", True), ("POST", "/v2/models/m/infer", True)]
    assert all(s["fields"]["Credential"].endswith("/eu-west-1/execute-api/aws4_request") for s in seen)
    client.close()


def test_unsigned_tritonclient_is_refused(server):
    url, seen = server
    with pytest.raises(InferenceServerException, match="Forbidden|403"):
        triton.InferenceServerClient(url).get_model_metadata("m")
    assert seen[0]["ok"] is False


def test_registering_the_plain_way_refuses_instead_of_sending_unsigned(server):
    url, seen = server
    client = triton.InferenceServerClient(url)
    client.register_plugin(SigV4Plugin(signer()))
    with pytest.raises(RuntimeError, match=r"plugin.register\(client\)"):
        client.get_model_metadata("m")
    assert seen == []

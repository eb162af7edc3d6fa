"""The SageMaker server over real HTTP on 127.0.0.1: /ping, /invocations, custom-attribute
routes, and a stock tritonclient talking to it. Every server is stopped by its test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from functions.sagemaker.serve import CUSTOM_ATTRIBUTES, make_server, parse_custom_attributes
from layers import names

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(api, free_port):
    """The server on a free port, serving the ``tiny`` model; shut down after the test."""
    srv = make_server("127.0.0.1", free_port)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{free_port}"
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


def http(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(f"http://{url}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def infer_body(rows: int = 1) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32",
                                   "data": [0.5] * (4 * rows)}]}).encode()


def test_ping(server):
    assert http(f"{server}/ping")[0] == 200


def test_invocations_is_v2_infer(server, api):
    status, headers, body = http(f"{server}/invocations", "POST", infer_body(2), {"Content-Type": "application/json"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    out = json.loads(body)
    assert out["model_name"] == "tiny" and out["outputs"][0]["shape"] == [2, 3]


def test_custom_attribute_routes_any_v2_route(server, api):
    status, _, body = http(f"{server}/invocations", "POST", b"", {CUSTOM_ATTRIBUTES: "route=GET /v2/models/tiny"})
    assert status == 200 and json.loads(body)["versions"] == [api.model.version]
    status, _, body = http(f"{server}/invocations", "POST", b"", {CUSTOM_ATTRIBUTES: "route=GET /v2/models/nope/ready"})
    assert status == 404 and "serves 'tiny'" in json.loads(body)["error"]
    status, _, body = http(f"{server}/invocations", "POST", infer_body(),
                           {CUSTOM_ATTRIBUTES: f"route=POST /v2/models/tiny/versions/{api.model.version}/infer"})
    assert status == 200


def test_binary_extension_through_custom_attributes(server, api):
    x = np.ones((1, 4), np.float32)
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 16}}],
                         "parameters": {"binary_data_output": True}}).encode()
    attrs = f"route=POST /v2/models/tiny/infer;inference-header-content-length={len(header)}"
    status, headers, body = http(f"{server}/invocations", "POST", header + x.tobytes(),
                                 {CUSTOM_ATTRIBUTES: attrs, "Content-Type": "application/octet-stream"})
    assert status == 200
    n = int(headers["Inference-Header-Content-Length"])
    assert headers[CUSTOM_ATTRIBUTES] == f"inference-header-content-length={n}"  # what InvokeEndpoint returns
    got = np.frombuffer(body[n:], "<f4").reshape(1, 3)
    np.testing.assert_array_equal(got, api.model.session.run(None, {"x": x})[0])


def test_errors_are_the_lambda_errors(server):
    status, _, body = http(f"{server}/invocations", "POST", b"{oops", {"Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]
    status, _, body = http(f"{server}/v2/models/tiny/infer", "GET")
    assert status == 405


def test_oversized_body_is_refused_before_reading(server):
    big = b"0" * (names.SAGEMAKER_PAYLOAD_BYTES + 1)
    status, _, body = http(f"{server}/invocations", "POST", big, {"Content-Type": "application/json"})
    assert status == 413 and "limit" in json.loads(body)["error"]


def test_stock_tritonclient_works_unchanged(server, api):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("tiny") and not client.is_model_ready("other")
        assert client.is_model_ready("tiny", model_version=api.model.version)
        meta = client.get_model_metadata("tiny")
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
        expected = api.model.session.run(None, {"x": x})[0]
        for binary in (True, False):
            inp = httpclient.InferInput("x", [5, 4], "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            result = client.infer("tiny", [inp], outputs=[httpclient.InferRequestedOutput("probs", binary_data=binary)])
            np.testing.assert_allclose(result.as_numpy("probs"), expected, rtol=1e-6)
        result = client.infer("tiny", [inp], request_id="abc")  # default: all outputs binary
        assert result.get_response()["id"] == "abc"
        with pytest.raises(httpclient.InferenceServerException, match="dimension 1 must be 4"):
            bad = httpclient.InferInput("x", [1, 3], "FP32")
            bad.set_data_from_numpy(np.ones((1, 3), np.float32))
            client.infer("tiny", [bad])
    finally:
        client.close()


def test_parse_custom_attributes():
    assert parse_custom_attributes("route=GET /v2/models/a/ready") == ("GET", "/v2/models/a/ready", None)
    assert parse_custom_attributes(" route=post /v2/x ; inference-header-content-length=42") == ("POST", "/v2/x", "42")
    assert parse_custom_attributes(None) == (None, None, None)
    assert parse_custom_attributes("trace=1") == (None, None, None)


def test_module_entry_point_serves_and_stops_on_sigterm(tiny_model_dir, free_port):
    env = {**os.environ, names.ENV_MODEL_DIR: str(tiny_model_dir), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "functions.sagemaker.serve", "--host", "127.0.0.1", "--port", str(free_port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http(f"127.0.0.1:{free_port}/ping")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        assert http(f"127.0.0.1:{free_port}/invocations", "POST", infer_body())[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_invocations_are_observed_through_the_shared_setup(server, api, capsys):
    # given a fresh container (the API handler imported anew by the fixture)
    capsys.readouterr()
    # when two invocations arrive
    for _ in range(2):
        assert http(f"{server}/invocations", "POST", infer_body(3))[0] == 200
    # then each is one EMF record with the model dimension, and the first also a ColdStart
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    requests = [r for r in records if "BatchSize" in r]
    cold = [r for r in records if "ColdStart" in r]
    assert len(requests) == 2 and all(r["model"] == "tiny" and r["BatchSize"] == [3.0] for r in requests)
    assert all(r["model_version"] == api.model.version and r["status"] == 200 for r in requests)
    assert len(cold) == 1 and cold[0]["function_name"] == "sagemaker"

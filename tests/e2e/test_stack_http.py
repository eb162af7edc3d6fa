"""The local stack over HTTP with a V2 client (tritonclient.http), as a user calls it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from urllib.parse import urlsplit

import numpy as np
import pytest
import tritonclient.http as triton

# one stack for the package: keep its users on one xdist worker
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("local-stack")]


@pytest.fixture(scope="module")
def client(stack):
    return triton.InferenceServerClient(urlsplit(stack.url).netloc, network_timeout=60)


def raw(stack, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    u = urlsplit(stack.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_every_built_model_serves_and_the_broken_one_is_named_with_its_cause(stack):
    failures = {n: s.failure for n, s in stack.services.items() if s.failure}
    assert list(failures) == ["broken"] and failures["broken"].startswith("build failed")
    status, data = raw(stack, "POST", "/v2/models/broken/infer", b"{}", {"Content-Type": "application/json"})
    assert status == 503 and "build failed" in json.loads(data)["error"]


@pytest.mark.parametrize("model", ["pair", "pair-sm"])
def test_metadata_ready_and_multi_input_infer(client, model):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(model)
    meta = client.get_model_metadata(model)
    assert [t["name"] for t in meta["inputs"]] == ["a", "b"]
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 2.0, dtype=np.float32)
    for binary in (False, True):
        inputs = [triton.InferInput("a", [2, 3], "FP32"), triton.InferInput("b", [2, 3], "FP32")]
        inputs[0].set_data_from_numpy(a, binary_data=binary)
        inputs[1].set_data_from_numpy(b, binary_data=binary)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("sum", "prod")]
        result = client.infer(model, inputs, outputs=outputs)
        np.testing.assert_allclose(result.as_numpy("sum"), a + b)
        np.testing.assert_allclose(result.as_numpy("prod"), a * b)


def test_dynamic_shapes_are_served_as_sent(client):
    for shape in ([1, 5], [3, 7]):
        x = np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32).reshape(shape)
        inp = triton.InferInput("x", shape, "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        out = client.infer("dyn", [inp]).as_numpy("y")
        assert out.shape == tuple(shape)
        np.testing.assert_allclose(out, np.maximum(x, 0))


def test_client_errors_are_clear_json(stack):
    status, data = raw(stack, "GET", "/v2/models/nope")
    assert status == 404 and "nope" in json.loads(data)["error"] and "pair" in json.loads(data)["error"]
    status, data = raw(stack, "POST", "/v2/models/pair/infer", b'{"inputs": [{"name": "a"}]}',
                       {"Content-Type": "application/json"})
    assert status == 400 and json.loads(data)["error"]
    status, data = raw(stack, "POST", "/v2/models/pair/infer", b"0" * (10 * 1024 * 1024 + 10),
                       {"Content-Type": "application/json"})
    assert status == 413


def test_docs_and_openapi_are_served(stack):
    status, data = raw(stack, "GET", "/openapi.json")
    assert status == 200 and json.loads(data)["openapi"].startswith("3.")
    status, _ = raw(stack, "GET", "/docs")
    assert status == 200


def test_killed_function_process_is_replaced_and_the_next_request_served(stack, client):
    # given: every api process of ``tiny`` is killed, as an out-of-memory kill would
    pool = stack.services["tiny"].api
    old = {i.proc.pid for i in pool._all}
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):  # wait until the kills have landed
        if not any(i.alive for i in pool._all):
            break
        time.sleep(0.1)
    # when / then: the next requests are served by fresh processes
    x = np.zeros((2, 4), dtype=np.float32)
    for _ in range(3):
        inp = triton.InferInput("x", [2, 4], "FP32")
        inp.set_data_from_numpy(x)
        assert client.infer("tiny", [inp]).as_numpy("probs").shape == (2, 3)
    assert {i.proc.pid for i in pool._all if i.alive}.isdisjoint(old)

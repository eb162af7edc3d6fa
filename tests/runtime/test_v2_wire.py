"""V2 requests → responses, independent of transport (JSON, binary extension, errors)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from layers.errors import BadRequest
from layers.model import load_model
from layers.v2_wire import (
    HEADER_LENGTH,
    infer,
    infer_request,
    join_body,
    model_metadata,
    split_body,
)
from tests.runtime.helpers import echo_model_dir


@pytest.fixture
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir)


def x_tensor(rows=1, **extra):
    return {"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": [0.5] * (4 * rows), **extra}


def test_json_request_response(tiny):
    response = infer_request(tiny, {"id": "req-1", "inputs": [x_tensor(2)]})
    assert response["model_name"] == "tiny" and response["model_version"] == tiny.version
    assert response["id"] == "req-1"
    [out] = response["outputs"]
    assert out["name"] == "probs" and out["shape"] == [2, 3] and out["datatype"] == "FP32"
    assert len(out["data"]) == 6
    expected = tiny.session.run(None, {"x": np.full((2, 4), 0.5, np.float32)})[0]
    np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(2, 3), expected)


def test_id_is_left_out_when_not_sent(tiny):
    assert "id" not in infer_request(tiny, {"inputs": [x_tensor()]})


def test_requested_outputs(tiny):
    response = infer_request(tiny, {"inputs": [x_tensor()], "outputs": [{"name": "probs"}]})
    assert [o["name"] for o in response["outputs"]] == ["probs"]
    with pytest.raises(BadRequest, match="unknown output"):
        infer_request(tiny, {"inputs": [x_tensor()], "outputs": [{"name": "nope"}]})


def test_binary_inputs_and_outputs(tiny):
    # given the input as raw bytes and every output asked for as binary
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    request = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                           "parameters": {"binary_data_size": x.nbytes}}],
               "parameters": {"binary_data_output": True}}
    result = infer(tiny, request, x.tobytes())
    # then the output is announced in JSON and its bytes follow
    [out] = result.response["outputs"]
    assert out["parameters"]["binary_data_size"] == 24 and "data" not in out
    got = np.frombuffer(result.binary[0], "<f4").reshape(2, 3)
    np.testing.assert_array_equal(got, tiny.session.run(None, {"x": x})[0])
    body, header_length = join_body(result)
    assert json.loads(body[:header_length]) == result.response and body[header_length:] == result.binary[0]


def test_per_output_binary_flag_overrides_request_default(tiny):
    request = {"inputs": [x_tensor()], "outputs": [{"name": "probs", "parameters": {"binary_data": False}}],
               "parameters": {"binary_data_output": True}}
    result = infer(tiny, request)
    assert "data" in result.response["outputs"][0] and result.binary == []


def test_infer_request_is_json_only(tiny):
    response = infer_request(tiny, {"inputs": [x_tensor()], "parameters": {"binary_data_output": True}})
    assert "data" in response["outputs"][0]


@pytest.mark.parametrize(
    ("request_", "binary", "fragment"),
    [
        ([1, 2], b"", "must be a JSON object"),
        ({"inputs": []}, b"", "non-empty list"),
        ({"inputs": "x"}, b"", "non-empty list"),
        ({"inputs": [x_tensor(), x_tensor()]}, b"", "appears more than once"),
        ({"inputs": [{**x_tensor(), "name": "y"}]}, b"", "unknown input 'y'; model 'tiny' takes ['x']"),
        ({"inputs": [x_tensor()], "id": 5}, b"", "\"id\" must be a string"),
        ({"inputs": [x_tensor()], "parameters": [1]}, b"", "must be a JSON object"),
        ({"inputs": [x_tensor()], "outputs": {"name": "probs"}}, b"", "must be a list"),
        ({"inputs": [x_tensor()], "outputs": [{"name": "probs", "parameters": {"classification": 2}}]},
         b"", "classification extension is not supported"),
        ({"inputs": [x_tensor(parameters={"binary_data_size": 16})]}, b"\x00" * 8, "only 8 follow"),
        ({"inputs": [x_tensor()]}, b"\x00" * 4, "4 bytes follow the JSON header that no input claims"),
        ({"inputs": [x_tensor(parameters={"binary_data_size": -1})]}, b"", "non-negative integer"),
        ({"inputs": [{**x_tensor(), "data": [float("nan")] * 4}]}, b"", "NaN or Infinity"),
        # found by schemathesis (tests/e2e/test_openapi.py): an empty list was a 500, a
        # non-boolean flag silently read as false
        ({"inputs": [x_tensor()], "outputs": []}, b"", "at least one entry"),
        ({"inputs": [x_tensor()], "outputs": [{"name": "probs", "parameters": {"binary_data": {}}}]}, b"",
         "binary_data of output 'probs' must be true or false"),
        ({"inputs": [x_tensor()], "parameters": {"allow_nonfinite": "yes"}}, b"", "must be true or false"),
    ],
)
def test_bad_requests_say_what_is_wrong(tiny, request_, binary, fragment):
    with pytest.raises(BadRequest) as err:
        infer(tiny, request_, binary)
    assert fragment in err.value.message


def test_allow_nonfinite_parameter(tiny):
    request = {"inputs": [{**x_tensor(), "data": [float("inf"), 0, 0, 0]}], "parameters": {"allow_nonfinite": True}}
    assert infer_request(tiny, request)["outputs"][0]["shape"] == [1, 3]


def test_split_body():
    header = json.dumps({"inputs": []}).encode()
    request, rest = split_body(header + b"\x01\x02", len(header))
    assert request == {"inputs": []} and bytes(rest) == b"\x01\x02"
    request, rest = split_body(header, None)
    assert request == {"inputs": []} and len(rest) == 0
    with pytest.raises(BadRequest, match=HEADER_LENGTH):
        split_body(header, 10_000)
    with pytest.raises(BadRequest, match=HEADER_LENGTH):
        split_body(header, "abc")
    with pytest.raises(BadRequest, match="not valid JSON"):
        split_body(b"{nope", None)
    with pytest.raises(BadRequest, match="not valid JSON"):
        split_body(b"\xff\xfe", None)


def test_metadata(tiny):
    meta = model_metadata(tiny)
    assert meta == {"name": "tiny", "versions": [tiny.version], "platform": "onnxruntime_onnx",
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                    "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}]}


def test_every_datatype_json_and_binary_through_the_model(tmp_path):
    m = load_model(echo_model_dir(tmp_path / "echo"))
    samples = {"BOOL": [True, False, False, True], "BYTES": ["a", "b", "ü", ""], "FP16": [0.5, 1, 2, 3]}
    inputs = [{"name": s.name, "shape": [2, 2], "datatype": s.datatype,
               "data": samples.get(s.datatype, [0, 1, 2, 3])} for s in m.inputs]
    response = infer_request(m, {"inputs": inputs})
    by_name = {o["name"]: o for o in response["outputs"]}
    for t in inputs:
        out = by_name["out_" + t["name"].removeprefix("in_")]
        assert out["datatype"] == t["datatype"] and out["data"] == t["data"]
    result = infer(m, {"inputs": inputs, "parameters": {"binary_data_output": True}})
    assert len(result.binary) == len(inputs)


@pytest.mark.parametrize("transport", ["json", "binary"])
def test_each_input_is_validated_once_per_request(tiny, monkeypatch, transport):
    # given counters on the shape check and the NaN/Inf scan, wherever they are called from
    import layers.codec
    import layers.model

    calls = {"shape": 0, "finite": 0}
    real_shape, real_finite = layers.codec.check_shape, layers.model._all_finite

    def shape(*a, **k):
        calls["shape"] += 1
        return real_shape(*a, **k)

    def finite(*a, **k):
        calls["finite"] += 1
        return real_finite(*a, **k)

    monkeypatch.setattr(layers.codec, "check_shape", shape)
    monkeypatch.setattr(layers.model, "check_shape", shape)
    monkeypatch.setattr(layers.model, "_all_finite", finite)
    x = np.full((2, 4), 0.5, np.float32)
    if transport == "json":
        result = infer(tiny, {"inputs": [x_tensor(2)]})
    else:
        tensor = {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
        result = infer(tiny, {"inputs": [tensor]}, x.tobytes())
    # when one request with one input is served, then each check ran once, and the answer is right
    assert calls == {"shape": 1, "finite": 1}
    np.testing.assert_allclose(np.asarray(result.response["outputs"][0]["data"]).reshape(2, 3),
                               tiny.session.run(None, {"x": x})[0], rtol=1e-6)

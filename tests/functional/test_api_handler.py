"""The Lambda API handler with recorded HTTP API 2.0 events: every route and error path."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from layers import names
from layers.limits import invocation_event_bytes
from layers.manifest import ManifestError
from tests.conftest import load_event
from tests.functional.conftest import import_handler, route


def body_of(response: dict) -> dict:
    raw = response["body"]
    return json.loads(base64.b64decode(raw) if response.get("isBase64Encoded") else raw)


def call(api, lambda_context, event):
    response = api.handler(event, lambda_context)
    return response["statusCode"], response


def test_json_inference(api, lambda_context):
    status, response = call(api, lambda_context, load_event("http_infer"))
    body = body_of(response)
    assert status == 200 and response["headers"]["Content-Type"] == "application/json"
    assert body["id"] == "recorded-1" and body["model_name"] == "tiny"
    assert body["model_version"] == api.model.version
    [out] = body["outputs"]
    x = np.array([[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]], np.float32)
    expected = api.model.session.run(None, {"x": x})[0]
    np.testing.assert_array_equal(np.asarray(out["data"], np.float32).reshape(out["shape"]), expected)


def test_base64_body_is_the_same_request(api, lambda_context):
    _, plain = call(api, lambda_context, load_event("http_infer"))
    status, b64 = call(api, lambda_context, load_event("http_infer_base64"))
    assert status == 200 and body_of(b64) == body_of(plain)


def test_binary_extension_round_trip(api, lambda_context):
    status, response = call(api, lambda_context, load_event("http_infer_binary"))
    assert status == 200 and response["isBase64Encoded"] is True
    n = int(response["headers"]["Inference-Header-Content-Length"])
    raw = base64.b64decode(response["body"])
    header = json.loads(raw[:n])
    [out] = header["outputs"]
    assert out["parameters"]["binary_data_size"] == 12 and "data" not in out
    got = np.frombuffer(raw[n:], "<f4").reshape(1, 3)
    x = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    np.testing.assert_array_equal(got, api.model.session.run(None, {"x": x})[0])


def test_tritonclient_request_and_response_bodies(api, lambda_context):
    # given a request body exactly as tritonclient builds it (binary input, binary outputs)
    from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    inp = InferInput("x", [3, 4], "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    body, json_size = InferenceServerClient.generate_request_body([inp], [InferRequestedOutput("probs", binary_data=True)])
    event = load_event("http_infer", body=base64.b64encode(body).decode(), isBase64Encoded=True)
    event["headers"] = {"content-type": "application/octet-stream", "inference-header-content-length": str(json_size)}
    # when the handler answers it
    _, response = call(api, lambda_context, event)
    # then tritonclient parses the response unchanged
    result = InferenceServerClient.parse_response_body(
        base64.b64decode(response["body"]), header_length=int(response["headers"]["Inference-Header-Content-Length"])
    )
    np.testing.assert_array_equal(result.as_numpy("probs"), api.model.session.run(None, {"x": x})[0])


def test_tritonclient_json_input_and_default_outputs(api, lambda_context):
    from tritonclient.http import InferenceServerClient, InferInput

    x = np.ones((1, 4), np.float32)
    inp = InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(x, binary_data=False)
    body, json_size = InferenceServerClient.generate_request_body([inp])  # no outputs: binary_data_output
    assert json_size is None
    _, response = call(api, lambda_context, load_event("http_infer", body=body.decode()))
    result = InferenceServerClient.parse_response_body(
        base64.b64decode(response["body"]), header_length=int(response["headers"]["Inference-Header-Content-Length"])
    )
    assert result.as_numpy("probs").shape == (1, 3)


def test_health_metadata_and_ready(api, lambda_context):
    base = load_event("http_metadata")
    version = api.model.version
    expect = {
        "/v2/health/live": {"live": True},
        "/v2/health/ready": {"ready": True},
        "/v2/models/tiny/ready": {"name": "tiny", "ready": True},
        f"/v2/models/tiny/versions/{version}/ready": {"name": "tiny", "ready": True},
    }
    for path, body in expect.items():
        status, response = call(api, lambda_context, route(base, "GET", path))
        assert (status, body_of(response)) == (200, body), path
    for path in ("/v2/models/tiny", f"/v2/models/tiny/versions/{version}"):
        status, response = call(api, lambda_context, route(base, "GET", path))
        assert status == 200 and body_of(response)["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    status, response = call(api, lambda_context, load_event("http_health_live"))
    assert status == 200


def test_versioned_infer(api, lambda_context):
    event = route(load_event("http_infer"), "POST", f"/v2/models/tiny/versions/{api.model.version}/infer")
    assert call(api, lambda_context, event)[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("GET", "/v2/models/other", 404, "model 'other' is not served here; this endpoint serves 'tiny'"),
        ("POST", "/v2/models/other/infer", 404, "serves 'tiny'"),
        ("GET", "/v2/models/tiny/versions/000000000000", 404, "version '000000000000' is not deployed"),
        ("POST", "/v2/models/tiny/versions/1/infer", 404, "is not deployed"),
        ("GET", "/v2/models/tiny/versions/1/ready", 404, "is not deployed"),
        ("GET", "/v1/models/tiny:predict", 404, "no route GET /v1/models/tiny:predict"),
        ("GET", "/v2/models/tiny/infer", 405, "GET is not allowed here; use POST"),
        ("DELETE", "/v2/models/tiny", 405, "use GET"),
        ("POST", "/v2/health/live", 405, "use GET"),
        ("HEAD", "/v2/models/tiny/infer", 405, "use POST"),
        ("PUT", "/v2/models/tiny/versions/1/ready", 405, "use GET"),
    ],
)
def test_routing_errors(api, lambda_context, method, path, status, fragment):
    got, response = call(api, lambda_context, route(load_event("http_infer"), method, path))
    assert got == status and fragment in body_of(response)["error"]
    if status == 405:
        assert response["headers"]["Allow"] in ("GET", "POST")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"body": "{not json"}, "not valid JSON"),
        ({"body": "[1, 2]"}, "must be a JSON object"),
        ({"body": ""}, "not valid JSON"),
        ({"body": json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})},
         "dimension 1 must be 4"),
        ({"body": json.dumps({"inputs": [{"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})},
         "unknown input 'y'"),
        ({"body": json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]})},
         "expects FP32"),
        ({"body": '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [NaN, 1, 2, 3]}]}'},
         "NaN or Infinity"),
        ({"body": "not base64!", "isBase64Encoded": True}, "not valid base64"),
        # a body nested 100,000 levels deep: orjson's depth limit, never the stdlib's RecursionError
        ({"body": '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"}, "nested deeper than 1024 levels"),
        ({"body": '{"id": NaN, "inputs": ' + "[" * 100_000 + "]" * 100_000 + "}"}, "nested deeper than"),
        ({"body": base64.b64encode(b'{"inputs": "\xff\xfe"}').decode(), "isBase64Encoded": True}, "not valid JSON"),
    ],
)
def test_bad_requests_are_400_with_a_reason(api, lambda_context, overrides, fragment):
    status, response = call(api, lambda_context, load_event("http_infer", **overrides))
    assert status == 400 and fragment in body_of(response)["error"]
    assert "Traceback" not in response["body"]


def test_unsupported_content_type_is_415(api, lambda_context):
    event = load_event("http_infer")
    event["headers"]["content-type"] = "text/csv"
    status, response = call(api, lambda_context, event)
    assert status == 415 and "application/json" in body_of(response)["error"]


def test_body_over_the_limit_is_413_with_size_and_limit(monkeypatch, tiny_model_dir, lambda_context):
    monkeypatch.setenv(names.ENV_MODEL_DIR, str(tiny_model_dir))
    monkeypatch.setenv(names.ENV_MAX_REQUEST_BYTES, "100")
    api = import_handler()
    event = load_event("http_infer")
    # Lambda's limit applies to the whole invocation event (layers/limits.py), not the body alone
    size = invocation_event_bytes(event)
    status, response = call(api, lambda_context, event)
    assert status == 413
    assert f"{size:,} bytes" in body_of(response)["error"] and "100 bytes" in body_of(response)["error"]


def test_response_over_the_limit_is_413(monkeypatch, tiny_model_dir, lambda_context):
    monkeypatch.setenv(names.ENV_MODEL_DIR, str(tiny_model_dir))
    # given a limit the request event fits under but 200 rows of 3 probabilities do not
    rows = 200
    body = json.dumps({"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "data": [0] * 4 * rows}]})
    event = load_event("http_infer", body=body)
    monkeypatch.setenv(names.ENV_MAX_REQUEST_BYTES, str(invocation_event_bytes(event) + 100))
    api = import_handler()
    status, response = call(api, lambda_context, event)
    assert status == 413 and "the response would be" in body_of(response)["error"]


def test_default_limit_is_lambdas_6_mb(api, lambda_context):
    big = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}],
                      "pad": "x" * names.LAMBDA_SYNC_PAYLOAD_BYTES})
    status, response = call(api, lambda_context, load_event("http_infer", body=big))
    assert status == 413 and f"{names.LAMBDA_SYNC_PAYLOAD_BYTES:,} bytes" in body_of(response)["error"]


def test_unexpected_exception_is_500_with_request_id_and_no_trace(api, lambda_context, monkeypatch, caplog):
    def boom(*_a, **_k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(type(api.model), "run", boom)
    status, response = call(api, lambda_context, load_event("http_infer"))
    assert status == 500
    assert body_of(response) == {"error": f"internal error; request id {lambda_context.aws_request_id}"}
    assert "secret internals" not in response["body"]
    assert "secret internals" in caplog.text and "Traceback" in caplog.text  # the trace is in the log only


def test_metrics_are_emitted_as_emf(api, lambda_context, capsys):
    call(api, lambda_context, load_event("http_infer"))
    call(api, lambda_context, load_event("http_infer", body="{"))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names_seen = {m["Name"] for line in lines for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Latency", "BatchSize", "PayloadBytes", "ErrorsBadRequest", "ColdStart"} <= names_seen
    infer_line = next(line for line in lines if "BatchSize" in line)
    assert infer_line["BatchSize"] == [2.0] and infer_line["model"] == "tiny"
    assert infer_line["request_id"] == lambda_context.aws_request_id


def test_openapi_and_docs_are_generated_and_offline(api, lambda_context):
    base = load_event("http_metadata")
    status, response = call(api, lambda_context, route(base, "GET", "/openapi.json"))
    spec = body_of(response)
    assert status == 200 and spec["openapi"].startswith("3.")
    assert "/v2/models/{name}/infer" in spec["paths"] and "/v2/models/{name}/versions/{version}/infer" in spec["paths"]
    status, response = call(api, lambda_context, route(base, "GET", "/docs"))
    assert status == 200 and response["headers"]["Content-Type"] == "text/html"
    assert "<script src=\"http" not in response["body"] and "SwaggerUIBundle" in response["body"]


def test_import_fails_without_model_dir(monkeypatch):
    monkeypatch.delenv(names.ENV_MODEL_DIR, raising=False)
    with pytest.raises(ManifestError, match="MODEL_DIR is not set"):
        import_handler()


def test_import_fails_on_a_tampered_model(monkeypatch, tiny_model_dir):
    monkeypatch.setenv(names.ENV_MODEL_DIR, str(tiny_model_dir))
    (tiny_model_dir / "model.onnx").write_bytes((tiny_model_dir / "model.onnx").read_bytes() + b"\x00")
    with pytest.raises(ManifestError, match="sha256"):
        import_handler()


def test_tracing_on_as_deployed_in_a_fresh_process(tiny_model_dir, tmp_path):
    """With Lambda's env the Powertools Tracer is on; the handler still answers (own process,
    so the X-Ray SDK's global state never reaches other tests)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    code = (
        "import json\n"
        "from functions.api import handler as h\n"
        "from tests.conftest import FakeLambdaContext, load_event\n"
        "assert h.tracer is not None\n"
        "r = h.handler(load_event('http_infer'), FakeLambdaContext())\n"
        "print('STATUS', r['statusCode'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(repo), names.ENV_MODEL_DIR: str(tiny_model_dir),
           "LAMBDA_TASK_ROOT": str(tmp_path), "AWS_LAMBDA_FUNCTION_NAME": "modelfn-test",
           "_X_AMZN_TRACE_ID": "Root=1-6740a1b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
           "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:9", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR"}
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "STATUS 200" in out.stdout

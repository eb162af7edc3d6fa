"""The SageMaker proxy function, against a stubbed sagemaker-runtime client (botocore Stubber)."""

from __future__ import annotations

import base64
import inspect
import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from functions.proxy import handler as proxy
from layers import names, sagemaker_proxy

ENDPOINT = "modelfn-heavy-endpoint"


def http_event(method: str, path: str, body: bytes | None = None, *, headers: dict | None = None,
               b64: bool = False) -> dict:
    """A minimal API Gateway HTTP API (payload 2.0) event."""
    event = {
        "version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {"http": {"method": method, "path": path}, "requestId": "r1"},
        "isBase64Encoded": b64,
    }
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if b64 else body.decode()
    return event


@pytest.fixture
def stub(monkeypatch):
    client = boto3.client("sagemaker-runtime", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    monkeypatch.setattr(sagemaker_proxy, "_CLIENT", client)
    monkeypatch.setenv(names.ENV_SAGEMAKER_ENDPOINT, ENDPOINT)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def ok(payload: dict | bytes, content_type: str = "application/json", attrs: str | None = None) -> dict:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    resp = {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": content_type}
    if attrs:
        resp["CustomAttributes"] = attrs
    return resp


def test_infer_is_forwarded_with_the_route_attribute(stub, lambda_context) -> None:
    request = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    answer = {"model_name": "heavy", "outputs": []}
    stub.add_response("invoke_endpoint", ok(answer), {
        "EndpointName": ENDPOINT, "Body": json.dumps(request).encode(),
        "ContentType": "application/json", "Accept": "application/json",
        "CustomAttributes": "route=POST /v2/models/heavy/infer",
    })
    resp = proxy.handler(http_event("POST", "/v2/models/heavy/infer", json.dumps(request).encode()),
                         lambda_context)
    assert resp["statusCode"] == 200 and json.loads(resp["body"]) == answer


def test_metadata_get_carries_the_route_and_an_empty_json_body(stub, lambda_context) -> None:
    stub.add_response("invoke_endpoint", ok({"name": "heavy"}), {
        "EndpointName": ENDPOINT, "Body": b"{}", "ContentType": ANY, "Accept": ANY,
        "CustomAttributes": "route=GET /v2/models/heavy/versions/abc/ready",
    })
    resp = proxy.handler(http_event("GET", "/v2/models/heavy/versions/abc/ready"), lambda_context)
    assert resp["statusCode"] == 200


def test_binary_extension_header_travels_both_ways(stub, lambda_context) -> None:
    body = b'{"inputs":[]}' + b"\x00\x01\x02\xff"
    stub.add_response("invoke_endpoint",
                      ok(b'{"outputs":[]}\x00\xff', "application/octet-stream",
                         "inference-header-content-length=14"),
                      {"EndpointName": ENDPOINT, "Body": body, "ContentType": ANY, "Accept": ANY,
                       "CustomAttributes": "route=POST /v2/models/heavy/infer;"
                                           "inference-header-content-length=13"})
    event = http_event("POST", "/v2/models/heavy/infer", body, b64=True,
                       headers={"Inference-Header-Content-Length": "13"})
    resp = proxy.handler(event, lambda_context)
    assert resp["isBase64Encoded"] and base64.b64decode(resp["body"]).endswith(b"\x00\xff")
    assert resp["headers"]["inference-header-content-length"] == "14"


def test_client_errors_from_the_model_pass_through(stub, lambda_context) -> None:
    error = {"error": "input 'x' has shape [1, 5]; expected [-1, 4]. Send 4 features per row."}
    stub.add_client_error("invoke_endpoint", service_error_code="ModelError",
                          service_message="Received client error (400)", http_status_code=424,
                          modeled_fields={"OriginalStatusCode": 400,
                                          "OriginalMessage": json.dumps(error)})
    resp = proxy.handler(http_event("POST", "/v2/models/heavy/infer", b"{}"), lambda_context)
    assert resp["statusCode"] == 400 and json.loads(resp["body"]) == error


def test_a_body_over_the_sagemaker_limit_is_a_413_without_a_call(stub, lambda_context) -> None:
    big = b"x" * (names.SAGEMAKER_PAYLOAD_BYTES + 1)
    resp = proxy.handler(http_event("POST", "/v2/models/heavy/infer", big), lambda_context)
    assert resp["statusCode"] == 413 and "batch" in json.loads(resp["body"])["error"]


@pytest.mark.parametrize(("code", "message", "status"), [
    ("ValidationError", "Endpoint modelfn-heavy-endpoint of account 1 not found.", 503),
    ("ModelNotReadyException", "not ready", 503),
    ("ThrottlingException", "slow down", 429),
    ("ValidationError", "1 validation error detected: Value at 'body'", 400),
    ("InternalFailure", "boom", 502),
])
def test_service_errors_map_to_honest_statuses(stub, lambda_context, code, message, status) -> None:
    stub.add_client_error("invoke_endpoint", service_error_code=code, service_message=message,
                          http_status_code=400 if code == "ValidationError" else 500)
    resp = proxy.handler(http_event("POST", "/v2/models/heavy/infer", b"{}"), lambda_context)
    assert resp["statusCode"] == status
    assert set(json.loads(resp["body"])) == {"error"}


def test_missing_endpoint_configuration_says_how_to_fix(monkeypatch, lambda_context) -> None:
    monkeypatch.delenv(names.ENV_SAGEMAKER_ENDPOINT, raising=False)
    resp = proxy.handler(http_event("GET", "/v2/models/heavy"), lambda_context)
    assert resp["statusCode"] == 502 and "redeploy" in json.loads(resp["body"])["error"]


def test_an_event_over_lambdas_limit_is_a_413_with_its_size_even_if_the_body_fits(stub, lambda_context) -> None:
    # given 4.6 MB of binary tensor bytes: under SageMaker's 6 MB, over Lambda's once base64-encoded
    from layers.limits import invocation_event_bytes

    event = http_event("POST", "/v2/models/heavy/infer", b"\0" * int(4.6 * 1024 * 1024), b64=True,
                       headers={"content-type": "application/octet-stream"})
    # when / then: refused with the event's size and the limit, and SageMaker is never called
    resp = proxy.handler(event, lambda_context)
    error = json.loads(resp["body"])["error"]
    assert resp["statusCode"] == 413
    assert f"{invocation_event_bytes(event):,} bytes" in error and f"{names.LAMBDA_SYNC_PAYLOAD_BYTES:,}" in error


def test_client_retries_fit_inside_the_functions_own_timeout(monkeypatch) -> None:
    from infra.cdk.constructs.sagemaker_proxy import SageMakerProxyFunction

    default = inspect.signature(SageMakerProxyFunction.__init__).parameters["timeout_s"].default
    for timeout in (default, 10, 60):
        monkeypatch.setenv(names.ENV_PROXY_TIMEOUT_S, str(timeout))
        connect, read, attempts = proxy.client_timeouts()
        assert attempts * (connect + read) < timeout
    monkeypatch.setenv(names.ENV_PROXY_TIMEOUT_S, str(default))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # Lambda always sets it
    monkeypatch.setattr(sagemaker_proxy, "_CLIENT", None)
    config = proxy.client().meta.config
    assert config.retries["total_max_attempts"] * (config.connect_timeout + config.read_timeout) < default
    assert default == names.PROXY_TIMEOUT_S < names.HTTP_API_TIMEOUT_S


def test_each_request_is_logged_and_measured_with_a_cold_start(stub, lambda_context, capsys, monkeypatch) -> None:
    stub.add_response("invoke_endpoint", ok({"live": True}), {
        "EndpointName": ENDPOINT, "Body": b"{}", "ContentType": "application/json",
        "Accept": "application/json", "CustomAttributes": "route=GET /v2/health/live"})
    from aws_lambda_powertools.metrics.provider import cold_start

    log = io.StringIO()  # the Logger's handler holds the stdout of its creation; read it here
    monkeypatch.setattr(proxy.logger.registered_handler, "stream", log)
    cold_start.is_cold_start = True  # Powertools tracks the cold start once per process
    resp = proxy.handler(http_event("GET", "/v2/health/live"), lambda_context)
    assert resp["statusCode"] == 200
    lines = [json.loads(line) for line in (log.getvalue() + capsys.readouterr().out).splitlines()
             if line.startswith("{")]
    logs = [line for line in lines if line.get("message") == "request"]
    assert logs and logs[0]["status"] == 200 and logs[0]["path"] == "/v2/health/live"
    emf = [line for line in lines if "_aws" in line]
    assert any("ColdStart" in e for e in emf) and any("Latency" in e for e in emf)


def test_the_staged_zip_runs_on_the_lambda_runtime_with_powertools_only(tmp_path) -> None:
    """The proxy's zip (staging.stage_proxy_code) imports with nothing but the Lambda Python
    runtime's boto3 and the stack's Powertools layer (powertools_layer.py, found first on the
    path as /opt/python is on Lambda): no orjson, numpy or onnxruntime, no repository, no C
    extension (wrapt falls back to Python)."""
    import subprocess
    import sys
    import sysconfig

    from infra.cdk.constructs.powertools_layer import stage_powertools_layer
    from infra.targets.staging import stage_proxy_code

    code = stage_proxy_code(dest=tmp_path / "proxy")
    layer = stage_powertools_layer(tmp_path / "powertools-layer") / "python"
    assert not list(layer.rglob("*.so")), "the layer must run on any architecture"
    script = (
        "import sys\n"
        "class NotInTheRuntime:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('orjson', 'numpy', 'onnxruntime', 'infra', 'tests'):\n"
        "            raise ImportError(f'{name} is not in the proxy zip or the Lambda runtime')\n"
        "sys.meta_path.insert(0, NotInTheRuntime())\n"
        f"sys.path[:0] = [{str(code)!r}, {str(layer)!r}, {sysconfig.get_paths()['purelib']!r}]\n"
        "import json, functions.proxy.handler as h\n"
        "import aws_lambda_powertools, aws_xray_sdk, wrapt\n"
        f"assert all(m.__file__.startswith({str(layer)!r}) for m in (aws_lambda_powertools, aws_xray_sdk, wrapt))\n"
        "from layers.limits import invocation_event_bytes\n"
        "event = {'body': 'caf\\u00e9 \"x\"', 'isBase64Encoded': False}\n"
        "assert invocation_event_bytes(event) == len(json.dumps(event, ensure_ascii=False, separators=(',', ':')).encode())\n"
        "print(h.client_timeouts())\n"
    )
    env = {"PATH": "/usr/bin:/bin", names.ENV_PROXY_MODEL: "heavy", names.ENV_PROXY_TIMEOUT_S: "29"}
    out = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(2, 25, 1)"

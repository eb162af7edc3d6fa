"""The SageMaker proxy function, against a stubbed sagemaker-runtime client (botocore Stubber)."""

from __future__ import annotations

import base64
import io
import json

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from functions.proxy import handler as proxy
from layers import names

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
    monkeypatch.setattr(proxy, "_CLIENT", client)
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

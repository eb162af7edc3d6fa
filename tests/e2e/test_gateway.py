"""The local API Gateway over HTTP, in front of test-only handlers run by the real
awslambdaric: the event it sends, the responses it reads, its limits and error paths."""

from __future__ import annotations

import base64
import http.client
import json
import time
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.e2e


def call(gw, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    u = urlsplit(gw.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def echoed(gw, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> dict:
    resp, data = call(gw, method, path, body, headers)
    assert resp.status == 200, data
    return json.loads(data)


def test_http_api_v2_event_has_the_fields_api_gateway_sends(echo_gateway):
    # when
    out = echoed(echo_gateway, "POST", "/v2/models/echo/infer?a=1&a=2&b=x",
                 b'{"inputs": []}', {"Content-Type": "application/json", "X-Thing": "T",
                                     "Cookie": "c1=1; c2=2", "User-Agent": "tester/1"})
    ev = out["event"]
    # then
    assert ev["version"] == "2.0"
    # inference arrives through the model's catch-all, as on the deployed API (a route per
    # path and model would exhaust the API's 300-route quota at ~16 models)
    assert ev["routeKey"] == "ANY /v2/models/echo/{proxy+}"
    assert ev["rawPath"] == "/v2/models/echo/infer"
    assert ev["rawQueryString"] == "a=1&a=2&b=x"
    assert ev["queryStringParameters"] == {"a": "1,2", "b": "x"}
    assert ev["pathParameters"] == {"proxy": "infer"}  # the routes name the model literally
    assert ev["cookies"] == ["c1=1", "c2=2"]
    assert ev["headers"]["x-thing"] == "T" and "cookie" not in ev["headers"]
    ctx = ev["requestContext"]
    assert ctx["http"] == {"method": "POST", "path": "/v2/models/echo/infer", "protocol": "HTTP/1.1",
                           "sourceIp": "127.0.0.1", "userAgent": "tester/1"}
    assert ctx["stage"] == "$default" and ctx["requestId"] and ctx["timeEpoch"] > 0 and ctx["time"]
    assert ev["isBase64Encoded"] is False and ev["body"] == '{"inputs": []}'
    # and the function ran as Lambda runs it
    assert out["function_name"] == "modelfn-echo-api"
    assert 0 < out["remaining_ms"] <= 10_000


def test_binary_bodies_are_base64_encoded_and_responses_keep_headers_and_cookies(echo_gateway):
    raw = bytes(range(256)) * 4
    resp, data = call(echo_gateway, "POST", "/v2/models/echo/infer", raw,
                      {"Content-Type": "application/octet-stream"})
    ev = json.loads(data)["event"]
    assert ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == raw
    assert resp.getheader("x-echo") == "1"
    assert resp.msg.get_all("set-cookie") == ["a=1", "b=2"]


@pytest.mark.parametrize(("method", "path", "route_key", "params"), [
    ("GET", "/v2/models/echo", "GET /v2/models/echo", None),
    ("GET", "/v2/models/echo/ready", "ANY /v2/models/echo/{proxy+}", {"proxy": "ready"}),
    ("GET", "/v2/models/echo/versions/7/ready", "ANY /v2/models/echo/{proxy+}",
     {"proxy": "versions/7/ready"}),
    ("POST", "/openai/echo/v1/embeddings", "ANY /openai/echo/{proxy+}", {"proxy": "v1/embeddings"}),
    ("PUT", "/v2/models/echo/infer", "ANY /v2/models/echo/{proxy+}", {"proxy": "infer"}),
    ("GET", "/v2/models/echo/a/b", "ANY /v2/models/echo/{proxy+}", {"proxy": "a/b"}),
    ("POST", "/v2/models/echo", "$default", None),
    ("GET", "/v2/health/ready", "GET /v2/health/ready", None),
    ("GET", "/somewhere/else", "$default", None),
])
def test_routes_match_the_deployed_api(echo_gateway, method, path, route_key, params):
    ev = echoed(echo_gateway, method, path)["event"]
    assert (ev["routeKey"], ev.get("pathParameters")) == (route_key, params)


def test_inferred_response_format(echo_gateway):
    # a result without statusCode is returned as a 200 JSON body, as HTTP API does
    assert echoed(echo_gateway, "GET", "/v2/models/echo/bare") == {"bare": True}


def test_unknown_model_is_404_naming_the_models_served(echo_gateway):
    resp, data = call(echo_gateway, "GET", "/v2/models/nope/ready")
    assert resp.status == 404
    err = json.loads(data)["error"]
    assert "'nope'" in err and "echo" in err


def test_body_over_10_mb_is_413(echo_gateway):
    resp, data = call(echo_gateway, "POST", "/v2/models/echo/infer", b"x" * (10 * 1024 * 1024 + 1),
                      {"Content-Type": "application/octet-stream"})
    assert resp.status == 413 and json.loads(data) == {"message": "Request Entity Too Large"}


def test_function_error_is_500_like_api_gateway(echo_gateway):
    resp, data = call(echo_gateway, "GET", "/v2/models/echo/raise")
    assert resp.status == 500 and json.loads(data) == {"message": "Internal Server Error"}


def test_crashed_instance_is_restarted_and_serves_the_next_request(echo_gateway):
    # given the pids that serve now
    before = {echoed(echo_gateway, "GET", "/v2/models/echo/x")["pid"] for _ in range(4)}
    # when a process exits mid-invoke
    resp, data = call(echo_gateway, "GET", "/v2/models/echo/crash")
    # then that request fails like Lambda's Runtime.ExitError behind API Gateway ...
    assert resp.status == 500 and json.loads(data) == {"message": "Internal Server Error"}
    # ... and every following request is served, soon by a fresh process too
    fresh = set()
    for _ in range(100):
        fresh |= {echoed(echo_gateway, "GET", "/v2/models/echo/x")["pid"]} - before
        if fresh:
            break
        time.sleep(0.1)
    assert fresh


def test_integration_timeout_is_503_service_unavailable(echo_gateway):
    resp, data = call(echo_gateway, "GET", "/v2/models/echo/sleep?s=4")
    assert resp.status == 503 and json.loads(data) == {"message": "Service Unavailable"}


def test_model_whose_init_failed_is_503_with_the_cause(echo_gateway):
    resp, data = call(echo_gateway, "GET", "/v2/models/broken/ready")
    assert resp.status == 503
    assert "model could not be loaded on purpose" in json.loads(data)["error"]


@pytest.mark.parametrize(("method", "path", "route_key"), [
    ("TRACE", "/v2/models/echo/infer", "ANY /v2/models/echo/{proxy+}"),
    ("PROPFIND", "/v2/models/echo/ready", "ANY /v2/models/echo/{proxy+}"),
    ("TRACE", "/v2/health/live", "$default"),
    ("CONNECT", "/anything", "$default"),
])
def test_methods_the_api_does_not_route_reach_the_function_like_any_other(echo_gateway, method, path,
                                                                          route_key):
    # the stdlib server would answer these with its own 501 HTML page
    ev = echoed(echo_gateway, method, path)["event"]
    assert ev["routeKey"] == route_key and ev["requestContext"]["http"]["method"] == method


def test_a_malformed_request_gets_a_json_error_not_an_html_page(echo_gateway):
    import socket

    u = urlsplit(echo_gateway.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/9.9\r\nHost: x\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"505"
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"message": "HTTP Version Not Supported"}

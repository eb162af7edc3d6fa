"""Streaming on AWS's transports, run here: the Lambda streaming runtime (functions/stream, as
the function URL's function runs it) against the local Runtime API, and the SageMaker container
(``/invocations``, what ``InvokeEndpointWithResponseStream`` relays) over real HTTP, both with
a tiny Llama made from a config. The events arrive as separate chunks while the model
generates, and join to exactly the text the same request answers without streaming."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infra.local.runtime_api import Invocation, RuntimeApi
from layers import names, sagemaker_wire
from layers.http.streaming import CONTENT_TYPE, DELIMITER
from tests.conftest import load_event
from tests.generation.conftest import local_stack

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("generation")]
REPO = Path(__file__).resolve().parents[2]
NAME = "tiny-llama"
ROUTE = "/openai/v1/completions"


def completion(stream: bool) -> dict:
    return {"model": NAME, "prompt": "the quick brown fox", "max_tokens": 12, "temperature": 0,
            "stream": stream}


def sse_text(body: bytes) -> tuple[str, int]:
    """(the completion text the events carry, how many events), checking the [DONE] end."""
    events = [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e.strip()]
    assert events[-1] == "[DONE]"
    return "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]), len(events) - 1


@pytest.fixture(scope="module")
def runtime(llama):
    """The streaming runtime's own process serving the model, as Lambda starts it."""
    api = RuntimeApi().start()
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": api.address, names.ENV_MODEL_DIR: str(llama[1]),
           "PYTHONPATH": str(REPO), "POWERTOOLS_METRICS_NAMESPACE": "modelfn-test"}
    proc = subprocess.Popen([sys.executable, "-m", names.STREAM_MODULE], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield api
    proc.kill()
    proc.wait(10)
    api.stop()


def url_invoke(api: RuntimeApi, body: dict, authorization: str | None = None):
    event = load_event("function_url_infer", rawPath=ROUTE, body=json.dumps(body))
    event["requestContext"]["http"]["path"] = ROUTE
    if authorization is not None:
        event["headers"]["authorization"] = authorization
    inv = Invocation(payload=json.dumps(event).encode(), deadline_ms=int(time.time() * 1000) + 120_000,
                     function_arn="arn:aws:lambda:us-east-1:123456789012:function:modelfn-tiny-llama-stream")
    api.submit(inv)
    assert inv.done.wait(120), "the streaming function never answered"
    return inv.outcome


def test_function_url_streams_the_completion_event_by_event(runtime):
    whole = url_invoke(runtime, completion(stream=False))
    head, _, body = whole.payload.partition(DELIMITER)
    assert json.loads(head)["statusCode"] == 200
    expected = json.loads(body)["choices"][0]["text"]

    out = url_invoke(runtime, completion(stream=True))
    assert out.ok and out.streamed and out.content_type == CONTENT_TYPE
    head, _, body = out.payload.partition(DELIMITER)
    prelude = json.loads(head)
    assert prelude["statusCode"] == 200 and prelude["headers"]["Content-Type"].startswith("text/event-stream")
    text, events = sse_text(body)
    assert text == expected and events >= 3
    assert len(out.parts) >= events  # sent as the model produced them, not joined at the end


def test_function_url_errors_keep_openais_shape(runtime):
    out = url_invoke(runtime, {**completion(stream=True), "max_tokens": -1})
    head, _, body = out.payload.partition(DELIMITER)
    assert json.loads(head)["statusCode"] == 400
    assert "max_tokens" in json.loads(body)["error"]["message"]


@pytest.fixture(scope="module")
def jwt_runtime(llama):
    """The streaming runtime of an ``auth: jwt`` model (URL auth NONE) with a local issuer."""
    from tests.helpers.jwks import AUDIENCE, Issuer

    with Issuer() as issuer:
        api = RuntimeApi().start()
        env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": api.address, names.ENV_MODEL_DIR: str(llama[1]),
               "PYTHONPATH": str(REPO), "POWERTOOLS_METRICS_NAMESPACE": "modelfn-test",
               names.ENV_AUTH: "jwt", names.ENV_JWT_ISSUER: issuer.url, names.ENV_JWT_AUDIENCE: AUDIENCE}
        proc = subprocess.Popen([sys.executable, "-m", names.STREAM_MODULE], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield api, issuer
        proc.kill()
        proc.wait(10)
        api.stop()


def test_a_jwt_models_function_url_streams_for_a_valid_token_and_refuses_others(jwt_runtime):
    api, issuer = jwt_runtime
    token = f"Bearer {issuer.token()}"
    whole = url_invoke(api, completion(stream=False), token)
    head, _, body = whole.payload.partition(DELIMITER)
    assert json.loads(head)["statusCode"] == 200
    out = url_invoke(api, completion(stream=True), f"Bearer {issuer.token(kid='ec-1')}")
    head, _, streamed = out.payload.partition(DELIMITER)
    text, events = sse_text(streamed)
    assert text == json.loads(body)["choices"][0]["text"] and events >= 3

    for bad in (None, f"Bearer {issuer.token(aud='someone-else')}", f"Bearer {issuer.token(exp=1)}"):
        head, _, body = url_invoke(api, completion(stream=True), bad).payload.partition(DELIMITER)
        assert json.loads(head)["statusCode"] == 401 and json.loads(body) == {"message": "Unauthorized"}


def test_the_stock_openai_client_streams_from_a_jwt_models_function_url_with_its_token(jwt_runtime):
    """The user's view: ``OpenAI(base_url=<StreamUrl>/openai/v1, api_key=<JWT>)`` (the client
    sends it as ``Authorization: Bearer``) streams; a token for another audience is the
    client's AuthenticationError (401)."""
    from openai import AuthenticationError, OpenAI

    from tests.helpers.function_url import FunctionUrl

    api, issuer = jwt_runtime
    request = {"model": NAME, "prompt": "the quick brown fox", "max_tokens": 12, "temperature": 0}
    with FunctionUrl(api) as url:
        client = OpenAI(base_url=f"{url.url}/openai/v1", api_key=issuer.token(), max_retries=0)
        whole = client.completions.create(**request).choices[0].text
        chunks = list(client.completions.create(**request, stream=True))
        assert "".join(c.choices[0].text for c in chunks) == whole and len(chunks) >= 3
        other = OpenAI(base_url=f"{url.url}/openai/v1", api_key=issuer.token(aud="someone-else"), max_retries=0)
        with pytest.raises(AuthenticationError) as info:
            other.completions.create(**request, stream=True)
        assert info.value.status_code == 401 and "Unauthorized" in str(info.value)


@pytest.fixture(scope="module")
def container(llama):
    """The SageMaker container's server (functions/sagemaker/serve.py) on a free port."""
    from functions.sagemaker.serve import make_server
    from tests.functional.conftest import import_handler

    old = os.environ.get(names.ENV_MODEL_DIR)
    os.environ[names.ENV_MODEL_DIR] = str(llama[1])
    try:
        import_handler()
        srv = make_server("127.0.0.1", 0)
    finally:
        if old is None:
            os.environ.pop(names.ENV_MODEL_DIR, None)
        else:
            os.environ[names.ENV_MODEL_DIR] = old
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def invocations(port: int, body: dict) -> tuple[http.client.HTTPResponse, list[bytes]]:
    """POST /invocations as SageMaker forwards it (the route in the custom attribute); the
    body read chunk by chunk as it arrives."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/invocations", body=json.dumps(body), headers={
        "Content-Type": "application/json",
        sagemaker_wire.HEADER: sagemaker_wire.request_attributes("POST", ROUTE, None)})
    resp = conn.getresponse()
    parts = []
    while chunk := resp.read1(65536):
        parts.append(chunk)
    conn.close()
    return resp, parts


def test_sagemaker_container_answers_a_streaming_request_chunked(container):
    resp, parts = invocations(container, completion(stream=False))
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") is None
    expected = json.loads(b"".join(parts))["choices"][0]["text"]

    resp, parts = invocations(container, completion(stream=True))
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Type").startswith("text/event-stream")
    text, events = sse_text(b"".join(parts))
    assert text == expected and events >= 3


@pytest.fixture(scope="module")
def sagemaker_stack(llama, tmp_path_factory):
    """The local stack serving the model as a sagemaker target: its container streams."""
    yield from local_stack(llama, tmp_path_factory.mktemp("gensm"), NAME, "sagemaker")


def test_local_stack_relays_the_sagemaker_containers_stream(sagemaker_stack):
    from urllib.parse import urlsplit

    url = urlsplit(sagemaker_stack.url)

    def post(body: dict):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        conn.request("POST", ROUTE, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    resp, data = post(completion(stream=False))
    assert resp.status == 200, data
    expected = json.loads(data)["choices"][0]["text"]
    resp, data = post(completion(stream=True))
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    text, events = sse_text(data)
    assert text == expected and events >= 3


def test_boto3_invoke_endpoint_with_response_stream_gets_one_payload_part_per_event(container):
    """The stock boto3 client against SageMaker Runtime's operations locally
    (infra/local/sagemaker_runtime.py) in front of the container."""
    import boto3
    from botocore.config import Config

    from infra.local.sagemaker_runtime import SageMakerRuntime

    rt = SageMakerRuntime({"tiny-llama-ep": container}).start()
    try:
        client = boto3.client("sagemaker-runtime", endpoint_url=rt.url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing",
                              config=Config(retries={"max_attempts": 1}))
        attrs = sagemaker_wire.request_attributes("POST", ROUTE, None)
        whole = client.invoke_endpoint(EndpointName="tiny-llama-ep", ContentType="application/json",
                                       CustomAttributes=attrs, Body=json.dumps(completion(stream=False)))
        expected = json.loads(whole["Body"].read())["choices"][0]["text"]
        resp = client.invoke_endpoint_with_response_stream(
            EndpointName="tiny-llama-ep", ContentType="application/json", CustomAttributes=attrs,
            Body=json.dumps(completion(stream=True)))
        assert resp["ContentType"].startswith("text/event-stream")
        parts = [e["PayloadPart"]["Bytes"] for e in resp["Body"] if "PayloadPart" in e]
        text, events = sse_text(b"".join(parts))
        assert text == expected and events >= 3 and len(parts) >= 3
        with pytest.raises(client.exceptions.ModelError, match="max_tokens"):
            client.invoke_endpoint_with_response_stream(
                EndpointName="tiny-llama-ep", ContentType="application/json", CustomAttributes=attrs,
                Body=json.dumps({**completion(stream=True), "max_tokens": -1}))
    finally:
        rt.stop()

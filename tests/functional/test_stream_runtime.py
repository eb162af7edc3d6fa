"""The streaming runtime (functions/stream) against the local Runtime API
(infra/local/runtime_api.py): the documented streaming mode (chunked body, the HTTP
integration prelude, error trailers), chunks delivered while the model is still producing,
every route answered, init errors reported. Recorded function URL event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from functions.stream.runtime import RuntimeApi as Client
from functions.stream.runtime import make_invoke, serve_one
from infra.local.runtime_api import Invocation, RuntimeApi
from layers import names
from layers.http.streaming import CONTENT_TYPE, DELIMITER
from layers.messages import Reply
from tests.conftest import load_event

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runtime_api():
    api = RuntimeApi().start()
    yield api
    api.stop()


def invoke_once(api: RuntimeApi, invoke, event: dict, on_part=None) -> Invocation:
    """One invocation through the Runtime API, served by ``serve_one`` on a thread."""
    inv = Invocation(payload=json.dumps(event).encode(), deadline_ms=int(time.time() * 1000) + 30_000,
                     function_arn="arn:aws:lambda:us-east-1:123456789012:function:modelfn-tiny-stream",
                     on_part=on_part)
    api.submit(inv)
    logs: list[str] = []
    worker = threading.Thread(target=serve_one, args=(Client(api.address), invoke, logs.append), daemon=True)
    worker.start()
    assert inv.done.wait(30), "the runtime never answered"
    worker.join(10)
    inv.logs = logs
    return inv


def split(outcome) -> tuple[dict, bytes]:
    head, sep, body = outcome.payload.partition(DELIMITER)
    assert sep, "no prelude delimiter"
    return json.loads(head), body


def test_chunks_reach_lambda_while_the_model_still_produces(runtime_api):
    received = threading.Event()
    waited: list[bool] = []

    def events():
        for i in range(3):
            yield f"data: {i}\n\n"
            # the next chunk is produced only once Lambda has this one: a buffering runtime
            # would never let this wait succeed
            waited.append(received.wait(10))
            received.clear()

    def invoke(event, context):
        assert context.aws_request_id and context.get_remaining_time_in_millis() > 0
        return Reply(200, "text/event-stream", "", stream=events())

    inv = invoke_once(runtime_api, invoke, load_event("function_url_infer"), on_part=lambda _: received.set())
    out = inv.outcome
    assert out.ok and out.streamed and out.content_type == CONTENT_TYPE
    assert waited == [True, True, True]
    prelude, body = split(out)
    assert prelude["statusCode"] == 200
    assert prelude["headers"]["Content-Type"] == "text/event-stream"
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert len(out.parts) == 4  # the prelude, then one chunk per event


def test_a_failure_after_the_body_started_is_reported_in_the_trailers(runtime_api):
    def events():
        yield "data: 0\n\n"
        raise ValueError("the model broke")

    inv = invoke_once(runtime_api, lambda e, c: Reply(200, "text/event-stream", "", stream=events()),
                      load_event("function_url_infer"))
    out = inv.outcome
    assert not out.ok and out.error_type == "Function.ValueError"
    assert split(out)[1] == b"data: 0\n\n"
    assert "Lambda-Runtime-Function-Error-Body" in out.trailers
    assert any("the model broke" in line for line in inv.logs)


def test_every_route_answers_through_the_stream_with_the_api_functions_replies(runtime_api, api):
    invoke = make_invoke(api.binding, api.obs)
    inv = invoke_once(runtime_api, invoke, load_event("function_url_infer"))
    prelude, body = split(inv.outcome)
    assert prelude["statusCode"] == 200 and prelude["headers"]["Content-Type"] == "application/json"
    assert [o["name"] for o in json.loads(body)["outputs"]] == ["probs"]

    missing = load_event("function_url_infer", rawPath="/v2/models/nope/infer")
    prelude, body = split(invoke_once(runtime_api, invoke, missing).outcome)
    assert prelude["statusCode"] == 404 and "nope" in json.loads(body)["error"]

    prelude, body = split(invoke_once(runtime_api, invoke, {"not": "a function URL event"}).outcome)
    assert prelude["statusCode"] == 400 and "function URL" in json.loads(body)["error"]


def test_the_entry_point_serves_from_its_own_process(runtime_api, tiny_model_dir):
    """``python -m functions.stream.runtime`` as Lambda starts it (the image's entry point)."""
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": runtime_api.address, "MODEL_DIR": str(tiny_model_dir),
           "PYTHONPATH": str(REPO), "POWERTOOLS_METRICS_NAMESPACE": "modelfn-test"}
    proc = subprocess.Popen([sys.executable, "-m", "functions.stream.runtime"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        inv = Invocation(payload=json.dumps(load_event("function_url_infer")).encode(),
                         deadline_ms=int(time.time() * 1000) + 60_000, function_arn="arn:fn")
        runtime_api.submit(inv)
        assert inv.done.wait(60), proc.stderr.read1().decode() if proc.poll() is not None else "no answer"
        prelude, body = split(inv.outcome)
        assert prelude["statusCode"] == 200 and json.loads(body)["model_name"] == "tiny"
    finally:
        proc.kill()
        proc.wait(10)


def test_an_init_failure_is_posted_to_init_error(runtime_api, tmp_path):
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": runtime_api.address, "MODEL_DIR": str(tmp_path / "none"),
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "functions.stream.runtime"], cwd=REPO, env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert runtime_api.init_error is not None
    assert "none" in json.loads(runtime_api.init_error.payload)["errorMessage"]


# --- auth: jwt (function URL auth NONE; the runtime verifies the bearer token first) --------
class RecordingBinding:
    """A route table stand-in that streams three events and records each request it gets."""

    limit = 6 * 1024 * 1024

    def __init__(self) -> None:
        self.calls = 0

    def handle(self, req, context):
        self.calls += 1
        return Reply(200, "text/event-stream", "", stream=(f"data: {i}\n\n" for i in range(3)))


@pytest.fixture(scope="module")
def issuer():
    from tests.helpers.jwks import Issuer

    with Issuer() as issuer:
        yield issuer


def with_token(token: str | None) -> dict:
    event = load_event("function_url_infer")
    event["requestContext"].pop("authorizer", None)  # an auth NONE URL sends no IAM identity
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    return event


def test_a_jwt_models_stream_needs_a_valid_bearer_token_before_anything_runs(runtime_api, issuer):
    from layers.http.jwt_auth import JwtSettings, JwtVerifier
    from tests.helpers.jwks import AUDIENCE

    binding = RecordingBinding()
    logs: list[str] = []
    invoke = make_invoke(binding, verifier=JwtVerifier(JwtSettings(issuer.url, (AUDIENCE,))), log=logs.append)

    prelude, body = split(invoke_once(runtime_api, invoke, with_token(issuer.token(kid="ec-1"))).outcome)
    assert prelude["statusCode"] == 200 and body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert binding.calls == 1

    now = int(time.time())
    refused = {
        "expired": issuer.token(exp=now - 10, iat=now - 310),
        "wrong audience": issuer.token(aud="someone-else"),
        "wrong issuer": issuer.token(iss="https://evil.example.com"),
        "bad signature": issuer.token()[:-6] + "AAAAAA",
        "missing": None,
    }
    for why, token in refused.items():
        prelude, body = split(invoke_once(runtime_api, invoke, with_token(token)).outcome)
        assert prelude["statusCode"] == 401, why
        assert json.loads(body) == {"message": "Unauthorized"}, why
        assert prelude["headers"]["WWW-Authenticate"].startswith("Bearer"), why
    assert binding.calls == 1  # no refused request reached the route (nothing generated)
    assert len(logs) == len(refused) and not any(issuer.token()[:20] in line for line in logs)


def test_a_jwt_function_without_its_issuer_fails_init_instead_of_serving_unchecked(runtime_api, tiny_model_dir):
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": runtime_api.address, "MODEL_DIR": str(tiny_model_dir),
           "PYTHONPATH": str(REPO), names.ENV_AUTH: "jwt"}
    env.pop(names.ENV_JWT_ISSUER, None)
    proc = subprocess.run([sys.executable, "-m", "functions.stream.runtime"], cwd=REPO, env=env,
                          capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert "modelfn:jwt_issuer" in json.loads(runtime_api.init_error.payload)["errorMessage"]

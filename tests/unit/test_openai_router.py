"""The shared OpenAI form's router: what it answers itself, what it forwards, and the router
function over its SSM registry (moto) forwarding the API's event unchanged to a model's
function (here the real API handler, in process, standing in for Lambda's ``Invoke``)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from moto import mock_aws

from layers import names
from layers.openai_router import Deployed, decide, routes_of
from layers.protocols import route_table

ROUTES = routes_of(route_table())
EMB = "POST /openai/v1/embeddings"
MODELS = {"emb": Deployed("emb", "arn:emb", auth="iam", created=1700000000),
          "open": Deployed("open", "arn:open", auth="none", created=1700000001),
          "ner": Deployed("ner", "arn:ner", auth="jwt", created=0)}


def test_the_router_takes_every_body_routed_and_catalog_route_of_the_table():
    assert ROUTES[EMB] == "model" and ROUTES["GET /openai/v1/models"] is None
    assert ROUTES["GET /openai/v1/models/{model}"] is None
    assert {k for k, v in ROUTES.items() if v} == {f"{r.method} {r.path}" for r in route_table().body_routed()}


def test_model_list_and_cards_cover_every_model():
    listed = decide("GET /openai/v1/models", b"", None, MODELS, ROUTES)
    assert listed.forward is None and [m["id"] for m in listed.body["data"]] == ["emb", "ner", "open"]
    assert listed.body["data"][0] == {"id": "emb", "object": "model", "created": 1700000000, "owned_by": "modelfn"}
    card = decide("GET /openai/v1/models/{model}", b"", {"model": "open"}, MODELS, ROUTES)
    assert card.body["id"] == "open" and card.status == 200
    missing = decide("GET /openai/v1/models/{model}", b"", {"model": "gpt-4"}, MODELS, ROUTES)
    assert missing.status == 404 and missing.body["error"]["code"] == "model_not_found" and missing.missing


@pytest.mark.parametrize(("body", "status", "param", "says"), [
    (b"{not json", 400, None, "could not parse"),
    (b'{"input": "x"}', 400, "model", "'model' is required"),
    (b'{"model": 3, "input": "x"}', 400, "model", "'model' is required"),
    (b'{"model": "gpt-4", "input": "x"}', 404, "model", "emb, ner, open"),
    (b'{"model": "ner", "input": "x"}', 403, "model", "/openai/ner/v1"),
])
def test_what_the_router_answers_itself_in_openais_shape(body, status, param, says):
    got = decide(EMB, body, None, MODELS, ROUTES, route_auth="iam")
    assert got.forward is None and got.status == status
    assert set(got.body["error"]) == {"message", "type", "param", "code"} and got.body["error"]["param"] == param
    assert says in got.body["error"]["message"]


def test_forwards_to_the_named_model_of_the_routes_auth_or_a_public_one():
    assert decide(EMB, b'{"model": "emb", "input": "x"}', None, MODELS, ROUTES, route_auth="iam").forward is MODELS["emb"]
    assert decide(EMB, b'{"model": "open", "input": "x"}', None, MODELS, ROUTES, route_auth="jwt").forward is MODELS["open"]
    # locally (no route auth) every model is reachable
    assert decide(EMB, b'{"model": "ner", "input": "x"}', None, MODELS, ROUTES).forward is MODELS["ner"]


class _Lambda:
    """``lambda.invoke`` running the model's real API handler in process."""

    def __init__(self, handler, context) -> None:
        self.handler, self.context, self.calls = handler, context, []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict:
        event = json.loads(Payload)
        self.calls.append((FunctionName, event))
        if FunctionName.endswith(":broken"):
            return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(b'{"errorMessage": "x"}')}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(self.handler(event, self.context)).encode())}


@pytest.fixture
def api(monkeypatch, tiny_model_dir):
    import sys

    from layers.model import reset_model
    from tests.functional.conftest import HANDLER_MODULE, import_handler

    monkeypatch.setenv(names.ENV_MODEL_DIR, str(tiny_model_dir))
    yield import_handler()
    sys.modules.pop(HANDLER_MODULE, None)
    reset_model()


def _event(route_key: str, body: str = "", **extra) -> dict:
    from tests.conftest import load_event

    method, path = route_key.split(" ", 1)
    event = load_event("http_infer")
    event["routeKey"], event["rawPath"] = route_key, path
    event["requestContext"]["http"].update(method=method, path=path)
    event.update({"body": body, "isBase64Encoded": False, "headers": {"content-type": "application/json"}, **extra})
    return event


@mock_aws
def test_router_function_forwards_the_event_unchanged_and_finds_new_models(api, lambda_context, monkeypatch):
    import boto3

    from functions.openai_router.handler import Registry, Router

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    ssm, path = boto3.client("ssm", region_name="us-east-1"), names.router_registry_path("Stack")
    ssm.put_parameter(Name=f"{path}/tiny", Type="String",
                      Value=Deployed("tiny", "arn:tiny:live", auth="iam", created=5).to_json())
    fake = _Lambda(api.handler, lambda_context)
    router = Router(registry=Registry(ssm, path), lambda_client=fake, routes=ROUTES, route_auth="iam")
    # base64 body, as API Gateway sends some: the router reads it, the function gets the same event
    body = base64.b64encode(json.dumps({"model": "tiny", "input": "hello"}).encode()).decode()
    event = _event(EMB, body, isBase64Encoded=True)
    out = router(event)
    (target, forwarded), = fake.calls
    assert target == "arn:tiny:live" and forwarded == event
    # the tiny model is a classifier: its own function answers OpenAI's 400 (not the router)
    assert out["statusCode"] == 400 and "not an embedding model" in json.loads(out["body"])["error"]["message"]
    # a model deployed after the registry was read is found on the first request naming it
    ssm.put_parameter(Name=f"{path}/late", Type="String", Value=Deployed("late", "arn:late:broken", "iam").to_json())
    out = router(_event(EMB, json.dumps({"model": "late", "input": "x"})))
    assert out["statusCode"] == 500 and json.loads(out["body"])["error"]["type"] == "server_error"
    listed = json.loads(router(_event("GET /openai/v1/models"))["body"])
    assert [(m["id"], m["created"]) for m in listed["data"]] == [("late", 0), ("tiny", 5)]
    out = router(_event(EMB, json.dumps({"model": "nope", "input": "x"})))
    assert out["statusCode"] == 404 and len(fake.calls) == 2


def test_the_router_zip_runs_from_what_is_staged_without_numpy(tmp_path):
    """The zip holds functions/openai_router + the RUNTIME_FILES; a fresh interpreter on that
    tree alone (no repo on the path) imports the handler and decides, loading no numpy."""
    import os
    import subprocess
    import sys

    from infra.cdk.constructs.openai_router import RUNTIME_FILES
    from infra.targets.staging import stage_function_code

    code_dir = stage_function_code(dest=tmp_path / "zip", package="openai_router", runtime=RUNTIME_FILES)
    script = ("import json, sys; from functions.openai_router import handler; "
              "from layers.openai_router import decide, Deployed; "
              "d = decide('GET /openai/v1/models', b'', None, {'a': Deployed('a', 'arn')}, {'GET /openai/v1/models': None}); "
              "print(json.dumps([d.body['data'][0]['id'], sorted({m.split('.')[0] for m in sys.modules})]))")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", names.ENV_OPENAI_ROUTER)}
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(code_dir)!r}); {script}"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    listed, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert listed == "a" and not {"numpy", "infra", "aws_cdk"} & set(loaded)

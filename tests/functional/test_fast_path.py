"""The fast path (inference) and the Powertools resolver answer identically.

Each case sends the same recorded event through the handler twice: as deployed (inference
takes the fast path) and with the fast path switched off (everything through the
resolver); status, headers, body and the EMF record must be the same.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from layers import names
from layers.http.fastpath import FastPath
from tests.conftest import load_event
from tests.functional.conftest import import_handler, route


def _emf(out: str) -> list[dict]:
    """The per-request EMF records printed, without what differs run to run (time, latency,
    request id) and without Powertools' ColdStart record (the first call's only)."""
    records = []
    for line in out.splitlines():
        if '"_aws"' not in line or '"ColdStart"' in line:
            continue
        rec = json.loads(line)
        rec["_aws"].pop("Timestamp")
        rec.pop("Latency", None)
        rec.pop("request_id", None)
        records.append(rec)
    return records


def both_paths(api, monkeypatch, capsys, lambda_context, event) -> tuple[dict, dict]:
    """(fast-path response, resolver response) for ``event``, asserting the EMF records match."""
    assert FastPath().match(event) is not None, "the case must be one the fast path takes"
    # Powertools' metric set is shared per process: drop what other tests (batch jobs run
    # without their handler's flush) left behind, as each invocation's flush does
    api.metrics.clear_metrics()
    capsys.readouterr()
    fast = api.handler(copy.deepcopy(event), lambda_context)
    fast_emf = _emf(capsys.readouterr().out)
    with monkeypatch.context() as m:
        m.setattr(api.binding, "match_fast", lambda _event: None)
        slow = api.handler(copy.deepcopy(event), lambda_context)
    slow_emf = _emf(capsys.readouterr().out)
    assert fast_emf == slow_emf and fast_emf
    return fast, slow


def _infer(**overrides) -> dict:
    return load_event("http_infer", **overrides)


def _with_headers(event: dict, **headers: str) -> dict:
    event["headers"] = {**event["headers"], **headers}
    return event


def _tensor(data, *, name="x", shape=(1, 4), datatype="FP32", **extra) -> str:
    return json.dumps({"inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data}],
                       **extra})


CASES = {
    "json": lambda: load_event("http_infer"),
    "base64 json": lambda: load_event("http_infer_base64"),
    "binary extension": lambda: load_event("http_infer_binary"),
    "versioned, right version": None,  # filled in with the model's version below
    "unknown model": lambda: route(load_event("http_infer"), "POST", "/v2/models/other/infer"),
    "unknown version": lambda: route(load_event("http_infer"), "POST", "/v2/models/tiny/versions/v0/infer"),
    "not JSON": lambda: _infer(body="{"),
    "JSON but not an object": lambda: _infer(body="[1, 2]"),
    "unknown input": lambda: _infer(body=_tensor([1, 2, 3, 4], name="nope")),
    "wrong datatype": lambda: _infer(body=_tensor([1, 2, 3, 4], datatype="INT64")),
    "wrong shape": lambda: _infer(body=_tensor([1, 2, 3], shape=(1, 3))),
    "NaN input": lambda: _infer(body=_tensor([1, float("nan"), 3, 4])),
    "unknown output": lambda: _infer(body=_tensor([1, 2, 3, 4], outputs=[{"name": "nope"}])),
    "non-string id": lambda: _infer(body=_tensor([1, 2, 3, 4], id=7)),
    "bad base64": lambda: _infer(body="%%%", isBase64Encoded=True),
    "unsupported media type": lambda: _with_headers(_infer(), **{"content-type": "text/csv"}),
    "bad header length": lambda: _with_headers(load_event("http_infer_binary"),
                                               **{"inference-header-content-length": "99999"}),
    "lower-case method": lambda: route(load_event("http_infer"), "post", "/v2/models/tiny/infer"),
    "named stage": lambda: _staged(load_event("http_infer"), "prod"),
}


def _staged(event: dict, stage: str) -> dict:
    event["requestContext"]["stage"] = stage
    event["rawPath"] = f"/{stage}{event['rawPath']}"
    return event


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_and_resolver_answer_the_same(case, api, monkeypatch, capsys, lambda_context):
    # given a recorded inference event (or a client mistake in one)
    if case == "versioned, right version":
        event = route(load_event("http_infer"), "POST", f"/v2/models/tiny/versions/{api.model.version}/infer")
    else:
        event = CASES[case]()
    # when it goes through the fast path and through the resolver
    fast, slow = both_paths(api, monkeypatch, capsys, lambda_context, event)
    # then status, headers, body and the EMF record are identical
    assert fast == slow
    assert "Traceback" not in fast["body"]


def test_payload_over_the_limit_is_the_same_413(monkeypatch, tiny_model_dir, capsys, lambda_context):
    monkeypatch.setenv(names.ENV_MODEL_DIR, str(tiny_model_dir))
    monkeypatch.setenv(names.ENV_MAX_REQUEST_BYTES, "100")
    api = import_handler()
    for event in (load_event("http_infer"), load_event("http_infer_base64")):
        fast, slow = both_paths(api, monkeypatch, capsys, lambda_context, event)
        assert fast == slow and fast["statusCode"] == 413
        assert "the limit is 100 bytes" in json.loads(fast["body"])["error"]


def test_internal_error_is_the_same_500(api, monkeypatch, capsys, lambda_context):
    def boom(*_a, **_k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(type(api.model), "run", boom)
    fast, slow = both_paths(api, monkeypatch, capsys, lambda_context, load_event("http_infer"))
    assert fast == slow and fast["statusCode"] == 500
    assert json.loads(fast["body"]) == {"error": f"internal error; request id {lambda_context.aws_request_id}"}


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v2/models/tiny/infer"),          # wrong method: the resolver's 405 with Allow
    ("POST", "/v2/models/tiny/infer/"),        # trailing slash: no such route
    ("POST", "/v2/models/tiny/versions/infer"),
    ("POST", "/v2/models/a/b/infer"),
])
def test_what_the_fast_path_does_not_take_goes_to_the_resolver(method, path, api, lambda_context):
    event = route(load_event("http_infer"), method, path)
    assert FastPath().match(event) is None
    assert api.handler(event, lambda_context) == api.app.resolve(event, lambda_context)


def test_events_without_stage_or_path_are_left_to_the_resolver():
    event = load_event("http_infer")
    del event["requestContext"]["stage"]
    assert FastPath().match(event) is None
    assert FastPath().match({"rawPath": "/v2/models/tiny/infer"}) is None
    assert FastPath().match("not an event") is None


def test_a_cold_start_answering_inference_never_imports_the_resolver(tiny_model_dir):
    """Import cost is cold-start time: the first inference must not load the event handler."""
    repo = Path(__file__).resolve().parents[2]
    code = (
        "import sys\n"
        "from functions.api import handler as h\n"
        "from tests.conftest import FakeLambdaContext, load_event\n"
        "r = h.handler(load_event('http_infer'), FakeLambdaContext())\n"
        "assert r['statusCode'] == 200, r\n"
        "loaded = [m for m in ('layers.http.resolver', 'aws_lambda_powertools.event_handler') if m in sys.modules]\n"
        "print('LOADED', loaded)\n"
        "r = h.handler(load_event('http_health_live'), FakeLambdaContext())\n"
        "print('LIVE', r['statusCode'], 'layers.http.resolver' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(repo), names.ENV_MODEL_DIR: str(tiny_model_dir)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=repo, capture_output=True, text=True,
                         check=True).stdout
    assert "LOADED []" in out
    assert "LIVE 200 True" in out


def test_under_snapstart_the_resolver_is_built_at_init(monkeypatch, tiny_model_dir):
    # given a SnapStart init (its cost goes into the snapshot, not into a user's request)
    monkeypatch.setenv(names.ENV_MODEL_DIR, str(tiny_model_dir))
    monkeypatch.setenv(names.ENV_LAMBDA_INIT_TYPE, names.INIT_TYPE_SNAPSTART)
    # when the handler is imported, then the resolver is already there
    assert import_handler().binding._app is not None
    # and on an ordinary on-demand init it is not
    monkeypatch.delenv(names.ENV_LAMBDA_INIT_TYPE)
    assert import_handler().binding._app is None

"""V2 per-request generation settings, in-process: ``infer`` on a generative model takes the
request's ``parameters`` (max_tokens, temperature, top_p, top_k, seed, stop) as Triton's generate
extension names them, ``generate`` takes them in ``parameters`` or beside ``text_input``, both
also under the deployed version's path; a wrong or unknown setting is a 400 that names it."""

from __future__ import annotations

import json

import pytest

from layers import protocols
from layers.dataplane import DataPlane
from layers.errors import ModelfnError
from layers.messages import Request

pytestmark = pytest.mark.xdist_group("generation")

INFER = "/v2/models/{name}/infer"
GENERATE = "/v2/models/{name}/generate"
VERSIONED = "/v2/models/{name}/versions/{version}/generate"


def call(served, path: str, body: dict, **params):
    route = next(r for r in protocols.route_table() if r.path == path and r.method == "POST")
    req = Request("POST", path, params={"name": served.name, **params}, headers={"content-type": "application/json"},
                  raw_body=json.dumps(body))
    try:
        reply = protocols.operation(route)(DataPlane(served), req)
    except ModelfnError as exc:  # what every binding answers: {"error"} with its status
        return exc.status, exc.body()
    return reply.status, json.loads(reply.body)


def infer(served, prompts: list[str], parameters: dict | None = None):
    body = {"inputs": [{"name": "text_input", "shape": [len(prompts)], "datatype": "BYTES", "data": prompts}]}
    if parameters is not None:
        body["parameters"] = parameters
    status, doc = call(served, INFER, body)
    return status, doc if status != 200 else {o["name"]: o["data"] for o in doc["outputs"]}


def test_infer_takes_max_tokens_and_greedy_for_every_prompt_of_the_request(served):
    status, out = infer(served, ["the quick", "hello"], {"max_tokens": 2, "temperature": 0})
    assert status == 200 and out["completion_tokens"] == [2, 2] and out["finish_reason"] == ["length", "length"]
    # the same request through generate gives the same text: one meaning of the settings
    _, gen = call(served, GENERATE, {"text_input": "the quick", "parameters": {"max_tokens": 2, "temperature": 0}})
    assert gen["text_output"] == out["text_output"][0]


def test_infer_sampling_with_a_seed_is_reproducible_and_differs_from_another_seed(served):
    settings = {"max_tokens": 12, "temperature": 1.5, "top_k": 0, "top_p": 1.0}
    runs = [infer(served, ["the"], {**settings, "seed": s})[1]["text_output"][0] for s in (7, 7, 8, 9, 10)]
    assert runs[0] == runs[1] and len(set(runs)) > 1


def test_infer_stop_ends_the_text_before_the_stop_sequence(served):
    _, free = infer(served, ["the quick"], {"max_tokens": 8, "temperature": 0})
    text = free["text_output"][0]
    stop = text[len(text) // 2:][:2] or text
    _, cut = infer(served, ["the quick"], {"max_tokens": 8, "temperature": 0, "stop": [stop]})
    assert cut["text_output"][0] == text[:text.index(stop)] and cut["finish_reason"] == ["stop"]


def test_infer_keeps_the_protocols_own_flags_beside_the_settings(served):
    status, out = infer(served, ["the"], {"max_tokens": 1, "temperature": 0, "binary_data_output": False})
    assert status == 200 and out["completion_tokens"] == [1]


@pytest.mark.parametrize(("parameters", "named"), [
    ({"temperature": 3}, "'temperature'"),
    ({"top_p": 0}, "'top_p'"),
    ({"top_k": -1}, "'top_k'"),
    ({"max_tokens": 0}, "'max_tokens'"),
    ({"max_tokens": "8"}, "'max_tokens'"),
    ({"seed": 1.5}, "'seed'"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "'stop'"),
    ({"stop": [""]}, "'stop'"),
    ({"max_new_tokens": 4}, "max_new_tokens"),
    ({"allow_nonfinite": "yes"}, "allow_nonfinite"),
])
def test_infer_refuses_a_bad_or_unknown_setting_with_a_400_naming_it(served, parameters, named):
    status, doc = infer(served, ["the"], parameters)
    assert status == 400 and named in doc["error"], doc


@pytest.mark.parametrize(("body", "named"), [
    ({"text_input": "x", "parameters": {"temperature": -1}}, "'temperature'"),
    ({"text_input": "x", "parameters": {"bogus": 1}}, "bogus"),
    ({"text_input": "x", "bogus": 1}, "bogus"),
    ({"text_input": "x", "parameters": [1]}, "'parameters'"),
    ({"text_input": "x", "max_tokens": 2, "parameters": {"max_tokens": 3}}, "once"),
])
def test_generate_refuses_a_bad_or_unknown_setting_with_a_400_naming_it(served, body, named):
    status, doc = call(served, GENERATE, body)
    assert status == 400 and named in doc["error"], doc


def test_generate_under_the_served_version_and_404_for_another(served):
    status, doc = call(served, VERSIONED, {"text_input": "the", "max_tokens": 1}, version=served.version)
    assert status == 200 and doc["model_version"] == served.version and doc["usage"]["completion_tokens"] == 1
    status, doc = call(served, VERSIONED, {"text_input": "the"}, version="0123456789ab")
    assert status == 404 and served.version in doc["error"]

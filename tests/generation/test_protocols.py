"""The generation operations in-process (no transport): OpenAI's error shape for what a client
gets wrong, the 400 for a model without a chat template, and the SSE framing OpenAI sends."""

from __future__ import annotations

import json

import pytest

from layers import protocols
from layers.dataplane import DataPlane
from layers.messages import Request

pytestmark = pytest.mark.xdist_group("generation")


def _call(served, path: str, body: dict, name: str | None = None):
    route = next(r for r in protocols.route_table() if r.path == path and r.method == "POST")
    params = {"name": name} if name else {}
    req = Request("POST", path, params=params, headers={"content-type": "application/json"},
                  raw_body=json.dumps(body))
    return protocols.operation(route)(DataPlane(served), req)


def test_chat_without_a_template_is_a_400_pointing_to_completions(served, monkeypatch):
    monkeypatch.setattr(served, "chat", None)
    reply = _call(served, "/openai/v1/chat/completions",
                  {"model": served.name, "messages": [{"role": "user", "content": "hi"}]})
    error = json.loads(reply.body)["error"]
    assert reply.status == 400 and "no chat template" in error["message"] and "/completions" in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": "x", "logprobs": 2}, "logprobs"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ({"prompt": [1, 2, 3]}, "prompt"),
    ({"prompt": "x", "bogus": 1}, "bogus"),
])
def test_completions_refuse_what_they_do_not_do_in_openais_shape(served, body, param):
    reply = _call(served, "/openai/{name}/v1/completions", {"model": served.name, **body}, name=served.name)
    assert reply.status == 400 and json.loads(reply.body)["error"]["param"] == param


def test_pinned_route_of_another_model_is_model_not_found(served):
    reply = _call(served, "/openai/{name}/v1/completions", {"model": "other", "prompt": "x"}, name="other")
    assert reply.status == 404 and json.loads(reply.body)["error"]["code"] == "model_not_found"


def test_chat_stream_is_openais_event_framing(served):
    reply = _call(served, "/openai/v1/chat/completions",
                  {"model": served.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
                   "temperature": 0, "stream": True, "stream_options": {"include_usage": True}})
    assert reply.status == 200 and reply.content_type.startswith("text/event-stream")
    events = "".join(reply.stream).split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    docs = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert docs[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert docs[-1]["choices"] == [] and docs[-1]["usage"]["completion_tokens"] == 4
    assert all(d["usage"] is None for d in docs[:-1]) and docs[-2]["choices"][0]["delta"] == {}

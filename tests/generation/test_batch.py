"""Batch for a generative model: a ``.jsonl`` of prompts under ``<model>/in/`` gives one
completion per line (the greedy text transformers gives, why it ended, the token counts); a bad
line sends the whole object to ``errors/`` naming it, and nothing to ``out/``."""

from __future__ import annotations

import json

import pytest

from tests.batch.conftest import aws, get_json, get_lines, keys, s3_event, upload  # noqa: F401 (fixture)

pytestmark = pytest.mark.xdist_group("generation")


@pytest.fixture
def service(aws, served):  # noqa: F811
    from layers.batch.service import BatchService

    return BatchService(served)


def _run(service, aws, lambda_context, key: str, lines: list) -> dict:  # noqa: F811
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return service.handle(s3_event(upload(aws, key, body)), lambda_context)["results"][0]


def test_jsonl_prompts_give_one_completion_per_line(service, aws, served, reference, lambda_context):  # noqa: F811
    name = served.name
    messages = [{"role": "user", "content": "hello"}]
    chat_ids = list(served.chat_prompt(messages))
    lines = ["hello world",
             {"prompt": "the quick brown fox", "max_tokens": 5, "temperature": 0, "id": "b"},
             {"messages": messages, "max_tokens": 4, "temperature": 0},
             {"text_input": "serverless", "parameters": {"max_tokens": 3, "temperature": 0}}]
    result = _run(service, aws, lambda_context, f"{name}/in/prompts.jsonl", lines)
    assert result["status"] == "out" and result["requests"] == 4
    out = get_lines(aws, f"{name}/out/prompts.jsonl.jsonl")
    assert [line["row"] for line in out] == [0, 1, 2, 3] and out[1]["id"] == "b"
    tensors = [{t["name"]: t["data"][0] for t in line["outputs"]} for line in out]
    assert tensors[1]["text_output"] == reference("the quick brown fox", 5)[0]
    assert tensors[1]["completion_tokens"] == 5 and tensors[1]["finish_reason"] == "length"
    assert tensors[2]["text_output"] == reference(chat_ids, 4)[0] and tensors[2]["prompt_tokens"] == len(chat_ids)
    assert tensors[3]["text_output"] == reference("serverless", 3)[0]
    assert tensors[0]["text_output"] and tensors[0]["completion_tokens"] >= 1


def test_a_bad_line_sends_the_object_to_errors_naming_it(service, aws, served, lambda_context):  # noqa: F811
    name = served.name
    result = _run(service, aws, lambda_context, f"{name}/in/bad.jsonl",
                  ["fine", {"prompt": "x", "temperature": 9}])
    assert result["status"] == "error"
    assert keys(aws, f"{name}/out/") == []
    reason = json.dumps(get_json(aws, f"{name}/errors/bad.jsonl.json"))
    assert "line 2" in reason and "temperature" in reason

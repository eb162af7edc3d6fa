"""Acceptance, end to end on the local stack: the stock ``openai`` client, unchanged, against a
tiny Llama made from a config — greedy completions equal transformers' ``generate(do_sample=
False)`` text exactly, streamed chunks join to the same text over several events, seeded sampling
repeats, stop sequences and ``max_tokens`` end the text where they should, usage counts tokens,
and OpenAI's errors come back as the client's own exceptions. V2's generate extension too."""

from __future__ import annotations

import json

import pytest

from tests.generation.conftest import local_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("generation")]
NAME = "tiny-llama"
PROMPTS = ["hello world", "the quick brown fox", "serverless models"]


@pytest.fixture(scope="module")
def stack(llama, tmp_path_factory):
    yield from local_stack(llama, tmp_path_factory.mktemp("genstack"), NAME, "lambda")


def _client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key="local", max_retries=0, timeout=60)


@pytest.mark.parametrize("base", [f"/openai/{NAME}/v1", "/openai/v1"])
def test_greedy_completions_equal_transformers_generate(stack, reference, base):
    client = _client(stack.url + base)
    for prompt in PROMPTS:
        want, _ = reference(prompt, 12)
        out = client.completions.create(model=NAME, prompt=prompt, max_tokens=12, temperature=0)
        (choice,) = out.choices
        assert choice.text == want and choice.finish_reason == "length"
        n = len(reference.tokenizer(prompt).input_ids)
        assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.total_tokens) == (n, 12, n + 12)
        assert out.object == "text_completion" and out.model == NAME and out.id.startswith("cmpl-")


def test_streamed_completion_joins_to_the_same_text_in_several_events(stack, reference):
    want, _ = reference(PROMPTS[0], 20)
    chunks = list(_client(stack.url + "/openai/v1").completions.create(
        model=NAME, prompt=PROMPTS[0], max_tokens=20, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(texts) == want and len([t for t in texts if t]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    assert all(c.usage is None for c in chunks[:-1]) and len({c.id for c in chunks}) == 1


def test_chat_completions_apply_the_template_and_stream(stack, reference):
    messages = [{"role": "user", "content": "hello"}]
    ids = reference.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    want, _ = reference(ids, 10)
    client = _client(stack.url + f"/openai/{NAME}/v1")
    out = client.chat.completions.create(model=NAME, messages=messages, max_tokens=10, temperature=0)
    assert out.choices[0].message.content == want and out.choices[0].message.role == "assistant"
    assert out.usage.prompt_tokens == len(ids) and out.object == "chat.completion"
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, max_completion_tokens=10,
                                                 temperature=0, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason == "length" and chunks[-1].object == "chat.completion.chunk"


def test_seeded_sampling_repeats_and_stop_and_max_tokens_end_the_text(stack, reference):
    client = _client(stack.url + "/openai/v1")

    def sample(seed):
        return client.completions.create(model=NAME, prompt="hello", max_tokens=12, temperature=0.9,
                                         seed=seed).choices[0].text
    assert sample(11) == sample(11)
    full, _ = reference("hello world", 20)
    stop = full[6:9]
    out = client.completions.create(model=NAME, prompt="hello world", max_tokens=20, temperature=0, stop=[stop])
    assert out.choices[0].text == full[:full.index(stop)] and out.choices[0].finish_reason == "stop"
    assert out.usage.completion_tokens < 20
    short, _ = reference("hello world", 2)
    out = client.completions.create(model=NAME, prompt="hello world", max_tokens=2, temperature=0)
    assert out.choices[0].text == short and out.usage.completion_tokens == 2


def test_openai_errors_through_the_client(stack):
    import openai

    client = _client(stack.url + "/openai/v1")
    with pytest.raises(openai.NotFoundError) as info:
        client.completions.create(model="no-such-model", prompt="x")
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=NAME, prompt="x", n=2)
    assert info.value.param == "n"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=NAME, prompt="x", temperature=3)
    assert info.value.param == "temperature"
    with pytest.raises(openai.BadRequestError, match="maximum context length") as info:
        client.completions.create(model=NAME, prompt="x", max_tokens=100_000)
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError, match="not an embedding model"):
        client.embeddings.create(model=NAME, input="x")


def test_v2_generate_and_generate_stream(stack, reference):
    import requests

    want, _ = reference("hello world", 8)
    url = f"{stack.url}/v2/models/{NAME}"
    body = {"text_input": "hello world", "parameters": {"max_tokens": 8, "temperature": 0}}
    out = requests.post(url + "/generate", json=body, timeout=60).json()
    assert out["text_output"] == want and out["model_name"] == NAME and out["finish_reason"] == "length"
    resp = requests.post(url + "/generate_stream", json=body, timeout=60)
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in resp.text.splitlines() if line.startswith("data: ")]
    assert "".join(e["text_output"] for e in events) == want and len(events) > 2
    assert events[-1]["usage"]["completion_tokens"] == 8
    bad = requests.post(url + "/generate", json={"parameters": {}}, timeout=60)
    assert bad.status_code == 400 and "text_input" in bad.json()["error"]
    infer = requests.post(url + "/infer", json={"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1],
                                                         "data": ["hello world"]}]}, timeout=60).json()
    assert infer["outputs"][0]["name"] == "text_output" and infer["outputs"][0]["data"][0]


@pytest.mark.parametrize(("path", "body"), [
    ("/openai/v1/chat/completions", {"model": NAME, "messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 6, "temperature": 0, "stream": True}),
    (f"/v2/models/{NAME}/generate_stream", {"text_input": "hello", "max_tokens": 6, "temperature": 0}),
])
def test_the_local_stack_writes_each_event_as_its_own_chunk(stack, path, body):
    """Streamed, not joined: chunked transfer, one HTTP chunk per server-sent event."""
    import requests

    resp = requests.post(stack.url + path, json=body, stream=True, timeout=60)
    assert resp.status_code == 200 and resp.headers.get("transfer-encoding") == "chunked"
    chunks = [c.decode() for c in resp.raw.read_chunked(decode_content=False)]
    assert len(chunks) > 3 and all(c.startswith("data: ") and c.endswith("\n\n") for c in chunks)
    assert sum(c.count("data: ") for c in chunks) == len(chunks)

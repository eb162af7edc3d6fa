"""Acceptance across the families (Llama, Qwen2): models trained from configs
(tests/helpers/decoders.py), built by ``modelfn build`` as the local stack builds them, served to
the stock ``openai`` client — greedy completions equal transformers' ``generate(do_sample=False)``
text exactly, ending where EOS ends them; chat through the model's template (Qwen2) or a 400
when it has none (these Llama directories carry none)."""

from __future__ import annotations

import logging
import shutil

import pytest

from tests.helpers.decoders import greedy_ids, greedy_text

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]  # grouped with the decoders tests (tests/helpers/units.py)
MODELS = {"tiny-llama": "llama", "tiny-qwen": "qwen2"}
PROMPTS = ("the quick brown", "hello world,", "one two")


@pytest.fixture(scope="module")
def family_stack(decoders, tmp_path_factory):
    from infra.local.stack import LocalStack

    root = tmp_path_factory.mktemp("genfamilies")
    entries = ""
    for name, fam in MODELS.items():
        shutil.copytree(decoders[fam], root / fam)
        entries += f"  - {{name: {name}, source: 'hf:{fam}', quantize: none, auth: none, target: lambda}}\n"
    (root / "models.yaml").write_text("models:\n" + entries)
    stack = LocalStack(catalog_path=root / "models.yaml", out_dir=root / "build", port=0, s3_port=0, warm=1,
                       log_sink=logging.getLogger("modelfn.test.genfamilies").info, integration_timeout_s=60)
    try:
        stack.start()
        assert {n: s.failure for n, s in stack.services.items()} == dict.fromkeys(MODELS)
        yield stack, root
    finally:
        stack.stop()


def _client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key="local", max_retries=0, timeout=60)


@pytest.mark.parametrize("name", list(MODELS))
def test_greedy_completions_equal_transformers_and_stop_at_eos(family_stack, name):
    stack, root = family_stack
    client = _client(stack.url + "/openai/v1")
    src = root / MODELS[name]
    for prompt in PROMPTS:
        want, ids = greedy_text(src, prompt, 24), greedy_ids(src, prompt, 24)
        out = client.completions.create(model=name, prompt=prompt, max_tokens=24, temperature=0)
        assert out.choices[0].text == want, prompt
        eos = 0 in ids  # the decoders' EOS is token 0
        assert out.choices[0].finish_reason == ("stop" if eos else "length")
        assert out.usage.completion_tokens == (ids.index(0) + 1 if eos else 24)
        streamed = "".join(c.choices[0].text for c in client.completions.create(
            model=name, prompt=prompt, max_tokens=24, temperature=0, stream=True) if c.choices)
        assert streamed == want


def test_chat_uses_qwen_template_and_a_model_without_one_is_a_400(family_stack):
    import openai
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stack, root = family_stack
    messages = [{"role": "user", "content": "hello world,"}]
    tok = AutoTokenizer.from_pretrained(root / "qwen2")
    model = AutoModelForCausalLM.from_pretrained(root / "qwen2").eval()
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = torch.tensor([list(ids["input_ids"] if hasattr(ids, "keys") else ids)])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                             pad_token_id=tok.eos_token_id)
    want = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    got = _client(stack.url + "/openai/tiny-qwen/v1").chat.completions.create(
        model="tiny-qwen", messages=messages, max_tokens=16, temperature=0)
    assert got.choices[0].message.content == want and got.usage.prompt_tokens == ids.shape[1]
    with pytest.raises(openai.BadRequestError, match="no chat template"):
        _client(stack.url + "/openai/v1").chat.completions.create(model="tiny-llama", messages=messages)

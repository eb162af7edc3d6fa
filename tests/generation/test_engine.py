"""The generation servable on its own: transformers' greedy text exactly, deltas that join to it
and never split a character, stop sequences, budgets, EOS, seeds, usage and the context check."""

from __future__ import annotations

import pytest

from layers.errors import BadRequest
from layers.generation.engine import Sampling
from layers.generation.text import Detokenizer

pytestmark = pytest.mark.xdist_group("generation")
GREEDY = Sampling(max_tokens=24, temperature=0)


@pytest.mark.parametrize("prompt", ["hello world", "the quick brown fox", "caf\u00e9 \u65e5\u672c"])
def test_greedy_text_is_transformers_generate_exactly(served, reference, prompt):
    want, ids = reference(prompt, 24)
    gen = served.complete(prompt, GREEDY)
    deltas = list(gen)
    assert gen.text == want and "".join(deltas) == want
    assert len(deltas) > 1 and gen.finish_reason == "length" and gen.completion_tokens == len(ids) == 24
    assert gen.usage == {"prompt_tokens": len(reference.tokenizer(prompt).input_ids), "completion_tokens": 24,
                         "total_tokens": gen.prompt_tokens + 24}


def test_deltas_never_split_a_character(served):
    """Byte-level tokens of a 4-byte emoji arrive one by one: no delta holds half of it."""
    codec = served.codec
    text = "na\u00efve \U0001f600 \u65e5\u672c\u8a9e"
    ids = codec.encode(text, special=False)
    detok = Detokenizer(codec)
    deltas = [d for d in (detok.push(i) for i in ids) if d] + [detok.finish()]
    assert "".join(deltas) == codec.decode(ids) == text
    assert not any("\ufffd" in d for d in deltas)
    assert len(ids) > len(deltas) - 1  # some tokens released nothing (their character was unfinished)


def test_stop_sequence_ends_the_text_before_it_and_never_leaks(served, reference):
    full, _ = reference("hello world", 24)
    stop = full[5:8]
    assert stop and stop not in full[:5]
    gen = served.complete("hello world", Sampling(max_tokens=24, temperature=0, stop=("zzz-never", stop)))
    deltas = list(gen)
    assert gen.text == full[:full.index(stop)] == "".join(deltas)
    assert gen.finish_reason == "stop" and gen.completion_tokens < 24


def test_max_tokens_counts_tokens_and_reports_length(served, reference):
    want, _ = reference("hello world", 3)
    gen = served.complete("hello world", Sampling(max_tokens=3, temperature=0)).run()
    assert (gen.text, gen.completion_tokens, gen.finish_reason) == (want, 3, "length")


def test_eos_stops_with_finish_reason_stop(served, reference, monkeypatch):
    """The model's EOS ids end the text (EOS itself not in it), as transformers' generate stops
    at ``eos_token_id``: here a token the greedy path reaches is declared EOS."""
    import torch

    tok = reference.tokenizer
    _, ids = reference("hello world", 24)
    eos = ids[6]
    first = ids.index(eos)
    monkeypatch.setattr(served, "eos_ids", frozenset({eos}))
    gen = served.complete("hello world", Sampling(max_tokens=24, temperature=0)).run()
    model = __import__("transformers").AutoModelForCausalLM.from_pretrained(reference.hf_dir)
    prompt = torch.tensor([tok("hello world").input_ids])
    out = model.generate(prompt, max_new_tokens=24, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    new = out[0][prompt.shape[1]:].tolist()
    want = tok.decode(new[:new.index(eos)], skip_special_tokens=True)
    assert (gen.text, gen.finish_reason, gen.completion_tokens) == (want, "stop", first + 1)


def test_seeded_sampling_is_reproducible_and_seeds_differ(served):
    def sample(seed):
        return served.complete("hello", Sampling(max_tokens=16, temperature=1.0, top_p=0.95, seed=seed)).run().text
    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_context_length_is_checked_before_any_token(served):
    room = served.context_length
    with pytest.raises(BadRequest, match="maximum context length"):
        served.complete("hello world", Sampling(max_tokens=room, temperature=0))
    with pytest.raises(BadRequest, match="maximum context length"):
        served.complete("hello " * room, Sampling(max_tokens=1, temperature=0))


def test_chat_template_renders_as_transformers(served, reference):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]
    want = reference.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
    assert served.chat_prompt(messages) == list(want)

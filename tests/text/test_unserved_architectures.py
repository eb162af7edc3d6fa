"""A directory whose architecture the build cannot serve gets one line: the architecture, what
it would be served as, and what would change that — not a torch traceback (T5 used to fail with
"You must specify exactly one of input_ids or inputs_embeds")."""

from __future__ import annotations

import json

import pytest

from infra.cli import main

TINY = dict(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2)


def _save(kind: str, directory):
    import torch
    import transformers as t

    torch.manual_seed(0)
    model = {
        "t5": lambda: t.T5ForConditionalGeneration(t.T5Config(**TINY)),
        "t5-bare": lambda: t.T5Model(t.T5Config(**TINY)),
        "bloom": lambda: t.BloomForCausalLM(t.BloomConfig(vocab_size=64, hidden_size=16, n_layer=1, n_head=2)),
        "bert-mlm": lambda: t.BertForMaskedLM(t.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                           num_attention_heads=2, intermediate_size=32)),
    }[kind]()
    model.save_pretrained(directory)


@pytest.mark.parametrize(("kind", "arch", "says"), [
    ("t5", "T5ForConditionalGeneration", ["encoder-decoder", "sequence-to-sequence generation", "not built yet"]),
    ("t5-bare", "T5Model", ["encoder-decoder", "sequence-to-sequence generation"]),
    ("bloom", "BloomForCausalLM", ["causal language model", "text generation", "LlamaForCausalLM",
                                   "GPT2LMHeadModel"]),
    ("bert-mlm", "BertForMaskedLM", ["masked language model", "fill-mask", "feature-extraction"]),
])
def test_an_unserved_architecture_fails_the_build_with_one_line_saying_why(tmp_path, capsys, kind, arch, says):
    _save(kind, tmp_path / "m")
    (tmp_path / "models.yaml").write_text("models:\n  - name: m\n    source: hf:m\n    quantize: none\n")
    assert main(["build", "--catalog", str(tmp_path / "models.yaml"), "--out", str(tmp_path / "build"),
                 "--json"]) == 1
    (row,) = json.loads(capsys.readouterr().out)["models"]
    error = row["error"]
    assert f"architecture {arch} is " in error and "it would be served as" in error
    for fragment in says:
        assert fragment in error, error
    assert "\n" not in error and "Traceback" not in error and "inputs_embeds" not in error
    assert not (tmp_path / "build" / "models" / "m").exists()

"""One tiny Llama (from a config), its transformers reference and its served build output,
made once per session (the genai builder takes seconds)."""

from __future__ import annotations

import pytest

from tests.generation.models import make_llama, served_dir


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    """(hf_dir, model_dir): the saved Hugging Face directory and what a function serves."""
    root = tmp_path_factory.mktemp("genllama")
    hf = make_llama(root / "hf")
    return hf, served_dir("tiny-llama", hf, root / "build" / "models" / "tiny-llama")


@pytest.fixture(scope="session")
def reference(llama):
    """transformers' greedy completion: ``reference(prompt, max_new_tokens) -> (text, new ids)``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf, _ = llama
    tok = AutoTokenizer.from_pretrained(hf)
    model = AutoModelForCausalLM.from_pretrained(hf).eval()

    def complete(prompt: str | list[int], max_new_tokens: int) -> tuple[str, list[int]]:
        ids = torch.tensor([tok(prompt).input_ids if isinstance(prompt, str) else prompt])
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0][ids.shape[1]:].tolist()
        return tok.decode(new, skip_special_tokens=True), new
    complete.tokenizer = tok
    complete.hf_dir = hf
    return complete


@pytest.fixture(scope="session")
def served(llama):
    from layers.model import load_model

    return load_model(llama[1], threads=1)

"""Tiny decoders for the generation tests, made once per session (the genai builder takes
seconds): one tiny Llama with its transformers reference and served build output (genserve's
runtime tests), and the trained GPT-2/Llama/Qwen2 directories of tests/helpers/decoders.py with
``modelfn build`` over a catalog of them (the build's tests)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.generation.models import make_llama, served_dir
from tests.helpers.decoders import make_decoder

VALIDATION = "the quick brown\nhello world, this\none two three\nthe cat sat on\nmodels are built\n"


def build_catalog(root: Path, entries: str) -> dict:
    """``modelfn build --json`` of a catalog made of ``entries`` (YAML list items) in ``root``."""
    import contextlib
    import io

    from infra.cli import main

    (root / "val.txt").write_text(VALIDATION)
    (root / "models.yaml").write_text("models:\n" + entries)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["build", "--catalog", str(root / "models.yaml"), "--out", str(root / "build"), "--json"])
    report = json.loads(out.getvalue())
    report["exit_code"] = code
    return report


class Decoders:
    """``decoders[family]``: that tiny decoder, made on first use and kept for the session."""

    def __init__(self, root: Path) -> None:
        self.root, self.made = root, {}

    def __getitem__(self, family: str) -> Path:
        if family not in self.made:
            self.made[family] = make_decoder(family, self.root / family)
        return self.made[family]


@pytest.fixture(scope="session")
def decoders(tmp_path_factory) -> Decoders:
    return Decoders(tmp_path_factory.mktemp("decoders"))


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


def local_stack(llama, root: Path, name: str, target: str) -> Iterator:
    """The local stack serving the tiny Llama as ``name`` on ``target`` (``lambda``, or
    ``sagemaker``: its container streams), started and always stopped."""
    from infra.local.stack import LocalStack

    hf, served = llama
    shutil.copytree(served, root / "build" / "models" / name)
    extra = ", instance_type: ml.m5.large" if target == "sagemaker" else ""
    (root / "models.yaml").write_text(f"models:\n  - {{name: {name}, source: 'hf:{hf}', quantize: none, "
                                      f"auth: none, target: {target}{extra}}}\n")
    stack = LocalStack(catalog_path=root / "models.yaml", out_dir=root / "build", port=0, s3_port=0, warm=1,
                       build=False, log_sink=logging.getLogger(f"modelfn.test.{target}").info,
                       integration_timeout_s=60)
    try:
        stack.start()
        assert stack.services[name].failure is None, stack.services[name].failure
        yield stack
    finally:
        stack.stop()

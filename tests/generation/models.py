"""Tiny decoders for the generation tests: a Hugging Face directory made from a config (a
byte-level BPE tokenizer trained on a few sentences, with a chat template), its
onnxruntime-genai folder from genai's own builder (fp32), and the build output a function
serves (``manifest.json`` + ``generation/``)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

TEXTS = ["the quick brown fox jumps over the lazy dog", "hello world, this is a tiny model",
         "serverless models on lambda", "caf\u00e9 na\u00efve \u00fcber \u2014 \u65e5\u672c\u8a9e \U0001f600"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def make_llama(path: Path, *, chat_template: bool = True, seed: int = 0) -> Path:
    """A 2-layer Llama (hidden 64) and its tokenizer saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS * 50, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=0, eos_token_id=0)
    LlamaForCausalLM(cfg).eval().save_pretrained(path)
    return path


def genai_build(hf_dir: Path, out: Path) -> Path:
    """``python -m onnxruntime_genai.models.builder`` (fp32, CPU) into ``out``."""
    cache = out.parent / (out.name + "-cache")
    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out),
                    "-p", "fp32", "-e", "cpu", "-c", str(cache)], check=True, capture_output=True)
    shutil.rmtree(cache, ignore_errors=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (hf_dir / name).is_file() and not (out / name).is_file():
            shutil.copy(hf_dir / name, out / name)
    return out


def served_dir(name: str, hf_dir: Path, out: Path) -> Path:
    """A build output as a function reads it: ``generation/`` + ``manifest.json``."""
    folder = genai_build(hf_dir, out / "generation")
    sha = _digest(out)
    genai = json.loads((folder / "genai_config.json").read_text())["model"]
    eos = genai["eos_token_id"]
    manifest = {
        "name": name, "version": sha[:12], "sha256": sha, "source": f"hf:{hf_dir}",
        "signature": {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [-1]}],
                      "outputs": [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}]},
        "quantization": {"mode": "none"}, "metrics": {}, "target": "lambda", "target_reasons": [],
        "built_at": "2026-12-03T00:00:00Z", "task": "generation",
        "generation": {"max_context": genai["context_length"], "family": genai["type"], "precision": "fp32",
                       "eos_token_ids": eos if isinstance(eos, list) else [eos],
                       "has_chat_template": (folder / "chat_template.jinja").is_file()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def _digest(model_dir: Path) -> str:
    """The sha256 the runtime verifies for this build output (``layers.manifest``'s rule)."""
    import layers.manifest as m

    if hasattr(m, "artifact_sha256"):
        return m.artifact_sha256(model_dir)
    return hashlib.sha256(m.artifact_file(model_dir).read_bytes()).hexdigest()

"""GPT-2 (``GPT2LMHeadModel``) → a genai folder onnxruntime-genai runs as model type ``gpt2``.

onnxruntime-genai's model builder does not export GPT-2, but its runtime knows the model type;
this module writes what the builder would have: a decoder graph with a KV cache and its
``genai_config.json``. Written by hand, and why:

* the graph: :class:`_Decoder` is GPT-2's forward pass over the saved weights (the modules of
  the transformers model itself: embeddings, ``c_attn``/``c_proj``, MLP, layer norms) with the
  KV cache as explicit inputs/outputs in the layout genai's ``gpt2`` model type reads (its
  combined cache: ``past_%d`` ``[2, batch, heads, past, head]`` in, keys then values,
  ``present_%d`` out) and the causal + padding mask
  built from ``attention_mask``; transformers' own forward takes a ``Cache`` object and builds
  its masks in ways neither torch exporter traces with a dynamic past length;
* ``genai_config.json``: genai's ``gpt2`` model type (inputs ``input_ids``, ``attention_mask``,
  ``position_ids``, its combined cache names ``past_%d``/``present_%d``), ``type: gpt2``;
* int4/int8: onnxruntime's MatMulNBits weight-only quantizer on the exported graph (the
  builder's own path for the other families), :func:`infra.build.quantize.quantize_weight_only`.

The export is checked against transformers' logits before it is kept.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

#: largest relative logit error of the export against transformers (float reassociation only)
MAX_LOGIT_ERROR = 1e-3
OPSET = 17


class Gpt2ExportError(RuntimeError):
    pass


def _decoder_module(hf_model):
    import torch
    from torch import nn

    cfg = hf_model.config
    unsupported = [k for k in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention")
                   if getattr(cfg, k, False)]
    if unsupported:
        raise Gpt2ExportError(f"GPT-2 config sets {unsupported}, which modelfn's GPT-2 export does not implement; "
                              "save the model without them")

    class _Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.t = hf_model.transformer
            self.lm_head = hf_model.lm_head
            self.heads = cfg.n_head
            self.embed = cfg.n_embd
            self.head = cfg.n_embd // cfg.n_head
            self.scale = bool(getattr(cfg, "scale_attn_weights", True))

        def forward(self, input_ids, attention_mask, position_ids, *past):
            b, s = input_ids.shape
            p = past[0].shape[3]
            x = self.t.wte(input_ids) + self.t.wpe(position_ids)
            q_pos = torch.arange(s, device=input_ids.device) + p
            k_pos = torch.arange(p + s, device=input_ids.device)
            allowed = (k_pos[None, :] <= q_pos[:, None])[None, None] & (attention_mask[:, None, None, :] > 0)
            bias = torch.where(allowed, torch.zeros((), dtype=x.dtype),
                               torch.full((), torch.finfo(x.dtype).min, dtype=x.dtype))
            presents = []
            for i, block in enumerate(self.t.h):
                h = block.ln_1(x)
                q, k, v = block.attn.c_attn(h).split(self.embed, dim=2)
                q, k, v = (t.view(b, s, self.heads, self.head).transpose(1, 2) for t in (q, k, v))
                k = torch.cat([past[i][0], k], dim=2)
                v = torch.cat([past[i][1], v], dim=2)
                presents.append(torch.stack([k, v]))
                att = q @ k.transpose(-1, -2)
                if self.scale:
                    att = att / math.sqrt(self.head)
                att = torch.softmax(att + bias, dim=-1)
                out = (att @ v).transpose(1, 2).reshape(b, s, self.embed)
                x = x + block.attn.c_proj(out)
                x = x + block.mlp(block.ln_2(x))
            return (self.lm_head(self.t.ln_f(x)), *presents)

    return _Decoder().eval()


def _names(layers: int) -> tuple[list[str], list[str]]:
    return [f"past_{i}" for i in range(layers)], [f"present_{i}" for i in range(layers)]


def genai_config(cfg: dict[str, Any], context: int) -> dict[str, Any]:
    """The ``genai_config.json`` of the exported decoder (the builder's layout, type gpt2)."""
    eos = cfg.get("eos_token_id", 0)
    return {
        "model": {
            "bos_token_id": cfg.get("bos_token_id", eos), "context_length": context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx", "head_size": cfg["n_embd"] // cfg["n_head"], "hidden_size": cfg["n_embd"],
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids", "past_names": "past_%d"},
                "outputs": {"logits": "logits", "present_names": "present_%d"},
                "num_attention_heads": cfg["n_head"], "num_hidden_layers": cfg["n_layer"],
                "num_key_value_heads": cfg["n_head"],
            },
            "eos_token_id": eos, "pad_token_id": cfg.get("pad_token_id") if cfg.get("pad_token_id") is not None else eos,
            "type": "gpt2", "vocab_size": cfg["vocab_size"],
        },
        "search": {"diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
                   "max_length": context, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": False, "repetition_penalty": 1.0,
                   "temperature": 1.0, "top_k": 50, "top_p": 1.0},
    }


def export(source: Path, out: Path, precision: str, context: int) -> None:
    """``source`` (a GPT2LMHeadModel directory) → ``out`` holding model.onnx + genai_config.json."""
    import onnx
    import torch
    from transformers import GPT2LMHeadModel

    from infra.build.torch_export import quiet

    out.mkdir(parents=True, exist_ok=True)
    hf_model = GPT2LMHeadModel.from_pretrained(source).eval()
    cfg = hf_model.config
    module = _decoder_module(hf_model)
    layers, heads, head = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
    past_names, present_names = _names(layers)
    ids = torch.tensor([[1, 2, 3]], dtype=torch.int64)
    past = [torch.zeros(2, 1, heads, 2, head) for _ in range(layers)]
    mask = torch.ones(1, 5, dtype=torch.int64)
    pos = torch.tensor([[2, 3, 4]], dtype=torch.int64)
    axes: dict[str, dict[int, str]] = {"input_ids": {0: "batch_size", 1: "sequence_length"},
                                       "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
                                       "position_ids": {0: "batch_size", 1: "sequence_length"},
                                       "logits": {0: "batch_size", 1: "sequence_length"}}
    axes.update({n: {1: "batch_size", 3: "past_sequence_length"} for n in past_names})
    axes.update({n: {1: "batch_size", 3: "total_sequence_length"} for n in present_names})
    fp32_path = out / "model.onnx"
    with torch.no_grad(), quiet():
        torch.onnx.export(module, (ids, mask, pos, *past), str(fp32_path), dynamo=False, opset_version=OPSET,
                          input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                          output_names=["logits", *present_names], dynamic_axes=axes)
    onnx.checker.check_model(str(fp32_path))
    _check_against_transformers(hf_model, fp32_path)
    if precision in ("int4", "int8"):
        from infra.build.quantize import quantize_weight_only

        tmp = out / "fp32.onnx"
        fp32_path.rename(tmp)
        quantize_weight_only(tmp, fp32_path, bits=4 if precision == "int4" else 8)
        tmp.unlink()
    elif precision != "fp32":
        raise Gpt2ExportError(f"precision {precision!r}: GPT-2 builds fp32, int4 or int8")
    (out / "genai_config.json").write_text(json.dumps(genai_config(cfg.to_dict(), context), indent=4) + "\n")


def _check_against_transformers(hf_model, path: Path) -> None:
    """The exported graph's logits equal transformers' on a prompt, with and without a past."""
    import numpy as np
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cfg = hf_model.config
    ids = torch.arange(1, 8, dtype=torch.int64)[None, :] % cfg.vocab_size
    with torch.no_grad():
        want = hf_model(ids).logits.numpy()
    heads, head = cfg.n_head, cfg.n_embd // cfg.n_head
    feeds = {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids.numpy()),
             "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None, :]}
    past_names, _ = _names(cfg.n_layer)
    feeds.update({n: np.zeros((2, 1, heads, 0, head), np.float32) for n in past_names})
    full = sess.run(None, feeds)
    # the last token again, this time through the cache of the others
    step = {"input_ids": feeds["input_ids"][:, -1:], "attention_mask": feeds["attention_mask"],
            "position_ids": feeds["position_ids"][:, -1:]}
    first = {**feeds, "input_ids": feeds["input_ids"][:, :-1], "attention_mask": feeds["attention_mask"][:, :-1],
             "position_ids": feeds["position_ids"][:, :-1]}
    presents = sess.run(None, first)[1:]
    step.update(dict(zip(past_names, presents, strict=True)))
    cached = sess.run(None, step)[0]
    scale = float(np.abs(want).max()) or 1.0
    errors = (float(np.abs(full[0] - want).max()) / scale, float(np.abs(cached[0, -1] - want[0, -1]).max()) / scale)
    if max(errors) > MAX_LOGIT_ERROR:
        raise Gpt2ExportError(f"the GPT-2 export's logits differ from transformers' (relative error "
                              f"{max(errors):.2e} > {MAX_LOGIT_ERROR:g}); please report this model's config")

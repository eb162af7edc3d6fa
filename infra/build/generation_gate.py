"""Weight-only int4/int8 for a generative model, behind a gate fit for generation.

Candidates (``quantize: auto`` → int4 then int8; ``int4``/``int8`` → that one; ``dynamic`` →
int8; ``none`` → none) are made by onnxruntime-genai's model builder (MatMulNBits weights, fp32
activations; GPT-2 by :mod:`infra.build.generation_gpt2` with onnxruntime's MatMulNBits
quantizer) and judged against fp32 on the catalog's ``validation`` text (``.txt``: one prompt a
line; ``.jsonl``: ``{"prompt": ...}`` or ``{"text": ...}`` a line):

* ``top1_agreement``: fp32 continues each prompt greedily for :data:`CONTINUATION` tokens; over
  every position of those continuations (teacher-forced: both models read fp32's text), the
  share where the candidate's greedy next token is fp32's;
* ``perplexity_ratio``: the candidate's perplexity on the validation lines over fp32's.

fp32's continuations come from onnxruntime-genai's greedy loop (its KV cache); both figures are
computed from the decoders' logits with onnxruntime (one forward pass over each whole sequence,
empty KV cache). The smallest candidate that passes the tolerance ships (memory is
what keeps a language model off Lambda); none passing → fp32 with the ``fallback_reason``
(``strict: true``: the build fails). No validation text → fp32, and the reason says to add it.

A model placed on a GPU instance type (:func:`infra.targets.provider.execution_provider`) is
built as onnxruntime-genai's CUDA variant (``-e cuda``; the builder needs no GPU): its
candidates and its unquantized folder (fp16: CUDA's attention kernels take no fp32) are CUDA
graphs, gated here on the CPU (onnxruntime's CPU kernels run them) against the CPU fp32
reference, so the figures are the fp16 graph's, measured on the CPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infra.catalog import GENERATION_TOLERANCE, ModelSpec
from infra.tasks.detect import HfTask

#: greedy tokens fp32 adds to each validation prompt for the agreement figure
CONTINUATION = 16
#: validation lines read at most (the gate runs in seconds on a small model)
MAX_LINES = 64
MODES = {"auto": ("int4", "int8"), "int4": ("int4",), "int8": ("int8",), "dynamic": ("int8",), "none": ()}


class GenerationGateError(RuntimeError):
    """The catalog asks for what the generation gate cannot do; the message says the fix."""


@dataclass
class Choice:
    """What ships: the folder, its precision, the manifest's quantization record and figures."""

    folder: Path
    precision: str
    quantization: dict[str, Any]
    figures: dict[str, float] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)


def validation(path: Path | None) -> tuple[list[str], list[str]]:
    """(prompts, texts) from the catalog's ``validation`` file (the same lines serve both)."""
    if path is None:
        return [], []
    lines: list[str] = []
    raw = Path(path).read_text(encoding="utf-8").splitlines()
    if Path(path).suffix == ".jsonl":
        for i, line in enumerate(raw, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise GenerationGateError(f"validation {path} line {i} is not JSON ({exc}); write one "
                                          '{"prompt": "..."} object a line') from exc
            text = obj.get("prompt", obj.get("text")) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                raise GenerationGateError(f"validation {path} line {i} has no \"prompt\" or \"text\" string")
            lines.append(text)
    elif Path(path).suffix == ".txt":
        lines = [ln for ln in raw if ln.strip()]
    else:
        raise GenerationGateError(f"validation {path}: a generation model's validation is text: a .txt (one "
                                  "prompt a line) or a .jsonl of {\"prompt\": ...}")
    if not lines:
        raise GenerationGateError(f"validation {path} holds no text; write one prompt a line")
    lines = lines[:MAX_LINES]
    return lines, lines


class _Decoder:
    """A genai folder's decoder run by onnxruntime over a whole sequence (empty KV cache)."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime as ort

        cfg = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(str(folder / cfg.get("filename", "model.onnx")), opts,
                                         providers=["CPUExecutionProvider"])
        self.kv_heads = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
        self.head_size = cfg["head_size"]
        self.inputs = {i.name: i for i in self.sess.get_inputs()}

    def logits(self, ids: list[int]) -> np.ndarray:
        """[len(ids), vocab] logits of the next token after each position."""
        x = np.asarray([ids], dtype=np.int64)
        feeds: dict[str, np.ndarray] = {"input_ids": x}
        for name, meta in self.inputs.items():
            if name == "attention_mask":
                feeds[name] = np.ones_like(x)
            elif name == "position_ids":
                feeds[name] = np.arange(len(ids), dtype=np.int64)[None, :]
            elif name.startswith("past_"):
                dtype = np.float16 if "float16" in meta.type else np.float32
                shape = (1, self.kv_heads, 0, self.head_size)  # GPT-2's combined cache: keys and values
                feeds[name] = np.zeros((2, *shape) if len(meta.shape) == 5 else shape, dtype=dtype)
        return self.sess.run(["logits"], feeds)[0][0].astype(np.float64)


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def _greedy(model, ids: list[int], n: int) -> list[int]:
    """``ids`` + fp32's greedy continuation, by onnxruntime-genai (its KV cache: one token a step)."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(ids) + n)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    out = list(ids)
    while not gen.is_done():
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
    return out


def _nll(logits: np.ndarray, ids: list[int]) -> tuple[float, int]:
    """Summed negative log-likelihood of ids[1:] and how many tokens it covers."""
    if len(ids) < 2:
        return 0.0, 0
    z = logits[:-1]
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-logp[np.arange(len(ids) - 1), ids[1:]].sum()), len(ids) - 1


def reference(fp32: Path, prompts: list[str], texts: list[str], context: int) -> dict[str, Any]:
    """fp32's greedy continuations (the agreement's sequences; genai stops them at EOS) and
    perplexity. Prompts are cut to leave room for the continuation within ``context``."""
    import onnxruntime_genai as og

    tok, dec, model = _tokenizer(fp32), _Decoder(fp32), og.Model(str(fp32))
    keep = max(1, context - CONTINUATION)
    seqs = []
    for p in prompts:
        ids = tok.encode(p).ids[:keep]
        if ids:
            seqs.append((len(ids), _greedy(model, ids, CONTINUATION)))
    encoded = [ids[:context] for t in texts if len(ids := tok.encode(t).ids) >= 2]
    nll = [_nll(dec.logits(ids), ids) for ids in encoded]
    return {"sequences": seqs, "texts": encoded, "nll": nll}


def compare(ref: dict[str, Any], candidate: Path) -> dict[str, float]:
    dec = _Decoder(candidate)
    agree = total = 0
    for start, seq in ref["sequences"]:
        pred = dec.logits(seq).argmax(axis=-1)
        # position i predicts seq[i + 1]; the continuation starts at seq[start]
        want = np.asarray(seq[start:])
        got = pred[start - 1:len(seq) - 1]
        agree += int((got == want).sum())
        total += len(want)
    nll_c = [_nll(dec.logits(ids), ids) for ids in ref["texts"]]
    tokens = sum(n for _, n in ref["nll"])
    figures: dict[str, float] = {}
    if total:
        figures["top1_agreement"] = agree / total
        figures["agreement_positions"] = total
    if tokens:
        ppl_ref = math.exp(sum(s for s, _ in ref["nll"]) / tokens)
        ppl_c = math.exp(sum(s for s, _ in nll_c) / tokens)
        figures.update(fp32_perplexity=ppl_ref, perplexity=ppl_c, perplexity_ratio=ppl_c / ppl_ref,
                       perplexity_tokens=tokens)
    return figures


def choose(spec: ModelSpec, hf: HfTask, fp32: Path, context: int, work: Path, prompts: list[str],
           texts: list[str], *, provider: str = "cpu",
           progress: Callable[[str], None] = lambda what: None) -> Choice:
    """Make, gate and pick the weight-only candidate that ships (else the unquantized folder,
    with the reason). ``provider`` ``cuda``: every candidate is onnxruntime-genai's CUDA variant
    (``-e cuda``: fp16 activations, CUDA's attention) and the unquantized folder, made only when
    it ships, is its fp16 build (fp32 for modelfn's GPT-2 export), gated like the candidates when
    there is validation text; all are judged here on the CPU against the CPU fp32 reference."""
    from infra.build import accuracy
    from infra.build.generation import GenerationBuildError, base_precision, export, folder_bytes

    if spec.quantize == "static":
        raise GenerationGateError(f"model {spec.name!r}: quantize: static has no meaning for a generation "
                                  "model (its int4/int8 are weight-only); use auto, int4, int8 or none")
    tolerance = spec.tolerance if "tolerance" in spec.model_fields_set else GENERATION_TOLERANCE
    modes = MODES[spec.quantize]
    quant: dict[str, Any] = {"requested": spec.quantize, "weight_only": True, "candidates": []}
    gate = {"data": str(spec.validation.name) if spec.validation else None, "prompts": len(prompts),
            "continuation_tokens": CONTINUATION, "tolerance": tolerance.model_dump(exclude_none=True)}
    prefix = "" if provider == "cpu" else f"{provider}-"
    ref: dict[str, Any] | None = None

    def unquantized(fallback_reason: str | None) -> Choice:
        """What ships without a passing candidate: fp32, or the CUDA variant's base (gated)."""
        quant["mode"] = "none"
        if fallback_reason:
            quant["fallback_reason"] = fallback_reason
        if provider == "cpu":
            return Choice(folder=fp32, precision="fp32", quantization=quant, gate=gate)
        mode = base_precision(hf, provider)
        progress(f"convert {mode} ({provider})")
        folder = work / f"{prefix}{mode}"
        export(hf, folder, mode, context, work, provider)
        base: dict[str, Any] = {"mode": mode, "provider": provider, "size_bytes": folder_bytes(folder)}
        figures: dict[str, float] = {}
        if ref is not None or prompts:
            progress(f"gate {mode}")
            figures = {k: round(v, 6) for k, v in compare(ref or reference(fp32, prompts, texts, context),
                                                           folder).items()}
            result = accuracy.check(figures, tolerance)
            base.update(figures=figures, verdict="ok" if result.passed else f"gate failed ({result.reason})")
            if not result.passed and spec.strict:
                raise GenerationGateError(
                    f"model {spec.name!r}: strict: true and the {provider} variant's {mode} failed the generation "
                    f"gate ({result.reason}); loosen 'tolerance' or set strict: false")
        quant["base"] = base
        if fallback_reason:
            quant["fallback_reason"] = fallback_reason.replace("shipped fp32", f"shipped {mode}", 1)
        return Choice(folder=folder, precision=mode, quantization=quant, figures=figures, gate=gate)

    if not modes:
        return unquantized(None)
    if not prompts:
        return unquantized("shipped fp32: no validation text to gate int4/int8 with; add 'validation' (a .txt, "
                           "one prompt a line) to the catalog entry")
    progress("gate: fp32 reference")
    ref = reference(fp32, prompts, texts, context)
    passing: list[tuple[int, str, Path, dict[str, float]]] = []
    for mode in modes:
        progress(f"quantize {mode}")
        folder = work / f"{prefix}{mode}"
        info: dict[str, Any] = {"mode": mode}
        try:
            export(hf, folder, mode, context, work, provider)
        except GenerationBuildError as exc:
            info["verdict"] = f"not shippable: {exc}"
            quant["candidates"].append(info)
            continue
        progress(f"gate {mode}")
        figures = compare(ref, folder)
        result = accuracy.check(figures, tolerance)
        info.update(size_bytes=folder_bytes(folder), figures={k: round(v, 6) for k, v in figures.items()})
        info["verdict"] = "ok" if result.passed else f"gate failed ({result.reason})"
        quant["candidates"].append(info)
        if result.passed:
            passing.append((info["size_bytes"], mode, folder, figures))
    if passing:
        _, mode, folder, figures = min(passing, key=lambda p: p[0])
        quant["mode"] = mode
        return Choice(folder=folder, precision=mode, quantization=quant,
                      figures={k: round(v, 6) for k, v in figures.items()}, gate=gate)
    why = "; ".join(f"{c['mode']}: {c['verdict']}" for c in quant["candidates"])
    if spec.strict:
        raise GenerationGateError(f"model {spec.name!r}: strict: true and no weight-only candidate passed the "
                                  f"generation gate ({why}); loosen 'tolerance' (top1_agreement, "
                                  "max_perplexity_ratio) or set strict: false to ship the unquantized model")
    return unquantized(f"shipped fp32: {why}")

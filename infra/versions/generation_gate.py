"""The promotion gate for a generative model: a candidate ``generation/`` folder against the live one.

A generative model has no class labels to compare, so it is judged on the catalog's
``validation`` text, both folders run in this process side by side (as
:mod:`infra.versions.gate` does for tensors):

* **perplexity**: the candidate's perplexity on the validation lines over the live version's, at
  most ``promotion.max_perplexity_ratio`` (a retrained model may not read its own validation
  text worse than what it replaces);
* **speed**: milliseconds per generated token (greedy, the first validation line as the prompt,
  live and candidate measured in turns, the better of two each; the time to the first token
  when either ends the prompt at once) at most ``promotion.max_latency_ratio`` × the live one's;
* **size**: the folder at most ``promotion.max_size_ratio`` × the live one's;
* **context**: the candidate's ``max_context`` is at least the live one's (a prompt the live
  version takes must still fit).

The greedy next-token agreement with the live version is recorded (``agreement_with_live``),
not gated: retraining is meant to change the text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.catalog import ModelSpec
from layers.manifest import Manifest
from layers.names import GENERATION_DIR


def _best(rates) -> float | None:
    measured = [r for r in rates if r]
    return max(measured) if measured else None


def judge(spec: ModelSpec, cand: Manifest, candidate_dir: Path, live: Manifest, live_dir: Path):
    """The :class:`infra.versions.gate.Verdict` for generative candidate ``cand`` over ``live``."""
    from infra.build import generation_gate, generation_measure
    from infra.build.generation import folder_bytes
    from infra.versions.gate import Verdict

    if spec.validation is None:
        return Verdict(False, "the catalog entry has no 'validation' text to gate a generative version on; "
                              "add one (a .txt, one prompt a line)")
    try:
        prompts, texts = generation_gate.validation(spec.validation)
    except generation_gate.GenerationGateError as exc:
        return Verdict(False, f"the validation text cannot be used: {exc}")
    live_block, cand_block = live.extra.get("generation") or {}, cand.extra.get("generation") or {}
    live_ctx, cand_ctx = int(live_block.get("max_context") or 0), int(cand_block.get("max_context") or 0)
    if cand_ctx < live_ctx:
        return Verdict(False, f"its context is {cand_ctx} tokens, the live version {live.version}'s {live_ctx}: "
                              "prompts the live version takes would be refused; build it with "
                              f"generation.max_context ≥ {live_ctx}")
    live_folder, cand_folder = live_dir / GENERATION_DIR, candidate_dir / GENERATION_DIR
    ref = generation_gate.reference(live_folder, prompts, texts, live_ctx or 2048)
    figures = generation_gate.compare(ref, cand_folder)
    prompt = prompts[0]
    # A, B, A, B and the better of each: one burst of load on a shared machine cannot decide it
    runs = [(generation_measure.speed(live_folder, prompt, repeats=2),
             generation_measure.speed(cand_folder, prompt, repeats=2)) for _ in range(2)]
    live_rate, cand_rate = _best(r[0]["tokens_per_s"] for r in runs), _best(r[1]["tokens_per_s"] for r in runs)
    if live_rate and cand_rate:  # time per generated token
        latency, live_lat, cand_lat = "time per token", 1000 / live_rate, 1000 / cand_rate
    else:  # a model that ends the prompt at once (EOS) has no tokens/s: time to first token
        latency = "time to first token"
        live_lat = min(r[0]["ttft_ms"] for r in runs)
        cand_lat = min(r[1]["ttft_ms"] for r in runs)
    live_size, cand_size = folder_bytes(live_folder), folder_bytes(cand_folder)
    p = spec.promotion
    metrics: dict[str, Any] = {
        "live_version": live.version, "prompts": len(prompts),
        "perplexity": round(figures.get("perplexity", float("nan")), 6),
        "live_perplexity": round(figures.get("fp32_perplexity", float("nan")), 6),
        "perplexity_ratio": round(figures.get("perplexity_ratio", float("nan")), 6),
        "perplexity_tokens": figures.get("perplexity_tokens", 0),
        "agreement_with_live": round(figures.get("top1_agreement", float("nan")), 6),
        "tokens_per_s": cand_rate, "live_tokens_per_s": live_rate, "latency": latency,
        "latency_ms": round(cand_lat, 3), "live_latency_ms": round(live_lat, 3),
        "latency_ratio": round(cand_lat / max(live_lat, 1e-9), 3),
        "size_bytes": cand_size, "live_size_bytes": live_size,
        "size_ratio": round(cand_size / max(live_size, 1), 3),
        "bounds": p.model_dump(include={"max_perplexity_ratio", "max_latency_ratio", "max_size_ratio"}),
    }
    failures = []
    if "perplexity_ratio" not in figures:
        failures.append("no validation line has two tokens to measure perplexity on; write longer lines")
    elif metrics["perplexity_ratio"] > p.max_perplexity_ratio:
        failures.append(f"perplexity {metrics['perplexity']:.4g} is ×{metrics['perplexity_ratio']:.3f} the live "
                        f"version's {metrics['live_perplexity']:.4g} (bound ×{p.max_perplexity_ratio:g})")
    if metrics["latency_ratio"] > p.max_latency_ratio:
        failures.append(f"{latency} {cand_lat:.2f} ms is ×{metrics['latency_ratio']:.2f} the live version's "
                        f"{live_lat:.2f} ms (bound ×{p.max_latency_ratio:g})")
    if metrics["size_ratio"] > p.max_size_ratio:
        failures.append(f"size {cand_size:,} B is ×{metrics['size_ratio']:.2f} the live version's "
                        f"{live_size:,} B (bound ×{p.max_size_ratio:g})")
    if failures:
        return Verdict(False, f"not promoted over {live.version}: " + "; ".join(failures), metrics)
    summary = (f"perplexity ×{metrics['perplexity_ratio']:.3f} the live version's, {latency} "
               f"×{metrics['latency_ratio']:.2f}, size ×{metrics['size_ratio']:.2f} on {len(prompts)} "
               "validation lines")
    return Verdict(True, f"promoted over {live.version}: {summary}", metrics)

"""Lambda or SageMaker for a generative model: weights + KV cache at ``max_context``, speed.

Checks (each a ✓/✗ line in ``target_reasons``):

* image: the genai folder + the runtime image (+ onnxruntime-genai) ≤ Lambda's 10 GB;
* memory: weights + the KV cache of one sequence at ``max_context`` (2 × layers × KV heads ×
  head size × ``max_context`` × the cache's element size: fp32, fp16 in a CUDA folder) + :data:`RUNTIME_MB`, with
  :data:`MEMORY_HEADROOM`, ≤ 10,240 MB;
* init: the folder's load time measured here + its sha256 check ≤ Lambda's 10 s;
* a whole completion of ``max_tokens`` (time to first token + ``max_tokens`` / tokens/s,
  measured on this host) ≤ Lambda's 900 s (streamed through the function URL; the HTTP API's
  30 s bounds only unstreamed answers, reported, not a failed check);
* the catalog's ``generation.min_tokens_per_s`` when it sets one;
* the completion text (≈ :data:`BYTES_PER_TOKEN` a token, JSON) ≤ 6 MB;
* a GPU instance type means SageMaker (the CUDA provider).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from infra.build import fit as tensor_fit
from infra.targets import provider
from layers import names

RUNTIME_MB = 400  # python + onnxruntime-genai + tokenizer, resident before the model
MEMORY_HEADROOM = 1.25
BYTES_PER_TOKEN = 16  # JSON-escaped text of one token, generous
KV_ELEMENT_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
GENAI_PACKAGE = "onnxruntime-genai"


def kv_cache_bytes(genai_config: dict[str, Any], context: int, element_bytes: int = 4) -> int:
    """One sequence's KV cache at ``context`` tokens."""
    dec = genai_config["model"]["decoder"]
    kv_heads = dec.get("num_key_value_heads") or dec["num_attention_heads"]
    return 2 * dec["num_hidden_layers"] * kv_heads * dec["head_size"] * context * element_bytes


def genai_library_bytes() -> int:
    from packaging.requirements import Requirement

    try:
        return tensor_fit.closure_bytes([Requirement(GENAI_PACKAGE)], deps=False)
    except Exception:  # not installed here: counted as 0 and said so by the figure
        return 0


def recommend(*, folder: Path, context: int, max_tokens: int, speed: dict[str, Any], hash_s: float,
              instance_type: str, requested: str, min_tokens_per_s: float | None) -> tuple[str, list[str], dict[str, Any]]:
    """``(target, reasons, fit)`` for the genai ``folder``."""
    cfg = json.loads((folder / "genai_config.json").read_text())
    weights = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    # the CUDA variant's cache is fp16 (genai's builder with -e cuda), the CPU build's fp32
    cuda_folder = any(isinstance(o, dict) and "cuda" in o for o in
                      cfg["model"]["decoder"].get("session_options", {}).get("provider_options") or [])
    kv = kv_cache_bytes(cfg, context, KV_ELEMENT_BYTES["float16" if cuda_folder else "float32"])
    image = weights + tensor_fit.runtime_image_bytes() + genai_library_bytes()
    memory_mb = max(tensor_fit.MEMORY_FLOOR_MB,
                    math.ceil(((weights + kv) / 1024**2 + RUNTIME_MB) * MEMORY_HEADROOM / 64.0) * 64)
    init_s = float(speed["load_s"]) + hash_s
    rate = speed.get("tokens_per_s")
    ttft_s = float(speed["ttft_ms"]) / 1000
    completion_s = ttft_s + (max_tokens / rate if rate else math.inf)
    response_b = max_tokens * BYTES_PER_TOKEN
    gpu = instance_type.startswith(tensor_fit.GPU_FAMILIES)
    checks = [
        (image <= names.LAMBDA_MAX_IMAGE_BYTES,
         f"image {image / 1024**3:.2f} GB (weights {weights / 1024**2:.1f} MB) vs Lambda's "
         f"{names.LAMBDA_MAX_IMAGE_BYTES / 1024**3:.0f} GB"),
        (memory_mb <= names.LAMBDA_MAX_MEMORY_MB,
         f"needs {memory_mb} MB (weights {weights / 1024**2:.1f} MB + KV cache {kv / 1024**2:.1f} MB at "
         f"max_context {context} + runtime {RUNTIME_MB} MB, × {MEMORY_HEADROOM}) vs {names.LAMBDA_MAX_MEMORY_MB} MB"),
        (init_s <= names.LAMBDA_INIT_LIMIT_S,
         f"init {init_s:.2f} s (load {speed['load_s']:.2f} s + sha256 check {hash_s:.2f} s) vs Lambda's "
         f"{names.LAMBDA_INIT_LIMIT_S} s"),
        (completion_s <= names.LAMBDA_MAX_TIMEOUT_S,
         f"a {max_tokens}-token completion {completion_s:.1f} s (time to first token {ttft_s * 1000:.0f} ms + "
         f"{rate} tokens/s on the build host) vs Lambda's {names.LAMBDA_MAX_TIMEOUT_S} s"),
        (response_b <= names.LAMBDA_SYNC_PAYLOAD_BYTES,
         f"a {max_tokens}-token answer ≈ {response_b / 1024:.0f} KB vs 6 MB"),
        (not gpu, (f"GPU required (instance_type {instance_type}: "
                   f"{'CUDA provider' if provider.is_cuda_instance(instance_type) else 'an accelerator'})")
         if gpu else "no GPU required"),
    ]
    if min_tokens_per_s is not None:
        checks.append((rate is not None and rate >= min_tokens_per_s,
                       f"{rate} tokens/s on the build host vs the catalog's min_tokens_per_s {min_tokens_per_s}"))
    target, reasons = tensor_fit.decide(checks, requested)
    unstreamed = completion_s <= names.HTTP_API_TIMEOUT_S
    reasons.append(f"· unstreamed answers through the HTTP API: a full completion "
                   f"{'fits' if unstreamed else 'does not fit'} its {names.HTTP_API_TIMEOUT_S} s; "
                   "streamed answers are bounded by the function's timeout")
    fit = {
        "memory_mb": min(memory_mb, names.LAMBDA_MAX_MEMORY_MB),
        "timeout_s": int(min(names.LAMBDA_MAX_TIMEOUT_S, max(30, math.ceil(init_s + 2 * completion_s))))
        if math.isfinite(completion_s) else names.LAMBDA_MAX_TIMEOUT_S,
        "weights_bytes": weights, "kv_cache_bytes": kv, "max_context": context, "max_tokens": max_tokens,
        "image_bytes": image, "artifact_bytes": weights, "init_s": round(init_s, 3), "hash_s": round(hash_s, 3),
        "completion_s": round(completion_s, 3) if math.isfinite(completion_s) else None,
        "unstreamed_fits_http_api": unstreamed,
        "ttft_ms": speed["ttft_ms"], "tokens_per_s": rate, "gpu_required": gpu,
        "execution_provider": provider.execution_provider(target=target, instance_type=instance_type),
        "instance_type": instance_type,
        "measured_on": {"cpu": speed.get("cpu"), "load_average": speed.get("load_average")},
    }
    return target, reasons, fit

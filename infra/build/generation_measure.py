"""Speed of a genai folder on the build host: load time, time to first token, tokens/s.

Greedy decoding of :data:`NEW_TOKENS` tokens after a prompt (the validation text's first line
when the catalog has one), repeated :data:`REPEATS` times; the medians are reported with the
spread, the CPU model and the load average (the build host is often shared). Always on the
CPU: a CUDA variant's figures here are its fp16 graph on the build host's CPU, not a GPU's."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

NEW_TOKENS = 32
REPEATS = 3
DEFAULT_PROMPT = "The quick brown fox"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def speed(folder: Path, prompt: str = DEFAULT_PROMPT, new_tokens: int = NEW_TOKENS,
          repeats: int = REPEATS) -> dict[str, Any]:
    """``load_s``, ``ttft_ms`` (prompt in → first new token), ``tokens_per_s`` (the tokens after
    the first), each the median of ``repeats`` runs, + ``ttft_ms_range``/``tokens_per_s_range``."""
    import onnxruntime_genai as og

    started = time.perf_counter()
    config = og.Config(str(folder))
    config.clear_providers()  # the build host's CPU, whatever the folder was built for (a CUDA variant too)
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)
    load_s = time.perf_counter() - started
    ids = list(tokenizer.encode(prompt)) or [0]
    ttfts, rates = [], []
    for _ in range(repeats):
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids) + new_tokens)
        gen = og.Generator(model, params)
        t0 = time.perf_counter()
        gen.append_tokens(ids)
        gen.generate_next_token()
        t1 = time.perf_counter()
        n = 0
        while not gen.is_done() and n < new_tokens - 1:
            gen.generate_next_token()
            n += 1
        t2 = time.perf_counter()
        ttfts.append((t1 - t0) * 1000)
        if n:
            rates.append(n / (t2 - t1))
        del gen
    return {
        "load_s": round(load_s, 3),
        "ttft_ms": round(statistics.median(ttfts), 3),
        "ttft_ms_range": [round(min(ttfts), 3), round(max(ttfts), 3)],
        "tokens_per_s": round(statistics.median(rates), 1) if rates else None,
        "tokens_per_s_range": [round(min(rates), 1), round(max(rates), 1)] if rates else None,
        "prompt_tokens": len(ids), "new_tokens": new_tokens, "repeats": repeats,
        "provider": "cpu", "cpu": cpu_model(), "load_average": [round(x, 2) for x in os.getloadavg()],
    }

"""Accuracy-driven fallback for dynamic int8: keep the most sensitive MatMuls fp32 until the
gate passes.

1. Quantize the whole graph; gate it. Passed: done, nothing kept fp32.
2. Otherwise measure each quantizable node's **sensitivity**: the graph with only that node
   quantized, scored by the relative output error against the fp32 graph on up to
   :data:`SENSITIVITY_ROWS` gate rows (``‖int8 − fp32‖ / ‖fp32‖`` per row, averaged; the
   worst output).
3. Re-quantize with the 1, 2, 3, … most sensitive nodes excluded (kept fp32), gating each,
   until one passes — at most :data:`MAX_FP32_SHARE` of the nodes and :data:`MAX_STEPS`
   tries: past that, little of int8's speed is left and fp32 is the honest artifact.

The record (the candidate's ``int8_search``, and ``quantization.excluded_nodes`` of what
shipped) says what was tried, the most sensitive nodes' scores, and which stayed fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infra.build import accuracy, quantize

SENSITIVITY_ROWS = 128  # gate rows sensitivity is measured on (array data)
MAX_FP32_SHARE = 0.5
MAX_STEPS = 12
#: Scores listed in the manifest (most sensitive first).
RECORDED_SCORES = 12

#: Gates the model at a path (the build's own gate: same data, figures and tolerance).
Judge = Callable[[Path], accuracy.GateResult]
#: A model's outputs at a path on the rows sensitivity is measured on.
Outputs = Callable[[Path], list[np.ndarray]]


@dataclass
class SearchResult:
    result: accuracy.GateResult
    excluded: tuple[str, ...] = ()
    record: dict[str, Any] = field(default_factory=dict)


def relative_error(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    """Mean per-row ``‖c − r‖ / ‖r‖`` of the float outputs; the worst output's figure."""
    worst = 0.0
    for r, c in zip(reference, candidate, strict=True):
        if r.dtype.kind != "f":
            continue
        r2 = r.reshape(len(r), -1).astype(np.float64)
        c2 = c.reshape(len(c), -1).astype(np.float64)
        norms = np.maximum(np.linalg.norm(r2, axis=1), 1e-12)
        worst = max(worst, float(np.mean(np.linalg.norm(c2 - r2, axis=1) / norms)))
    return worst


def sensitivity(pre: Path, work: Path, nodes: list[str], outputs: Outputs, reduce_range: bool,
                progress: Callable[[str], None] = lambda _: None) -> dict[str, float]:
    """Each node's relative output error with only that node quantized (higher = worse)."""
    reference = outputs(pre)
    path = work / "sensitivity.onnx"
    scores: dict[str, float] = {}
    for i, node in enumerate(nodes):
        progress(f"sensitivity {i + 1}/{len(nodes)}")
        quantize.quantize_dynamic(pre, path, reduce_range=reduce_range, only=(node,))
        scores[node] = relative_error(reference, outputs(path))
    return scores


def search_dynamic(pre: Path, dst: Path, work: Path, *, judge: Judge, outputs: Outputs, reduce_range: bool,
                   progress: Callable[[str], None] = lambda _: None) -> SearchResult:
    """Dynamic int8 of ``pre`` into ``dst`` that passes ``judge`` with as few fp32 nodes as
    the search finds; when none does, ``dst`` holds the full int8 graph and its failed gate."""
    quantize.quantize_dynamic(pre, dst, reduce_range=reduce_range)
    full = judge(dst)
    if full.passed:
        return SearchResult(full)
    nodes = quantize.dynamic_targets(pre)
    limit = min(MAX_STEPS, int(len(nodes) * MAX_FP32_SHARE))
    record: dict[str, Any] = {"full_int8": {"passed": False, "reason": full.reason}, "quantizable_nodes": len(nodes)}
    if limit == 0:
        record["stopped"] = f"{len(nodes)} quantizable node(s): none can stay fp32 without losing int8"
        return SearchResult(full, record=record)
    scores = sensitivity(pre, work, nodes, outputs, reduce_range, progress)
    ranked = sorted(nodes, key=lambda n: scores[n], reverse=True)
    record["sensitivity"] = {n: round(scores[n], 6) for n in ranked[:RECORDED_SCORES]}
    steps: list[dict[str, Any]] = []
    record["steps"] = steps
    trial = work / "search.onnx"
    for k in range(1, limit + 1):
        progress(f"fallback {k}/{limit} fp32 node(s)")
        excluded = tuple(ranked[:k])
        quantize.quantize_dynamic(pre, trial, reduce_range=reduce_range, exclude=excluded)
        result = judge(trial)
        steps.append({"fp32_nodes": k, "passed": result.passed,
                      **{key: round(v, 6) for key, v in result.figures.items()
                         if key in ("top1_agreement", "min_cosine", "max_abs_error")}})
        if result.passed:
            trial.replace(dst)
            return SearchResult(result, excluded, record)
    record["stopped"] = (f"gate still failed with the {limit} most sensitive of {len(nodes)} nodes "
                         f"kept fp32 (limit: {MAX_FP32_SHARE:.0%} of them, at most {MAX_STEPS})")
    return SearchResult(full, record=record)

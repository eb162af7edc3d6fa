"""Accuracy-driven fallback for dynamic int8: keep the most sensitive MatMuls fp32 until the
gate passes, in few gate runs (text gates run each text alone and cost seconds each).

1. Quantize the whole graph; gate it. Passed: done, nothing kept fp32.
2. Otherwise score each quantizable node's **sensitivity** from ONE fp32 run over a subset of
   the gate's rows (up to :data:`SENSITIVITY_ROWS` array rows, :data:`SENSITIVITY_TEXTS`
   texts, each run as the gate runs it) that exposes every node's input: the relative error
   ``‖y_int8 − y‖ / ‖y‖`` of the node's own output with its input and weight quantized as
   dynamic int8 does. (Quantizing one node at a time and gating each cost one 170 MB
   re-quantization and a full text gate per node: 45+ minutes for a DistilBERT.)
3. Re-quantize with the k most sensitive nodes kept fp32, k = 1, 2, 4, … until the gate
   passes, then bisect for the fewest: about 2·log2(limit) gates, where the limit is
   :data:`MAX_FP32_SHARE` of the nodes and at most :data:`MAX_STEPS`: past that, little of
   int8's speed is left and fp32 is the honest artifact.

The record (the candidate's ``int8_search``, and ``quantization.excluded_nodes`` of what
shipped) says what was tried (each step's gate figures and seconds), the most sensitive
nodes' scores, and which stayed fp32.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from infra.build import accuracy, measure, quantize

SENSITIVITY_ROWS = 128  # gate rows sensitivity is measured on (array data)
SENSITIVITY_TEXTS = 48  # texts sensitivity is measured on (each run alone, as the gate runs it)
MAX_FP32_SHARE = 0.5
MAX_STEPS = 12  # most nodes kept fp32
#: Scores listed in the manifest (most sensitive first).
RECORDED_SCORES = 12

#: Gates the model at a path (the build's own gate: same data, figures and tolerance).
Judge = Callable[[Path], accuracy.GateResult]


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


def sensitivity(pre: Path, nodes: list[str], feeds: list[dict[str, np.ndarray]], reduce_range: bool,
                progress: Callable[[str], None] = lambda _: None) -> dict[str, float]:
    """Each node's relative error ``‖y_int8 − y‖ / ‖y‖`` of its own output when its input and
    weight are quantized as dynamic int8 does (activations u8 per run, weights s8 per column,
    7-bit with ``reduce_range``), from ONE fp32 run over ``feeds`` that exposes every target's
    input (higher = worse). Nodes whose weight is not a 2-D constant (RNNs) score 0."""
    model = onnx.load(pre)
    quantize.gemm_to_matmul(model)
    quantize.name_nodes(model)
    consts = {i.name: i for i in model.graph.initializer}
    targets: dict[str, tuple[str, np.ndarray]] = {}
    for node in model.graph.node:
        if node.name in nodes and len(node.input) > 1 and node.input[1] in consts:
            w = numpy_helper.to_array(consts[node.input[1]])
            if w.ndim == 2 and w.dtype == np.float32:
                targets[node.name] = (node.input[0], w)
    names = sorted({x for x, _ in targets.values()})
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                              for n in names if n not in known)
    progress(f"sensitivity: one fp32 run over {len(feeds)} batch(es)")
    sess = measure.session_from(model)
    sums = {n: [0.0, 0.0] for n in targets}
    weights = {n: (w, _quantized_weight(w, reduce_range)) for n, (_, w) in targets.items()}
    for feed in feeds:
        acts = dict(zip(names, sess.run(names, feed), strict=True))
        for n, (x_name, _) in targets.items():
            w, wq = weights[n]
            x = acts[x_name].reshape(-1, w.shape[0]).astype(np.float32)
            y, yq = x @ w, _quantized_activation(x) @ wq
            sums[n][0] += float(np.sum((yq - y) ** 2.0))
            sums[n][1] += float(np.sum(y**2.0))
    return {n: (float(np.sqrt(sums[n][0] / sums[n][1])) if n in sums and sums[n][1] > 0 else 0.0) for n in nodes}


def _quantized_activation(x: np.ndarray) -> np.ndarray:
    """``DynamicQuantizeLinear`` and back: u8, asymmetric, range including 0, per run."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255.0 or 1.0
    zero = np.clip(np.round(-lo / scale), 0, 255)
    return ((np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale).astype(np.float32)


def _quantized_weight(w: np.ndarray, reduce_range: bool) -> np.ndarray:
    """Symmetric s8 per output column (7-bit with ``reduce_range``) and back."""
    qmax = 64.0 if reduce_range else 127.0
    scale = np.abs(w).max(axis=0, keepdims=True) / qmax
    scale[scale == 0] = 1.0
    return (np.clip(np.round(w / scale), -qmax, qmax) * scale).astype(np.float32)


def _schedule(limit: int) -> list[int]:
    """The exclusion counts tried first: 1, 2, 4, … up to ``limit`` (then bisection)."""
    out, k = [], 1
    while k < limit:
        out.append(k)
        k *= 2
    return [*out, limit]


def search_dynamic(pre: Path, dst: Path, work: Path, *, judge: Judge, feeds: list[dict[str, np.ndarray]],
                   reduce_range: bool, progress: Callable[[str], None] = lambda _: None) -> SearchResult:
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
    t0 = time.perf_counter()
    scores = sensitivity(pre, nodes, feeds, reduce_range, progress)
    record["sensitivity_s"] = round(time.perf_counter() - t0, 2)
    ranked = sorted(nodes, key=lambda n: scores[n], reverse=True)
    record["sensitivity"] = {n: round(scores[n], 6) for n in ranked[:RECORDED_SCORES]}
    steps: list[dict[str, Any]] = []
    record["steps"] = steps
    trial = work / "search.onnx"
    verdicts: dict[int, accuracy.GateResult] = {}

    def attempt(k: int) -> bool:
        progress(f"fallback: {k} of at most {limit} node(s) fp32")
        t = time.perf_counter()
        quantize.quantize_dynamic(pre, trial, reduce_range=reduce_range, exclude=tuple(ranked[:k]))
        result = verdicts[k] = judge(trial)
        steps.append({"fp32_nodes": k, "passed": result.passed, "seconds": round(time.perf_counter() - t, 2),
                      **{key: round(v, 6) for key, v in result.figures.items()
                         if key in ("top1_agreement", "label_agreement", "min_cosine", "max_abs_error")}})
        if result.passed:
            trial.replace(dst)
        return result.passed

    failed, passed = 0, None
    for k in _schedule(limit):  # doubling finds a passing count in log2(limit) gates …
        if attempt(k):
            passed = k
            break
        failed = k
    while passed is not None and passed - failed > 1:  # … bisection the fewest fp32 nodes that pass
        mid = (failed + passed) // 2
        if attempt(mid):
            passed = mid
        else:
            failed = mid
    if passed is not None:  # dst holds the last pass: the fewest fp32 nodes
        return SearchResult(verdicts[passed], tuple(ranked[:passed]), record)
    record["stopped"] = (f"gate still failed with the {limit} most sensitive of {len(nodes)} nodes "
                         f"kept fp32 (limit: {MAX_FP32_SHARE:.0%} of them, at most {MAX_STEPS})")
    return SearchResult(full, record=record)

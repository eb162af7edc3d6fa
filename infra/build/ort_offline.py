"""onnxruntime's graph optimizations applied once at build, so a function's session does less at init.

onnxruntime optimizes every graph when a session loads it (constant folding, node fusions,
and for int8 the ``DynamicQuantizeMatMul`` / ``MatMulIntegerToFloat`` fusions). Saving the
graph the CPU provider ends up with (``SessionOptions.optimized_model_filepath``) moves that
work from every cold start to the build: measured on the DistilBERT-sized int8 classifier,
session init 0.396 → 0.347 s (median of 5, 2-vCPU AVX2 host).

The level is ``ORT_ENABLE_EXTENDED``, the highest onnxruntime documents as portable across
hosts of one execution provider; layout optimizations (level 99, e.g. NCHWc blocks sized for
one CPU's vector width) stay online, so the runtime keeps ``ORT_ENABLE_ALL``. Extended
fusions are the CPU provider's: a model for a GPU instance type is shipped as exported (its
session assigns nodes to CUDA). The saved graph is shipped only when it computes what the
gated graph computes on the build's feeds; the manifest's ``graph_optimization`` records the
level, the onnxruntime version and the node counts, or why it was skipped.

**SkipLayerNormalization, measured.** onnxruntime fuses ``Add`` (+ bias) + ``LayerNormalization``
into ``SkipLayerNormalization`` (its transformer optimizer and the session's online
``SkipLayerNormFusion``). On the 2-vCPU AVX2 build host its kernel was the slower one: 64×384,
~190 µs vs ~70 µs for Add + LayerNormalization; whole BERT-shaped encoder int8 113 → 104 ms,
fp32 223 → 208 ms. So where the graph has it, the build also makes the unfused graph
(:func:`unfuse_skip_layer_norm`), gates it and times it side by side with the fused one, and
ships the faster; the unfused graph needs the session to leave ``SkipLayerNormFusion`` off,
which the manifest says (``disabled_optimizers``, read by ``layers/model.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

LEVEL = "extended"
SKIP_LAYER_NORM = "SkipLayerNormalization"
#: The online fusion an unfused graph must be loaded without.
SKIP_LAYER_NORM_FUSION = "SkipLayerNormFusion"
#: Largest relative output change the saved graph may show against the gated one.
MAX_ERROR = 1e-4


def _external(path: Path) -> bool:
    model = onnx.load(path, load_external_data=False)
    return any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer)


def _nodes(path: Path) -> int:
    return len(onnx.load(path, load_external_data=False).graph.node)


def optimize(src: Path, dst: Path, *, gpu: bool, feeds: dict[str, np.ndarray] | None,
             relative_error: Callable[[list[np.ndarray], list[np.ndarray]], float]) -> dict[str, Any]:
    """Write ``src`` optimized at :data:`LEVEL` for the CPU provider to ``dst``. Returns the
    manifest record: ``level``, ``onnxruntime``, ``nodes_before``/``nodes_after`` when ``dst``
    is to ship, else ``skipped`` (why; ``dst`` is then not written)."""
    import onnxruntime as ort

    if gpu:
        return {"skipped": "GPU instance type: the CPU provider's fusions would pin nodes to the CPU"}
    if _external(src):
        return {"skipped": "weights in external data files; the model ships as exported"}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dst)
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
        if feeds:
            plain = ort.SessionOptions()
            plain.intra_op_num_threads = 1
            plain.log_severity_level = 3
            ref = ort.InferenceSession(str(src), plain, providers=["CPUExecutionProvider"]).run(None, feeds)
            out = ort.InferenceSession(str(dst), plain, providers=["CPUExecutionProvider"]).run(None, feeds)
            if (err := relative_error(ref, out)) > MAX_ERROR:
                dst.unlink(missing_ok=True)
                return {"skipped": f"the saved graph changed the outputs (relative error {err:.2e})"}
    except Exception as exc:  # onnxruntime refuses to serialize some graphs; online optimization still runs
        dst.unlink(missing_ok=True)
        return {"skipped": f"onnxruntime could not save it ({str(exc).splitlines()[0][:200]})"}
    return {"level": LEVEL, "onnxruntime": ort.__version__, "nodes_before": _nodes(src), "nodes_after": _nodes(dst)}


def unfuse_skip_layer_norm(src: Path, dst: Path) -> int:
    """Write ``src`` with each ``SkipLayerNormalization`` as ``Add`` (+ ``Add`` of its bias) +
    ``LayerNormalization`` to ``dst``; returns how many were rewritten (none below opset 17,
    where ``LayerNormalization`` does not exist; ``dst`` is then not written)."""
    model = onnx.load(src)
    if next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0) < 17:
        return 0  # LayerNormalization needs opset 17; raising the opset could change other ops
    nodes, count = [], 0
    for n in model.graph.node:
        if n.op_type != SKIP_LAYER_NORM or n.domain != "com.microsoft":
            nodes.append(n)
            continue
        count += 1
        eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-12)
        x, skip, gamma = n.input[:3]
        beta = n.input[3] if len(n.input) > 3 else ""
        bias = n.input[4] if len(n.input) > 4 else ""
        total = n.output[3] if len(n.output) > 3 and n.output[3] else f"{n.name}_sum"
        if bias:
            nodes.append(helper.make_node("Add", [x, skip], [f"{n.name}_skip"], name=f"{n.name}_add"))
            nodes.append(helper.make_node("Add", [f"{n.name}_skip", bias], [total], name=f"{n.name}_bias"))
        else:
            nodes.append(helper.make_node("Add", [x, skip], [total], name=f"{n.name}_add"))
        nodes.append(helper.make_node("LayerNormalization", [total, gamma, *([beta] if beta else [])], [n.output[0]],
                                      name=f"{n.name}_norm", axis=-1, epsilon=eps))
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, 17)  # LayerNormalization
        onnx.save(model, dst)
    return count

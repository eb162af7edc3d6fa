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
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

LEVEL = "extended"
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

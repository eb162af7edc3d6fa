"""onnxruntime's transformer optimizer, run before dynamic int8 on transformer graphs.

onnxruntime's guidance for BERT-class models is to fuse first (``SkipLayerNormalization``,
``BiasGelu``/``FastGelu``, ``Attention`` where the exporter's pattern is one it knows), then
quantize dynamically: the fused ops cost fewer kernel launches and a fused ``Attention`` is
quantized as one ``QAttention``. The optimizer runs at ``opt_level=0`` (its own Python
fusions only): onnxruntime's online optimizations still run when the function loads it.

What fused is recorded in the manifest (``quantization.transformer_optimizer``); a graph the
optimizer cannot handle is quantized as it was, with the reason recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnx

from infra.build.quantize import op_counts

#: A graph is treated as a transformer when it has attention scores and normalization.
_ATTENTION_OPS = ("Softmax", "Attention", "MultiHeadAttention")
_NORM_OPS = ("LayerNormalization", "SkipLayerNormalization", "ReduceMean")


def is_transformer(model: onnx.ModelProto) -> bool:
    ops = op_counts(model)
    return (any(ops[o] for o in _ATTENTION_OPS) and any(ops[o] for o in _NORM_OPS)
            and ops["MatMul"] + ops["Gemm"] + ops["Attention"] >= 2)


def optimize(src: Path, dst: Path) -> dict[str, Any]:
    """Fuse ``src`` into ``dst`` (BERT fusions, sizes detected from the graph). Returns the
    manifest record: ``fused`` (op → count, non-zero only) or ``skipped`` (why)."""
    model = onnx.load(src)
    if not is_transformer(model):
        return {"skipped": "not a transformer graph (no Softmax + LayerNorm + MatMuls)"}
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError as exc:  # onnxruntime without its transformers package
        return {"skipped": f"onnxruntime.transformers unavailable ({exc})"}
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the optimizer logs each failed pattern match
    try:
        optimized = optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        optimized.save_model_to_file(str(dst))
    except Exception as exc:  # a pattern pass that trips over an exporter's graph
        return {"skipped": f"optimizer failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"}
    finally:
        logging.getLogger().setLevel(level)
    if not fused:
        return {"skipped": "no transformer fusion matched this graph"}
    record: dict[str, Any] = {"fused": fused}
    if not any(k in fused for k in ("Attention", "MultiHeadAttention")):
        record["attention"] = ("not fused: the exporter's attention pattern is not one the optimizer "
                               "knows; Q/K/V projections are quantized as separate MatMuls")
    return record

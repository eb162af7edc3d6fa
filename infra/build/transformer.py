"""onnxruntime's transformer optimizer, run before int8 on transformer graphs.

onnxruntime's guidance for BERT-class models is to fuse first (``SkipLayerNormalization``,
``BiasGelu``/``FastGelu``, ``EmbedLayerNormalization``, ``Attention``), then quantize: the
fused ops cost fewer kernel launches and a fused ``Attention`` is quantized as one
``QAttention`` (Q, K and V projections in one int8 GEMM). Two things keep ``Attention`` from
fusing on the graphs modelfn exports, and both are handled here:

* the optimizer's own guess of the head count and hidden size fails on exported graphs
  (``num_heads=0``): they are read from the Hugging Face config, else from the graph's
  head-splitting ``Reshape`` (``[…, heads, head_size]`` with ``heads × head_size`` = a
  projection's width) and passed explicitly;
* ``nn.MultiheadAttention`` (``nn.TransformerEncoder``) projects Q, K and V with one packed
  weight, a pattern the optimizer does not know with either exporter: those blocks are fused
  first by :mod:`infra.build.attention_fusion`, found by their anchors (packed projection,
  one Softmax, out-projection), not by one exporter's node sequence;
* the dynamo exporter's BERT-family attention pattern is not one the optimizer knows. For a
  Hugging Face source the model is exported a second time with the TorchScript exporter,
  whose pattern it fuses.

Every fused graph is used for int8 only after it gives the fp32 graph's outputs on the gate's
rows (``same_function``).

The optimizer runs at ``opt_level=0`` (its own Python fusions only): onnxruntime's online
optimizations still run when the function loads the model. What fused, from which export,
is recorded in the manifest (``quantization.transformer_optimizer``); a graph the optimizer
cannot handle is quantized as it was, with the reason recorded.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
from onnx import numpy_helper

from infra.build.attention_fusion import fuse_packed_attention
from infra.build.quantize import op_counts

#: A graph is treated as a transformer when it has attention scores and normalization.
_ATTENTION_OPS = ("Softmax", "Attention", "MultiHeadAttention")
_NORM_OPS = ("LayerNormalization", "SkipLayerNormalization", "ReduceMean")
_FUSED_ATTENTION = ("Attention", "MultiHeadAttention")
#: (heads, hidden) keys of Hugging Face configs, by family.
_HEAD_KEYS = ("num_attention_heads", "n_heads", "num_heads", "encoder_attention_heads")
_HIDDEN_KEYS = ("hidden_size", "dim", "d_model", "n_embd")

#: Compares a graph's outputs on the gate rows to the fp32 graph's: None when they agree,
#: else why not.
SameFunction = Callable[[Path], "str | None"]


def is_transformer(model: onnx.ModelProto) -> bool:
    ops = op_counts(model)
    return (any(ops[o] for o in _ATTENTION_OPS) and any(ops[o] for o in _NORM_OPS)
            and ops["MatMul"] + ops["Gemm"] + ops["Attention"] >= 2)


def config_sizes(config: dict[str, Any]) -> tuple[int, int] | None:
    """(heads, hidden) from a Hugging Face ``config.json``'s keys, or None."""
    heads = next((config[k] for k in _HEAD_KEYS if isinstance(config.get(k), int)), None)
    hidden = next((config[k] for k in _HIDDEN_KEYS if isinstance(config.get(k), int)), None)
    return (heads, hidden) if heads and hidden and hidden % heads == 0 else None


def graph_sizes(model: onnx.ModelProto) -> tuple[int, int] | None:
    """(heads, hidden) from the graph: the most common ``[…, heads, head_size]`` a Reshape
    splits into, where ``heads × head_size`` is the width of a square projection weight."""
    consts: dict[str, list[int]] = {}
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.INT64 and len(init.dims) <= 1:
            consts[init.name] = [int(v) for v in numpy_helper.to_array(init).reshape(-1)]
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            arr = numpy_helper.to_array(node.attribute[0].t)
            if arr.dtype.kind == "i" and arr.ndim <= 1:
                consts[node.output[0]] = [int(v) for v in arr.reshape(-1)]
    producer = {o: n for n in model.graph.node for o in n.output}
    widths = {int(i.dims[0]) for i in model.graph.initializer if len(i.dims) == 2 and i.dims[0] == i.dims[1]}

    def values(name: str) -> list[int | None] | None:
        if name in consts:
            return list(consts[name])
        node = producer.get(name)
        if node is not None and node.op_type == "Concat":
            out: list[int | None] = []
            for part in node.input:
                v = consts.get(part)
                if v is None and (p := producer.get(part)) is not None and p.op_type == "Unsqueeze":
                    v = consts.get(p.input[0])
                out.extend(v if v is not None and len(v) == 1 else [None])
            return out
        return None

    found: Counter = Counter()
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        shape = values(node.input[1])
        if shape and len(shape) == 4 and all(isinstance(v, int) and v > 1 for v in shape[2:]):
            heads, size = shape[2], shape[3]
            if heads * size in widths:
                found[(heads, heads * size)] += 1
    return found.most_common(1)[0][0] if found else None


def optimize(src: Path, dst: Path, sizes: tuple[int, int] | None = None) -> dict[str, Any]:
    """Fuse ``src`` into ``dst`` (BERT fusions; ``sizes`` = (heads, hidden), else detected
    from the graph). Returns the manifest record: ``fused`` (op → count, non-zero only) or
    ``skipped`` (why)."""
    model = onnx.load(src)
    if not is_transformer(model):
        return {"skipped": "not a transformer graph (no Softmax + LayerNorm + MatMuls)"}
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError as exc:  # onnxruntime without its transformers package
        return {"skipped": f"onnxruntime.transformers unavailable ({exc})"}
    sizes = sizes or graph_sizes(model)
    heads, hidden = sizes or (0, 0)
    packed, left = fuse_packed_attention(model, heads or None)
    if packed:  # nn.MultiheadAttention's blocks, fused here; the optimizer fuses the rest
        src = dst.with_name(f"{dst.stem}_packed.onnx")
        onnx.save(model, src)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # the optimizer logs each failed pattern match
    try:
        optimized = optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
        fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
        optimized.save_model_to_file(str(dst))
    except Exception as exc:  # a pattern pass that trips over an exporter's graph
        why = f"optimizer failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        if not packed:
            return {"skipped": why}
        onnx.save(model, dst)
        return {"fused": {"Attention": packed}, "packed_attention": packed, "optimizer": why}
    finally:
        logging.getLogger().setLevel(level)
    if not fused:
        return {"skipped": "no transformer fusion matched this graph"}
    record: dict[str, Any] = {"fused": fused}
    if packed:
        record["packed_attention"] = packed
    if left:
        record["packed_attention_left"] = left[:8]
    if sizes:
        record["num_heads"], record["hidden_size"] = heads, hidden
    return record


def prepare(pre: Path, work: Path, *, same_function: SameFunction, sizes: tuple[int, int] | None = None,
            reexport: Callable[[Path], None] | None = None,
            preprocess: Callable[[Path, Path], str] | None = None) -> tuple[Path | None, dict[str, Any]]:
    """The fused graph int8 starts from, and its record. ``pre``: the pre-processed fp32
    export. ``reexport(dst)``, when given, writes the same model exported with the TorchScript
    exporter (tried when ``pre``'s attention did not fuse), pre-processed with ``preprocess``.
    A fused graph is used only if ``same_function`` accepts it; None: quantize ``pre``."""
    def differs(path: Path) -> str | None:
        try:
            return same_function(path)
        except Exception as exc:  # e.g. an export that dropped an unused input the data feeds
            return f"it does not run on the gate rows ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"

    fused = work / "pre_transformer.onnx"
    record = optimize(pre, fused, sizes)
    best: Path | None = None
    if "fused" in record:
        if (why := differs(fused)) is None:
            best = fused
        else:
            record = {"skipped": f"the fused graph changed the outputs ({why})"}
    if best is not None and any(k in record["fused"] for k in _FUSED_ATTENTION):
        return best, record
    if reexport is not None and preprocess is not None:
        alt, alt_pre, alt_fused = work / "fp32_torchscript.onnx", work / "pre_torchscript.onnx", work / "pre_ts_fused.onnx"
        try:
            reexport(alt)
            preprocess(alt, alt_pre)
            alt_record = optimize(alt_pre, alt_fused, sizes)
        except Exception as exc:  # the second exporter failing costs only the fusion
            alt_record = {"skipped": f"TorchScript export failed ({type(exc).__name__}: {str(exc)[:160]})"}
        attention = any(k in alt_record.get("fused", {}) for k in _FUSED_ATTENTION)
        if attention and (why := differs(alt_fused)) is None:
            return alt_fused, {**alt_record, "export": "torchscript (its attention pattern fuses; the dynamo "
                               "graph's does not)", "dynamo_export": record}
        record["torchscript_export"] = (alt_record if not attention else
                                        {"skipped": f"the fused graph changed the outputs ({why})"})
    if best is not None:
        record["attention"] = ("not fused: the exporter's attention pattern is not one the optimizer "
                               "knows; Q/K/V projections are quantized as separate MatMuls")
    return best, record


def source_hints(spec) -> tuple[tuple[int, int] | None, Callable[[Path], None] | None]:
    """For a Hugging Face source (catalog ``hf:<dir>``): (heads, hidden) from its config, and
    a re-export with the TorchScript exporter. (None, None) for other sources."""
    if spec.source_kind != "hf":
        return None, None
    from infra.build.hf import export, load_config
    from infra.tasks.build import hf_task

    def reexport(dst: Path) -> None:
        model, _ = export(spec.source_path, hf_task(spec), exporter="torchscript")
        onnx.save(model, dst)

    try:
        sizes = config_sizes(load_config(spec.source_path))
    except Exception:  # an unreadable config was already reported by the conversion
        sizes = None
    return sizes, reexport

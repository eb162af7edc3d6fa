"""int8 variants of an fp32 ONNX model, made with ``onnxruntime.quantization``.

``quant_pre_process`` (shape inference + graph optimization) always runs first. Then:

* ``dynamic``: int8 weights, activations quantized at run time; for MatMul-heavy graphs
  (MLPs, transformers, RNNs). ORT's dynamic quantizer skips ``Gemm``, which is what
  ``nn.Linear`` exports to, so 2-D Gemms are rewritten as MatMul + Add first. Conv is never
  quantized dynamically: ``ConvInteger`` has no CPU kernel, the model would not load.
* ``static``: QDQ format, per-channel int8 weights, activation ranges calibrated on the
  catalog's calibration set through a :class:`CalibrationDataReader`; the right choice for Conv.
  In a transformer only the weight MatMuls/Gemms are quantized (:func:`quantize_static`).

* ``weight-int4`` / ``weight-int8``: weight-only, for transformers: MatMul weights in 4- or
  8-bit blocks of :data:`NBITS_BLOCK` (``MatMulNBits``), computed at ``accuracy_level`` 4:
  activations are quantized to int8 per block at run time and multiplied in int8
  (onnxruntime's guidance for int8 compute of block-quantized weights); per-block scales keep
  outliers local.

Weights are per-channel in dynamic and static. ``reduce_range`` (7-bit weights) is chosen from the build
CPU (:mod:`infra.build.cpu`): on without VNNI/AMX, where onnxruntime's u8×s8 kernels
(VPMADDUBSW) saturate 8-bit products, off where a dot-product instruction makes the 8th bit
free accuracy. Transformer graphs get onnxruntime's transformer optimizer before dynamic
quantization (:mod:`infra.build.transformer`), and dynamic int8 that fails the gate is
retried with its most sensitive MatMuls kept fp32 (:mod:`infra.build.int8_search`).

``auto`` picks candidates from the graph's ops (:func:`candidates`); the build measures them
and ships the fastest that loads, passes the gate and beats fp32.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from infra.build.data import Dataset

#: Ops the dynamic quantizer turns into integer kernels (after the Gemm rewrite).
DYNAMIC_OPS = ("MatMul", "Attention", "LSTM", "GRU")
#: Ops static QDQ quantization makes worthwhile.
STATIC_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: Weight-only mode: 4-bit MatMul weights, int8 compute.
WEIGHT_INT4 = "weight-int4"
WEIGHT_INT8 = "weight-int8"
#: The weight-only modes and their bits.
WEIGHT_ONLY = {WEIGHT_INT4: 4, WEIGHT_INT8: 8}
NBITS_BLOCK = 32
#: MatMulNBits ``accuracy_level`` 4: activations quantized to int8, int8 dot products.
NBITS_ACCURACY_LEVEL = 4
CALIBRATION_BATCH = 16
MAX_CALIBRATION_ROWS = 512


class QuantizationError(RuntimeError):
    """onnxruntime.quantization could not produce a variant; the message says why."""


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def candidates(model: onnx.ModelProto, has_calibration: bool, transformer: bool = False) -> tuple[list[str], str]:
    """The int8 modes worth measuring for ``auto``, and why (shown in the build output).
    ``transformer``: the graph is one (:func:`infra.build.transformer.is_transformer`), so
    weight-only int4 and int8 with int8 compute are measured too."""
    ops = op_counts(model)
    conv = ops["Conv"] + ops["ConvTranspose"]
    matmul = ops["MatMul"] + ops["Gemm"] + ops["Attention"] + ops["LSTM"] + ops["GRU"]
    modes: list[str] = []
    if matmul:
        modes.append("dynamic")
    if has_calibration and (conv or matmul):
        modes.append("static")
    if transformer and ops["MatMul"]:
        modes += [WEIGHT_INT4, WEIGHT_INT8]
    if modes:
        why = f"{matmul} MatMul/Gemm/RNN and {conv} Conv ops → measuring {', '.join(modes)}"
    elif conv:
        why = f"{conv} Conv ops but no calibration set (static needs one; dynamic Conv cannot load)"
    else:
        why = "no MatMul, Gemm, Conv or RNN ops to quantize"
    return modes, why


def preprocess(src: Path, dst: Path) -> str:
    """``quant_pre_process`` into ``dst``; returns which steps ran (some graphs resist one)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts = ({}, {"skip_symbolic_shape": True}, {"skip_symbolic_shape": True, "skip_optimization": True})
    last: Exception | None = None
    for kwargs in attempts:
        try:  # in dst's folder: a failed symbolic shape inference dumps its model into the cwd
            with _quiet(), contextlib.chdir(Path(dst).resolve().parent):
                quant_pre_process(str(Path(src).resolve()), str(Path(dst).resolve()), **kwargs)
            return "full" if not kwargs else "+".join(k.removeprefix("skip_") + " skipped" for k in kwargs)
        except Exception as exc:  # symbolic shape inference fails on some exporters' graphs
            last = exc
    raise QuantizationError(f"quant_pre_process failed: {last}")


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite plain 2-D ``Gemm`` (alpha=beta=1, no transA) with constant B as MatMul + Add."""
    inits = {i.name: i for i in model.graph.initializer}
    new_nodes, rewritten = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (node.op_type == "Gemm" and node.input[1] in inits and not attrs.get("transA", 0)
                 and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0)
        if not plain:
            new_nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            w = numpy_helper.to_array(inits[weight]).T.copy()
            weight = f"{node.input[1]}_T_{rewritten}"
            model.graph.initializer.append(numpy_helper.from_array(w, weight))
        mm_out = f"{node.output[0]}_matmul" if len(node.input) > 2 and node.input[2] else node.output[0]
        new_nodes.append(helper.make_node("MatMul", [node.input[0], weight], [mm_out],
                                          name=f"{node.name or 'gemm'}_{rewritten}_MatMul"))
        if mm_out != node.output[0]:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]],
                                              name=f"{node.name or 'gemm'}_{rewritten}_Add"))
        rewritten += 1
    if rewritten:
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        _drop_unused_initializers(model)
    return rewritten


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def name_nodes(model: onnx.ModelProto) -> int:
    """Give every unnamed (or duplicate-named) node a unique name: node lists passed to the
    quantizer (``nodes_to_exclude``) and recorded in the manifest are names."""
    seen: set[str] = set()
    renamed = 0
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
            renamed += 1
        seen.add(node.name)
    return renamed


def _constants(model: onnx.ModelProto) -> set[str]:
    """Names of the graph's constant tensors (initializers and ``Constant`` outputs)."""
    return {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant"
                                                        for o in n.output}


def dynamic_targets(pre: Path) -> list[str]:
    """Names of the nodes dynamic quantization turns into integer kernels, in graph order
    (MatMuls with a constant weight, fused Attention, RNNs), as :func:`quantize_dynamic` names them."""
    model = onnx.load(pre)
    gemm_to_matmul(model)
    name_nodes(model)
    consts = _constants(model)
    return [n.name for n in model.graph.node if n.op_type in DYNAMIC_OPS
            and (n.op_type != "MatMul" or n.input[1] in consts)]


def quantize_dynamic(pre: Path, dst: Path, *, reduce_range: bool = True, exclude: tuple[str, ...] = (),
                     only: tuple[str, ...] = ()) -> None:
    """Dynamic int8 of ``pre`` into ``dst``; ``exclude`` nodes stay fp32; ``only``, if given,
    are the only nodes quantized (the sensitivity search quantizes one at a time)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    model = onnx.load(pre)
    gemm_to_matmul(model)
    name_nodes(model)
    try:
        with _quiet():
            ort_quantize_dynamic(model, str(dst), op_types_to_quantize=list(DYNAMIC_OPS),
                                 weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
                                 nodes_to_quantize=list(only) or None, nodes_to_exclude=list(exclude) or None,
                                 extra_options={"MatMulConstBOnly": True,
                                                # fused ops' outputs (Attention, SkipLayerNorm) carry no type
                                                "DefaultTensorType": onnx.TensorProto.FLOAT})
    except Exception as exc:
        raise QuantizationError(f"dynamic quantization failed: {exc}") from exc


def quantize_weight_only(pre: Path, dst: Path, *, bits: int = 4) -> None:
    """MatMul weights to ``bits``-bit blocks (``MatMulNBits``) with int8 compute."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(pre)
    gemm_to_matmul(model)
    name_nodes(model)
    try:
        with _quiet():
            quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=NBITS_BLOCK, is_symmetric=True,
                                             accuracy_level=NBITS_ACCURACY_LEVEL)
            quantizer.process()
            quantizer.model.save_model_to_file(str(dst))
    except Exception as exc:
        raise QuantizationError(f"weight-only int{bits} quantization failed: {exc}") from exc
    if not op_counts(onnx.load(dst, load_external_data=False))["MatMulNBits"]:
        raise QuantizationError(f"weight-only int{bits}: no MatMul with a constant 2-D weight to quantize")


class DatasetReader:
    """A :class:`~onnxruntime.quantization.CalibrationDataReader` over a calibration set."""

    def __init__(self, data: Dataset, batch: int = CALIBRATION_BATCH, max_rows: int = MAX_CALIBRATION_ROWS):
        rows = min(data.rows, max_rows)
        self._batches = [data.batch(s, min(s + batch, rows)) for s in range(0, rows, batch)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return self._batches[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


def weight_targets(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul/Gemm nodes whose second input is a constant weight (``model`` named
    by :func:`name_nodes`): what static int8 quantizes in a transformer."""
    consts = _constants(model)
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in consts]


def quantize_static(pre: Path, dst: Path, calibration: Dataset, *, reduce_range: bool = True,
                    transformer: bool = False) -> None:
    """QDQ int8 calibrated on ``calibration``. ``transformer``: only the weight MatMuls/Gemms,
    with float outputs (each becomes ``MatMulIntegerToFloat``): quantizing every op of a
    transformer (Softmax, LayerNorm, residual Adds, attention's activation×activation MatMuls)
    took the DistilBERT-sized classifier's top-1 agreement to 0.515; restricted, 0.98."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    reader = DatasetReader(calibration)
    assert isinstance(reader, CalibrationDataReader)  # duck-typed ABC: get_next is enough
    extra: dict = {"ActivationSymmetric": False, "WeightSymmetric": True}
    op_types, nodes, src = None, None, str(pre)
    if transformer:
        model = onnx.load(pre)
        name_nodes(model)
        nodes, op_types = weight_targets(model), ["MatMul", "Gemm"]
        extra["OpTypesToExcludeOutputQuantization"] = op_types
        src = str(dst.with_name(f"{dst.stem}_named.onnx"))
        onnx.save(model, src)
    try:
        with _quiet():
            ort_quantize_static(
                src, str(dst), reader, quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types, nodes_to_quantize=nodes, per_channel=True, reduce_range=reduce_range,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, extra_options=extra,
            )
    except Exception as exc:
        raise QuantizationError(f"static quantization failed: {exc}") from exc


def quantize(mode: str, pre: Path, dst: Path, calibration: Dataset | None, *, reduce_range: bool = True,
             exclude: tuple[str, ...] = (), transformer: bool = False) -> None:
    if mode == "dynamic":
        quantize_dynamic(pre, dst, reduce_range=reduce_range, exclude=exclude)
    elif mode == "static":
        if calibration is None:
            raise QuantizationError("static quantization needs a calibration set")
        quantize_static(pre, dst, calibration, reduce_range=reduce_range, transformer=transformer)
    elif mode in WEIGHT_ONLY:
        quantize_weight_only(pre, dst, bits=WEIGHT_ONLY[mode])
    else:
        raise ValueError(f"unknown int8 mode {mode!r}")


class _quiet:
    """onnxruntime.quantization logs per-node warnings; the build shows its own summary."""

    def __enter__(self):
        self._root = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.getLogger().setLevel(self._root)
        return False

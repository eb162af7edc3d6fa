"""Tiny models and catalogs for the pipeline tests, made in ``tmp_path`` in milliseconds."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper


def _save(graph, path: Path, opset: int) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def make_mlp_onnx(path: Path, *, features: int = 32, hidden: int = 64, classes: int = 5,
                  seed: int = 0, opset: int = 17, use_gemm: bool = False) -> Path:
    """x [N, features] → MatMul/Add/Relu → MatMul/Add → logits [N, classes]."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((features, hidden)) / np.sqrt(features)).astype(np.float32)
    w2 = (rng.standard_normal((hidden, classes)) / np.sqrt(hidden)).astype(np.float32)
    b1, b2 = np.zeros(hidden, np.float32), np.zeros(classes, np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "W1"), (w2, "W2"), (b1, "B1"), (b2, "B2"))]
    if use_gemm:
        nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["h"]),
                 helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("Gemm", ["r", "W2", "B2"], ["logits"])]
    else:
        nodes = [helper.make_node("MatMul", ["x", "W1"], ["m1"]), helper.make_node("Add", ["m1", "B1"], ["h"]),
                 helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("MatMul", ["r", "W2"], ["m2"]), helper.make_node("Add", ["m2", "B2"], ["logits"])]
    graph = helper.make_graph(nodes, "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                              initializer=inits)
    return _save(graph, path, opset)


def make_cnn_onnx(path: Path, *, channels: int = 8, classes: int = 4, seed: int = 0) -> Path:
    """x [N, 1, 8, 8] → Conv/Relu → GlobalAveragePool → Flatten → Gemm → logits [N, classes]."""
    rng = np.random.default_rng(seed)
    wc = (rng.standard_normal((channels, 1, 3, 3)) / 3).astype(np.float32)
    bc = (rng.standard_normal(channels) * 0.1).astype(np.float32)
    wf = rng.standard_normal((channels, classes)).astype(np.float32)
    bf = np.zeros(classes, np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((wc, "WC"), (bc, "BC"), (wf, "WF"), (bf, "BF"))]
    nodes = [helper.make_node("Conv", ["x", "WC", "BC"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "WF", "BF"], ["logits"])]
    graph = helper.make_graph(nodes, "cnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                              initializer=inits)
    return _save(graph, path, 17)


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def rows(shape: tuple[int, ...], n: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def write_catalog(root: Path, models: list[dict[str, Any]]) -> Path:
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump({"models": models}, sort_keys=False))
    return path


def mlp_entry(root: Path, name: str = "mlp", **overrides: Any) -> dict[str, Any]:
    """A catalog entry for a MatMul model with validation and calibration data in ``root``."""
    make_mlp_onnx(root / f"{name}.onnx")
    write_npz(root / f"{name}_val.npz", x=rows((32,), seed=2))
    write_npz(root / f"{name}_cal.npz", x=rows((32,), seed=3))
    entry = {"name": name, "source": f"{name}.onnx", "validation": f"{name}_val.npz",
             "calibration": f"{name}_cal.npz", "quantize": "dynamic",
             "tolerance": {"top1_agreement": 0.9, "min_cosine": 0.95}}
    entry.update(overrides)
    return entry


def torch_module(root: Path, body: str) -> str:
    """A module ``<unique pkg>.model`` under ``root`` (unique: sys.modules outlives a test)."""
    pkg = root / f"tpkg_{root.name.replace('-', '_')}"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(textwrap.dedent(body))
    return f"{pkg.name}.model"


def _ints(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def make_pairs_onnx(path: Path) -> Path:
    """x [batch, seq] → Reshape [batch, -1, 2] → sum over pairs → MatMul → logits [batch, 3]:
    ``seq`` must be even, so a probe with every dynamic dim at 1 fails inside the Reshape."""
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "W")
    nodes = [helper.make_node("Reshape", ["x", "pairs"], ["r"]),
             helper.make_node("ReduceSum", ["r", "axis1"], ["s"], keepdims=0),
             helper.make_node("MatMul", ["s", "W"], ["logits"])]
    graph = helper.make_graph(nodes, "pairs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
                              initializer=[w, _ints("pairs", [0, -1, 2]), _ints("axis1", [1])])
    return _save(graph, path, 17)


def make_if_pad_onnx(path: Path) -> Path:
    """x [N, L] (L unnamed) → ``If`` L < 2: a ``Pad`` cropping 3 from axis 1 (a negative size:
    onnxruntime fails inside the If), else x → sum over axis 1 → MatMul → y [N, 2]. Length 1
    fails; 2 or more run."""
    crop = helper.make_graph([helper.make_node("Pad", ["x", "crop3"], ["cropped"])], "short", [],
                             [helper.make_tensor_value_info("cropped", TensorProto.FLOAT, None)])
    keep = helper.make_graph([helper.make_node("Identity", ["x"], ["kept"])], "long", [],
                             [helper.make_tensor_value_info("kept", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["length"], axis=0),
             helper.make_node("Less", ["length", "two"], ["short"]),
             helper.make_node("If", ["short"], ["b"], then_branch=crop, else_branch=keep),
             helper.make_node("ReduceSum", ["b", "axis1"], ["s"], keepdims=1),
             helper.make_node("MatMul", ["s", "W"], ["y"])]
    w = numpy_helper.from_array(np.ones((1, 2), np.float32), "W")
    graph = helper.make_graph(nodes, "if_pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              initializer=[w, _ints("one", 1), _ints("two", 2), _ints("axis1", [1]),
                                           _ints("crop3", [0, 0, 0, -3])])
    return _save(graph, path, 17)


def make_two_input_onnx(path: Path, hidden: int = 300) -> Path:
    """x [N, 4] + z [M, 4] → MatMul: onnxruntime's symbolic shape inference cannot merge N
    and M, so ``quant_pre_process`` writes ``sym_shape_infer_temp.onnx`` (+ external data) into
    the current directory before it gives up."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, hidden)).astype(np.float32), "W")
    nodes = [helper.make_node("Add", ["x", "z"], ["s"]), helper.make_node("MatMul", ["s", "W"], ["y"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
                                             helper.make_tensor_value_info("z", TensorProto.FLOAT, ["M", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, hidden])],
                              initializer=[w])
    return _save(graph, path, 17)


def make_picky_onnx(path: Path) -> Path:
    """x [N, K] → Reshape [-1, 7, 11] → y: runs only when N·K is a multiple of 77, which no
    plausible probe size is; only the user's own example can measure it."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    graph = helper.make_graph(nodes, "picky", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 7, 11])],
                              initializer=[_ints("shape", [-1, 7, 11])])
    return _save(graph, path, 17)

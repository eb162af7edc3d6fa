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

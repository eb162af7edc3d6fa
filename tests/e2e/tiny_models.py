"""Tiny ONNX models and a catalog for the end-to-end stack, made with onnx.helper in tmp."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import make_tiny_onnx


def _save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def make_pair_onnx(path: Path) -> Path:
    """Two inputs ``a``, ``b`` [N, 3] → ``sum`` and ``prod`` [N, 3]."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["prod"])],
        "pair",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("sum", "prod")],
    )
    return _save(graph, path)


def make_dynamic_onnx(path: Path) -> Path:
    """``x`` [N, M] (both dims dynamic) → ``y`` = relu(x), same shape."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])],
    )
    return _save(graph, path)


def make_catalog(root: Path, *, sagemaker: bool = True, broken: bool = False) -> Path:
    """``pair`` (multi-input), ``dyn`` (dynamic shape), ``tiny`` (classifier, batch tests)
    ``pair-sm`` (the pair model as a SageMaker-target model) and optionally ``broken``."""
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    make_pair_onnx(src / "pair.onnx")
    make_dynamic_onnx(src / "dyn.onnx")
    make_tiny_onnx(src / "tiny.onnx")
    np.savez(src / "tiny_example.npz", x=np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32))
    entries = [
        "  - {name: pair, source: src/pair.onnx, quantize: none, auth: none, target: lambda}",
        "  - {name: dyn, source: src/dyn.onnx, quantize: none, auth: none, target: lambda}",
        "  - {name: tiny, source: src/tiny.onnx, example_input: src/tiny_example.npz, quantize: none,"
        " auth: none, target: lambda}",
    ]
    if broken:  # a model whose build fails: reported, the others still serve
        (src / "broken.onnx").write_bytes(b"this is not an onnx model")
        entries.append("  - {name: broken, source: src/broken.onnx, quantize: none, auth: none}")
    if sagemaker:
        entries.append("  - {name: pair-sm, source: src/pair.onnx, quantize: none, auth: none,"
                       " target: sagemaker}")
    catalog = root / "models.yaml"
    catalog.write_text("models:\n" + "\n".join(entries) + "\n")
    return catalog

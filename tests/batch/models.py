"""Model directories for batch tests besides the shared tiny one (all built in tmp_path)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_manifest


def two_input_model(tmp: Path) -> Path:
    """``total = x + bias``: inputs ``x``, ``bias`` FP32 [-1, 4]; output ``total`` FP32 [-1, 4]."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["total"])], "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("x", "bias")],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    tmp.mkdir(parents=True, exist_ok=True)
    onnx.save(model, tmp / "model.onnx")
    spec = [{"name": n, "datatype": "FP32", "shape": [-1, 4]} for n in ("x", "bias")]
    return write_manifest(tmp, "two", spec, [{"name": "total", "datatype": "FP32", "shape": [-1, 4]}])


def fixed_batch_model(tmp: Path, batch: int = 2) -> Path:
    """The tiny classifier declared with a fixed batch dim (``[batch, 4]``)."""
    from tests.conftest import make_tiny_onnx

    make_tiny_onnx(tmp / "model.onnx")
    return write_manifest(tmp, "fixed", [{"name": "x", "datatype": "FP32", "shape": [batch, 4]}],
                          [{"name": "probs", "datatype": "FP32", "shape": [batch, 3]}])

"""Small ONNX models and MODEL_DIRs for runtime tests, built with onnx.helper in tmp_path."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from tests.conftest import write_manifest

#: V2 datatype → ONNX element type, for every datatype the runtime serves.
ONNX_TYPES = {
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def echo_model_dir(model_dir: Path, datatypes=tuple(ONNX_TYPES)) -> Path:
    """A model with one input ``in_<dt>`` [-1, 2] per datatype and Identity outputs ``out_<dt>``."""
    nodes, ins, outs, sig_in, sig_out = [], [], [], [], []
    for dt in datatypes:
        low = dt.lower()
        nodes.append(helper.make_node("Identity", [f"in_{low}"], [f"out_{low}"]))
        ins.append(helper.make_tensor_value_info(f"in_{low}", ONNX_TYPES[dt], ["N", 2]))
        outs.append(helper.make_tensor_value_info(f"out_{low}", ONNX_TYPES[dt], ["N", 2]))
        sig_in.append({"name": f"in_{low}", "datatype": dt, "shape": [-1, 2]})
        sig_out.append({"name": f"out_{low}", "datatype": dt, "shape": [-1, 2]})
    graph = helper.make_graph(nodes, "echo", ins, outs)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model_dir / "model.onnx")
    return write_manifest(model_dir, "echo", sig_in, sig_out)


def zipmap_model_dir(model_dir: Path) -> Path:
    """A classifier whose output is sklearn-style ZipMap ``seq(map(int64, float))``."""
    seq_map = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["probs"], axis=1),
         helper.make_node("ZipMap", ["probs"], ["probabilities"], domain="ai.onnx.ml",
                          classlabels_int64s=[0, 1, 2])],
        "zipmap",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_value_info("probabilities", seq_map)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    save(model, model_dir / "model.onnx")
    return write_manifest(model_dir, "zipmap",
                          [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
                          [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}])

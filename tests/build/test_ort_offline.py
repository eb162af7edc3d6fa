"""The shipped graph is onnxruntime's CPU-optimized one: same outputs, fewer nodes, skipped where
the CPU provider's fusions do not belong (GPU instance types)."""

import numpy as np
import onnx
import onnxruntime as ort

from infra.build import int8_search, ort_offline, quantize
from tests.build.helpers import make_mlp_onnx, rows


def _run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_int8_graph_is_saved_fused_and_computes_the_same(tmp_path):
    pre, dyn, opt = tmp_path / "pre.onnx", tmp_path / "dyn.onnx", tmp_path / "opt.onnx"
    quantize.preprocess(make_mlp_onnx(tmp_path / "mlp.onnx"), pre)
    quantize.quantize_dynamic(pre, dyn)
    feeds = {"x": rows((32,), n=4)}
    record = ort_offline.optimize(dyn, opt, gpu=False, feeds=feeds, relative_error=int8_search.relative_error)
    assert record["level"] == "extended" and record["onnxruntime"] == ort.__version__
    assert record["nodes_after"] < record["nodes_before"]  # DynamicQuantizeLinear + MatMulInteger + … fused
    assert "DynamicQuantizeMatMul" in quantize.op_counts(onnx.load(opt))
    np.testing.assert_array_equal(_run(opt, feeds)[0], _run(dyn, feeds)[0])


def test_gpu_instance_types_ship_the_graph_as_exported(tmp_path):
    src, opt = make_mlp_onnx(tmp_path / "mlp.onnx"), tmp_path / "opt.onnx"
    record = ort_offline.optimize(src, opt, gpu=True, feeds=None, relative_error=int8_search.relative_error)
    assert "GPU" in record["skipped"] and not opt.exists()

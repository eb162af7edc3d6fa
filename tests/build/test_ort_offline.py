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


def _skip_layer_norm_model(path, hidden=16):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32), n) for n in ("g", "b", "bias")]
    node = helper.make_node("SkipLayerNormalization", ["x", "s", "g", "b", "bias"], ["y"], domain="com.microsoft",
                            epsilon=1e-5)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, hidden]) for n in ("x", "s", "y")]
    graph = helper.make_graph([node], "sln", io[:2], io[2:], inits)
    onnx.save(helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17),
                                                                     helper.make_opsetid("com.microsoft", 1)]), path)
    return path


def test_skip_layer_norm_unfuses_into_add_and_layer_norm_with_the_same_outputs(tmp_path):
    src, dst = _skip_layer_norm_model(tmp_path / "sln.onnx"), tmp_path / "unfused.onnx"
    assert ort_offline.unfuse_skip_layer_norm(src, dst) == 1
    assert quantize.op_counts(onnx.load(dst)) == {"Add": 2, "LayerNormalization": 1}
    feeds = {"x": rows((4, 16), n=1), "s": rows((4, 16), n=1, seed=5)}
    unfused = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"],
                                   disabled_optimizers=[ort_offline.SKIP_LAYER_NORM_FUSION])
    np.testing.assert_allclose(unfused.run(None, feeds)[0], _run(src, feeds)[0], rtol=1e-5, atol=1e-5)

"""Gate figures and checks, and the graph facts `auto` decides from."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from infra.build import quantize
from infra.build.accuracy import check, compare
from infra.catalog import Tolerance
from tests.build.helpers import make_cnn_onnx, make_mlp_onnx, rows


def test_identical_outputs_agree_perfectly():
    probs = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    figures = compare([probs], [probs.copy()], labels=np.array([1, 0]))
    assert figures == {"top1_agreement": 1.0, "max_abs_error": 0.0, "min_cosine": pytest.approx(1.0),
                       "fp32_accuracy": 1.0, "accuracy": 1.0}


def test_figures_measure_the_difference():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]], np.float32)
    cand = ref.copy()
    cand[2] = [0.4, 0.6]  # one of four rows flips
    figures = compare([ref], [cand], labels=np.array([1, 0, 0, 0]))
    assert figures["top1_agreement"] == 0.75
    assert figures["max_abs_error"] == pytest.approx(0.2)
    assert figures["min_cosine"] < 1.0
    assert (figures["fp32_accuracy"], figures["accuracy"]) == (0.75, 0.5)


def test_integer_label_outputs_count_as_top1():
    figures = compare([np.array([0, 1, 2])], [np.array([0, 1, 1])], labels=np.array([0, 1, 2]))
    assert figures["top1_agreement"] == pytest.approx(2 / 3) and figures["accuracy"] == pytest.approx(2 / 3)
    assert "max_abs_error" not in figures  # no float outputs


def test_regression_outputs_get_error_and_cosine_but_no_top1():
    ref = np.array([[1.0], [2.0]], np.float32)
    figures = compare([ref], [ref + 0.01])
    assert "top1_agreement" not in figures and figures["max_abs_error"] == pytest.approx(0.01, rel=1e-3)


def test_check_applies_each_tolerance_and_skips_what_cannot_be_measured():
    tol = Tolerance(top1_agreement=0.99, max_abs_error=0.1, min_cosine=0.9, min_accuracy=0.9)
    result = check({"top1_agreement": 0.95, "max_abs_error": 0.05, "min_cosine": 0.99}, tol)
    assert not result.passed and result.failures == ("top1_agreement 0.95 < 0.99",)
    assert result.skipped == ("accuracy",)
    assert check({"top1_agreement": 1.0, "max_abs_error": 0.2}, Tolerance(max_abs_error=0.1)).reason == \
        "max_abs_error 0.2 > 0.1"


def test_auto_candidates_follow_the_ops(tmp_path):
    mlp = onnx.load(make_mlp_onnx(tmp_path / "mlp.onnx"))
    cnn = onnx.load(make_cnn_onnx(tmp_path / "cnn.onnx"))
    assert quantize.candidates(mlp, has_calibration=False)[0] == ["dynamic"]
    assert quantize.candidates(mlp, has_calibration=True)[0] == ["dynamic", "static"]
    assert quantize.candidates(cnn, has_calibration=True)[0] == ["dynamic", "static"]  # it has a Gemm too
    modes, why = quantize.candidates(onnx.load(_conv_only(tmp_path)), has_calibration=False)
    assert modes == [] and "calibration" in why


def _conv_only(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "W")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "W"], ["y"])], "c",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3, 3])],
                              initializer=[w])
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_dynamic_quantization_leaves_conv_in_float(tmp_path):
    # ConvInteger has no CPU kernel: a dynamic model with it would not load
    src = make_cnn_onnx(tmp_path / "cnn.onnx")
    pre, out = tmp_path / "pre.onnx", tmp_path / "dyn.onnx"
    quantize.preprocess(src, pre)
    quantize.quantize_dynamic(pre, out)
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert "ConvInteger" not in ops and "Conv" in ops and "MatMulInteger" in ops
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": rows((1, 8, 8), n=2)})


def test_gemm_rewrite_is_numerically_identical(tmp_path):
    src = make_mlp_onnx(tmp_path / "gemm.onnx", use_gemm=True)
    model = onnx.load(src)
    assert quantize.gemm_to_matmul(model) == 2
    onnx.checker.check_model(model)
    x = rows((32,), n=4)
    before = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)

"""Softmax only over logits: a model that outputs probabilities keeps its scores (magika's top
label scored 0.0126 instead of 1.0 when softmaxed a second time)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from infra.build.scores import are_probabilities, final_op
from infra.catalog import load_catalog
from infra.cli import main
from layers.model import load_model
from layers.v2_wire import infer_request
from tests.build.helpers import _save, make_mlp_onnx, rows, write_catalog, write_npz

LABELS = ["a", "b", "c", "d", "e"]


def _with_head(path, head: str):
    """The 5-class MLP with its logits turned into probabilities by ``head``: a Softmax node
    behind a Reshape, or a hand-made normalisation (exp(x) / sum) with no Softmax node at all."""
    model = onnx.load(make_mlp_onnx(path))
    graph = model.graph
    graph.output[0].name = "logits_raw"
    for node in graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 5])
    if head == "softmax":
        nodes = [helper.make_node("Softmax", ["logits_raw"], ["sm"], axis=-1),
                 helper.make_node("Reshape", ["sm", "shape"], ["probs"])]
    else:
        nodes = [helper.make_node("Exp", ["logits_raw"], ["e"]),
                 helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=1),
                 helper.make_node("Div", ["e", "s"], ["probs"])]
        graph.initializer.append(helper.make_tensor("axes", TensorProto.INT64, [1], [-1]))
    graph.initializer.append(shape)
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 5]))
    return _save(graph, path, 17)


def _infer(model_dir, x):
    model = load_model(model_dir)
    out = infer_request(model, {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                            "data": x.ravel().tolist()}]})
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in out["outputs"]}


@pytest.mark.parametrize("head", ["softmax", "normalised"])
def test_probabilities_out_model_keeps_its_scores(tmp_path, head):
    # given a model whose output already holds probabilities, and no softmax key in the catalog
    _with_head(tmp_path / "p.onnx", head)
    write_npz(tmp_path / "ex.npz", x=rows((32,), n=4))
    catalog = write_catalog(tmp_path, [{"name": "probs", "source": "p.onnx", "example_input": "ex.npz",
                                        "quantize": "none", "postprocess": {"labels": LABELS}}])
    # when built
    assert main(["build", "--catalog", str(catalog), "--out", str(tmp_path / "build")]) == 0
    block = json.loads((tmp_path / "build/models/probs/manifest.json").read_text())["processing"]["postprocess"]
    # then the build decided no softmax, and says why
    assert block["softmax"] is False and "already outputs probabilities" in block["softmax_reason"]
    # and the served scores are the model's own probabilities, the top one near 1 when it is sure
    x = rows((32,), n=3, seed=7) * 5
    out = _infer(tmp_path / "build/models/probs", x)
    np.testing.assert_allclose(out["scores"], out["probs"], rtol=1e-6)
    np.testing.assert_allclose(out["scores"].sum(axis=-1), 1.0, atol=1e-5)


def test_logits_out_model_is_softmaxed(tmp_path):
    make_mlp_onnx(tmp_path / "l.onnx")
    catalog = write_catalog(tmp_path, [{"name": "logits", "source": "l.onnx", "quantize": "none",
                                        "postprocess": {"labels": LABELS}}])  # no data: synthetic probe
    assert main(["build", "--catalog", str(catalog), "--out", str(tmp_path / "build")]) == 0
    block = json.loads((tmp_path / "build/models/logits/manifest.json").read_text())["processing"]["postprocess"]
    assert block["softmax"] is True and "holds logits" in block["softmax_reason"]
    out = _infer(tmp_path / "build/models/logits", rows((32,), n=2))
    e = np.exp(out["logits"] - out["logits"].max(axis=-1, keepdims=True))
    np.testing.assert_allclose(out["scores"], e / e.sum(axis=-1, keepdims=True), rtol=1e-5)


def test_softmax_true_over_probabilities_is_a_build_warning(tmp_path, capsys):
    _with_head(tmp_path / "p.onnx", "softmax")
    catalog = write_catalog(tmp_path, [{"name": "twice", "source": "p.onnx", "quantize": "none",
                                        "postprocess": {"labels": LABELS, "softmax": True}}])
    assert main(["build", "--catalog", str(catalog), "--out", str(tmp_path / "build")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    manifest = json.loads((tmp_path / "build/models/twice/manifest.json").read_text())
    # the catalog is obeyed, but the build says what it does to the scores and how to fix it
    assert manifest["processing"]["postprocess"]["softmax"] is True
    (warning,) = manifest["warnings"]
    assert "softmaxed twice" in warning and "Softmax node" in warning
    assert "twice: warning" in out and "softmaxed twice" in out
    assert load_catalog(catalog).get("twice").postprocess.softmax is True


def test_the_rule_reads_through_shape_ops_and_checks_row_sums():
    model = onnx.load(_with_head(__import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "m.onnx", "softmax"))
    assert final_op(model, "probs") == "Softmax" and final_op(model, "logits_raw") == "Add"
    assert are_probabilities(np.array([[0.2, 0.8], [1.0, 0.0]]))
    assert not are_probabilities(np.array([[0.2, 0.7]])) and not are_probabilities(np.array([[-0.5, 1.5]]))
    assert not are_probabilities(np.array([[1.0]]))  # one column: nothing to tell

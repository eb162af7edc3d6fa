"""``pipeline: [a, b]``: two catalog entries merged into one served model (onnx.compose)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from infra.catalog import load_catalog
from layers.model import load_model
from tests.text.conftest import TEXT_ENTRY, build
from tests.text.tiny_hf import SENTENCES, write_texts

HEAD_LABELS = ["low", "mid", "high"]


def make_head_onnx(path, *, input_name="logits", opset=17):
    """``logits`` [N, 2] → ``grade`` [N, 3] (a Gemm), a second step for the text classifier."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[1.0, 0.0, -1.0], [-1.0, 0.5, 1.0]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", [input_name, "w", "b"], ["grade"])], "head",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("grade", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(3, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.save(model, path)
    return w


@pytest.fixture(scope="module")
def pipeline_build(tmp_path_factory, hf_dir):
    root = tmp_path_factory.mktemp("pipecat")
    shutil.copytree(hf_dir, root / "hf")
    write_texts(root / "val.txt")
    w = make_head_onnx(root / "head.onnx", input_name="scores_in")
    (root / "models.yaml").write_text("models:\n" + TEXT_ENTRY + f"""\
  - name: head
    source: head.onnx
    postprocess: {{labels: {HEAD_LABELS}}}
    quantize: none
  - name: graded
    pipeline: [sentiment, {{model: head, inputs: {{scores_in: logits}}}}]
    auth: none
    target: lambda
""")
    # only the pipeline is asked for: its steps are built first, on their own
    results = build(root / "models.yaml", root / "build", ["graded"])
    assert [r.name for r in results] == ["sentiment", "head", "graded"]
    return root, w


def test_two_steps_serve_as_one_model_with_text_in_and_the_last_steps_labels_out(pipeline_build):
    root, w = pipeline_build
    models = root / "build" / "models"
    pipe = load_model(models / "graded")
    assert [s.to_dict() for s in pipe.inputs] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [s.name for s in pipe.outputs] == ["grade", "label", "scores"]
    texts = np.array(SENTENCES[:4], dtype=object)
    got = pipe.infer({"text": texts})
    # the same as running the steps one after the other
    logits = load_model(models / "sentiment").infer({"text": texts}, ["logits"])["logits"]
    np.testing.assert_allclose(got["grade"], logits @ w, rtol=1e-5, atol=1e-6)
    assert got["label"].tolist() == [HEAD_LABELS[i] for i in (logits @ w).argmax(1)]


def test_the_pipeline_manifest_names_its_steps_and_ships_the_first_steps_tokenizer(pipeline_build):
    root, _ = pipeline_build
    manifest = json.loads((root / "build" / "models" / "graded" / "manifest.json").read_text())
    steps = manifest["build"]["steps"]
    assert [s["name"] for s in steps] == ["sentiment", "head"]
    assert manifest["quantization"]["steps"] == {"sentiment": "dynamic", "head": "none"}
    assert manifest["build"]["converter"] == "onnx.compose.merge_models"
    assert (root / "build" / "models" / "graded" / "tokenizer.json").is_file()


def test_an_unfed_step_input_is_a_build_error_naming_the_mapping(pipeline_build, tmp_path):
    from infra.build import build_catalog

    root, _ = pipeline_build
    shutil.copytree(root / "build", tmp_path / "build")
    make_head_onnx(tmp_path / "head.onnx", input_name="x")
    (tmp_path / "models.yaml").write_text(f"""models:
  - name: two-out
    source: {root / 'build' / 'models' / 'head' / 'model.onnx'}
    quantize: none
  - name: other
    source: head.onnx
    quantize: none
  - name: pipe
    pipeline: [two-out, {{model: other, inputs: {{x: nope}}}}]
""")
    results = build_catalog(load_catalog(tmp_path / "models.yaml"), tmp_path / "build")
    failed = {r.name: r.error for r in results if not r.ok}
    assert list(failed) == ["pipe"] and "no output 'nope'" in failed["pipe"]

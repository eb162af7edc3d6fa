"""Keras/TensorFlow sources (.keras, legacy .h5, SavedModel) build, serve and agree with model.predict.

The models are made once per module in a child process (:mod:`tests.keras.make_models`) and
converted by the build's own child process, so TensorFlow never loads into pytest. Slow: one
TensorFlow import per model built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from infra.build import keras as keras_source
from infra.catalog import CatalogError, load_catalog
from layers.model import load_model
from layers.v2_wire import infer_request

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("keras")  # one worker makes the models once

ENTRIES = {  # name: (source, data prefix)
    "cnn-keras": ("cnn.keras", "cnn"),
    "cnn-h5": ("cnn.h5", "cnn"),
    "cnn-savedmodel": ("cnn_savedmodel", "cnn"),
    "functional-keras": ("functional.keras", "functional"),
    "functional-h5": ("functional.h5", "functional"),
}


#: served with labels and scores: the softmax head's probabilities are the scores, unchanged
LABELLED = {"cnn-h5": [f"class-{i}" for i in range(10)]}


def _catalog(root: Path, entries: dict[str, tuple[str, str]]) -> Path:
    lines = ["models:"]
    for name, (source, data) in entries.items():
        lines += [f"  - name: {name}", f"    source: {source}", f"    example_input: {data}_example.npz",
                  f"    validation: {data}_val.npz", "    target: lambda"]
        if name in LABELLED:
            lines.append(f"    postprocess: {{labels: {json.dumps(LABELLED[name])}}}")
    (root / "models.yaml").write_text("\n".join(lines) + "\n")
    return root / "models.yaml"


@pytest.fixture(scope="module")
def keras_dir(tmp_path_factory) -> Path:
    keras_source.ensure_installed()
    root = tmp_path_factory.mktemp("keras")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tests.keras.make_models", str(root)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def built(keras_dir) -> Path:
    from infra.build import BuildSettings, build_catalog

    results = build_catalog(load_catalog(_catalog(keras_dir, ENTRIES)), keras_dir / "build",
                            settings=BuildSettings(require_speedup=False))
    failed = {r.name: r.error for r in results if not r.ok}
    assert not failed, failed
    return keras_dir / "build" / "models"


def test_the_keras_extra_is_the_one_in_pyproject():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert tuple(extras["keras"]) == keras_source.REQUIREMENTS


def test_catalog_takes_keras_files_and_savedmodel_directories_and_refuses_other_folders(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"zip")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"pb")
    (tmp_path / "x.npz").write_bytes(b"")
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 2), np.float32))
    cat = tmp_path / "models.yaml"
    cat.write_text("models:\n  - {name: a, source: m.keras, example_input: x.npz}\n"
                   "  - {name: b, source: sm, example_input: x.npz}\n")
    assert [m.source_kind for m in load_catalog(cat).models] == ["keras", "keras"]
    (tmp_path / "empty").mkdir()
    cat.write_text("models:\n  - {name: c, source: empty, example_input: x.npz}\n")
    with pytest.raises(CatalogError, match=r"not a TensorFlow SavedModel directory \(no saved_model.pb\)"):
        load_catalog(cat)
    cat.write_text("models:\n  - {name: d, source: m.keras}\n")
    with pytest.raises(CatalogError, match="'example_input' is required to convert a keras model"):
        load_catalog(cat)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the first one builds all five (one TensorFlow import each)
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_keras_models_build_serve_and_agree_with_model_predict(built, keras_dir, name):
    _, data = ENTRIES[name]
    model_dir = built / name
    manifest = json.loads((model_dir / "manifest.json").read_text())
    conversion = manifest["build"]
    assert conversion["converter"].startswith("tf2onnx")
    assert float(conversion["framework_max_abs_error"]) < 1e-4  # checked before anything shipped
    sig = manifest["signature"]
    want_input = [-1, 8, 8, 3] if data == "cnn" else [-1, 6]  # batch dynamic, channels-last as declared
    assert [t["shape"] for t in sig["inputs"]] == [want_input]
    assert manifest["quantization"]["mode"] in ("none", "dynamic", "static")
    assert manifest["metrics"]["gate"]["rows"] == 32  # gated like any source
    assert manifest["metrics"]["shipped"].get("top1_agreement", 1.0) >= 0.99

    with np.load(keras_dir / f"{data}_val.npz") as z:
        x = next(iter(z.values()))
    with np.load(keras_dir / f"{data}_predict.npz") as z:
        predicted = z["y"]
    served = load_model(model_dir)
    request = {"inputs": [{"name": sig["inputs"][0]["name"], "shape": list(x.shape), "datatype": "FP32",
                           "data": x.ravel().tolist()}]}
    answer = infer_request(served, request)
    outputs = {o["name"]: o for o in answer["outputs"]}
    out = outputs["scores"] if name in LABELLED else answer["outputs"][0]
    got = np.asarray(out["data"], np.float32).reshape(out["shape"])
    if name in LABELLED:  # no second softmax over the head's probabilities
        assert outputs["label"]["data"] == [LABELLED[name][i] for i in predicted.argmax(1)]
    assert got.shape == predicted.shape
    # softmax heads stay probabilities: rows sum to 1 like model.predict's (no second softmax)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-3)
    assert np.mean(got.argmax(1) == predicted.argmax(1)) >= 0.95
    atol = 1e-5 if manifest["quantization"]["mode"] == "none" else 0.05
    np.testing.assert_allclose(got, predicted, atol=atol)


@pytest.mark.slow
def test_converted_softmax_head_ends_in_a_softmax_node(built):
    import onnx

    graph = onnx.load(built / "cnn-keras" / "model.onnx").graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    fp32 = json.loads((built / "cnn-keras" / "manifest.json").read_text())
    assert fp32["build"]["head"] == "softmax"
    assert producers[graph.output[0].name] in ("Softmax", "DequantizeLinear", "Cast") or \
        "Softmax" in producers.values()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_weights_only_h5_is_refused_saying_the_architecture_is_needed(keras_dir):
    from infra.build import BuildSettings, build_catalog

    cat = _catalog(keras_dir, {"weights-only": ("weights.h5", "cnn")})
    [result] = build_catalog(load_catalog(cat), keras_dir / "build-weights",
                             settings=BuildSettings(require_speedup=False))
    assert not result.ok
    assert "holds weights only" in result.error and "architecture" in result.error
    assert "model.save('model.keras')" in result.error
    assert not (keras_dir / "build-weights" / "models" / "weights-only").exists()

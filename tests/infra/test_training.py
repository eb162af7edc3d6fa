"""The SageMaker training entry point, run on CPU in tmp_path with tiny epochs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

pytestmark = pytest.mark.slow


def run(tmp_path: Path, hyperparameters: dict, data: dict | None = None) -> tuple[int, Path]:
    from functions.training.train import main

    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    if data is not None:
        np.savez(data_dir / "part-0.npz", **data)
    code = main(["train",
                 "--hyperparameters", str(tmp_path / "config" / "hyperparameters.json"),
                 "--data-dir", str(data_dir), "--model-dir", str(tmp_path / "model"),
                 "--output-dir", str(tmp_path / "output")])
    return code, tmp_path / "model"


def test_trains_on_synthetic_data_and_exports_a_servable_onnx(tmp_path: Path) -> None:
    # given SageMaker-style string hyperparameters and no training data
    code, model_dir = run(tmp_path, {"epochs": "3", "samples": "256", "hidden": "8"})
    # then model.onnx takes x [N, 4] and returns probabilities for 3 classes
    assert code == 0
    assert {p.name for p in model_dir.iterdir()} == {"model.onnx", "weights.pt", "metrics.json"}
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    probs = session.run(["probs"], {"x": np.ones((5, 4), np.float32)})[0]
    assert probs.shape == (5, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["device"] == "cpu" and metrics["hyperparameters"]["epochs"] == 3


def test_trains_on_the_train_channel_when_it_has_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=128)
    x = (rng.normal(size=(128, 6)) + y[:, None] * 4).astype(np.float32)
    code, model_dir = run(tmp_path, {"epochs": "5", "classes": "2"}, {"x": x, "y": y})
    assert code == 0
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["in_features"] == 6 and metrics["samples"] == 128
    assert metrics["train_accuracy"] > 0.9  # separable blobs


def test_a_bad_hyperparameter_fails_with_a_reason_for_sagemaker(tmp_path: Path) -> None:
    code, _ = run(tmp_path, {"epochs": "many"})
    assert code == 1
    assert "epochs='many' must be int" in (tmp_path / "output" / "failure").read_text()

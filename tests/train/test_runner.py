"""The training container's runner (functions/training/train.py) under SageMaker's contract.

Each test runs ``python -m functions.training.train train`` in a fresh process, as the
training image does, with the SageMaker environment pointing into ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.train.helpers import TRAINER, write_data

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_job(tmp_path: Path, entry: str | None, hyperparameters: dict[str, str], *, data: bool = True,
            env_entry: bool = False) -> tuple[int, Path, Path]:
    """(exit status, /opt/ml/model, /opt/ml/output) of one job."""
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "trainer.py").write_text(TRAINER)
    ml = tmp_path / "ml"
    (ml / "input" / "config").mkdir(parents=True, exist_ok=True)
    hp = dict(hyperparameters)
    if entry and not env_entry:
        hp["modelfn_entry_point"] = entry
    (ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    channel = ml / "input" / "data" / "train"
    if data:
        write_data(channel, 90, seed=1)
    env = {**os.environ, "SM_INPUT_CONFIG_DIR": str(ml / "input" / "config"), "SM_CHANNEL_TRAIN": str(channel),
           "SM_MODEL_DIR": str(ml / "model"), "SM_OUTPUT_DIR": str(ml / "output"), "SM_CHANNEL_CODE": str(code),
           "PYTHONPATH": str(REPO_ROOT)}
    if env_entry and entry:
        env["MODELFN_ENTRY_POINT"] = entry
    proc = subprocess.run([sys.executable, "-m", "functions.training.train", "train"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, ml / "model", ml / "output"


def failure(output: Path) -> str:
    return (output / "failure").read_text()


@pytest.mark.slow
def test_a_returned_torch_module_is_saved_whole_with_string_hyperparameters_decoded(tmp_path):
    # given SageMaker's all-string hyperparameters and a torch entry point
    code, model, _ = run_job(tmp_path, "trainer:train_torch", {"epochs": "5", "lr": "0.1", "tag": "blue"})
    # then the module is saved whole, the user saw numbers back, and the run is reported
    assert code == 0
    import torch

    sys.path.insert(0, str(tmp_path / "code"))
    try:
        module = torch.load(model / "model.pt", weights_only=False)
    finally:
        sys.path.remove(str(tmp_path / "code"))
    assert module(torch.zeros(2, 4)).shape == (2, 3)
    assert (model / "seen.txt").read_text() == repr([("epochs", 5), ("lr", 0.1), ("tag", "blue")])
    report = json.loads((model / "training.json").read_text())
    assert report["artifact"] == "model.pt" and report["device"] == "cpu"
    assert report["hyperparameters"] == {"epochs": 5, "lr": 0.1, "tag": "blue"}  # modelfn_* not passed on
    assert report["data"]["files"] == 1 and len(report["data"]["sha256"]) == 64


def test_a_returned_sklearn_estimator_is_saved_with_joblib(tmp_path):
    code, model, _ = run_job(tmp_path, "trainer:train_sklearn", {}, env_entry=True)
    assert code == 0
    import joblib

    assert joblib.load(model / "model.joblib").predict(np.zeros((1, 4), np.float32)).shape == (1,)


def test_an_entry_point_may_write_model_onnx_itself(tmp_path):
    code, model, _ = run_job(tmp_path, "trainer.py:train_onnx", {})  # a script path, too
    assert code == 0
    assert json.loads((model / "training.json").read_text())["artifact"] == "model.onnx"


def test_data_fingerprint_changes_with_the_data(tmp_path):
    from functions.training.train import fingerprint

    a = write_data(tmp_path / "a", 10, seed=1)
    before = fingerprint(a)
    write_data(a, 10, seed=2, name="part-1.npz")
    after = fingerprint(a)
    assert before.sha256 != after.sha256 and (before.files, after.files) == (1, 2)
    assert fingerprint(write_data(tmp_path / "b", 10, seed=1)).sha256 == before.sha256  # content, not place


@pytest.mark.parametrize(("entry", "data", "expected"), [
    ("trainer:train_sklearn", False, "no training data: the 'train' channel"),
    ("trainer:missing", True, "module 'trainer' has no function 'missing'"),
    ("nomodule:train", True, "cannot import 'nomodule'"),
    ("trainer:train_nothing", True, "returned None and wrote no model.onnx"),
    ("trainer:train_string", True, "returned str; return a torch.nn.Module"),
    (None, True, "no entry point"),
])
def test_failures_leave_a_reason_sagemaker_shows(tmp_path, entry, data, expected):
    # when the job cannot produce a model
    code, _, output = run_job(tmp_path, entry, {}, data=data)
    # then it exits non-zero and /opt/ml/output/failure says what to fix
    assert code == 1
    assert expected in failure(output)


def test_unreadable_data_fails_with_the_entry_points_own_reason(tmp_path):
    channel = tmp_path / "ml" / "input" / "data" / "train"
    channel.mkdir(parents=True)
    np.savez(channel / "bad.npz", features=np.zeros(3))
    code, _, output = run_job(tmp_path, "trainer:train_sklearn", {}, data=False)
    assert code == 1
    assert "raised ValueError: bad.npz needs arrays x and y" in failure(output)

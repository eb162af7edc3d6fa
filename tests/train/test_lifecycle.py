"""``modelfn train`` / ``versions`` / ``promote`` / ``rollback`` through the public command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli import main
from tests.train.helpers import write_data, write_training_catalog

pytestmark = pytest.mark.slow


def versions_json(capsys, out: Path, name: str = "blobs") -> dict:
    capsys.readouterr()
    assert main(["versions", name, "--out", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def train(catalog: Path, out: Path, data: Path, *extra: str) -> int:
    return main(["train", "blobs", "--catalog", str(catalog), "--out", str(out), "--data", str(data), *extra])


def test_without_a_source_the_first_train_makes_version_1_and_a_loser_is_kept_not_promoted(tmp_path, capsys):
    # given a model whose only source is its training entry point
    catalog = write_training_catalog(tmp_path / "cat", entry="trainer:train_onnx")
    out = tmp_path / "build"
    # when it is built before any training, the build says what to do
    assert main(["build", "--catalog", str(catalog), "--out", str(out), "--json"]) == 1
    assert "run `modelfn train blobs` to make version 1" in capsys.readouterr().out
    # when the first training run finishes
    assert train(catalog, out, write_data(tmp_path / "d1", 120, seed=1)) == 0
    first = versions_json(capsys, out)
    assert first["live"] == first["versions"][0]["version"]
    assert first["versions"][0]["parent_version"] is None and first["versions"][0]["promoted"] is True
    assert "first version" in first["versions"][0]["reason"]
    # when a run on data with the labels scrambled makes a worse model
    x_bad = tmp_path / "bad"
    write_data(x_bad, 120, seed=1)
    import numpy as np

    with np.load(x_bad / "part-0.npz") as z:
        np.savez(x_bad / "part-0.npz", x=z["x"], y=(z["y"] + 1) % 3)
    assert train(catalog, out, x_bad) == 0  # a loser is not an error
    # then it is kept with the reason, and the live version did not change
    after = versions_json(capsys, out)
    assert after["live"] == first["live"] and len(after["versions"]) == 2
    loser = after["versions"][1]
    assert loser["promoted"] is False and loser["parent_version"] == first["live"]
    assert "accuracy" in loser["reason"] and "below the live version" in loser["reason"]
    assert loser["metrics"]["vs_live"]["accuracy"] < loser["metrics"]["vs_live"]["live_accuracy"]
    manifest = json.loads((out / "models" / "blobs" / "versions" / loser["version"] / "manifest.json").read_text())
    assert manifest["lineage"]["origin"] == "training" and manifest["lineage"]["number"] == 2
    assert manifest["lineage"]["data"]["files"] == 1 and len(manifest["lineage"]["data"]["sha256"]) == 64
    # and `modelfn promote` can still make it live by hand, `rollback` undoes that
    assert main(["promote", "blobs", "2", "--out", str(out)]) == 0
    assert versions_json(capsys, out)["live"] == loser["version"]
    assert main(["rollback", "blobs", "--out", str(out)]) == 0
    assert versions_json(capsys, out)["live"] == first["live"]


def test_a_build_leaves_a_promoted_trained_version_live_and_keeps_the_versions(tmp_path, capsys):
    from tests.build.helpers import make_mlp_onnx

    make_mlp_onnx(tmp_path / "cat" / "v1.onnx", features=4, hidden=8, classes=3)  # untrained weights
    catalog = write_training_catalog(tmp_path / "cat", entry="trainer:train_onnx", source="v1.onnx")
    out = tmp_path / "build"
    assert main(["build", "--catalog", str(catalog), "--out", str(out)]) == 0
    assert train(catalog, out, write_data(tmp_path / "d", 150, seed=3)) == 0
    state = versions_json(capsys, out)
    # the untrained source loses to the trained one
    assert len(state["versions"]) == 2 and state["live"] == state["versions"][1]["version"]
    assert state["versions"][0]["reason"].startswith("built from the catalog source")
    # when the catalog is built again, even forced
    assert main(["build", "--catalog", str(catalog), "--out", str(out), "--force"]) == 0
    # then the trained version is still live and every version is still kept
    assert versions_json(capsys, out) == state


def test_a_failed_training_run_exits_1_with_the_reason_and_adds_no_version(tmp_path, capsys):
    catalog = write_training_catalog(tmp_path / "cat", entry="trainer:train_nothing")
    out = tmp_path / "build"
    assert train(catalog, out, write_data(tmp_path / "d", 30, seed=1), "--json") == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False and "returned None and wrote no model.onnx" in result["error"]
    assert not (out / "models" / "blobs").exists()
    # and missing data is refused before anything runs
    assert train(catalog, out, tmp_path / "nowhere") == 1
    assert "no training data" in capsys.readouterr().err


def test_versions_of_an_unbuilt_model_and_bad_versions_say_what_to_do(tmp_path, capsys):
    assert main(["versions", "nope", "--out", str(tmp_path)]) == 2
    assert "modelfn train nope" in capsys.readouterr().err
    catalog = write_training_catalog(tmp_path / "cat", entry="trainer:train_onnx")
    out = tmp_path / "build"
    assert train(catalog, out, write_data(tmp_path / "d", 60, seed=1)) == 0
    assert main(["promote", "blobs", "v7", "--out", str(out)]) == 2
    assert "no version 'v7'; known versions: v1" in capsys.readouterr().err
    assert main(["rollback", "blobs", "--out", str(out)]) == 2
    assert "nothing to roll back to" in capsys.readouterr().err


def test_a_finished_jobs_model_directory_is_built_and_gated_without_training_again(tmp_path, capsys):
    # given what a SageMaker job left in /opt/ml/model (here: the same runner, run as the image runs it)
    from tests.train.test_runner import run_job

    (tmp_path / "job").mkdir()
    code, job_model_dir, _ = run_job(tmp_path / "job", "trainer:train_onnx", {})
    assert code == 0
    catalog = write_training_catalog(tmp_path / "cat", entry="trainer:train_onnx")
    out = tmp_path / "build"
    # when `modelfn train --trained DIR` builds it (what the deployed pipeline's build step runs)
    capsys.readouterr()
    assert main(["train", "blobs", "--catalog", str(catalog), "--out", str(out), "--trained",
                 str(job_model_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # then it is version 1, live, with the job's data fingerprint in its lineage
    assert result["promoted"] and result["number"] == 1
    lineage = json.loads((out / "models" / "blobs" / "manifest.json").read_text())["lineage"]
    assert lineage["data"]["files"] == 1 and lineage["artifact"] == "model.onnx"
    # and a directory that is not a job's output is refused with the reason
    assert main(["train", "blobs", "--catalog", str(catalog), "--out", str(out), "--trained", str(tmp_path)]) == 1
    assert "is not a training job's model directory" in capsys.readouterr().err

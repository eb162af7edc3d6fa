"""Models that came without example data: the build probes them with the graph's own dim
hints, and ships them unmeasured (never fails) when no probe runs; no temporaries in cwd."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from infra.build import build_catalog
from infra.build.sample_input import size_assignments
from infra.catalog import load_catalog
from layers.model import load_model
from tests.build.helpers import (
    make_if_pad_onnx,
    make_pairs_onnx,
    make_picky_onnx,
    make_two_input_onnx,
    rows,
    write_catalog,
    write_npz,
)


def _build(tmp_path, models):
    return build_catalog(load_catalog(write_catalog(tmp_path, models)), tmp_path / "build")


@pytest.mark.parametrize(("make", "sizes"), [
    (make_pairs_onnx, {"batch": 1, "seq": 8}),   # Reshape into pairs: seq must be even
    (make_if_pad_onnx, {"N": 1, "x[1]": 2}),     # If/Pad: length 1 fails inside the If
])
def test_a_model_whose_dynamic_dims_reject_1_builds_and_is_measured(tmp_path, make, sizes):
    # given an .onnx with no example_input, calibration or validation
    make(tmp_path / "m.onnx")
    # when
    (r,) = _build(tmp_path, [{"name": "m", "source": "m.onnx", "quantize": "none"}])
    # then it builds, measured with the first probe it runs on (batch kept at 1)
    assert r.ok, r.error
    metrics = r.manifest["metrics"]
    assert metrics["input"]["from"] == "synthetic" and metrics["input"]["sizes"] == sizes
    assert metrics["input"]["tries"] >= 2 and "unmeasured" not in metrics
    assert metrics["fp32"]["p50_ms"] > 0 and metrics["shipped"]["p50_ms"] > 0
    assert r.manifest["fit"]["p99_ms"] > 0
    # and the shipped artifact serves at those sizes
    model = load_model(r.model_dir)
    assert model.inputs[0].shape[-1] == -1


def test_a_model_no_probe_runs_on_ships_unmeasured_with_a_warning_naming_example_input(tmp_path, capsys):
    # given a model that only runs on sizes no probe guesses
    make_picky_onnx(tmp_path / "picky.onnx")
    catalog = write_catalog(tmp_path, [{"name": "picky", "source": "picky.onnx"}])
    # when built through the command, as a user does
    from infra.cli import main

    code = main(["build", "--catalog", str(catalog), "--out", str(tmp_path / "build")])
    out = capsys.readouterr().out
    # then the build succeeds and ships the passthrough artifact, marked unmeasured
    assert code == 0, out
    manifest = json.loads((tmp_path / "build/models/picky/manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["fp32"]["p50_ms"] is None and metrics["shipped"]["p50_ms"] is None
    assert "example_input" in metrics["unmeasured"] and "Reshape" in metrics["unmeasured"]
    assert manifest["quantization"]["mode"] == "none" and manifest["fit"]["p99_ms"] is None
    assert manifest["fit"]["init_s"] > 0 and manifest["fit"]["peak_rss_mb"] > 0  # load measured
    assert manifest["target"] == "lambda"
    assert "unmeasured" in out and "warning" in out and "example_input" in out
    # and the artifact serves what the user sends
    model = load_model(tmp_path / "build/models/picky")
    assert model.session.run(None, {"x": np.zeros((1, 77), np.float32)})[0].shape == (1, 7, 11)


def test_fit_on_an_unmeasured_model_says_how_to_measure_it(tmp_path, capsys):
    make_picky_onnx(tmp_path / "picky.onnx")
    catalog = write_catalog(tmp_path, [{"name": "picky", "source": "picky.onnx"}])
    from infra.cli import main

    assert main(["build", "--catalog", str(catalog), "--out", str(tmp_path / "build")]) == 0
    capsys.readouterr()
    assert main(["fit", "picky", "--catalog", str(catalog), "--out", str(tmp_path / "build")]) == 2
    assert "example_input" in capsys.readouterr().err


def test_user_data_the_model_cannot_run_is_a_clear_error_not_the_raw_onnxruntime_one(tmp_path):
    make_pairs_onnx(tmp_path / "m.onnx")
    write_npz(tmp_path / "val.npz", x=rows((3,), n=8))  # seq 3: odd, the Reshape rejects it
    (r,) = _build(tmp_path, [{"name": "m", "source": "m.onnx", "validation": "val.npz"}])
    assert not r.ok
    assert "does not run on validation" in r.error and "x FP32 [-1, -1]" in r.error


def test_probe_sizes_share_dim_params_and_climb_from_small():
    plans = list(size_assignments({"ids": ["batch", "seq"], "mask": ["batch", "seq"], "img": [None, 3, "height", 8]}))
    assert plans[0] == {"batch": 1, "seq": 1, "img[0]": 1, "height": 1}
    assert {"batch": 1, "seq": 128, "img[0]": 1, "height": 256} in plans
    assert len(plans) == len({tuple(sorted(p.items())) for p in plans}) <= 24


def test_builds_leave_no_temporaries_in_the_working_directory_and_do_not_collide(tmp_path, monkeypatch):
    # given a model on which onnxruntime's pre-processing writes sym_shape_infer_temp.onnx
    # into the current directory, twice in one catalog (two builds, same cwd)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("one", "two"):
        make_two_input_onnx(tmp_path / f"{name}.onnx")
        write_npz(tmp_path / f"{name}_val.npz", x=rows((4,), n=16), z=rows((4,), n=16, seed=5))
    models = [{"name": n, "source": f"{n}.onnx", "validation": f"{n}_val.npz", "quantize": "dynamic",
               "tolerance": {"min_cosine": 0.5}} for n in ("one", "two")]
    # when
    results = _build(tmp_path, models)
    # then both built, the pre-processing really took its fallback path, and cwd is empty
    assert all(r.ok for r in results), [r.error for r in results]
    assert all(r.manifest["quantization"]["preprocess"] != "full" for r in results)
    assert os.listdir(work) == []
    assert os.getcwd() == str(work)

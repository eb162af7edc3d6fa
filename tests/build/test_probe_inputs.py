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


@pytest.mark.parametrize(("make", "sizes", "tries"), [
    (make_pairs_onnx, {"batch": 1, "seq": 128}, 1),  # Reshape into pairs: the sequence default is even
    (make_if_pad_onnx, {"N": 1, "x[1]": 2}, 2),      # If/Pad: length 1 fails inside the If
])
def test_a_model_whose_dynamic_dims_reject_1_builds_and_is_measured(tmp_path, make, sizes, tries):
    # given an .onnx with no example_input, calibration or validation
    make(tmp_path / "m.onnx")
    # when
    (r,) = _build(tmp_path, [{"name": "m", "source": "m.onnx", "quantize": "none"}])
    # then it builds, measured with the first probe it runs on (batch kept at 1)
    assert r.ok, r.error
    metrics = r.manifest["metrics"]
    assert metrics["input"]["from"] == "synthetic" and metrics["input"]["sizes"] == sizes
    assert metrics["input"]["tries"] == tries and "unmeasured" not in metrics
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


def test_probe_sizes_share_dim_params_and_start_at_the_documented_defaults():
    plans = list(size_assignments({"ids": ["batch", "seq"], "mask": ["batch", "seq"], "img": [None, 3, "height", 8]}))
    assert plans[0] == {"batch": 1, "seq": 128, "img[0]": 1, "height": 224}
    assert {"batch": 1, "seq": 64, "img[0]": 1, "height": 256} in plans
    assert len(plans) == len({tuple(sorted(p.items())) for p in plans}) <= 24
    # the catalog's pre-processing sets the default; an unnamed NCHW spatial dim is spatial
    (first, *_) = size_assignments({"ids": ["b", "seq_512"], "im": ["unk__1", 3, None, None]},
                                   {"sequence": 64, "spatial": 320})
    assert first == {"b": 1, "seq_512": 64, "unk__1": 1, "im[2]": 320, "im[3]": 320}


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


def _symbolic_onnx(path):
    """Dims named as exporters name unknown ones, digits and all: x [unk__214, 16] → MatMul,
    img [unk__9, 3, unk__320, unk__321] → GlobalAveragePool."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.build.helpers import _save

    w = numpy_helper.from_array(np.ones((16, 4), np.float32), "W")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("GlobalAveragePool", ["img"], ["p"])]
    graph = helper.make_graph(
        nodes, "symbolic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["unk__214", 16]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, ["unk__9", 3, "unk__320", "unk__321"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["unk__214", 4]),
         helper.make_tensor_value_info("p", TensorProto.FLOAT, ["unk__9", 3, 1, 1])],
        initializer=[w])
    return _save(graph, path, 17)


def test_digits_in_a_dim_name_are_not_a_size_and_data_less_figures_are_labelled_estimates(tmp_path, capsys):
    # given a model with no data whose symbolic dims carry numbers in their names
    _symbolic_onnx(tmp_path / "sym.onnx")
    catalog = write_catalog(tmp_path, [{"name": "symbolic-dims", "source": "sym.onnx", "quantize": "none"}])
    from infra.cli import main

    # when built through the command, as a user does, at 80 columns
    assert main(["build", "--catalog", str(catalog), "--out", str(tmp_path / "build")]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "build/models/symbolic-dims/manifest.json").read_text())
    # then it was measured at batch 1 and the documented image default, never at 214 or 320
    measured = manifest["metrics"]["input"]
    assert measured["shapes"] == {"x": [1, 16], "img": [1, 3, 224, 224]}
    assert measured["estimate"] is True and "example_input" in measured["to_measure_for_real"]
    # and every figure says what it was measured at, and that it is an estimate
    assert manifest["fit"]["measured_at"] == "x[1,16] img[1,3,224,224]" and manifest["fit"]["estimate"]
    assert any("at x[1,16] img[1,3,224,224] (estimate" in r for r in manifest["target_reasons"] if "p99" in r)
    assert "~" in out and "symbolic-dims: estimate" in out and "example_input" in out
    # and fit says so, and what data would make the figures real
    assert main(["fit", "symbolic-dims", "--catalog", str(catalog), "--out", str(tmp_path / "build")]) == 0
    fit_out = " ".join(capsys.readouterr().out.split())
    assert "estimate" in fit_out and "x[1,16] img[1,3,224,224]" in fit_out and "example_input" in fit_out


def test_figures_measured_on_the_users_data_are_not_estimates(tmp_path):
    make_pairs_onnx(tmp_path / "m.onnx")
    write_npz(tmp_path / "ex.npz", x=rows((6,), n=2))
    (r,) = _build(tmp_path, [{"name": "m", "source": "m.onnx", "example_input": "ex.npz", "quantize": "none"}])
    assert r.ok, r.error
    measured = r.manifest["metrics"]["input"]
    assert measured["from"] == "example_input" and measured["shapes"] == {"x": [1, 6]}
    assert "estimate" not in measured and r.manifest["fit"]["estimate"] is False

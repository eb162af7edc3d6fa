"""`modelfn build` / `modelfn fit` through the real CLI dispatcher."""

from __future__ import annotations

import json

from infra.cli import main
from tests.build.helpers import mlp_entry, write_catalog


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_build_json_then_reuse_then_fit(tmp_path, capsys):
    catalog = write_catalog(tmp_path, [mlp_entry(tmp_path, quantize="none")])
    out = tmp_path / "build"
    args = ["build", "--catalog", str(catalog), "--out", str(out), "--json"]
    assert main(args) == 0
    first = _json(capsys)
    (row,) = first["models"]
    assert first["ok"] and row["model"] == "mlp" and row["status"] == "built" and row["mode"] == "none"
    assert {"size_fp32", "size_shipped", "p50_fp32_ms", "p50_shipped_ms", "gate", "target"} <= set(row)
    assert (out / "models" / "mlp" / "model.onnx").is_file()

    assert main(args) == 0
    assert _json(capsys)["models"][0]["status"] == "reused"

    assert main(["fit", "mlp", "--catalog", str(catalog), "--out", str(out), "--rps", "5", "--json"]) == 0
    report = _json(capsys)
    assert report["target"] == "lambda" and report["fit"]["memory_mb"] >= 128
    assert report["cost"]["rps"] == 5 and report["cost"]["lambda"]["usd"] > 0


def test_build_exit_code_is_non_zero_when_a_model_fails_and_names_it(tmp_path, capsys):
    (tmp_path / "broken.onnx").write_bytes(b"x")
    catalog = write_catalog(tmp_path, [{"name": "broken", "source": "broken.onnx"},
                                       mlp_entry(tmp_path, quantize="none")])
    assert main(["build", "--catalog", str(catalog), "--out", str(tmp_path / "b"), "--json"]) == 1
    rows = {r["model"]: r for r in _json(capsys)["models"]}
    assert rows["broken"]["status"] == "failed" and "model 'broken'" in rows["broken"]["error"]
    assert rows["mlp"]["status"] == "built"


def test_build_one_model_with_the_table_output(tmp_path, capsys):
    catalog = write_catalog(tmp_path, [mlp_entry(tmp_path, quantize="none"),
                                       mlp_entry(tmp_path, name="other", quantize="none")])
    assert main(["build", "--catalog", str(catalog), "--out", str(tmp_path / "b"), "--model", "other"]) == 0
    out = capsys.readouterr().out
    assert "modelfn build" in out and "other" in out
    assert not (tmp_path / "b" / "models" / "mlp").exists()


def test_bad_catalog_and_unknown_model_exit_2_with_the_reason(tmp_path, capsys):
    catalog = write_catalog(tmp_path, [mlp_entry(tmp_path, quantise="x")])
    assert main(["build", "--catalog", str(catalog), "--json"]) == 2
    assert "unknown key 'quantise'" in _json(capsys)["error"]
    good = write_catalog(tmp_path, [mlp_entry(tmp_path)])
    assert main(["build", "--catalog", str(good), "--model", "nope", "--json"]) == 2
    assert "known models: mlp" in _json(capsys)["error"]


def test_fit_before_build_says_to_build_first(tmp_path, capsys):
    catalog = write_catalog(tmp_path, [mlp_entry(tmp_path)])
    assert main(["fit", "mlp", "--catalog", str(catalog), "--out", str(tmp_path / "none")]) == 2
    assert "modelfn build --model mlp" in capsys.readouterr().err

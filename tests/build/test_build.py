"""Building a catalog: modes, the accuracy gate, fallback and strict, cache, manifest."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from infra.build import BuildSettings, build_catalog
from infra.catalog import load_catalog
from layers.manifest import read_manifest
from tests.build.helpers import (
    make_cnn_onnx,
    mlp_entry,
    rows,
    torch_module,
    write_catalog,
    write_npz,
)

ANY_SPEED = BuildSettings(require_speedup=False)  # the mode under test ships even if not faster
#: Dynamic int8 MatMul kernels as shipped: onnxruntime's offline optimization fuses MatMulInteger
INT8_MATMUL = {"MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def _build(tmp_path, models, settings=ANY_SPEED, **kw):
    catalog = load_catalog(write_catalog(tmp_path, models))
    return build_catalog(catalog, tmp_path / "build", settings=settings, **kw)


def _ops(model_dir) -> set[str]:
    return {n.op_type for n in onnx.load(model_dir / "model.onnx").graph.node}


def test_dynamic_ships_int8_matmul_and_a_manifest_the_runtime_verifies(tmp_path):
    (r,) = _build(tmp_path, [mlp_entry(tmp_path, quantize="dynamic")])
    assert r.ok, r.error
    manifest = read_manifest(r.model_dir)  # sha256 verified
    assert manifest.quantization["mode"] == "dynamic"
    assert "fallback_reason" not in manifest.quantization
    assert _ops(r.model_dir) & INT8_MATMUL
    assert manifest.version == manifest.sha256[:12]
    assert [t.to_dict() for t in manifest.inputs] == [{"name": "x", "datatype": "FP32", "shape": [-1, 32]}]
    m = manifest.metrics
    assert m["shipped"]["size_bytes"] < m["fp32"]["size_bytes"]
    assert {"p50_ms", "p95_ms", "size_bytes"} <= set(m["fp32"]) and m["shipped"]["top1_agreement"] >= 0.9
    assert manifest.target == "lambda" and manifest.target_reasons
    fit = manifest.extra["fit"]
    assert {"memory_mb", "timeout_s", "peak_rss_mb", "init_s", "image_bytes", "gpu_required"} <= set(fit)
    assert fit["memory_mb"] >= 128 and fit["peak_rss_mb"] > 0 and fit["gpu_required"] is False


def test_gemm_models_are_quantized_dynamically_too(tmp_path):
    from tests.build.helpers import make_mlp_onnx

    entry = mlp_entry(tmp_path, quantize="dynamic")
    make_mlp_onnx(tmp_path / "mlp.onnx", use_gemm=True)
    (r,) = _build(tmp_path, [entry])
    assert r.ok and r.manifest["quantization"]["mode"] == "dynamic", r.manifest["quantization"]
    assert _ops(r.model_dir) & INT8_MATMUL and "Gemm" not in _ops(r.model_dir)


def test_static_ships_qdq_calibrated_on_the_calibration_set(tmp_path):
    make_cnn_onnx(tmp_path / "cnn.onnx")
    write_npz(tmp_path / "cal.npz", x=np.abs(rows((1, 8, 8), seed=4)))
    write_npz(tmp_path / "val.npz", x=np.abs(rows((1, 8, 8), seed=5)), labels=np.zeros(64, np.int64))
    entry = {"name": "cnn", "source": "cnn.onnx", "quantize": "static", "calibration": "cal.npz",
             "validation": "val.npz", "tolerance": {"min_cosine": 0.9}}
    (r,) = _build(tmp_path, [entry])
    assert r.ok, r.error
    assert r.manifest["quantization"]["mode"] == "static"
    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(r.model_dir)
    assert "accuracy" in r.manifest["metrics"]["shipped"]  # labels were given


def test_auto_measures_candidates_and_never_ships_dynamic_conv(tmp_path):
    make_cnn_onnx(tmp_path / "cnn.onnx")
    write_npz(tmp_path / "cal.npz", x=np.abs(rows((1, 8, 8), seed=4)))
    entry = {"name": "cnn", "source": "cnn.onnx", "quantize": "auto", "calibration": "cal.npz",
             "tolerance": {"min_cosine": 0.9}}
    (r,) = _build(tmp_path, [entry])
    assert r.ok, r.error
    q = r.manifest["quantization"]
    assert [c["mode"] for c in q["candidates"]] == ["dynamic", "static"]
    assert "ConvInteger" not in _ops(r.model_dir)
    assert q["mode"] in ("dynamic", "static") and r.manifest["metrics"]["gate"]["data"] == "calibration"
    shipped = next(c for c in q["candidates"] if c["mode"] == q["mode"])
    # the fastest, each timed side by side with fp32 (a loaded host's drift between candidates cancels)
    assert all(shipped["p50_ratio"] <= c["p50_ratio"] for c in q["candidates"] if c["verdict"] == "ok")
    assert all(c["fp32_p50_ms_paired"] > 0 for c in q["candidates"])


def test_none_ships_fp32_without_a_fallback_reason(tmp_path):
    (r,) = _build(tmp_path, [mlp_entry(tmp_path, quantize="none")])
    assert r.ok and r.manifest["quantization"]["mode"] == "none"
    assert "fallback_reason" not in r.manifest["quantization"]
    # the fp32 graph as onnxruntime's CPU provider optimizes it, measured as shipped
    assert r.manifest["graph_optimization"]["level"] == "extended"
    assert r.manifest["metrics"]["shipped"]["size_bytes"] == (r.model_dir / "model.onnx").stat().st_size


def test_gate_failure_falls_back_to_fp32_with_the_reason(tmp_path):
    (r,) = _build(tmp_path, [mlp_entry(tmp_path, tolerance={"max_abs_error": 0.0})])
    assert r.ok
    q = r.manifest["quantization"]
    assert q["mode"] == "none"
    assert "dynamic: gate failed (max_abs_error" in q["fallback_reason"]
    assert read_manifest(r.model_dir).quantization["fallback_reason"] == q["fallback_reason"]
    assert not _ops(r.model_dir) & INT8_MATMUL


def test_strict_gate_failure_fails_the_build_and_writes_nothing(tmp_path):
    (r,) = _build(tmp_path, [mlp_entry(tmp_path, tolerance={"max_abs_error": 0.0}, strict=True)])
    assert not r.ok
    assert "model 'mlp'" in r.error and "strict" in r.error and "tolerance" in r.error
    assert not (tmp_path / "build" / "models" / "mlp").exists()


def _rig_latency(monkeypatch, *, fp32_ms: float, int8_ms: float) -> None:
    """Make the build measure fixed batch-1 latencies: fp32 vs every int8 candidate."""
    from infra.build import builder, measure

    real_session = measure.session
    int8_sessions = set()

    def session(path, threads=1):
        s = real_session(path, threads)
        if path.name != "fp32.onnx":
            int8_sessions.add(id(s))
        return s

    def latency(sess, feeds):
        ms = int8_ms if id(sess) in int8_sessions else fp32_ms
        return measure.Latency(ms, ms, ms, 100)

    monkeypatch.setattr(builder.measure, "session", session)
    monkeypatch.setattr(builder.measure, "latency", latency)
    monkeypatch.setattr(builder.measure, "paired_latency", lambda s, ref, feeds: (latency(s, feeds), latency(ref, feeds)))


@pytest.mark.parametrize("int8_ms", [1000.0, 0.99])
def test_int8_slower_than_fp32_or_in_a_near_tie_never_ships(tmp_path, monkeypatch, int8_ms):
    # given int8 candidates measured slower than fp32, or only 1 % faster (noise)
    _rig_latency(monkeypatch, fp32_ms=1.0, int8_ms=int8_ms)
    # when
    (r,) = _build(tmp_path, [mlp_entry(tmp_path)], settings=BuildSettings())
    # then fp32 ships, and the manifest says why
    assert r.ok and r.manifest["quantization"]["mode"] == "none"
    assert "slower than fp32 or within 3% of it" in r.manifest["quantization"]["fallback_reason"]


def test_int8_that_is_measurably_faster_ships(tmp_path, monkeypatch):
    _rig_latency(monkeypatch, fp32_ms=1.0, int8_ms=0.9)
    (r,) = _build(tmp_path, [mlp_entry(tmp_path)], settings=BuildSettings())
    assert r.ok and r.manifest["quantization"]["mode"] != "none"


def test_unchanged_inputs_reuse_the_artifact_and_force_rebuilds(tmp_path):
    entry = mlp_entry(tmp_path)
    (first,) = _build(tmp_path, [entry])
    (again,) = _build(tmp_path, [entry])
    assert not first.reused and again.reused
    assert again.manifest["sha256"] == first.manifest["sha256"]
    (forced,) = _build(tmp_path, [entry], force=True)
    assert not forced.reused


def test_changed_settings_or_data_invalidate_the_cache(tmp_path):
    entry = mlp_entry(tmp_path)
    _build(tmp_path, [entry])
    (other_tol,) = _build(tmp_path, [{**entry, "tolerance": {"top1_agreement": 0.5}}])
    assert not other_tol.reused
    write_npz(tmp_path / "mlp_val.npz", x=rows((32,), seed=9))
    (other_data,) = _build(tmp_path, [{**entry, "tolerance": {"top1_agreement": 0.5}}])
    assert not other_data.reused


def test_a_tampered_artifact_is_rebuilt_not_reused(tmp_path):
    entry = mlp_entry(tmp_path)
    (first,) = _build(tmp_path, [entry])
    with open(first.model_dir / "model.onnx", "ab") as f:
        f.write(b"\0")
    (again,) = _build(tmp_path, [entry])
    assert not again.reused and read_manifest(again.model_dir).sha256 == again.manifest["sha256"]


def test_a_failing_model_does_not_stop_the_others(tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"garbage")
    results = _build(tmp_path, [{"name": "broken", "source": "broken.onnx"}, mlp_entry(tmp_path)])
    assert [r.ok for r in results] == [False, True]
    assert results[0].error.startswith("model 'broken'") and "ONNX" in results[0].error


def test_validation_data_that_does_not_match_the_inputs_is_explained(tmp_path):
    entry = mlp_entry(tmp_path)
    write_npz(tmp_path / "mlp_val.npz", a=rows((32,)), b=rows((32,)))
    (r,) = _build(tmp_path, [entry])
    assert not r.ok and "validation" in r.error and "key the arrays by input name" in r.error


def test_no_data_to_gate_with_ships_fp32_and_says_why(tmp_path):
    entry = mlp_entry(tmp_path)
    del entry["validation"], entry["calibration"]
    (r,) = _build(tmp_path, [entry])
    assert r.ok and r.manifest["quantization"]["mode"] == "none"
    assert "add 'validation'" in r.manifest["quantization"]["fallback_reason"]


def test_manifest_json_on_disk_matches_the_result(tmp_path):
    (r,) = _build(tmp_path, [mlp_entry(tmp_path)])
    on_disk = json.loads((r.model_dir / "manifest.json").read_text())
    assert on_disk == r.manifest
    assert on_disk["source"] == "mlp.onnx" and on_disk["built_at"].endswith("Z")


@pytest.mark.parametrize("requested", ["lambda", "sagemaker"])
def test_an_explicit_target_is_kept(tmp_path, requested):
    (r,) = _build(tmp_path, [mlp_entry(tmp_path, quantize="none", target=requested)])
    assert r.manifest["target"] == requested
    assert "set in the catalog" in r.manifest["target_reasons"][0]


def test_sklearn_source_builds_and_auto_says_why_it_stays_fp32(tmp_path):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), tmp_path / "iris.joblib")
    write_npz(tmp_path / "ex.npz", input=x[:2])
    write_npz(tmp_path / "val.npz", input=x, labels=y)
    (r,) = _build(tmp_path, [{"name": "iris", "source": "iris.joblib", "example_input": "ex.npz",
                              "validation": "val.npz"}])
    assert r.ok, r.error
    assert r.manifest["quantization"]["mode"] == "none"
    assert "no MatMul, Gemm, Conv or RNN ops" in r.manifest["quantization"]["fallback_reason"]
    assert r.manifest["metrics"]["shipped"]["accuracy"] > 0.9
    assert [t["name"] for t in r.manifest["signature"]["outputs"]] == ["label", "probabilities"]


@pytest.mark.slow
def test_torch_source_builds_with_dynamic_int8(tmp_path):
    module = torch_module(tmp_path, """
        import torch
        def make():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(32, 128), torch.nn.ReLU(), torch.nn.Linear(128, 4))
    """)
    write_npz(tmp_path / "ex.npz", x=rows((32,), n=2))
    write_npz(tmp_path / "val.npz", x=rows((32,), seed=3))
    (r,) = _build(tmp_path, [{"name": "torchy", "source": f"{module}:make", "example_input": "ex.npz",
                              "validation": "val.npz", "quantize": "dynamic",
                              "tolerance": {"top1_agreement": 0.9}}])
    assert r.ok, r.error
    assert r.manifest["quantization"]["mode"] == "dynamic" and _ops(r.model_dir) & INT8_MATMUL
    assert r.manifest["source"] == f"{module}:make"
    assert r.manifest["build"]["converter"].startswith("torch.onnx.export")
    (again,) = _build(tmp_path, [{"name": "torchy", "source": f"{module}:make", "example_input": "ex.npz",
                                  "validation": "val.npz", "quantize": "dynamic",
                                  "tolerance": {"top1_agreement": 0.9}}])
    assert again.reused  # the dynamo export is deterministic, so the cache key is stable

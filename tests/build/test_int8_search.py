"""Int8 for transformers: the target CPU class decides reduce_range, sensitive MatMuls stay fp32 when the
gate says so, and the manifest records both."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from infra.build import BuildSettings, build_catalog, cpu
from infra.catalog import load_catalog
from layers.model import load_model
from tests.build.helpers import _save, rows, torch_module, write_catalog, write_npz

ANY_SPEED = BuildSettings(require_speedup=False)
NO_VNNI = "processor\t: 0\nflags\t\t: fpu sse sse2 avx fma avx2 avx512f\n"
VNNI = "processor\t: 0\nflags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512_vnni\n"


def _cpuinfo(tmp_path, monkeypatch, text: str) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    monkeypatch.setattr(cpu, "CPUINFO", path)


def _outlier_mlp(path) -> None:
    """x[N,16] → mm_plain → ×scale → mm_outlier → logits[N,5]. One hidden unit is scaled
    ×1000 and the next weight row ÷1000: the same function in fp32, but ``mm_outlier``'s input
    has one huge column, so its per-tensor activation quantization wipes out the others."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((16, 32)) / 4).astype(np.float32)
    w2 = (rng.standard_normal((32, 5)) / 6).astype(np.float32)
    scale = np.ones(32, np.float32)
    scale[0] = 1000.0
    inits = [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(scale, "S"),
             numpy_helper.from_array((w2 / scale[:, None]).astype(np.float32), "W2")]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm_plain"),
             helper.make_node("Mul", ["h", "S"], ["hs"], name="scale"),
             helper.make_node("MatMul", ["hs", "W2"], ["logits"], name="mm_outlier")]
    graph = helper.make_graph(nodes, "outlier", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
                              initializer=inits)
    _save(graph, path, 17)


def _build(tmp_path, entry):
    write_npz(tmp_path / "val.npz", x=rows((16,), n=96, seed=2))
    base = {"name": "m", "source": "m.onnx", "validation": "val.npz", "quantize": "dynamic"}
    catalog = load_catalog(write_catalog(tmp_path, [{**base, **entry}]))
    (r,) = build_catalog(catalog, tmp_path / "build", settings=ANY_SPEED)
    assert r.ok, r.error
    return r


def _int8_weight_limit(model_dir) -> int:
    shipped = onnx.load(model_dir / "model.onnx")
    int8 = [numpy_helper.to_array(i) for i in shipped.graph.initializer if i.data_type == TensorProto.INT8]
    assert int8
    return max(int(np.abs(a.astype(np.int32)).max()) for a in int8)


def test_the_gate_verdict_does_not_depend_on_the_build_hosts_vnni(tmp_path, monkeypatch):
    """Lambda does not promise a CPU generation: a build on a VNNI host and one on a host
    without it make the same artifact with the same verdict, under 7-bit weights that no
    x86 kernel saturates, and the manifest says which assumption the gate ran under."""
    _outlier_mlp(tmp_path / "m.onnx")
    built = {}
    for label, flags in (("vnni", VNNI), ("no-vnni", NO_VNNI)):
        _cpuinfo(tmp_path, monkeypatch, flags)  # the build host's VNNI forced on, then off
        r = _build(tmp_path, {"tolerance": {}})
        built[label] = (r.manifest, _int8_weight_limit(r.model_dir))
        (tmp_path / "build").rename(tmp_path / f"build-{label}")
    (vnni, vnni_limit), (plain, plain_limit) = built["vnni"], built["no-vnni"]
    assert vnni["sha256"] == plain["sha256"] and vnni_limit == plain_limit == 64
    for m in (vnni, plain):
        q = m["quantization"]
        assert q["mode"] == "dynamic" and q["reduce_range"] is True
        assert q["int8_target"]["architecture"] == "x86_64" and q["int8_target"]["cpu_features"] == []
        assert "with and without VNNI" in q["int8_target"]["gate_kernels"]
    assert [c["verdict"] for c in vnni["quantization"]["candidates"]] == \
        [c["verdict"] for c in plain["quantization"]["candidates"]] == ["ok"]
    assert vnni["quantization"]["cpu_int8_dot_flags"] == ["avx512_vnni"]  # the host is still recorded
    assert plain["quantization"]["cpu_int8_dot_flags"] == []


def test_a_catalog_that_pins_vnni_gets_full_8_bit_weights(tmp_path, monkeypatch):
    _cpuinfo(tmp_path, monkeypatch, NO_VNNI)
    _outlier_mlp(tmp_path / "m.onnx")
    r = _build(tmp_path, {"tolerance": {}, "cpu_features": ["avx2", "avx512_vnni"]})
    q = r.manifest["quantization"]
    assert q["reduce_range"] is False and "avx512_vnni (catalog cpu_features)" in q["reduce_range_reason"]
    assert q["int8_target"]["cpu_features"] == ["avx2", "avx512_vnni"]
    assert "pessimistic" in q["int8_target"]["gate_kernels"]  # gated here on the saturating kernel
    assert _int8_weight_limit(r.model_dir) == 127


def test_cpu_features_are_x86_only(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(Exception, match="cpu_features"):
        load_catalog(write_catalog(tmp_path, [{"name": "m", "source": "m.onnx", "architecture": "arm64",
                                               "cpu_features": ["avx512_vnni"]}]))
    with pytest.raises(Exception, match="cpu_features"):
        load_catalog(write_catalog(tmp_path, [{"name": "m", "source": "m.onnx", "cpu_features": ["sse9"]}]))


def test_the_most_sensitive_matmul_stays_fp32_until_the_gate_passes(tmp_path, monkeypatch):
    _cpuinfo(tmp_path, monkeypatch, NO_VNNI)
    _outlier_mlp(tmp_path / "m.onnx")
    # when the full int8 graph fails a cosine gate
    r = _build(tmp_path, {"tolerance": {"min_cosine": 0.995}})
    # then the outlier MatMul is kept fp32, the other one ships int8, and the manifest says so
    q = r.manifest["quantization"]
    assert q["mode"] == "dynamic" and q["excluded_nodes"] == ["mm_outlier"]
    (cand,) = q["candidates"]
    search = cand["int8_search"]
    assert not search["full_int8"]["passed"] and "min_cosine" in search["full_int8"]["reason"]
    assert list(search["sensitivity"]) == ["mm_outlier", "mm_plain"]
    assert [(s["fp32_nodes"], s["passed"]) for s in search["steps"]] == [(1, True)]
    assert r.manifest["metrics"]["shipped"]["min_cosine"] >= 0.995
    ops = {n.op_type for n in onnx.load(r.model_dir / "model.onnx").graph.node}  # as onnxruntime fused it
    assert ops & {"MatMul", "Gemm", "FusedMatMul"} and ops & {"MatMulInteger", "DynamicQuantizeMatMul"}


def test_when_no_exclusion_passes_fp32_ships_and_says_what_was_tried(tmp_path, monkeypatch):
    _cpuinfo(tmp_path, monkeypatch, NO_VNNI)
    _outlier_mlp(tmp_path / "m.onnx")
    r = _build(tmp_path, {"tolerance": {"max_abs_error": 0.0}})
    q = r.manifest["quantization"]
    assert q["mode"] == "none" and "excluded_nodes" not in q
    assert "gate failed (max_abs_error" in q["fallback_reason"]
    assert "most sensitive of 2 nodes kept fp32" in q["fallback_reason"]


def test_the_target_decides_reduce_range_not_the_build_cpu(tmp_path):
    (tmp_path / "a").write_text(NO_VNNI)
    (tmp_path / "b").write_text(VNNI.replace("avx512_vnni", "avx_vnni amx_int8 amx_tile"))
    for info in ("a", "b", "absent"):
        assert cpu.int8_host(tmp_path / info).reduce_range is True
    assert cpu.int8_host(tmp_path / "b").int8_dot_flags == ("avx_vnni", "amx_int8")
    assert cpu.int8_host(tmp_path / "a", cpu_features=("avx_vnni",)).reduce_range is False
    assert cpu.int8_host(tmp_path / "a", cpu_features=("avx2",)).reduce_range is True
    assert cpu.int8_host(tmp_path / "a", architecture="arm64").reduce_range is False


@pytest.mark.slow
def test_transformer_graphs_are_fused_before_dynamic_int8(tmp_path):
    module = torch_module(tmp_path, """
        import torch
        def make():
            torch.manual_seed(0)
            layer = torch.nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
            enc = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
            return torch.nn.Sequential(enc, torch.nn.Flatten(), torch.nn.Linear(8 * 32, 4))
    """)
    write_npz(tmp_path / "ex.npz", x=rows((8, 32), n=2))
    write_npz(tmp_path / "val.npz", x=rows((8, 32), n=32, seed=3))
    catalog = load_catalog(write_catalog(tmp_path, [{"name": "enc", "source": f"{module}:make",
                                                     "example_input": "ex.npz", "validation": "val.npz",
                                                     "quantize": "dynamic", "tolerance": {}}]))
    (r,) = build_catalog(catalog, tmp_path / "build", settings=ANY_SPEED)
    assert r.ok, r.error
    opt = r.manifest["quantization"]["transformer_optimizer"]
    assert opt["fused"].get("SkipLayerNormalization", 0) >= 1
    # nn.MultiheadAttention's packed Q/K/V projection fuses too: attention quantizes as one op
    assert opt["fused"]["Attention"] == opt["packed_attention"] == 1
    ops = {n.op_type for n in onnx.load(r.model_dir / "model.onnx").graph.node}
    assert "QAttention" in ops and ops & {"MatMulInteger", "DynamicQuantizeMatMul"}
    # SkipLayerNormalization, or Add + LayerNormalization where the build measured that faster
    sln = r.manifest["graph_optimization"].get("skip_layer_norm", {"shipped": "fused"})
    assert ("SkipLayerNormalization" if sln["shipped"] == "fused" else "LayerNormalization") in ops
    if sln["shipped"] != "fused":  # the runtime loads it without re-fusing
        assert r.manifest["graph_optimization"]["disabled_optimizers"] == ["SkipLayerNormFusion"]
        assert load_model(r.model_dir).run({"x": rows((8, 32), n=1)})


@pytest.mark.slow
def test_auto_measures_every_transformer_candidate_and_records_each(tmp_path):
    module = torch_module(tmp_path, """
        import torch
        def make():
            torch.manual_seed(0)
            layer = torch.nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
            enc = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
            return torch.nn.Sequential(enc, torch.nn.Flatten(), torch.nn.Linear(8 * 32, 4))
    """)
    write_npz(tmp_path / "ex.npz", x=rows((8, 32), n=2))
    write_npz(tmp_path / "val.npz", x=rows((8, 32), n=32, seed=3))
    catalog = load_catalog(write_catalog(tmp_path, [{"name": "enc", "source": f"{module}:make",
                                                     "example_input": "ex.npz", "validation": "val.npz",
                                                     "calibration": "val.npz", "quantize": "auto",
                                                     "tolerance": {}}]))
    (r,) = build_catalog(catalog, tmp_path / "build", settings=ANY_SPEED)
    assert r.ok, r.error
    q = r.manifest["quantization"]
    cands = {c["mode"]: c for c in q["candidates"]}
    assert set(cands) == {"dynamic", "static", "weight-int4", "weight-int8"}
    for c in cands.values():  # every candidate's figures, measured on this host
        assert c["verdict"] == "ok" and c["p50_ms"] > 0 and c["size_bytes"] > 0 and "top1_agreement" in c["figures"]
    assert q["mode"] == min(cands.values(), key=lambda c: c["p50_ratio"])["mode"]
    ops = [n.op_type for n in onnx.load(tmp_path / "build" / "models" / "enc" / "model.onnx").graph.node]
    if q["mode"].startswith("weight-"):
        assert "MatMulNBits" in ops


def test_the_search_doubles_then_bisects_to_the_fewest_fp32_nodes(tmp_path, monkeypatch):
    """Text gates cost seconds each: the search gates 1, 2, 4, … fp32 nodes, then bisects, instead
    of one gate per count, and ships the fewest that pass."""
    from infra.build import accuracy, int8_search, quantize

    nodes = [f"mm{i}" for i in range(20)]
    made: list[tuple[str, ...]] = []

    def fake_quantize(pre, dst, *, reduce_range=True, exclude=(), only=()):
        made.append(tuple(exclude))
        dst.write_text(",".join(exclude))

    monkeypatch.setattr(quantize, "quantize_dynamic", fake_quantize)
    monkeypatch.setattr(quantize, "dynamic_targets", lambda pre: nodes)
    monkeypatch.setattr(int8_search, "sensitivity",
                        lambda pre, nodes, feeds, rr, progress: {n: float(i) for i, n in enumerate(nodes)})

    def judge(path):  # passes once the 3 most sensitive (mm19, mm18, mm17) stay fp32
        kept = set(filter(None, path.read_text().split(",")))
        ok = {"mm19", "mm18", "mm17"} <= kept
        return accuracy.GateResult(figures={"top1_agreement": 1.0 if ok else 0.9}, passed=ok,
                                   failures=() if ok else ("top1_agreement 0.9 < 0.995",))

    result = int8_search.search_dynamic(tmp_path / "pre.onnx", tmp_path / "dst.onnx", tmp_path, judge=judge,
                                        feeds=[], reduce_range=True)
    assert result.excluded == ("mm19", "mm18", "mm17") and result.result.passed
    assert [(s["fp32_nodes"], s["passed"]) for s in result.record["steps"]] == [(1, False), (2, False), (4, True),
                                                                                 (3, True)]
    assert (tmp_path / "dst.onnx").read_text() == "mm19,mm18,mm17"  # the shipped file is the fewest's

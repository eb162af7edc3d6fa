"""Int8 for transformers: the CPU decides reduce_range, sensitive MatMuls stay fp32 when the
gate says so, and the manifest records both."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from infra.build import BuildSettings, build_catalog, cpu
from infra.catalog import load_catalog
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


@pytest.mark.parametrize(("flags", "reduce_range", "weight_limit"), [(NO_VNNI, True, 64), (VNNI, False, 127)],
                         ids=["no-vnni", "vnni"])
def test_reduce_range_follows_the_cpu_and_is_recorded(tmp_path, monkeypatch, flags, reduce_range, weight_limit):
    # given a CPU with or without VNNI
    _cpuinfo(tmp_path, monkeypatch, flags)
    _outlier_mlp(tmp_path / "m.onnx")
    # when the model is quantized dynamically
    r = _build(tmp_path, {"tolerance": {}})
    # then the manifest says which was used and why, and the weights use that range
    q = r.manifest["quantization"]
    assert q["mode"] == "dynamic" and q["reduce_range"] is reduce_range
    assert q["cpu_int8_dot_flags"] == ([] if reduce_range else ["avx512_vnni"])
    assert ("no VNNI" in q["reduce_range_reason"]) is reduce_range
    shipped = onnx.load(r.model_dir / "model.onnx")
    int8 = [numpy_helper.to_array(i) for i in shipped.graph.initializer if i.data_type == TensorProto.INT8]
    assert int8 and max(int(np.abs(a.astype(np.int32)).max()) for a in int8) == weight_limit


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
    nodes = {n.name: n.op_type for n in onnx.load(r.model_dir / "model.onnx").graph.node}
    assert nodes["mm_outlier"] == "MatMul" and "MatMulInteger" in nodes.values()


def test_when_no_exclusion_passes_fp32_ships_and_says_what_was_tried(tmp_path, monkeypatch):
    _cpuinfo(tmp_path, monkeypatch, NO_VNNI)
    _outlier_mlp(tmp_path / "m.onnx")
    r = _build(tmp_path, {"tolerance": {"max_abs_error": 0.0}})
    q = r.manifest["quantization"]
    assert q["mode"] == "none" and "excluded_nodes" not in q
    assert "gate failed (max_abs_error" in q["fallback_reason"]
    assert "most sensitive of 2 nodes kept fp32" in q["fallback_reason"]


def test_cpu_flags_decide_reduce_range(tmp_path):
    (tmp_path / "a").write_text(NO_VNNI)
    (tmp_path / "b").write_text(VNNI.replace("avx512_vnni", "avx_vnni amx_int8 amx_tile"))
    assert cpu.int8_host(tmp_path / "a").reduce_range is True
    host = cpu.int8_host(tmp_path / "b")
    assert host.reduce_range is False and host.int8_dot_flags == ("avx_vnni", "amx_int8")
    missing = cpu.int8_host(tmp_path / "absent")
    assert missing.reduce_range is True and "no CPU flags" in missing.reason


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
    ops = {n.op_type for n in onnx.load(r.model_dir / "model.onnx").graph.node}
    assert "SkipLayerNormalization" in ops and "MatMulInteger" in ops

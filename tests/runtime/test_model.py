"""Model loading: sha256 checked before the model is served, threads from the CPUs really available, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from layers import model as model_mod
from layers import names
from layers.errors import BadRequest
from layers.manifest import ManifestError
from layers.model import (
    _cgroup_cpu_quota,
    available_cpus,
    get_model,
    intra_op_threads,
    load_model,
    ort_spinning,
)
from tests.runtime.helpers import echo_model_dir, zipmap_model_dir


@pytest.fixture(autouse=True)
def _fresh_singleton():
    model_mod.reset_model()
    yield
    model_mod.reset_model()


def test_loads_model_and_manifest(tiny_model_dir):
    m = load_model(tiny_model_dir)
    assert m.name == "tiny" and len(m.version) == 12
    assert [s.name for s in m.inputs] == ["x"] and [s.name for s in m.outputs] == ["probs"]
    out = m.infer({"x": np.ones((3, 4), np.float32)})
    assert out["probs"].shape == (3, 3)
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, rtol=1e-5)


def test_tampered_artifact_is_refused_before_loading(tiny_model_dir):
    # given a model file changed after the build
    with open(tiny_model_dir / "model.onnx", "ab") as f:
        f.write(b"\x00")
    # then loading stops with the reason and the fix
    with pytest.raises(ManifestError, match="sha256") as err:
        load_model(tiny_model_dir)
    assert "modelfn build" in str(err.value)


@pytest.mark.parametrize("tamper", ["loadable", "garbage"])
def test_a_tampered_artifact_is_refused_whatever_onnxruntime_makes_of_it(tiny_model_dir, tamper):
    # given an artifact changed after the build: still a valid graph (a weight edited), or garbage
    import onnx

    path = tiny_model_dir / "model.onnx"
    if tamper == "loadable":
        graph = onnx.load(path)
        graph.graph.initializer[0].raw_data = bytes(len(graph.graph.initializer[0].raw_data))
        onnx.save(graph, path)
    else:
        path.write_bytes(b"not a model")
    # when it loads (the sha256 is computed while onnxruntime reads the file)
    # then the sha256 mismatch is what stops it, not onnxruntime's own error
    with pytest.raises(ManifestError, match="sha256"):
        load_model(tiny_model_dir)


def test_inside_lambda_init_trusts_the_digest_its_image_was_staged_with(tiny_model_dir, monkeypatch):
    from layers import manifest as manifest_mod

    # given a model directory as image staging writes it (the marker made from the checked artifact)
    (tiny_model_dir / names.VERIFIED_FILE).write_bytes(manifest_mod.verified_marker(tiny_model_dir))
    hashed = []
    real = manifest_mod.artifact_sha256
    monkeypatch.setattr(manifest_mod, "artifact_sha256", lambda d: hashed.append(d) or real(d))
    # when the function starts inside Lambda, then the artifact is not hashed again
    monkeypatch.setenv(names.ENV_LAMBDA_TASK_ROOT, "/var/task")
    monkeypatch.delenv(names.ENV_SAM_LOCAL, raising=False)
    assert load_model(tiny_model_dir).infer({"x": np.ones((1, 4), np.float32)})["probs"].shape == (1, 3)
    assert hashed == []
    # when it starts under sam local (its image may be rebuilt around it), then it is hashed
    monkeypatch.setenv(names.ENV_SAM_LOCAL, "true")
    load_model(tiny_model_dir)
    assert len(hashed) == 1


def test_a_marker_that_does_not_fit_the_artifact_is_not_trusted(tiny_model_dir, monkeypatch):
    from layers import manifest as manifest_mod

    # given a staged marker and then a model file changed after it, inside Lambda
    (tiny_model_dir / names.VERIFIED_FILE).write_bytes(manifest_mod.verified_marker(tiny_model_dir))
    monkeypatch.setenv(names.ENV_LAMBDA_TASK_ROOT, "/var/task")
    monkeypatch.delenv(names.ENV_SAM_LOCAL, raising=False)
    with open(tiny_model_dir / "model.onnx", "ab") as f:
        f.write(b"\x00")
    # then the size no longer matches, the artifact is hashed, and the mismatch refused
    with pytest.raises(ManifestError, match="sha256"):
        load_model(tiny_model_dir)
    # and a marker for another build (another sha256) is not trusted either
    (tiny_model_dir / names.VERIFIED_FILE).write_text(json.dumps({"sha256": "0" * 64, "sizes": {}}))
    with pytest.raises(ManifestError, match="sha256"):
        load_model(tiny_model_dir)


def test_staging_refuses_an_artifact_its_manifest_does_not_describe(tiny_model_dir):
    from layers.manifest import verified_marker

    with open(tiny_model_dir / "model.onnx", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ManifestError, match="sha256"):
        verified_marker(tiny_model_dir)


def test_get_model_needs_model_dir(monkeypatch):
    monkeypatch.delenv(names.ENV_MODEL_DIR, raising=False)
    with pytest.raises(ManifestError, match="MODEL_DIR is not set"):
        get_model()


def test_get_model_is_one_instance_per_process(monkeypatch, tiny_model_dir):
    monkeypatch.setenv(names.ENV_MODEL_DIR, str(tiny_model_dir))
    assert get_model() is get_model()


def test_missing_directory_says_what_it_needs(tmp_path):
    with pytest.raises(ManifestError, match="must hold model.onnx and manifest.json"):
        load_model(tmp_path / "nothing")


def test_non_tensor_output_is_refused_at_load(tmp_path):
    with pytest.raises(ManifestError, match=r"seq\(map") as err:
        load_model(zipmap_model_dir(tmp_path / "zipmap"))
    assert "zipmap=False" in str(err.value)


def test_manifest_that_disagrees_with_the_model_is_refused(tiny_model_dir):
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text())
    manifest["signature"]["inputs"][0]["datatype"] = "FP64"
    (tiny_model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="does not match"):
        load_model(tiny_model_dir)


def test_threads_default_to_available_cpus(tiny_model_dir, monkeypatch):
    monkeypatch.delenv(names.ENV_INTRA_OP_THREADS, raising=False)
    assert load_model(tiny_model_dir).threads == available_cpus()


def test_threads_env_override(tiny_model_dir, monkeypatch):
    monkeypatch.setenv(names.ENV_INTRA_OP_THREADS, "1")
    assert intra_op_threads() == 1
    assert load_model(tiny_model_dir).threads == 1


@pytest.mark.parametrize("bad", ["0", "-2", "many"])
def test_bad_threads_env_is_a_clear_error(monkeypatch, bad):
    monkeypatch.setenv(names.ENV_INTRA_OP_THREADS, bad)
    with pytest.raises(ManifestError, match="not a positive integer"):
        intra_op_threads()


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_quota(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_quota(str(tmp_path)) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_cpu_quota(str(tmp_path)) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_cpu_quota(str(tmp_path)) is None
    assert _cgroup_cpu_quota(str(tmp_path / "none")) is None


def test_available_cpus_takes_the_quota_not_the_host(monkeypatch):
    monkeypatch.setattr(model_mod, "_cgroup_cpu_quota", lambda: 0.5)
    assert available_cpus() == 1
    monkeypatch.setattr(model_mod, "_cgroup_cpu_quota", lambda: 1.2)
    assert available_cpus() == min(2, len(__import__("os").sched_getaffinity(0)))


class TestInferValidation:
    @pytest.fixture
    def m(self, tiny_model_dir):
        return load_model(tiny_model_dir)

    def test_unknown_and_missing_inputs(self, m):
        with pytest.raises(BadRequest, match=r"unknown input\(s\) \['y'\]; model 'tiny' takes \['x'\]"):
            m.infer({"x": np.ones((1, 4), np.float32), "y": np.ones(1)})
        with pytest.raises(BadRequest, match=r"missing input\(s\) \['x'\]"):
            m.infer({})

    def test_wrong_dtype_and_shape(self, m):
        with pytest.raises(BadRequest, match="expects FP32"):
            m.infer({"x": np.ones((1, 4), np.float64)})
        with pytest.raises(BadRequest, match="dimension 1 must be 4"):
            m.infer({"x": np.ones((1, 5), np.float32)})

    def test_nan_and_inf_rejected_unless_allowed(self, m):
        x = np.ones((2, 4), np.float32)
        x[1, 2] = np.inf
        with pytest.raises(BadRequest, match="NaN or Infinity.*allow_nonfinite"):
            m.infer({"x": x})
        assert m.infer({"x": x}, allow_nonfinite=True)["probs"].shape == (2, 3)

    @pytest.mark.parametrize("size", [4, 64, 20_000])  # the dot path and the float64-sum path
    @pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
    def test_the_finiteness_check_is_exact(self, size, dtype):
        from layers.model import _all_finite

        # large finite values whose squares or sum overflow are still finite
        big = np.full(size, np.finfo(dtype).max / 2, dtype)
        assert _all_finite(big) and _all_finite(-big) and _all_finite(np.zeros(size, dtype))
        for bad in (np.nan, np.inf, -np.inf):
            x = np.ones(size, dtype)
            x[size // 2] = bad
            assert not _all_finite(x) and not _all_finite(x.reshape(-1, 2))

    def test_output_selection(self, m):
        assert list(m.infer({"x": np.ones((1, 4), np.float32)}, ["probs"])) == ["probs"]
        with pytest.raises(BadRequest, match="produces \\['probs'\\]"):
            m.infer({"x": np.ones((1, 4), np.float32)}, ["logits"])
        with pytest.raises(BadRequest, match="repeat"):
            m.infer({"x": np.ones((1, 4), np.float32)}, ["probs", "probs"])


def test_every_datatype_runs_through_onnxruntime(tmp_path):
    m = load_model(echo_model_dir(tmp_path / "echo"))
    from layers.codec import to_numpy_dtype

    inputs = {
        s.name: (np.array([["a", "ü"], ["", "z"]], dtype=object) if s.datatype == "BYTES"
                 else np.arange(4).reshape(2, 2).astype(to_numpy_dtype(s.datatype)))
        for s in m.inputs
    }
    out = m.infer(inputs)
    for s in m.inputs:
        got = out["out_" + s.name.removeprefix("in_")]
        assert got.shape == (2, 2) and got.tolist() == inputs[s.name].tolist()


def test_bytes_inputs_must_be_text(tmp_path):
    m = load_model(echo_model_dir(tmp_path / "echo", datatypes=("BYTES",)))
    ok = m.infer({"in_bytes": np.array([[b"caf\xc3\xa9", "x"]], dtype=object)})
    assert ok["out_bytes"].tolist() == [["café", "x"]]
    with pytest.raises(BadRequest, match="not UTF-8 text"):
        m.infer({"in_bytes": np.array([[b"\xff", "x"]], dtype=object)})


@pytest.mark.parametrize(("raw", "spins"), [(None, "0"), ("0", "0"), ("1", "1")])
def test_spinning_is_off_unless_the_env_turns_it_on(monkeypatch, raw, spins):
    from layers.model import session_options

    if raw is None:
        monkeypatch.delenv(names.ENV_ORT_SPINNING, raising=False)
    else:
        monkeypatch.setenv(names.ENV_ORT_SPINNING, raw)
    assert session_options(threads=1).get_session_config_entry("session.intra_op.allow_spinning") == spins


def test_bad_spinning_env_is_a_clear_error(monkeypatch):
    from layers.model import session_options

    monkeypatch.setenv(names.ENV_ORT_SPINNING, "yes")
    with pytest.raises(ManifestError, match="MODELFN_ORT_SPINNING='yes' must be 0 or 1"):
        session_options(threads=1)


class TestSessionSettingsFollowTheHost:
    """Lambda's memory sets the function's CPUs; spinning only where each worker has a whole vCPU."""

    @pytest.fixture(autouse=True)
    def two_visible_cpus(self, monkeypatch):
        monkeypatch.setattr(model_mod.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
        monkeypatch.setattr(model_mod, "_cgroup_cpu_quota", lambda: None)
        for name in ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_SAM_LOCAL", "MODELFN_ORT_SPINNING",
                     "MODELFN_INTRA_OP_THREADS"):
            monkeypatch.delenv(name, raising=False)

    @pytest.mark.parametrize(("memory_mb", "threads", "spinning"), [
        (1024, 1, False),   # 0.58 vCPU: one thread, no pool to spin
        (3008, 2, False),   # 1.7 vCPUs: two threads, but the second is not a whole vCPU
        (3538, 2, True),    # two whole vCPUs
        (10240, 4, True),   # 5.8 vCPUs, capped by the 4 CPUs the guest shows
    ])
    def test_inside_lambda(self, monkeypatch, memory_mb, threads, spinning):
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", str(memory_mb))
        assert (intra_op_threads(), ort_spinning()) == (threads, spinning)

    def test_shared_hosts_do_not_spin(self, monkeypatch):
        assert (intra_op_threads(), ort_spinning()) == (4, False)  # local stack, SageMaker, tests
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "10240")
        monkeypatch.setenv("AWS_SAM_LOCAL", "true")  # Lambda's env on a developer's machine
        assert ort_spinning() is False

    def test_the_env_overrides_the_rule(self, monkeypatch):
        monkeypatch.setenv("MODELFN_ORT_SPINNING", "1")
        assert ort_spinning() is True
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "10240")
        monkeypatch.setenv("MODELFN_ORT_SPINNING", "0")
        assert ort_spinning() is False
        monkeypatch.setenv("MODELFN_ORT_SPINNING", "yes")
        with pytest.raises(ManifestError, match="must be 0 or 1"):
            ort_spinning()

    def test_the_session_gets_the_choice(self, monkeypatch):
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3538")
        so = model_mod.session_options()
        assert so.intra_op_num_threads == 2
        assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"

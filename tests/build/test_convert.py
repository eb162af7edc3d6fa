"""Each source kind becomes a checked fp32 ONNX with a dynamic batch axis, or a clear refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from infra.build.convert import MIN_OPSET, ConversionError, convert
from infra.build.signature import SignatureError, signature
from infra.catalog import ModelSpec
from tests.build.helpers import make_mlp_onnx, rows, torch_module, write_npz


def _spec(**kw) -> ModelSpec:
    return ModelSpec.model_validate({"name": "m", **kw})


def _run(path: Path, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def test_onnx_passthrough_upgrades_an_old_opset(tmp_path):
    src = make_mlp_onnx(tmp_path / "old.onnx", opset=11)
    out = tmp_path / "fp32.onnx"
    notes = convert(_spec(source=str(src)), tmp_path, out)
    assert notes["opset"] == f"11 → {MIN_OPSET}"
    x = rows((32,), n=3)
    np.testing.assert_allclose(_run(out, x)[0], _run(src, x)[0], rtol=1e-5)


def test_unreadable_onnx_is_refused(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ConversionError, match="not a readable ONNX model"):
        convert(_spec(source=str(tmp_path / "bad.onnx")), tmp_path, tmp_path / "o.onnx")


def test_sklearn_classifier_converts_with_tensor_outputs_not_a_zipmap(tmp_path):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    clf = LogisticRegression(max_iter=500).fit(x, y)
    joblib.dump(clf, tmp_path / "clf.joblib")
    example = write_npz(tmp_path / "ex.npz", features=x[:2])
    out = tmp_path / "fp32.onnx"
    convert(_spec(source=str(tmp_path / "clf.joblib"), example_input=example), tmp_path, out)
    sig = signature(onnx.load(out))
    assert sig["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert [(t["name"], t["datatype"]) for t in sig["outputs"]] == [("label", "INT64"), ("probabilities", "FP32")]
    label, probs = _run(out, x[:7])
    np.testing.assert_array_equal(label, clf.predict(x[:7]))
    np.testing.assert_allclose(probs, clf.predict_proba(x[:7]), atol=1e-5)


def test_sklearn_example_must_be_a_2d_numeric_array(tmp_path):
    import joblib
    from sklearn.linear_model import LinearRegression

    joblib.dump(LinearRegression().fit(np.eye(3), [1, 2, 3]), tmp_path / "r.joblib")
    example = write_npz(tmp_path / "ex.npz", x=np.zeros(3, np.float32))
    with pytest.raises(ConversionError, match="2-D"):
        convert(_spec(source=str(tmp_path / "r.joblib"), example_input=example), tmp_path, tmp_path / "o.onnx")


@pytest.mark.slow
def test_torch_factory_exports_with_a_dynamic_batch_axis(tmp_path):
    body = """
        import torch
        def make():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    """
    module = torch_module(tmp_path, body)
    example = write_npz(tmp_path / "ex.npz", x=rows((6,), n=2))
    out = tmp_path / "fp32.onnx"
    notes = convert(_spec(source=f"{module}:make", example_input=example), tmp_path, out)
    assert "torch.onnx.export" in notes["converter"]
    sig = signature(onnx.load(out))
    assert sig["inputs"][0]["name"] == "x" and sig["inputs"][0]["shape"][0] == -1
    assert sig["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}]
    assert _run(out, rows((6,), n=5))[0].shape == (5, 3)
    # no build-machine paths (dynamo's stack traces) in the artifact: its sha256 is its version
    assert str(tmp_path).encode() not in out.read_bytes()
    assert all(not n.metadata_props for n in onnx.load(out).graph.node)


@pytest.mark.slow
def test_torch_model_returning_a_dict_is_refused(tmp_path):
    body = """
        import torch
        class M(torch.nn.Module):
            def forward(self, x):
                return {"y": x * 2}
        def make():
            return M()
    """
    module = torch_module(tmp_path, body)
    example = write_npz(tmp_path / "ex.npz", x=rows((2,), n=1))
    with pytest.raises(ConversionError, match="tensors only"):
        convert(_spec(source=f"{module}:make", example_input=example), tmp_path, tmp_path / "o.onnx")


def test_torch_factory_that_cannot_be_imported_says_where_it_looked(tmp_path):
    example = write_npz(tmp_path / "ex.npz", x=rows((2,), n=1))
    with pytest.raises(ConversionError, match="importable") as exc:
        convert(_spec(source="no_such_pkg.mod:make", example_input=example), tmp_path, tmp_path / "o.onnx")
    assert str(tmp_path) in str(exc.value)


def test_signature_refuses_non_tensor_outputs():
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("SequenceConstruct", ["x"], ["s"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [seq])
    with pytest.raises(SignatureError, match="not a tensor"):
        signature(helper.make_model(graph))


@pytest.mark.slow
def test_torch_example_with_one_row_still_exports_a_dynamic_batch(tmp_path):
    # given an example_input of exactly one row (the exporter would specialize it to 1)
    # (a transformer encoder: exported from that one row, its batch came out fixed at 1)
    body = """
        import torch
        from torch import nn
        class Encoder(nn.Module):
            def __init__(self):
                super().__init__()
                self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 1)
            def forward(self, x):
                return self.enc(x).mean(1)
        def make():
            torch.manual_seed(0)
            return Encoder()
    """
    module = torch_module(tmp_path, body)
    example = write_npz(tmp_path / "ex.npz", x=rows((5, 16), n=1))
    out = tmp_path / "fp32.onnx"
    # when
    notes = convert(_spec(source=f"{module}:make", example_input=example), tmp_path, out)
    # then the graph's batch dim is symbolic and a gate-sized batch runs
    assert notes["converter"] == "torch.onnx.export (dynamo)"
    (x,) = [i for i in onnx.load(out).graph.input if i.name == "x"]
    assert x.type.tensor_type.shape.dim[0].dim_param
    assert _run(out, rows((5, 16), n=64))[0].shape == (64, 16)


@pytest.mark.slow
def test_torch_model_that_fixes_its_batch_is_refused_naming_the_input_and_the_fix(tmp_path):
    body = """
        import torch
        class M(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(6, 3)
            def forward(self, x):
                return self.fc(x).view(2, 3)   # the batch baked in as a constant
        def make():
            return M()
    """
    module = torch_module(tmp_path, body)
    example = write_npz(tmp_path / "ex.npz", x=rows((6,), n=2))
    with pytest.raises(ConversionError) as err:
        convert(_spec(source=f"{module}:make", example_input=example), tmp_path, tmp_path / "o.onnx")
    msg = str(err.value)
    assert "lost its dynamic batch axis on x (batch fixed at 2)" in msg and "x.shape[0]" in msg

"""Shared fixtures: one fake Lambda context, recorded events, a tiny ONNX model.

Tests never download weights: every model is made here, in ``tmp_path``.
"""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

EVENTS_DIR = Path(__file__).parent / "events"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups (tests/helpers/units.py)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    from tests.helpers import units

    units.assign(items)
    units.order(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    from tests.helpers import units

    units.check_grouped(session)


@dataclass
class FakeLambdaContext:
    """The attributes Powertools and our handlers read from a real ``LambdaContext``."""

    function_name: str = "modelfn-test"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:modelfn-test"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"
    log_group_name: str = "/aws/lambda/modelfn-test"
    log_stream_name: str = "2026/11/22/[$LATEST]0123456789abcdef"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext(aws_request_id=str(uuid.uuid4()))


def load_event(name: str, **overrides) -> dict:
    """A recorded event from ``tests/events/<name>.json``, top-level keys overridden."""
    event = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    event.update(overrides)
    return event


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tiny_onnx(path: Path, *, in_features: int = 4, out_features: int = 3, seed: int = 0) -> Path:
    """A small Gemm+Softmax classifier, input ``x`` [N, in], output ``probs`` [N, out]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((in_features, out_features)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(out_features).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", out_features])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    return make_tiny_onnx(tmp_path / "tiny" / "model.onnx")


def write_manifest(model_dir: Path, name: str, inputs: list[dict], outputs: list[dict],
                   **fields) -> Path:
    """A servable ``manifest.json`` for ``model_dir/model.onnx`` (sha256 and version from the
    file), as `modelfn build` writes it; ``fields`` override or add keys (``target``, ``fit``…)."""
    from layers.manifest import sha256_file

    digest = sha256_file(model_dir / "model.onnx")
    manifest = {
        "name": name, "version": digest[:12], "sha256": digest, "source": "tests",
        "signature": {"inputs": inputs, "outputs": outputs},
        "quantization": {"mode": "none"}, "metrics": {}, "target": "lambda",
        "target_reasons": ["test model"], "built_at": "2026-11-22T00:00:00Z",
        **fields,
    }
    (model_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return model_dir


TINY_INPUTS = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
TINY_OUTPUTS = [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}]


@pytest.fixture
def tiny_model_dir(tiny_onnx: Path) -> Path:
    """A servable MODEL_DIR (model.onnx + manifest.json) for the tiny model."""
    return write_manifest(tiny_onnx.parent, "tiny", TINY_INPUTS, TINY_OUTPUTS)

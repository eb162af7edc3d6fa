"""The SageMaker serving image (CPU), built by ``modelfn image`` for a ``target: sagemaker``
model and started as SageMaker starts it (``serve``, model unpacked at ``/opt/ml/model``):
``GET /ping`` and ``POST /invocations`` answer from the image."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.environment import function_environment
from infra.local.containers import ContainerRunner, ContainerSageMakerServer
from tests.e2e.tiny_models import make_catalog
from tests.image.conftest import REPO_ROOT, record, run_cli

pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.xdist_group("image-lane")]
MODEL = "pair-sm"


@pytest.fixture(scope="module")
def sagemaker_image(tmp_path_factory, standin: str, engine) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("sm")
    catalog = make_catalog(root, sagemaker=True)
    out = root / "build"
    proc = run_cli("build", "--catalog", str(catalog), "--out", str(out), "--model", MODEL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("image", "--catalog", str(catalog), "--out", str(out), "--model", MODEL,
                   "--engine", engine.name, "--base", standin, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (entry,) = json.loads(proc.stdout)["images"]
    record("sizes_bytes", f"{entry['tag']} (sagemaker)", {"image": entry["size_bytes"]})
    return entry, out / "models" / MODEL


@pytest.fixture(scope="module")
def server(runner: ContainerRunner, sagemaker_image) -> Iterator[ContainerSageMakerServer]:
    entry, model_dir = sagemaker_image
    env = function_environment(model_name=MODEL, kind="sagemaker")
    srv = ContainerSageMakerServer(MODEL, {**env, "POWERTOOLS_TRACE_DISABLED": "true"},
                                   str(REPO_ROOT), runner=runner, image=entry["tag"],
                                   model_dir=str(model_dir))
    t0 = time.perf_counter()
    srv.start()
    record("cold_start_seconds", f"{MODEL} (sagemaker, to /ping 200)", round(time.perf_counter() - t0, 2))
    try:
        yield srv
    finally:
        srv.stop()


def _call(port: int, method: str, path: str, body: bytes | None = None,
          headers: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def test_sagemaker_image_has_no_model_layer(sagemaker_image) -> None:
    entry, _ = sagemaker_image
    assert entry["model_layer_bytes"] == 0 and entry["size_bytes"] > 0


def test_ping_and_invocations_answer_from_the_image(server: ContainerSageMakerServer) -> None:
    assert server.failure is None
    assert _call(server.port, "GET", "/ping")[0] == 200
    request = {"inputs": [{"name": n, "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
                          for n in ("a", "b")]}
    status, body = _call(server.port, "POST", "/invocations", json.dumps(request).encode(),
                         {"Content-Type": "application/json"})
    assert status == 200, body
    outputs = {o["name"]: o["data"] for o in json.loads(body)["outputs"]}
    assert outputs == {"sum": [2, 4, 6], "prod": [1, 4, 9]}


def test_invocations_with_a_bad_tensor_is_a_400(server: ContainerSageMakerServer) -> None:
    status, body = _call(server.port, "POST", "/invocations", b'{"inputs": [{"name": "a"}]}',
                         {"Content-Type": "application/json"})
    assert status == 400 and "error" in json.loads(body)

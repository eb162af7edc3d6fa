"""`modelfn up --no-build` on an artifact that does not load: the 503 names the artifact's
problem (onnxruntime's reason and the fix), not awslambdaric's import wrapper."""

from __future__ import annotations

from infra.local.function_pool import FunctionPool, FunctionSpec
from infra.local.gateway import _not_serving
from layers import names
from tests.conftest import TINY_INPUTS, TINY_OUTPUTS, write_manifest
from tests.e2e.conftest import REPO_ROOT


def test_an_onnx_that_does_not_load_is_named_in_the_not_serving_answer(tmp_path):
    # given a model directory whose model.onnx is not a model (its sha256 matches the manifest)
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07 not a model at all")
    write_manifest(tmp_path, "broken", TINY_INPUTS, TINY_OUTPUTS)
    spec = FunctionSpec(name="modelfn-broken-api", handler=names.API_HANDLER, cwd=str(REPO_ROOT),
                        env={names.ENV_MODEL_DIR: str(tmp_path), "POWERTOOLS_TRACE_DISABLED": "true"})
    pool = FunctionPool(spec, log=lambda _: None)
    try:
        pool.start()
    finally:
        pool.stop()
    # then the failure is onnxruntime's reason with the fix, without the runtime's wrapper
    assert pool.failure is not None
    assert "onnxruntime cannot load" in pool.failure and "model.onnx" in pool.failure
    assert "Rebuild it with `modelfn build`" in pool.failure
    assert "Unable to import module" not in pool.failure and "Runtime.ImportModuleError" not in pool.failure
    body = _not_serving("broken", f"init failed: {pool.failure}").body.decode()
    assert ".." not in body and "INVALID_PROTOBUF" in body

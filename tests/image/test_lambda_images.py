"""Every sample model's Lambda image, built by ``modelfn image`` and run as Lambda runs it:
the image's own entry point polling the local Runtime API, with the CDK app's environment.

The API function answers V2 metadata, inference and a client error; the batch function (the
same image, CMD overridden with the batch handler) turns a real S3 event from the local moto
into ``out/``; a model whose artifact does not match its manifest fails the init.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest

from infra.catalog import load_catalog
from infra.environment import function_environment
from infra.local.containers import ContainerRunner, ImageSet, instance_factory
from infra.local.function_pool import FunctionPool, FunctionSpec
from infra.local.gateway import LambdaIntegration, match_route
from infra.local.http_api_events import HttpRequest
from infra.local.stack import LocalStack
from infra.local.v2_input import load_arrays, v2_request
from infra.targets import staging
from layers import names
from tests.image.conftest import CATALOG, REPO_ROOT, SAMPLE_MODELS, lane_lock, record

pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.xdist_group("image-lane")]
V2_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


TEXTS = ["a wonderful, moving film", "dull and far too long", "fine"]


def _takes_text(model: str, stack: LocalStack) -> bool:
    inputs = stack.services[model].manifest.inputs
    return len(inputs) == 1 and inputs[0].datatype == "BYTES"


def _example_request(model: str, stack: LocalStack, rows: int = 2) -> dict:
    manifest = stack.services[model].manifest
    if _takes_text(model, stack):
        return {"inputs": [{"name": manifest.inputs[0].name, "shape": [rows], "datatype": "BYTES",
                            "data": TEXTS[:rows]}]}
    spec = next(m for m in load_catalog(CATALOG).models if m.name == model)
    meta = {"name": model, "inputs": [t.to_dict() for t in manifest.inputs]}
    return v2_request(load_arrays(Path(spec.example_input)), meta, rows=slice(0, rows))


def _batch_object(model: str, stack: LocalStack) -> tuple[str, bytes]:
    """(file name, body) of a 3-row batch input in the model's own format."""
    if _takes_text(model, stack):
        return "rows.txt", "\n".join(TEXTS).encode()
    spec = next(m for m in load_catalog(CATALOG).models if m.name == model)
    buf = io.BytesIO()
    np.savez(buf, **{k: v[:3] for k, v in load_arrays(Path(spec.example_input)).items()})
    return "rows.npz", buf.getvalue()


@pytest.fixture(scope="module")
def containers_stack(runner: ContainerRunner, standin: str, sample_build: Path, images
                     ) -> Iterator[LocalStack]:
    """``modelfn up --containers`` on the sample catalog: every function from its image."""
    logs: list[str] = []
    stack = LocalStack(catalog_path=CATALOG, out_dir=sample_build, port=0, s3_port=0,
                       build=False, log_sink=logs.append,
                       containers=ImageSet(runner, python_base=standin))
    with lane_lock():  # it stages and builds images in the shared lane cache
        stack.start()
    try:
        record("lane", "containers_stack_ready_seconds", round(stack.timings["ready_s"], 1))
        yield stack
    finally:
        stack.stop()


def test_modelfn_image_builds_each_sample_model_as_a_single_platform_v2s2_image(
        images: dict, engine, sample_build: Path) -> None:
    assert set(images) == set(SAMPLE_MODELS)
    for model, entry in images.items():
        manifest = json.loads((sample_build / "models" / model / names.MANIFEST_FILE).read_text())
        assert entry["tag"] == f"modelfn-{model}:{manifest['version']}"
        assert entry["engine"] == engine.name
        # the model directory is the last layer, and small next to the image
        model_dir = sample_build / "models" / model
        model_bytes = sum((model_dir / f).stat().st_size for f in staging.model_files(model_dir))
        assert model_bytes <= entry["model_layer_bytes"] <= model_bytes + 64 * 1024
        assert entry["size_bytes"] > 20 * entry["model_layer_bytes"]
        fmt = subprocess.run([engine.executable, "image", "inspect", "--format",
                              "{{.ManifestType}} {{.Architecture}}", entry["tag"]],
                             capture_output=True, text=True, check=True).stdout.split()
        assert fmt == [V2_MANIFEST, "amd64"]


def test_image_carries_the_locked_closure_and_nothing_that_shadows_the_base(
        images: dict, engine) -> None:
    tag = images[SAMPLE_MODELS[0]]["tag"]
    listing = subprocess.run([engine.executable, "run", "--rm", "--network", "host",
                              "--entrypoint", "/bin/sh", tag, "-c", "ls /var/task"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert {"onnxruntime", "numpy", "aws_lambda_powertools", "layers", "functions", "model"} <= set(listing)
    assert not {"boto3", "botocore", "s3transfer", "urllib3", "huggingface_hub"} & set(listing)
    # and every runtime module imports from what the lock installed + what the base provides
    script = ("import importlib, pkgutil; import tokenizers, PIL.Image, boto3; "
              "[importlib.import_module(m.name) for m in pkgutil.walk_packages(['layers'], 'layers.')]; "
              "import functions.api.handler, functions.batch.handler; print('imported')")
    proc = subprocess.run([engine.executable, "run", "--rm", "--network", "host",
                           "-e", "PYTHONPATH=/var/task:/var/runtime", "-e", "POWERTOOLS_TRACE_DISABLED=true",
                           "--entrypoint", "python3", tag, "-c", script],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize("model", SAMPLE_MODELS)
def test_api_function_from_the_image_serves_v2(containers_stack: LocalStack, model: str) -> None:
    base = f"{containers_stack.url}/v2/models/{model}"
    # metadata
    status, meta = _http("GET", base)
    assert status == 200 and meta["name"] == model
    # inference on the catalog's example rows
    status, out = _http("POST", f"{base}/infer", _example_request(model, containers_stack))
    assert status == 200, out
    assert out["model_name"] == model and out["outputs"][0]["shape"][0] == 2
    # a client mistake: a clear 400, not a 500
    first = meta["inputs"][0]
    status, err = _http("POST", f"{base}/infer", {"inputs": [
        {"name": first["name"], "shape": [1, 999], "datatype": first["datatype"], "data": [0] * 999}]})
    assert status == 400 and "error" in err and "Traceback" not in err["error"]


@pytest.mark.parametrize("model", SAMPLE_MODELS)
def test_batch_function_from_the_image_runs_on_a_real_s3_event(containers_stack: LocalStack,
                                                               model: str) -> None:
    # given 3 rows in the model's format (.npz of the example rows, or .txt texts) under in/
    fname, body = _batch_object(model, containers_stack)
    s3 = boto3.client("s3", endpoint_url=containers_stack.s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="x")
    bucket = containers_stack.aws.bucket
    # when moto's S3 notification reaches the batch function (the image, CMD = batch handler)
    s3.put_object(Bucket=bucket, Key=f"{model}/in/{fname}", Body=body)
    # then exactly one jsonl lands in out/, a line per row
    deadline, out = time.monotonic() + 120, None
    while out is None and time.monotonic() < deadline:
        try:
            out = s3.get_object(Bucket=bucket, Key=f"{model}/out/{fname}.jsonl")["Body"].read()
        except s3.exceptions.NoSuchKey:
            time.sleep(0.5)
    assert out is not None, "no output within 120 s"
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["row"] for line in lines] == [0, 1, 2]


def _pool(runner: ContainerRunner, model: str, tag: str, volumes=()) -> FunctionPool:
    env = function_environment(model_name=model, kind="api")
    spec = FunctionSpec(name=f"modelfn-{model}-api", handler=names.API_HANDLER,
                        env={**env, "POWERTOOLS_TRACE_DISABLED": "true"}, cwd=str(REPO_ROOT))
    return FunctionPool(spec, instance_factory=instance_factory(runner=runner, image=tag,
                                                                volumes=volumes))


@pytest.mark.parametrize("model", SAMPLE_MODELS)
def test_container_cold_start_to_first_answer(runner: ContainerRunner, images: dict, model: str) -> None:
    # when one execution environment starts from the image and gets its first request
    pool = _pool(runner, model, images[model]["tag"])
    path = f"/v2/models/{model}"
    _, route_key, params = match_route("GET", path)
    t0 = time.perf_counter()
    try:
        pool.start()
        t_init = time.perf_counter() - t0
        resp = LambdaIntegration(pool)(HttpRequest("GET", path, "", [], b""), route_key, params, 60)
        elapsed = time.perf_counter() - t0
    finally:
        pool.stop()
    # then it answered (the figures go to the lane report)
    assert pool.failure is None and resp.status == 200
    record("cold_start_seconds", model, {"init": round(t_init, 2), "first_answer": round(elapsed, 2)})


def test_tampered_model_fails_the_init_naming_the_checksum(runner: ContainerRunner, images: dict,
                                                            tampered_model: Path) -> None:
    # given the image with a model directory whose artifact was changed after the build
    model = SAMPLE_MODELS[0]
    pool = _pool(runner, model, images[model]["tag"],
                 volumes=[(str(tampered_model), names.IMAGE_MODEL_DIR)])
    try:
        # when Lambda would init it
        pool.start()
    finally:
        pool.stop()
    # then the init fails and says why
    assert pool.failure is not None and "sha256" in pool.failure

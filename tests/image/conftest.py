"""The image lane: the sample catalog's images built with ``modelfn image`` on the offline
stand-in of the AWS base, then run under the local Runtime API, S3 and SageMaker contract.

Everything expensive is cached outside the repository (``~/.cache/modelfn/``): the stand-in
base (keyed by its inputs), the sample build (the pipeline's own cache) and the engine's
layer cache, so a second ``make test`` rebuilds only what changed. The figures of each run
(image and model-layer sizes, build seconds, cold starts) are written to
``~/.cache/modelfn/image-lane.json``. Every test here is in one xdist group: one worker
owns the containers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from infra.image.engine import Engine, EngineError, find_engine
from infra.image.standin import cache_dir, ensure_standin
from infra.local.containers import ContainerRunner

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOG = REPO_ROOT / "models.yaml"
LANE_REPORT = cache_dir() / "image-lane.json"
#: The models of the sample catalog (each gets its own image; all are Lambda targets), read
#: without validating paths: samples/generated/ may not exist yet at collection.
SAMPLE_MODELS = tuple(m["name"] for m in yaml.safe_load(CATALOG.read_text())["models"])


def record(section: str, key: str, value) -> None:
    """Add one figure to the lane report (read by the engineer, not asserted)."""
    doc = json.loads(LANE_REPORT.read_text()) if LANE_REPORT.is_file() else {}
    doc.setdefault(section, {})[key] = value
    LANE_REPORT.parent.mkdir(parents=True, exist_ok=True)
    LANE_REPORT.write_text(json.dumps(doc, indent=2, sort_keys=True))


def run_cli(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def engine() -> Engine:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: `make test` installs it (scripts/container_tools.sh, "
                    "needs root and apt); or `apt-get install podman runc debootstrap`")
    try:
        return find_engine("podman")
    except EngineError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def runner(engine: Engine) -> ContainerRunner:
    return ContainerRunner(engine)


@pytest.fixture(scope="session")
def standin(engine: Engine) -> str:
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (scripts/container_tools.sh installs it)")
    t0 = time.perf_counter()
    tag = ensure_standin(engine, log=lambda m: None)
    record("lane", "standin_seconds", round(time.perf_counter() - t0, 1))
    record("sizes_bytes", "standin_base", engine.size_bytes(tag))
    return tag


@contextlib.contextmanager
def lane_lock() -> Iterator[None]:
    """One writer of the shared lane cache at a time: xdist's ``loadgroup`` does not always
    keep the lane's modules on one worker, and two workers building and staging into
    ``lane-build`` at once removed each other's files."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "lane.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def sample_build() -> Path:
    """The sample catalog built into the cache (``modelfn build`` reuses what is current)."""
    out = cache_dir() / "lane-build"
    t0 = time.perf_counter()
    with lane_lock():
        # make's own staleness check: cheap when samples/generated/ is current
        subprocess.run(["make", "samples"], cwd=REPO_ROOT, check=True, capture_output=True)
        proc = run_cli("build", "--catalog", str(CATALOG), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record("lane", "sample_build_seconds", round(time.perf_counter() - t0, 1))
    return out


@pytest.fixture(scope="session")
def images(engine: Engine, standin: str, sample_build: Path) -> dict[str, dict]:
    """``modelfn image --json`` over the sample catalog: model → its image entry."""
    t0 = time.perf_counter()
    with lane_lock():
        proc = run_cli("image", "--catalog", str(CATALOG), "--out", str(sample_build),
                       "--engine", engine.name, "--base", standin, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    record("lane", "modelfn_image_seconds", round(time.perf_counter() - t0, 1))
    for entry in doc["images"]:
        record("sizes_bytes", entry["tag"], {"image": entry["size_bytes"],
                                              "model_layer": entry["model_layer_bytes"]})
    return {entry["model"]: entry for entry in doc["images"]}


@pytest.fixture
def tampered_model(sample_build: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of a built model whose artifact no longer matches its manifest's sha256."""
    src = sample_build / "models" / SAMPLE_MODELS[0]
    dest = tmp_path / "tampered"
    shutil.copytree(src, dest)
    data = bytearray((dest / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (dest / "model.onnx").write_bytes(bytes(data))
    dest.chmod(0o755)
    yield dest

"""A build killed at any point leaves the previous artifact or none, never a half-written one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from infra.build import BuildSettings, build_catalog
from infra.build.artifact import STAGING_PREFIX
from infra.catalog import load_catalog
from layers.manifest import read_manifest
from tests.build.helpers import mlp_entry, write_catalog

REPO = Path(__file__).resolve().parents[2]

# Runs a build in a child process whose `hook` (patched in) announces itself and then hangs,
# so the test can SIGKILL it exactly there.
CHILD = textwrap.dedent("""
    import sys, time, pathlib
    from infra.catalog import load_catalog
    from infra.build import BuildSettings, build_catalog, artifact, quantize
    catalog, out, marker, where = sys.argv[1:5]

    def hang(*args, **kwargs):
        pathlib.Path(marker).write_text(where)
        time.sleep(120)

    if where == "quantize":
        quantize.quantize_dynamic = hang
    else:
        artifact._exchange = hang
        artifact.os.rename = hang
    build_catalog(load_catalog(catalog), out, force=True, settings=BuildSettings(require_speedup=False))
""")


def _kill_build_at(where: str, catalog: Path, out: Path, tmp_path: Path) -> None:
    marker = tmp_path / f"marker-{where}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(catalog), str(out), str(marker), where],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the build exited before reaching {where}: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the build never reached {where}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()


def test_killed_during_quantization_leaves_no_artifact(tmp_path):
    catalog = write_catalog(tmp_path, [mlp_entry(tmp_path)])
    out = tmp_path / "build"
    _kill_build_at("quantize", catalog, out, tmp_path)
    models = out / "models"
    assert not (models / "mlp").exists()
    assert not models.exists() or list(models.iterdir()) == []


@pytest.mark.slow
def test_killed_while_publishing_keeps_the_previous_artifact_and_the_next_build_cleans_up(tmp_path):
    # given a built model
    catalog_path = write_catalog(tmp_path, [mlp_entry(tmp_path)])
    out = tmp_path / "build"
    (first,) = build_catalog(load_catalog(catalog_path), out, settings=BuildSettings(require_speedup=False))
    assert first.ok
    # when a forced rebuild is killed during quantization, and another between staging and rename
    _kill_build_at("quantize", catalog_path, out, tmp_path)
    _kill_build_at("publish", catalog_path, out, tmp_path)
    # then the previous artifact is intact and verifies
    assert read_manifest(out / "models" / "mlp").sha256 == first.manifest["sha256"]
    assert any(p.name.startswith(STAGING_PREFIX) for p in (out / "models").iterdir())
    # and the next build sweeps the dead build's staging directory
    (again,) = build_catalog(load_catalog(catalog_path), out, settings=BuildSettings(require_speedup=False))
    assert again.ok and again.reused
    assert [p.name for p in (out / "models").iterdir()] == ["mlp"]

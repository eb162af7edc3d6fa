"""``modelfn image`` without an engine or a build: exit 1 and a message naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.cli import main
from infra.image import engine as engine_mod
from infra.image.engine import Engine, find_engine
from tests.infra.conftest import write_built_model, write_catalog

pytestmark = pytest.mark.image


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    catalog = write_catalog(tmp_path, [{"name": "m", "source": "src/m.onnx", "quantize": "none"}])
    build = tmp_path / "build"
    write_built_model(build, "m")
    return catalog, build


def test_no_engine_is_exit_1_naming_the_install(built, monkeypatch, capsys) -> None:
    catalog, build = built
    monkeypatch.setattr(engine_mod.shutil, "which", lambda name: None)
    code = main(["image", "--catalog", str(catalog), "--out", str(build)])
    err = capsys.readouterr().err
    assert code == 1
    assert "no usable container engine" in err and "apt-get install podman" in err


def test_unbuilt_model_is_exit_1_naming_modelfn_build(tmp_path: Path, capsys) -> None:
    catalog = write_catalog(tmp_path, [{"name": "m", "source": "src/m.onnx", "quantize": "none"}])
    assert main(["image", "--catalog", str(catalog), "--out", str(tmp_path / "none")]) == 1
    assert "modelfn build" in capsys.readouterr().err


def test_unknown_model_is_exit_1_listing_the_catalog(built, capsys) -> None:
    catalog, build = built
    assert main(["image", "--catalog", str(catalog), "--out", str(build), "--model", "x"]) == 1
    assert "no model named 'x'" in capsys.readouterr().err


def test_docker_without_a_daemon_is_skipped_for_the_next_engine(monkeypatch) -> None:
    # given docker installed with no daemon, and podman installed
    monkeypatch.setattr(engine_mod.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(Engine, "unusable_reason", lambda self: "daemon down" if self.name == "docker" else None)
    # then the first usable engine is podman
    assert find_engine().name == "podman"


@pytest.mark.parametrize("name, flags", [
    ("docker", ["--provenance=false", "--sbom=false"]),
    ("podman", ["--format", "docker"]),
    ("buildah", ["--format", "docker"]),
])
def test_every_engine_builds_one_platform_without_an_attestation_index(name, flags, tmp_path) -> None:
    argv = Engine(name, name).build_args(context=tmp_path, tag="t:1", platform="linux/arm64",
                                         build_args={"PYTHON_BASE": "b"})
    assert argv[:3] == ["build", "--platform", "linux/arm64"]
    assert all(f in argv for f in flags) and "--build-arg" in argv and "PYTHON_BASE=b" in argv

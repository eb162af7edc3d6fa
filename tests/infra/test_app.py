"""The app entry point: context → settings, clear failures before any resource is made."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from infra.cdk import command
from infra.cdk.app import build_app, main
from infra.cdk.constructs.http_api import ConfigurationError
from infra.cdk.deploy_spec import NotBuiltError
from tests.infra.conftest import app_context, write_built_model, write_catalog


def test_synth_of_an_unbuilt_catalog_says_to_run_modelfn_build(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path, [{"name": "m", "source": "m.onnx"}])
    with pytest.raises(NotBuiltError, match="modelfn build --model m"):
        build_app(context=app_context(catalog, tmp_path / "build"), outdir=str(tmp_path / "out"))


@pytest.mark.slow
def test_jwt_model_without_issuer_context_fails_naming_the_keys(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path, [{"name": "m", "source": "m.onnx", "auth": "jwt"}])
    write_built_model(tmp_path / "build", "m")
    with pytest.raises(ConfigurationError, match="modelfn:jwt_issuer.*modelfn:jwt_audience"):
        build_app(context=app_context(catalog, tmp_path / "build"), outdir=str(tmp_path / "out"))


def test_bad_log_retention_context_lists_the_allowed_values(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path, [{"name": "m", "source": "m.onnx"}])
    write_built_model(tmp_path / "build", "m")
    ctx = app_context(catalog, tmp_path / "build", **{"modelfn:log_retention_days": 31})
    with pytest.raises(ConfigurationError, match=r"log_retention_days=31.*\[1, 3, 5"):
        build_app(context=ctx, outdir=str(tmp_path / "out"))


def test_main_prints_the_problem_and_exits_1(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no models.yaml here
    assert main() == 1
    assert "catalog models.yaml not found" in capsys.readouterr().err


def test_modelfn_synth_runs_the_pinned_cli_with_the_venv_first(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(command.subprocess, "call", lambda cmd, cwd, env: calls.append((cmd, cwd, env)) or 0)
    monkeypatch.setattr(command.shutil, "which", lambda _: "/usr/bin/npx")
    args = argparse.Namespace(catalog="models.yaml", out="build")
    assert command.synth(args) == 0
    cmd, cwd, env = calls[0]
    assert cmd[:5] == ["npx", "--no-install", "cdk", "synth", "--quiet"]
    assert any(c.startswith("modelfn:catalog=") and c.endswith("models.yaml") for c in cmd)
    assert cwd == command.REPO_ROOT
    assert env["PATH"].split(":")[0] == str(Path(command.sys.executable).parent)
    assert env["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"] == "20"

"""The app entry point: context → settings, clear failures before any resource is made."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from infra.cdk import command
from infra.cdk.app import build_app, main
from infra.cdk.constructs.http_api import ConfigurationError
from infra.targets.deploy_spec import NotBuiltError
from tests.infra.conftest import app_context, write_built_model, write_catalog


def test_synth_of_an_unbuilt_catalog_says_to_run_modelfn_build(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path, [{"name": "m", "source": "m.onnx"}])
    with pytest.raises(NotBuiltError, match="modelfn build --model m"):
        build_app(context=app_context(catalog, tmp_path / "build"), outdir=str(tmp_path / "out"))


@pytest.mark.slow
@pytest.mark.parametrize("generative", [False, True], ids=["api", "generative"])
def test_jwt_model_without_issuer_context_fails_naming_the_keys(tmp_path: Path, generative: bool) -> None:
    """A generative model's streaming function verifies tokens itself against the same keys,
    so it fails just as clearly (never a public URL left unchecked)."""
    catalog = write_catalog(tmp_path, [{"name": "m", "source": "m.onnx", "auth": "jwt"}])
    if generative:
        from tests.conftest import TINY_INPUTS, TINY_OUTPUTS, make_tiny_onnx, write_manifest
        from tests.infra.test_streaming_stack import GENERATION

        make_tiny_onnx(tmp_path / "build" / "models" / "m" / "model.onnx")
        write_manifest(tmp_path / "build" / "models" / "m", "m", TINY_INPUTS, TINY_OUTPUTS, task="generation",
                       generation=GENERATION, fit={"memory_mb": 3008, "timeout_s": 20, "image_bytes": 10_000_000})
    else:
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


def _deploy_args(catalog: Path, *names: str, **kw) -> argparse.Namespace:
    return argparse.Namespace(name=list(names), catalog=str(catalog), out="build", stack="ModelfnStack",
                              all=kw.get("all", False), shared=kw.get("shared", False),
                              require_approval="broadening", dry_run=False,
                              skip_doctor=kw.get("skip_doctor", True))


def test_modelfn_deploy_deploys_exactly_the_named_models_stacks(tmp_path: Path, monkeypatch) -> None:
    # given a catalog of two models
    catalog = write_catalog(tmp_path, [{"name": "digits-mlp", "source": "a.onnx"},
                                       {"name": "other", "source": "b.onnx"}])
    calls, pruned = [], []
    monkeypatch.setattr(command.subprocess, "call", lambda cmd, cwd, env: calls.append(cmd) or 0)
    monkeypatch.setattr(command.shutil, "which", lambda _: "/usr/bin/npx")
    monkeypatch.setattr(command, "_prune_versions", lambda args, models: pruned.append(models))
    # when one model is deployed
    assert command.deploy(_deploy_args(catalog, "digits-mlp")) == 0
    # (and then its retained Lambda versions are pruned by the tool, infra.versions.deployed)
    assert pruned == [["digits-mlp"]]
    # then only its stack, not the shared stack it depends on, nor the other model's
    cmd = calls[-1]
    assert cmd[:4] == ["npx", "--no-install", "cdk", "deploy"]
    stacks = cmd[cmd.index("--exclusively") + 1:cmd.index("--require-approval")]
    assert stacks == ["ModelfnStack-DigitsMlp"]
    # --shared adds the shared stack (first deploy), --all deploys everything
    assert command.deploy(_deploy_args(catalog, "other", shared=True)) == 0
    assert calls[-1][calls[-1].index("--exclusively") + 1:][:2] == ["ModelfnStack", "ModelfnStack-Other"]
    assert command.deploy(_deploy_args(catalog, all=True)) == 0
    assert "--all" in calls[-1] and "--exclusively" not in calls[-1]


def test_modelfn_deploy_of_an_unknown_model_names_the_catalog_models(tmp_path: Path, capsys) -> None:
    catalog = write_catalog(tmp_path, [{"name": "digits-mlp", "source": "a.onnx"}])
    assert command.deploy(_deploy_args(catalog, "digits-mpl")) == 2
    err = capsys.readouterr().err
    assert "'digits-mpl' (did you mean 'digits-mlp'?)" in err and "digits-mlp" in err


def test_modelfn_deploy_checks_the_account_first_and_skips_reservations_it_cannot_afford(
        tmp_path: Path, monkeypatch, capsys) -> None:
    """A new account (concurrency quota 10) would roll the first deploy back on the batch
    functions' reservations: deploy runs the doctor's check and passes the context that skips
    them, with the warning; a check that fails stops the deploy before cdk runs."""
    from infra.doctor import command as doctor_command
    from tests.infra.test_doctor import clients

    catalog = write_catalog(tmp_path, [{"name": "digits-mlp", "source": "a.onnx", "target": "lambda"}])
    calls = []
    monkeypatch.setattr(command.subprocess, "call", lambda cmd, cwd, env: calls.append(cmd) or 0)
    monkeypatch.setattr(command.shutil, "which", lambda _: "/usr/bin/npx")
    monkeypatch.setattr(command, "_prune_versions", lambda args, models: None)
    real = doctor_command.preflight
    account = {"limit": 10, "unreserved": 10}
    monkeypatch.setattr(doctor_command, "preflight",
                        lambda cat, out: real(cat, out, clients=clients(**account)))
    assert command.deploy(_deploy_args(catalog, "digits-mlp", skip_doctor=False)) == 0
    cmd = calls[-1]
    assert cmd[cmd.index("-c", cmd.index("--exclusively")) + 1] == "modelfn:reserve_concurrency=false"
    assert "! lambda concurrency" in capsys.readouterr().err
    # an account whose SnapStart Region check fails: nothing is deployed
    monkeypatch.setattr(doctor_command, "preflight",
                        lambda cat, out: real(cat, out, clients=clients(limit=1000, unreserved=1000,
                                                                        region="ap-east-2")))
    assert command.deploy(_deploy_args(catalog, "digits-mlp", skip_doctor=False)) == 1
    assert len(calls) == 1 and "not deploying" in capsys.readouterr().err

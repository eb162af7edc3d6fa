"""Catalog + built manifest → DeploySpec: every sizing decision and the not-built error."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.catalog import parse_catalog
from infra.targets.deploy_spec import (
    BATCH_TIMEOUT_S,
    DEFAULT_MEMORY_MB,
    NotBuiltError,
    load_deploy_spec,
    load_deploy_specs,
)
from layers import names
from tests.conftest import make_tiny_onnx
from tests.infra.conftest import write_built_model


def catalog_of(tmp_path: Path, *entries: dict):
    for e in entries:
        make_tiny_onnx(tmp_path / e["source"])
    return parse_catalog({"models": list(entries)}, tmp_path / "models.yaml")


def test_memory_comes_from_the_catalog_first(tmp_path: Path) -> None:
    cat = catalog_of(tmp_path, {"name": "m", "source": "m.onnx", "memory_mb": 3008})
    write_built_model(tmp_path / "build", "m")
    spec = load_deploy_spec(cat.models[0], tmp_path / "build")
    assert (spec.memory_mb, spec.memory_source) == (3008, "catalog")


def test_memory_and_timeout_come_from_the_fit_report_otherwise(tmp_path: Path) -> None:
    cat = catalog_of(tmp_path, {"name": "m", "source": "m.onnx"})
    write_built_model(tmp_path / "build", "m", fit={"memory_mb": 1769, "timeout_s": 12})
    spec = load_deploy_spec(cat.models[0], tmp_path / "build")
    assert (spec.memory_mb, spec.memory_source, spec.api_timeout_s) == (1769, "fit", 12)
    assert spec.batch_timeout_s == BATCH_TIMEOUT_S


def test_defaults_apply_without_a_fit_report(tmp_path: Path) -> None:
    cat = catalog_of(tmp_path, {"name": "m", "source": "m.onnx"})
    write_built_model(tmp_path / "build", "m", fit={"gpu_required": False})
    spec = load_deploy_spec(cat.models[0], tmp_path / "build")
    assert (spec.memory_mb, spec.memory_source) == (DEFAULT_MEMORY_MB, "default")
    assert spec.api_timeout_s == 30


def test_api_timeout_is_capped_at_the_http_api_limit(tmp_path: Path) -> None:
    cat = catalog_of(tmp_path, {"name": "m", "source": "m.onnx", "timeout_s": 120})
    write_built_model(tmp_path / "build", "m")
    assert load_deploy_spec(cat.models[0], tmp_path / "build").api_timeout_s == names.HTTP_API_TIMEOUT_S


@pytest.mark.parametrize(("catalog_target", "built_target", "expected"), [
    ("auto", "sagemaker", "sagemaker"), ("auto", "lambda", "lambda"),
    ("lambda", "sagemaker", "lambda"), ("sagemaker", "lambda", "sagemaker"),
])
def test_target_auto_follows_the_build(tmp_path: Path, catalog_target, built_target, expected) -> None:
    cat = catalog_of(tmp_path, {"name": "m", "source": "m.onnx", "target": catalog_target})
    write_built_model(tmp_path / "build", "m", target=built_target)
    assert load_deploy_spec(cat.models[0], tmp_path / "build").target == expected


def test_unbuilt_models_fail_with_the_command_to_run(tmp_path: Path) -> None:
    cat = catalog_of(tmp_path, {"name": "a", "source": "a.onnx"}, {"name": "b", "source": "b.onnx"})
    write_built_model(tmp_path / "build", "a")
    with pytest.raises(NotBuiltError, match=r"model 'b' is not built.*modelfn build --model b"):
        load_deploy_specs(cat, tmp_path / "build")


def test_a_manifest_for_another_model_is_rejected(tmp_path: Path) -> None:
    cat = catalog_of(tmp_path, {"name": "a", "source": "a.onnx"})
    built = write_built_model(tmp_path / "build", "other")
    built.rename(tmp_path / "build" / "models" / "a")
    with pytest.raises(NotBuiltError, match="names model 'other'"):
        load_deploy_spec(cat.models[0], tmp_path / "build")


def test_a_changed_artifact_is_not_deployed(tmp_path: Path) -> None:
    cat = catalog_of(tmp_path, {"name": "a", "source": "a.onnx"})
    built = write_built_model(tmp_path / "build", "a")
    make_tiny_onnx(built / "model.onnx", seed=42)  # edited after the build
    with pytest.raises(NotBuiltError, match="sha256"):
        load_deploy_spec(cat.models[0], tmp_path / "build")

"""The SAM CLI on the synthesized app: ``sam build`` + ``sam local invoke`` of each sample
model's API function from the CDK template, through podman's Docker API, under the Runtime
Interface Emulator that aws-sam-cli bundles (what ``make sam-invoke`` runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.image import sam
from tests.conftest import load_event
from tests.image.conftest import CATALOG, SAMPLE_MODELS, record

pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.xdist_group("image-lane")]


@pytest.fixture(scope="module")
def template(tmp_path_factory, sample_build: Path, standin: str, images) -> Path:
    """The sample catalog synthesized with the stand-in as the images' Python base."""
    from infra.cdk.app import build_app

    root = tmp_path_factory.mktemp("sam")
    app, _ = build_app(context={
        "modelfn:catalog": str(CATALOG), "modelfn:build_dir": str(sample_build),
        "modelfn:stage_dir": str(root / "stage"), "modelfn:python_base": standin,
        "aws:cdk:enable-asset-metadata": True,  # what the CDK CLI sets, and SAM reads
    }, outdir=str(root / "cdk.out"), checks=False)
    app.synth()
    return root / "cdk.out"  # one template per model stack (sam.model_template picks it)


@pytest.fixture(scope="module")
def sam_cli() -> Path:
    try:
        return sam.sam_executable()
    except sam.EngineError as exc:
        pytest.skip(str(exc))


def test_template_names_each_model_function_for_sam(template: Path) -> None:
    ids = {sam.function_id(template, m, kind) for m in SAMPLE_MODELS for kind in ("api", "batch")}
    assert len(ids) == 2 * len(SAMPLE_MODELS)
    with pytest.raises(ValueError, match="no api function for model 'nope'"):
        sam.function_id(template, "nope")


@pytest.mark.parametrize("model", SAMPLE_MODELS)
def test_sam_local_invoke_answers_v2_metadata_from_the_cdk_image(
        sam_cli: Path, template: Path, model: str, tmp_path: Path) -> None:
    # given a recorded HTTP API metadata event for this model
    event = tmp_path / "event.json"
    event.write_text(json.dumps(load_event("http_metadata", rawPath=f"/v2/models/{model}")))
    # when SAM builds the function's image from the template and invokes it
    proc = sam.build_and_invoke(template=template, model=model, event=event)
    # then the function answered 200 with the model's metadata
    assert proc.returncode == 0, proc.stderr[-3000:]
    response = json.loads(proc.stdout.strip().splitlines()[-1])
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"])["name"] == model
    record("sam", model, "200")

"""A generative Lambda model with ``training:``: the retraining build step may deploy a winner to
its stream function too (not only api and batch), and the control function (promote/rollback
over HTTPS) and the ``Deployment<Model>`` output name all three functions, so every path that
moves ``live`` moves the streaming function with the others. One synth, without the checks
the streaming stack's synth already runs on these constructs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cdk.app import build_app
from layers import names
from tests.conftest import TINY_INPUTS, TINY_OUTPUTS, make_tiny_onnx, write_manifest
from tests.infra.cfn import resources_of_type, role_policy
from tests.infra.conftest import app_context, app_template, write_catalog

pytestmark = pytest.mark.slow

MODEL = {"name": "gen-train", "source": "src/a.onnx", "validation": "val.npz",
         "training": {"entry_point": "trainer:train", "instance_type": "ml.m5.large"}}
GENERATION = {"max_context": 256, "eos_token_ids": [0], "has_chat_template": True, "family": "llama",
              "precision": "fp32"}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("gentrainstack")
    catalog = write_catalog(work / "catalog", [MODEL])
    model_dir = work / "build" / "models" / MODEL["name"]
    make_tiny_onnx(model_dir / "model.onnx")
    write_manifest(model_dir, MODEL["name"], TINY_INPUTS, TINY_OUTPUTS, task="generation", generation=GENERATION,
                   fit={"memory_mb": 3008, "timeout_s": 20, "image_bytes": 10_000_000})
    app, _ = build_app(context=app_context(catalog, work / "build"), outdir=str(work / "cdk.out"))
    app.synth()
    return app_template(Path(work / "cdk.out"))


def _functions(template: dict) -> dict[str, str]:
    """{kind: logical id} of the model's three image functions, by their description."""
    out = {}
    for key, res in resources_of_type(template, "AWS::Lambda::Function").items():
        desc = res["Properties"].get("Description", "")
        for kind, needle in (("api", "V2 HTTP API"), ("batch", "S3 batch"), ("stream", "streaming function URL")):
            if MODEL["name"] in desc and needle in desc:
                out[kind] = key
    return out


def test_the_retraining_build_may_deploy_to_the_stream_function_with_api_and_batch(template) -> None:
    fns = _functions(template)
    assert set(fns) == {"api", "batch", "stream"}
    [project] = resources_of_type(template, "AWS::CodeBuild::Project").values()
    policy = role_policy(template, project["Properties"]["ServiceRole"]["Fn::GetAtt"][0])
    [deploy] = [s for s in policy["Statement"] if s.get("Sid") == "DeployFunctions"]
    targets = json.dumps(deploy["Resource"])
    for kind, key in fns.items():
        assert key in targets, f"the build role cannot update the {kind} function"
    groups = set(resources_of_type(template, "AWS::CodeDeploy::DeploymentGroup"))
    granted = json.dumps(policy)
    assert len(groups) == 3 and all(g in granted for g in groups)  # CreateDeployment on each group


def test_control_function_and_deployment_output_name_every_function(template) -> None:
    output = next(o for k, o in template.get("Outputs", {}).items() if k.startswith(names.output_deployment(MODEL["name"])))
    assert "stream" in json.dumps(output["Value"])
    control = next(r for r in resources_of_type(template, "AWS::Lambda::Function").values()
                   if names.ENV_CONTROL in (r["Properties"].get("Environment") or {}).get("Variables", {}))
    assert "stream" in json.dumps(control["Properties"]["Environment"]["Variables"][names.ENV_CONTROL])

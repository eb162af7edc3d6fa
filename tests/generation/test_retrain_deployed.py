"""The deployed retraining step for a generative model (``modelfn train NAME --trained DIR
--deployed``) against a stack in moto: the candidate (a fine-tuned Hugging Face directory) is
gated against the live ``generation/`` folder, and a winner is published with its file list and
deployed to the api, batch AND stream functions through CodeDeploy, as ``promote --deployed``
moves them; the next run reads that published version back as live."""

from __future__ import annotations

import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from infra.train.command import train_deployed
from layers import names
from tests.generation.lifecycle import NAME, write_catalog

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # three genai exports, two gates
REGION = "us-east-1"
BUCKET = "artifacts"
REPO = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/cdk-hnb659fds-container-assets-123456789012-{REGION}"
KINDS = {"api": "V2 HTTP API", "batch": "S3 batch inference", "stream": "response streaming"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The catalog, its built v1 (what `cdk deploy` shipped) and a finished job's model directory."""
    from functions.training.train import save_result
    from infra.cli import main

    root = tmp_path_factory.mktemp("genretrain")
    catalog = write_catalog(root)
    shipped = root / "shipped"
    assert main(["build", "--catalog", str(catalog), "--out", str(shipped)]) == 0
    spec = importlib.util.spec_from_file_location("genlife_trainer", root / "trainer.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    job = root / "job"
    job.mkdir()
    artifact = save_result(trainer.train(root / "data", {}, job), job, "trainer:train")
    (job / names.TRAINING_REPORT_FILE).write_text(json.dumps({"artifact": artifact, "job": "job-1"}))
    return {"catalog": catalog, "shipped": shipped / "models" / NAME, "job": job, "root": root}


@pytest.fixture
def deployed(built, tmp_path, monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    live = json.loads((built["shipped"] / "manifest.json").read_text())["version"]
    with mock_aws():
        c = {s: boto3.client(s, region_name=REGION) for s in ("cloudformation", "lambda", "codedeploy", "s3", "iam")}
        role = c["iam"].create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        c["s3"].create_bucket(Bucket=BUCKET)
        targets = {}
        for kind, what in KINDS.items():
            fn = f"modelfn-{NAME}-{kind}"
            c["lambda"].create_function(FunctionName=fn, Role=role, PackageType="Image",
                                        Code={"ImageUri": f"{REPO}:shipped"}, Description=f"modelfn {NAME} {live}: {what}")
            c["lambda"].publish_version(FunctionName=fn)
            c["lambda"].create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
            c["codedeploy"].create_application(applicationName=f"app-{kind}", computePlatform="Lambda")
            c["codedeploy"].create_deployment_group(
                applicationName=f"app-{kind}", deploymentGroupName=f"dg-{kind}", serviceRoleArn=role,
                deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes")
            targets[kind] = {"function": fn, "application": f"app-{kind}", "group": f"dg-{kind}"}
        c["cloudformation"].create_stack(StackName="ModelfnStack", TemplateBody=json.dumps({
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {names.output_deployment(NAME): {"Value": json.dumps(targets)}}}))
        yield {"clients": c, "live": live, "tmp": tmp_path, **built}


def _args(env, out: str) -> Namespace:
    return Namespace(name=NAME, catalog=str(env["catalog"]), out=str(env["tmp"] / out), trained=str(env["job"]),
                     deployed=True, stack="ModelfnStack", artifacts_bucket=BUCKET,
                     deployed_build=str(env["shipped"]), outcome=str(env["tmp"] / "outcome.json"), json=True)


def test_a_winning_generative_candidate_goes_live_on_every_function_and_is_read_back_as_live(deployed):
    c, pushed = deployed["clients"], []

    def push(model_dir: Path, repository: str) -> str:
        version = json.loads((model_dir / "manifest.json").read_text())["version"]
        assert (model_dir / "generation" / "genai_config.json").is_file()  # the image gets the folder
        pushed.append(version)
        return f"{repository}:modelfn-{NAME}-{version}"

    # when the build step runs on the fine-tuning job's output
    assert train_deployed(_args(deployed, "codebuild"), c, push) == 0
    outcome = json.loads((deployed["tmp"] / "outcome.json").read_text())
    # then it was gated against the live generation/ folder on perplexity, and won
    assert outcome["live_version"] == deployed["live"] and outcome["promoted"], outcome["reason"]
    assert "perplexity" in outcome["reason"]
    new = outcome["version"]
    # and every function, the streaming one included, runs it as version 2 behind a canary
    assert pushed == [new] and set(outcome["deployments"]) == set(KINDS)
    for kind, what in KINDS.items():
        fn = f"modelfn-{NAME}-{kind}"
        assert c["lambda"].get_function(FunctionName=fn)["Code"]["ImageUri"] == f"{REPO}:modelfn-{NAME}-{new}"
        described = [v["Description"] for v in c["lambda"].list_versions_by_function(FunctionName=fn)["Versions"]
                     if v["Version"] == "2"]
        assert described == [f"modelfn {NAME} {new}: {what}"]
        info = c["codedeploy"].get_deployment(deploymentId=outcome["deployments"][kind])["deploymentInfo"]
        props = json.loads(info["revision"]["appSpecContent"]["content"])["Resources"][0][fn]["Properties"]
        assert (props["CurrentVersion"], props["TargetVersion"]) == ("1", "2")
    # and the folder is published with its file list
    prefix = f"{NAME}/versions/{new}/"
    files = json.loads(c["s3"].get_object(Bucket=BUCKET, Key=prefix + "files.json")["Body"].read())
    assert "generation/genai_config.json" in files and files[-1] == "manifest.json" and "model.onnx" not in files
    keys = {o["Key"] for o in c["s3"].list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
    assert keys == {prefix + f for f in [*files, "files.json"]}
    # when CodeDeploy has moved live and the same job is built again
    for kind in KINDS:
        c["lambda"].update_alias(FunctionName=f"modelfn-{NAME}-{kind}", Name="live", FunctionVersion="2")
    assert train_deployed(_args(deployed, "codebuild-2"), c, push) == 0
    again = json.loads((deployed["tmp"] / "outcome.json").read_text())
    # then the live version came from the published folder (not the shipped build) and the candidate
    # was gated against it (the genai export is not byte-reproducible: an identical one, or a rebuild)
    assert again["live_version"] == new
    assert "identical to the live version" in again["reason"] or f"over {new}" in again["reason"], again

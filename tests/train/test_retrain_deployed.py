"""The deployed retraining step (``modelfn train NAME --trained DIR --deployed``) against a
stack in moto: it gates the candidate against the LIVE version and deploys a winner exactly
as ``modelfn promote --deployed`` does.

moto runs Lambda (container-image functions, versions, aliases), CloudFormation outputs,
CodeDeploy (it records deployments without running them) and S3. The one part that needs a
container engine and ECR, building and pushing the image, is the pusher the command takes:
here it records what it was asked to push; the real one (``engine_pusher``) is the same
engine code ``modelfn image`` uses.
"""

from __future__ import annotations

import json
import shutil
from argparse import Namespace
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from infra.train.command import train_deployed
from layers import names
from tests.train.helpers import write_data, write_training_catalog

pytestmark = pytest.mark.slow
REGION = "us-east-1"
BUCKET = "artifacts"
REPO = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/cdk-hnb659fds-container-assets-123456789012-{REGION}"


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> dict[str, Path]:
    """A good finished job's model directory and a worse one (classes permuted)."""
    import onnx
    from onnx import numpy_helper

    from tests.train.test_runner import run_job

    tmp = tmp_path_factory.mktemp("jobs")
    (tmp / "good").mkdir()
    code, good, _ = run_job(tmp / "good", "trainer:train_onnx", {})
    assert code == 0
    bad = tmp / "bad-model"
    shutil.copytree(good, bad)
    model = onnx.load(str(bad / "model.onnx"))
    for init in model.graph.initializer:  # swap class columns: the model predicts the wrong class
        arr = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(arr[..., [1, 2, 0]].copy(), init.name))
    onnx.save(model, str(bad / "model.onnx"))
    return {"good": good, "bad": bad}


@pytest.fixture
def deployed(tmp_path, monkeypatch):
    """A stack serving the catalog's first trained version (v1, built locally, `cdk deploy`ed)."""
    from infra.cli import main

    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    catalog = write_training_catalog(tmp_path / "cat", entry="trainer:train_onnx")
    shipped = tmp_path / "shipped"
    assert main(["train", "blobs", "--catalog", str(catalog), "--out", str(shipped), "--data",
                 str(write_data(tmp_path / "d1", 120, seed=1)), "--json"]) == 0
    live_dir = shipped / "models" / "blobs"
    live = json.loads((live_dir / "manifest.json").read_text())["version"]
    with mock_aws():
        c = {s: boto3.client(s, region_name=REGION) for s in ("cloudformation", "lambda", "codedeploy", "s3", "iam")}
        role = c["iam"].create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        c["s3"].create_bucket(Bucket=BUCKET)
        targets = {}
        for kind, what in (("api", "V2 HTTP API"), ("batch", "S3 batch inference")):
            fn = f"modelfn-blobs-{kind}"
            c["lambda"].create_function(FunctionName=fn, Role=role, PackageType="Image",
                                        Code={"ImageUri": f"{REPO}:shipped"}, Description=f"modelfn blobs {live}: {what}")
            c["lambda"].publish_version(FunctionName=fn)
            c["lambda"].create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
            c["codedeploy"].create_application(applicationName=f"app-{kind}", computePlatform="Lambda")
            c["codedeploy"].create_deployment_group(
                applicationName=f"app-{kind}", deploymentGroupName=f"dg-{kind}", serviceRoleArn=role,
                deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes")
            targets[kind] = {"function": fn, "application": f"app-{kind}", "group": f"dg-{kind}"}
        c["cloudformation"].create_stack(StackName="ModelfnStack", TemplateBody=json.dumps({
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {names.output_deployment("blobs"): {"Value": json.dumps(targets)}}}))
        yield {"clients": c, "catalog": catalog, "live": live, "shipped": live_dir, "tmp": tmp_path}


def _args(env, trained: Path, **kw) -> Namespace:
    return Namespace(name="blobs", catalog=str(env["catalog"]), out=str(env["tmp"] / "codebuild"),
                     trained=str(trained), deployed=True, stack="ModelfnStack", artifacts_bucket=BUCKET,
                     deployed_build=kw.get("deployed_build", str(env["shipped"])),
                     outcome=str(env["tmp"] / "outcome.json"), json=True)


def _pusher(pushed: list):
    def push(model_dir: Path, repository: str) -> str:
        manifest = json.loads((model_dir / "manifest.json").read_text())
        pushed.append((repository, manifest["version"]))
        return f"{repository}:modelfn-blobs-{manifest['version']}"
    return push


def test_a_winning_candidate_goes_live_through_the_same_canary_as_promote(deployed, jobs, capsys):
    c, pushed = deployed["clients"], []
    # when the build step runs on a good job's output (the shipped build is the live artifact)
    assert train_deployed(_args(deployed, jobs["good"]), c, _pusher(pushed)) == 0
    outcome = json.loads((deployed["tmp"] / "outcome.json").read_text())
    # then it was gated against the live version, not "the first version"
    assert outcome["live_version"] == deployed["live"] and outcome["promoted"], outcome["reason"]
    assert "first version" not in outcome["reason"]
    new = outcome["version"]
    # and its image went to the function's own repository, both functions run it as version 2
    assert pushed == [(REPO, new)]
    for kind in ("api", "batch"):
        fn = c["lambda"].get_function(FunctionName=f"modelfn-blobs-{kind}")
        assert fn["Code"]["ImageUri"] == f"{REPO}:modelfn-blobs-{new}"
        versions = c["lambda"].list_versions_by_function(FunctionName=f"modelfn-blobs-{kind}")["Versions"]
        assert [v["Description"].split(":")[0] for v in versions if v["Version"] == "2"] == [f"modelfn blobs {new}"]
    # and a CodeDeploy deployment moves live 1 → 2 for each (what promote --deployed starts)
    for kind, deployment in outcome["deployments"].items():
        info = c["codedeploy"].get_deployment(deploymentId=deployment)["deploymentInfo"]
        props = json.loads(info["revision"]["appSpecContent"]["content"])["Resources"][0][
            f"modelfn-blobs-{kind}"]["Properties"]
        assert (props["CurrentVersion"], props["TargetVersion"]) == ("1", "2")
    # and the winner is published where the next run finds it as live
    keys = {o["Key"] for o in c["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {f"blobs/versions/{new}/model.onnx", f"blobs/versions/{new}/manifest.json"} <= keys


def test_a_losing_candidate_deploys_nothing_and_says_why(deployed, jobs, capsys):
    c, pushed = deployed["clients"], []
    assert train_deployed(_args(deployed, jobs["bad"]), c, _pusher(pushed)) == 0
    outcome = json.loads((deployed["tmp"] / "outcome.json").read_text())
    assert not outcome["promoted"] and outcome["deployments"] == {}
    assert "accuracy" in outcome["reason"] and "below the live version" in outcome["reason"]
    assert pushed == []
    assert c["codedeploy"].list_deployments()["deployments"] == []
    assert c["lambda"].get_alias(FunctionName="modelfn-blobs-api", Name="live")["FunctionVersion"] == "1"


def test_without_the_live_artifact_the_build_fails_with_where_it_looked(deployed, jobs, capsys):
    c = deployed["clients"]
    code = train_deployed(_args(deployed, jobs["good"], deployed_build=""), c, _pusher([]))
    assert code == 1
    err = capsys.readouterr().err
    assert f"the live version {deployed['live']}'s artifact is neither under s3://{BUCKET}/blobs/versions/" in err


def test_the_real_pusher_builds_the_staged_model_image_and_pushes_it_to_the_functions_repository(
        deployed, tmp_path, monkeypatch) -> None:
    """engine_pusher: the context ``cdk deploy`` would stage, built for the catalog's
    architecture, tagged in the function's repository, then ECR login and push (the engine is
    a recorder here; moto answers GetAuthorizationToken)."""
    from infra.train.deployed import engine_pusher

    built, ran = [], []

    class Recorder:
        name, executable = "docker", "docker"

        def build(self, *, context, tag, platform, build_args=None, log=None):
            built.append((Path(context), tag, platform))

    monkeypatch.setattr("subprocess.run", lambda argv, **kw: ran.append(argv[1]) or None)
    push = engine_pusher(Recorder(), architecture="arm64", stage_dir=tmp_path / "stage")
    uri = push(deployed["shipped"], REPO)
    [(context, tag, platform)] = built
    assert uri == tag == f"{REPO}:modelfn-blobs-{deployed['live']}" and platform == "linux/arm64"
    assert (context / "Dockerfile").is_file()
    assert any(p.name == "model.onnx" for p in context.rglob("*"))
    assert ran == ["login", "push"]

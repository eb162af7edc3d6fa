"""``versions`` / ``promote`` / ``rollback --deployed`` against moto's Lambda, CodeDeploy and
CloudFormation. moto records CodeDeploy deployments but does not run them (the alias does not
move), so the tests assert the deployment asked for: the model's own group, the AppSpec with
the alias' current and target versions."""

from __future__ import annotations

import io
import json
import zipfile
from argparse import Namespace

import boto3
import pytest
from moto import mock_aws

from infra.versions import deployed
from layers import names

REGION = "us-east-1"


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    return buf.getvalue()


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        clients = {s: boto3.client(s, region_name=REGION) for s in ("cloudformation", "lambda", "codedeploy", "iam")}
        role = clients["iam"].create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam, cd = clients["lambda"], clients["codedeploy"]
        targets = {}
        for kind, what in (("api", "V2 HTTP API"), ("batch", "S3 batch inference")):
            fn = f"modelfn-clf-{kind}"
            lam.create_function(FunctionName=fn, Runtime="python3.11", Role=role, Handler="handler.handler",
                                Code={"ZipFile": _zip()}, Description=f"modelfn clf aaaa11112222: {what}")
            lam.publish_version(FunctionName=fn)
            lam.update_function_configuration(FunctionName=fn, Description=f"modelfn clf bbbb33334444: {what}")
            lam.publish_version(FunctionName=fn)
            lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="2")
            cd.create_application(applicationName=f"app-{kind}", computePlatform="Lambda")
            cd.create_deployment_group(applicationName=f"app-{kind}", deploymentGroupName=f"dg-{kind}",
                                       serviceRoleArn=role,
                                       deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes")
            targets[kind] = {"function": fn, "application": f"app-{kind}", "group": f"dg-{kind}"}
        template = {"Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
                    "Outputs": {names.output_deployment("clf"): {"Value": json.dumps(targets)}}}
        clients["cloudformation"].create_stack(StackName="ModelfnStack", TemplateBody=json.dumps(template))
        yield clients


def args(**kw) -> Namespace:
    return Namespace(name="clf", stack="ModelfnStack", json=True, **kw)


def appspec(cd, deployment_id: str) -> dict:
    info = cd.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    return info, json.loads(info["revision"]["appSpecContent"]["content"])


def test_versions_lists_the_published_versions_and_the_live_alias(aws, capsys):
    assert deployed.versions_command(args(), aws) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "clf" and out["live"] == "bbbb33334444"
    assert [v["version"] for v in out["versions"]] == ["aaaa11112222", "bbbb33334444"]
    assert out["versions"][1]["parent_version"] == "aaaa11112222" and out["versions"][1]["promoted"]
    assert set(out["versions"][0]) == {"version", "parent_version", "promoted", "reason", "metrics"}


def test_rollback_starts_a_codedeploy_deployment_of_each_function_back_to_the_previous_version(aws, capsys):
    assert deployed.rollback_command(args(), aws) == 0
    ids = [line.split("deployment ")[1].split()[0] for line in capsys.readouterr().out.splitlines()]
    assert len(ids) == 2  # api and batch
    for kind, deployment_id in zip(("api", "batch"), ids, strict=True):
        info, spec = appspec(aws["codedeploy"], deployment_id)
        assert (info["applicationName"], info["deploymentGroupName"]) == (f"app-{kind}", f"dg-{kind}")
        props = spec["Resources"][0][f"modelfn-clf-{kind}"]["Properties"]
        assert props == {"Name": f"modelfn-clf-{kind}", "Alias": "live", "CurrentVersion": "2", "TargetVersion": "1"}


def test_promote_by_model_version_and_refusals_say_why(aws, capsys):
    assert deployed.promote_command(args(version="aaaa1111"), aws) == 0
    assert deployed.promote_command(args(version="bbbb3333"), aws) == 2
    assert "already live" in capsys.readouterr().err
    assert deployed.promote_command(args(version="cccc"), aws) == 2
    assert "no deployed version 'cccc'; deployed versions: aaaa11112222" in capsys.readouterr().err
    assert deployed.versions_command(Namespace(name="other", stack="ModelfnStack", json=True), aws) == 2
    assert "is not a Lambda model of it" in capsys.readouterr().err


def test_a_models_outputs_are_read_from_its_own_stack_first(aws):
    # given the per-model layout: the model's Deployment output lives in ModelfnStack-Clf
    value = {"api": {"function": "f-api", "application": "app", "group": "g-api"}}
    template = {"Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {names.output_deployment("clf"): {"Value": json.dumps(value)}}}
    aws["cloudformation"].create_stack(StackName="ModelfnStack-Clf", TemplateBody=json.dumps(template))
    # when promotion looks the model up by the app's stack name
    found = deployed.targets(aws["cloudformation"], "ModelfnStack", "clf")
    # then it reads the model's own stack (the single-stack output is the fallback)
    assert found["api"].function == "f-api" and "batch" not in found

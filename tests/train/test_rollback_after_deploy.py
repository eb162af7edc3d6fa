"""Rolling the ``live`` alias back after real deploys (what ``rollback --deployed`` asks the
control function for, layers/aliases.py): two synthesized templates of a model function,
applied to moto's Lambda the way CloudFormation applies them.

CloudFormation publishes a new ``AWS::Lambda::Version`` (a new logical id: the function's
configuration changed) and, once the update succeeds, deletes the resources the new template
no longer has, unless their ``DeletionPolicy`` is ``Retain``. CDK's ``currentVersion``
defaults to deleting, which left ``rollback --deployed`` nothing to go back to after the
second deploy. :func:`apply` replays exactly that rule on moto (moto's CloudFormation has no
CodeDeploy resources), from the synthesized templates.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from infra.versions import deployed
from layers import names

pytestmark = pytest.mark.slow
REGION = "us-east-1"
FUNCTION = "modelfn-clf-api"


def _synth(tmp: Path, version: str) -> dict:
    """The template of one model function whose model version is ``version``."""
    import aws_cdk as cdk
    from aws_cdk import aws_lambda as lambda_

    from infra.cdk.constructs.model_function import ModelFunction

    context = tmp / "image"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text("FROM scratch\n")
    app = cdk.App(outdir=str(tmp / f"cdk.out-{version}"))
    stack = cdk.Stack(app, "ModelfnStack")
    ModelFunction(stack, "Api", code=lambda_.DockerImageCode.from_image_asset(str(context)),
                  description=f"modelfn clf {version}: V2 HTTP API", architecture="x86_64",
                  memory_mb=1024, timeout_s=10, environment={})
    return app.synth().get_stack_by_name("ModelfnStack").template


def _of_type(template: dict, type_: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    return buf.getvalue()


def apply(lam, template: dict, previous: dict | None, published: dict[str, str], role: str) -> None:
    """One ``cdk deploy`` of ``template`` over ``previous``, as CloudFormation does it."""
    [fn] = _of_type(template, "AWS::Lambda::Function").values()
    description = fn["Properties"]["Description"]
    if previous is None:
        lam.create_function(FunctionName=FUNCTION, Runtime="python3.13", Role=role, Handler="handler.handler",
                            Code={"ZipFile": _zip()}, Description=description)
    else:
        lam.update_function_configuration(FunctionName=FUNCTION, Description=description)
    for logical in _of_type(template, "AWS::Lambda::Version"):
        if logical not in published:  # a new logical id: CloudFormation publishes a version
            published[logical] = lam.publish_version(FunctionName=FUNCTION)["Version"]
    [(version_logical, _)] = _of_type(template, "AWS::Lambda::Version").items()
    if previous is None:
        lam.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=published[version_logical])
    else:  # what the CodeDeploy canary ends with
        lam.update_alias(FunctionName=FUNCTION, Name="live", FunctionVersion=published[version_logical])
    # cleanup phase: resources gone from the template are deleted unless retained
    for logical, resource in _of_type(previous or {"Resources": {}}, "AWS::Lambda::Version").items():
        if logical not in template["Resources"] and resource.get("DeletionPolicy") != "Retain":
            lam.delete_function(FunctionName=FUNCTION, Qualifier=published.pop(logical))


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> tuple[dict, dict]:
    tmp = tmp_path_factory.mktemp("two-deploys")
    return _synth(tmp, "aaaa11112222"), _synth(tmp, "bbbb33334444")


@pytest.fixture
def account(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        clients = {s: boto3.client(s, region_name=REGION) for s in ("cloudformation", "lambda", "codedeploy", "iam")}
        role = clients["iam"].create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        clients["codedeploy"].create_application(applicationName="app", computePlatform="Lambda")
        clients["codedeploy"].create_deployment_group(
            applicationName="app", deploymentGroupName="dg", serviceRoleArn=role,
            deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes")
        output = json.dumps({"api": {"function": FUNCTION, "application": "app", "group": "dg"}})
        clients["cloudformation"].create_stack(StackName="ModelfnStack", TemplateBody=json.dumps({
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {names.output_deployment("clf"): {"Value": output}}}))
        yield clients, role


def _two_deploys(account, first: dict, second: dict) -> None:
    clients, role = account
    published: dict[str, str] = {}
    apply(clients["lambda"], first, None, published, role)
    apply(clients["lambda"], second, first, published, role)


def test_rollback_after_a_second_deploy_goes_back_to_the_first_version(templates, account, capsys) -> None:
    clients, _ = account
    # given two deploys of the synthesized app (model aaaa… then bbbb…)
    _two_deploys(account, *templates)
    # when the user rolls back
    started = deployed.move_live(clients, "ModelfnStack", "clf", None, "modelfn rollback clf")
    # then a CodeDeploy deployment takes live from the second version back to the first
    deployment = started["api"]
    info = clients["codedeploy"].get_deployment(deploymentId=deployment)["deploymentInfo"]
    spec = json.loads(info["revision"]["appSpecContent"]["content"])
    props = spec["Resources"][0][FUNCTION]["Properties"]
    assert (props["CurrentVersion"], props["TargetVersion"]) == ("2", "1")
    versions = clients["lambda"].list_versions_by_function(FunctionName=FUNCTION)["Versions"]
    assert [v["Description"] for v in versions if v["Version"] == "1"] == ["modelfn clf aaaa11112222: V2 HTTP API"]


def test_without_retained_versions_rollback_would_have_nothing_to_go_back_to(templates, account, capsys) -> None:
    """The test above fails for the right reason: CDK's default removal policy deletes v1."""
    clients, _ = account
    first, second = (copy.deepcopy(t) for t in templates)
    for template in (first, second):
        for version in _of_type(template, "AWS::Lambda::Version").values():
            version.pop("DeletionPolicy"), version.pop("UpdateReplacePolicy")
    _two_deploys(account, first, second)
    with pytest.raises(deployed.DeployedError, match="nothing to roll back to"):
        deployed.move_live(clients, "ModelfnStack", "clf", None, "modelfn rollback clf")


def test_the_tool_keeps_a_bounded_number_of_versions_but_never_the_live_or_target_one(account) -> None:
    clients, role = account
    lam = clients["lambda"]
    lam.create_function(FunctionName=FUNCTION, Runtime="python3.13", Role=role, Handler="handler.handler",
                        Code={"ZipFile": _zip()}, Description="modelfn clf v0: V2 HTTP API")
    for i in range(1, 9):  # eight deploys, each retained
        lam.update_function_configuration(FunctionName=FUNCTION, Description=f"modelfn clf v{i}: V2 HTTP API")
        lam.publish_version(FunctionName=FUNCTION)
    lam.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="8")
    lam.create_alias(FunctionName=FUNCTION, Name="pinned", FunctionVersion="2")
    # when the user promotes version 1 (old, outside the kept five)
    assert deployed.move_live(clients, "ModelfnStack", "clf", "1", "modelfn promote clf 1")["api"]
    # then the newest five, the live one, the deployment's target and aliased ones stay
    left = [v["Version"] for v in lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"]]
    assert left == ["$LATEST", "1", "2", "4", "5", "6", "7", "8"]


def test_after_a_deploy_the_tool_prunes_each_models_versions_and_skips_others(account) -> None:
    clients, role = account
    lam = clients["lambda"]
    lam.create_function(FunctionName=FUNCTION, Runtime="python3.13", Role=role, Handler="handler.handler",
                        Code={"ZipFile": _zip()}, Description="modelfn clf v0: V2 HTTP API")
    for i in range(1, 8):
        lam.update_function_configuration(FunctionName=FUNCTION, Description=f"modelfn clf v{i}: V2 HTTP API")
        lam.publish_version(FunctionName=FUNCTION)
    lam.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="7")
    pruned = deployed.prune_after_deploy(clients, "ModelfnStack", ["clf", "not-deployed"])
    assert pruned == {"clf": {"api": ["1", "2"]}}
    left = [v["Version"] for v in lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"]]
    assert left == ["$LATEST", "3", "4", "5", "6", "7"]

"""Promote and rollback move every function of a model to ONE model version: the api, batch and
a generative model's stream function, even when their Lambda version numbers differ (the stream
function was published once more, or pruned differently); a function without that model
version refuses the whole move before any deployment starts. Against moto (Lambda versions and
aliases, CodeDeploy recording deployments)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from layers.aliases import DeployedError, Target, move_live

REGION = "us-east-1"
#: model versions each kind published, in order (Lambda versions 1, 2, …); the alias on the last
HISTORY = {"api": ["aaaa1111", "bbbb2222"], "batch": ["aaaa1111", "bbbb2222"],
           "stream": ["aaaa1111", "aaaa1111", "bbbb2222"]}


@pytest.fixture
def stack(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        lam, cd = boto3.client("lambda", region_name=REGION), boto3.client("codedeploy", region_name=REGION)
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        found = {}
        for kind, versions in HISTORY.items():
            fn = f"modelfn-gen-{kind}"
            lam.create_function(FunctionName=fn, Role=role, PackageType="Image", Code={"ImageUri": "repo:x"})
            for v in versions:
                lam.update_function_configuration(FunctionName=fn, Description=f"modelfn gen {v}: {kind}")
                lam.get_waiter("function_updated_v2").wait(FunctionName=fn)
                lam.publish_version(FunctionName=fn, Description=f"modelfn gen {v}: {kind}")
            lam.create_alias(FunctionName=fn, Name="live", FunctionVersion=str(len(versions)))
            cd.create_application(applicationName=f"app-{kind}", computePlatform="Lambda")
            cd.create_deployment_group(applicationName=f"app-{kind}", deploymentGroupName=f"dg-{kind}",
                                       serviceRoleArn=role,
                                       deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes")
            found[kind] = Target(fn, f"app-{kind}", f"dg-{kind}")
        yield lam, cd, found


def targets_of(cd, deployments: dict[str, str]) -> dict[str, str]:
    out = {}
    for kind, deployment in deployments.items():
        content = cd.get_deployment(deploymentId=deployment)["deploymentInfo"]["revision"]["appSpecContent"]
        out[kind] = next(iter(json.loads(content["content"])["Resources"][0].values()))["Properties"]["TargetVersion"]
    return out


def test_rollback_moves_each_function_to_its_own_version_of_the_previous_model_version(stack):
    lam, cd, found = stack
    doc = move_live(lam, cd, found, "gen", None, "rollback")
    assert (doc["live"], doc["previous"], doc["changed"]) == ("aaaa1111", "bbbb2222", True)
    # the stream function's newest publication of aaaa1111 is its Lambda version 2, not 1
    assert targets_of(cd, doc["deployments"]) == {"api": "1", "batch": "1", "stream": "2"}


def test_promote_by_lambda_number_names_the_apis_version_and_every_kind_follows(stack):
    lam, cd, found = stack
    doc = move_live(lam, cd, found, "gen", "1", "promote")
    assert doc["live"] == "aaaa1111"
    assert targets_of(cd, doc["deployments"]) == {"api": "1", "batch": "1", "stream": "2"}


def test_a_function_without_the_version_refuses_the_whole_move(stack):
    lam, cd, found = stack
    lam.delete_function(FunctionName=found["stream"].function, Qualifier="1")
    lam.delete_function(FunctionName=found["stream"].function, Qualifier="2")
    with pytest.raises(DeployedError, match="stream: no published version serves aaaa1111"):
        move_live(lam, cd, found, "gen", "aaaa1111", "promote")
    assert cd.list_deployments()["deployments"] == []

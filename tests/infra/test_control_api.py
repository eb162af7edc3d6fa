"""Training over HTTPS on AWS: the control routes are IAM-authorized on the HTTP API, and the
control function, holding exactly its synthesized policy (moto IAM enforcement), starts the
model's training state machine with the request's hyperparameters and reads the run back
while moto's Step Functions executes the synthesized definition."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from layers.protocols import route_table
from tests.infra.cfn import REGION, resources_of_type
from tests.infra.iam_harness import (
    ACCOUNT,
    SynthesizedApp,
    assume,
    enforcing,
    function_environment,
    is_denied,
)
from tests.infra.test_training_state_machine import (
    OUTCOME_WON,
    TRAINED,
    create_state_machine,
    wait_for,
)

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.infra.test_training_state_machine"]  # the synthesized and codebuild_casing fixtures

MODEL = TRAINED["name"]


def _event(method: str, path: str, query: dict | None = None, body: str | None = None) -> dict:
    return {"version": "2.0", "routeKey": f"{method} {path}", "rawPath": path,
            "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
            "queryStringParameters": query, "headers": {"host": "api.example.com", "x-forwarded-proto": "https"},
            "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"},
            "body": body, "isBase64Encoded": False}


def test_every_control_route_of_a_trained_model_takes_iam_whatever_its_auth(synthesized):
    _, template = synthesized
    routes = {r["Properties"]["RouteKey"]: r["Properties"]
              for r in resources_of_type(template, "AWS::ApiGatewayV2::Route").values()}
    wanted = {f"{m} {p}" for p, m in route_table().control_gateway_routes(MODEL)}
    assert wanted <= set(routes), wanted - set(routes)
    assert {routes[k]["AuthorizationType"] for k in wanted} == {"AWS_IAM"}
    # a Lambda model without training: its versions routes (and train routes answering 400), IAM too
    lambda_only = {f"{m} {p}" for p, m in route_table().control_gateway_routes("open-model")}
    assert lambda_only <= set(routes) and {routes[k]["AuthorizationType"] for k in lambda_only} == {"AWS_IAM"}
    # a SageMaker model without training has neither runs nor Lambda versions: no control routes
    assert not any(k.endswith(("/v2/models/heavy-sm/train", "/v2/models/heavy-sm/versions")) for k in routes)


@mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
def test_the_control_function_starts_and_reads_runs_under_its_own_policy(synthesized, codebuild_casing,
                                                                        build_ends, monkeypatch):
    from functions.control import handler as control

    _, template = synthesized
    build_ends("SUCCEEDED", OUTCOME_WON)
    arn, _ = create_state_machine(template)
    app = SynthesizedApp(template)
    machine = next(iter(resources_of_type(template, "AWS::StepFunctions::StateMachine")))
    from tests.infra.iam_harness import Bindings

    bindings = Bindings()
    bindings.bind(machine, arn, Name=arn.rsplit(":", 1)[1])
    fn, _ = app.function(f"modelfn: {MODEL} training and versions over HTTPS")
    creds = assume(app, app.function_role(f"modelfn: {MODEL} training and versions over HTTPS"), bindings)
    env = function_environment(monkeypatch, app, bindings, fn, creds)
    assert json.loads(env["MODELFN_CONTROL"])["state_machine_arn"] == arn
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setattr(control, "_backend", None)
    other = boto3.client("stepfunctions", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    other_arn = other.create_state_machine(name="someone-else", roleArn=f"arn:aws:iam::{ACCOUNT}:role/x",
                                           definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]

    with enforcing():
        # when a client starts a run with a query hyperparameter (typed: a number)
        started = control.handler(_event("POST", f"/v2/models/{MODEL}/train", {"epochs": "7"}), None)
        assert started["statusCode"] == 202, started
        run = json.loads(started["body"])
        assert run["status"] == "queued" and run["hyperparameters"] == {"epochs": "7"}
        assert run["status_url"] == f"https://api.example.com/v2/models/{MODEL}/train/{run['run_id']}"
        # a hyperparameter the deployed job does not take, and data elsewhere: clear 400s
        bad = control.handler(_event("POST", f"/v2/models/{MODEL}/train", {"optimizer": "Adam"}), None)
        assert bad["statusCode"] == 400 and "unknown hyperparameter(s) ['optimizer']" in bad["body"]
        # and its role may not start any other state machine
        with pytest.raises(Exception) as denied:
            creds.client("stepfunctions").start_execution(stateMachineArn=other_arn)
        assert is_denied(denied.value)
    # while the run executes (moto runs the synthesized definition) ...
    wait_for(run["execution_arn"], timeout_s=60)
    with enforcing():
        # then the status URL reads it back, succeeded, with what the execution produced
        status = json.loads(control.handler(_event("GET", f"/v2/models/{MODEL}/train/{run['run_id']}"), None)["body"])
        assert status["status"] == "succeeded", status
        assert status["finished_at"] and status["training_job"].startswith(f"{MODEL}-")
        # with the build's gate decision: the new version, promoted, and why
        assert status["version"] == OUTCOME_WON["version"] and status["reason"] == OUTCOME_WON["reason"]
        assert str(status["promoted"]).lower() == "true"
        listed = json.loads(control.handler(_event("GET", f"/v2/models/{MODEL}/train"), None)["body"])
        assert [r["run_id"] for r in listed["runs"]] == [run["run_id"]]
        missing = control.handler(_event("GET", f"/v2/models/{MODEL}/train/nope"), None)
        assert missing["statusCode"] == 404
    # and the SageMaker job trained with the request's hyperparameters, not the catalog's
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    job = sagemaker.describe_training_job(TrainingJobName=status["training_job"])
    assert job["HyperParameters"] == {"epochs": "7"}


def test_a_run_in_progress_is_a_409():
    from functions.control.stepfunctions import StepFunctionsControl
    from layers.protocols.control import Conflict

    class Sfn:
        def list_executions(self, **kw):
            return {"executions": [{"name": "20260101T000000-abcd1234"}]}

    backend = StepFunctionsControl({"model": "m", "state_machine_arn": "arn:aws:states:us-east-1:1:stateMachine:t",
                                    "hyperparameters": {}}, client=Sfn())
    with pytest.raises(Conflict, match="already in progress"):
        backend.start_training("m", {}, None)
    time.sleep(0)


def _refs(value) -> set[str]:
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return {value["Ref"]}
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    return set()


@mock_aws
def test_the_control_function_lists_promotes_and_rolls_back_under_its_own_policy(synthesized, monkeypatch):
    """``GET …/versions`` and ``POST …/rollback`` of a Lambda model without training, with the
    control function holding exactly its synthesized policy: its own functions' versions and
    aliases, its own CodeDeploy groups, and nothing of another model's."""
    from functions.control import handler as control
    from tests.infra.iam_harness import Bindings

    _, template = synthesized
    app = SynthesizedApp(template)
    described = "modelfn: open-model training and versions over HTTPS"
    fn, props = app.function(described)
    # given moto resources named after the logical ids the control function's config refers to
    bindings = Bindings()
    refs = _refs(props["Environment"]["Variables"])
    for logical in refs:
        name = logical[:60]
        bindings.bind(logical, name, Arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}")
    config = json.loads(bindings.resolve(props["Environment"]["Variables"])["MODELFN_CONTROL"])
    assert config.get("state_machine_arn") is None and set(config["deployment"]) == {"api", "batch"}
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam, cd = boto3.client("lambda", region_name=REGION), boto3.client("codedeploy", region_name=REGION)
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("h.py", "def handler(e, c):\n    return {}\n")
    for kind, target in config["deployment"].items():
        lam.create_function(FunctionName=target["function"], Runtime="python3.13", Role=role, Handler="h.handler",
                            Code={"ZipFile": buf.getvalue()}, Description=f"modelfn open-model aaaa11112222: {kind}")
        lam.publish_version(FunctionName=target["function"])
        lam.update_function_configuration(FunctionName=target["function"],
                                          Description=f"modelfn open-model bbbb33334444: {kind}")
        lam.publish_version(FunctionName=target["function"])
        lam.create_alias(FunctionName=target["function"], Name="live", FunctionVersion="2")
        if target["application"] not in cd.list_applications()["applications"]:
            cd.create_application(applicationName=target["application"], computePlatform="Lambda")
        cd.create_deployment_group(applicationName=target["application"], deploymentGroupName=target["group"],
                                   serviceRoleArn=role,
                                   deploymentConfigName="CodeDeployDefault.LambdaCanary10Percent5Minutes")
    other = lam.create_function(FunctionName="another-models-api", Runtime="python3.13", Role=role,
                                Handler="h.handler", Code={"ZipFile": buf.getvalue()})["FunctionName"]
    creds = assume(app, app.function_role(described), bindings)
    function_environment(monkeypatch, app, bindings, fn, creds)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setattr(control, "_backend", None)

    with enforcing():
        # when a client lists the versions, then rolls back
        listed = control.handler(_event("GET", "/v2/models/open-model/versions"), None)
        assert listed["statusCode"] == 200, listed
        doc = json.loads(listed["body"])
        assert doc["live"] == "bbbb33334444" and [v["version"] for v in doc["versions"]] == ["aaaa11112222",
                                                                                            "bbbb33334444"]
        rolled = control.handler(_event("POST", "/v2/models/open-model/rollback"), None)
        assert rolled["statusCode"] == 200, rolled
        moved = json.loads(rolled["body"])
        assert (moved["live"], moved["previous"]) == ("aaaa11112222", "bbbb33334444")
        assert set(moved["deployments"]) == {"api", "batch"}
        # its training routes say it has none
        train = control.handler(_event("POST", "/v2/models/open-model/train"), None)
        assert train["statusCode"] == 400 and "no training: entry" in train["body"]
        # and its role may not touch another function
        with pytest.raises(Exception) as denied:
            creds.client("lambda").delete_function(FunctionName=other)
        assert is_denied(denied.value)

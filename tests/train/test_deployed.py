"""``versions`` / ``promote`` / ``rollback --deployed``: the CLI calls the deployed control API
over HTTPS (SigV4), and the control function moves the ``live`` alias in moto's Lambda and
CodeDeploy. A local server stands in for API Gateway: it checks the signature (an independent
verifier, as IAM authorization does) and hands the payload-2.0 event to the control function's
handler. moto records CodeDeploy deployments but does not run them (the alias does not move),
so the tests assert the deployment asked for: the model's own group, the AppSpec with the
alias' current and target versions."""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from argparse import Namespace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlsplit

import boto3
import pytest
from moto import mock_aws

from functions.control import handler as control
from functions.control.stepfunctions import StepFunctionsControl
from infra.cli import main
from infra.versions import deployed
from layers import names
from tests.client.sigv4_verifier import ACCESS_KEY, SECRET, verify

REGION = "us-east-1"


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    return buf.getvalue()


class Gateway(BaseHTTPRequestHandler):
    """API Gateway in front of the control function: AWS_IAM (SigV4) on every route."""

    seen: ClassVar[list[dict]] = []

    def _serve(self) -> None:
        u = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # the caller's credentials are the environment's (mock_aws sets its own fake key pair)
        ok, _ = verify(self.command, u.path, u.query, dict(self.headers), body,
                       secret=os.environ["AWS_SECRET_ACCESS_KEY"])
        self.seen.append({"method": self.command, "path": u.path, "signed": ok})
        if not ok:
            status, doc = 403, json.dumps({"message": "Forbidden"})
        else:
            reply = control.handler({
                "version": "2.0", "rawPath": u.path, "rawQueryString": u.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "requestContext": {"http": {"method": self.command, "path": u.path}},
                "body": body.decode(), "isBase64Encoded": False}, None)
            status, doc = reply["statusCode"], reply["body"]
        data = doc.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, *a) -> None:
        pass


@pytest.fixture
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    Gateway.seen = []
    try:
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            clients = {s: boto3.client(s, region_name=REGION)
                       for s in ("cloudformation", "lambda", "codedeploy", "iam")}
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
                        "Outputs": {names.output_deployment("clf"): {"Value": json.dumps(targets)},
                                    names.OUTPUT_API_URL: {"Value": url + "/"}}}
            clients["cloudformation"].create_stack(StackName="ModelfnStack", TemplateBody=json.dumps(template))
            # a training state machine that succeeds at once, with the build's outcome
            sfn = boto3.client("stepfunctions", region_name=REGION)
            machine = sfn.create_state_machine(name="clf-training", roleArn=role, definition=json.dumps({
                "StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True, "Result": {
                    "version": "cccc55556666", "promoted": True, "reason": "accuracy 0.97 vs live 0.95"}}}}))
            # the deployed control function's backend: this model's functions, groups, training
            monkeypatch.setattr(control, "_backend", StepFunctionsControl(
                {"model": "clf", "state_machine_arn": machine["stateMachineArn"], "hyperparameters": {"epochs": "3"},
                 "data": "s3://bucket/clf/train/", "deployment": targets}, clients={**clients, "stepfunctions": sfn}))
            yield clients
    finally:
        server.shutdown()
        server.server_close()


def cli(*argv: str, capsys) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def appspec(cd, deployment_id: str) -> dict:
    info = cd.get_deployment(deploymentId=deployment_id)["deploymentInfo"]
    return info, json.loads(info["revision"]["appSpecContent"]["content"])


def test_versions_lists_the_published_versions_and_the_live_alias_over_https(aws, capsys):
    # the URL comes from the stack's ApiUrl output; the request is signed
    code, out, err = cli("versions", "clf", "--deployed", "--json", capsys=capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"] == "clf" and doc["live"] == "bbbb33334444"
    assert [v["version"] for v in doc["versions"]] == ["aaaa11112222", "bbbb33334444"]
    assert doc["versions"][1]["parent_version"] == "aaaa11112222" and doc["versions"][1]["promoted"]
    assert set(doc["versions"][0]) == {"version", "parent_version", "promoted", "reason", "metrics"}
    assert Gateway.seen == [{"method": "GET", "path": "/v2/models/clf/versions", "signed": True}]


def test_rollback_starts_a_codedeploy_deployment_of_each_function_back_to_the_previous_version(aws, capsys):
    code, out, err = cli("rollback", "clf", "--deployed", "--json", capsys=capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["model"], doc["live"], doc["previous"], doc["changed"]) == ("clf", "aaaa11112222", "bbbb33334444", True)
    assert set(doc["deployments"]) == {"api", "batch"}
    for kind, deployment_id in doc["deployments"].items():
        info, spec = appspec(aws["codedeploy"], deployment_id)
        assert (info["applicationName"], info["deploymentGroupName"]) == (f"app-{kind}", f"dg-{kind}")
        props = spec["Resources"][0][f"modelfn-clf-{kind}"]["Properties"]
        assert props == {"Name": f"modelfn-clf-{kind}", "Alias": "live", "CurrentVersion": "2", "TargetVersion": "1"}
    assert Gateway.seen[-1] == {"method": "POST", "path": "/v2/models/clf/rollback", "signed": True}


def test_promote_by_model_version_and_refusals_say_why(aws, capsys):
    code, out, _ = cli("promote", "clf", "aaaa1111", "--deployed", capsys=capsys)
    assert code == 0 and "clf api: CodeDeploy deployment" in out and "bbbb33334444 → aaaa11112222" in out
    # the live version: nothing to deploy, as locally
    code, out, _ = cli("promote", "clf", "bbbb3333", "--deployed", "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["changed"] is False and json.loads(out)["deployments"] == {}
    code, _, err = cli("promote", "clf", "cccc", "--deployed", capsys=capsys)
    assert code == 2 and "answered 404: no deployed version 'cccc'; deployed versions: aaaa11112222" in err
    code, _, err = cli("versions", "other", "--deployed", capsys=capsys)
    assert code == 2 and "404" in err and "this control route serves 'clf'" in err


def test_an_unsigned_request_is_refused_and_the_cli_says_what_credentials_it_needs(aws, capsys, monkeypatch):
    from infra.client.control import ControlClient, ControlError
    from infra.client.sigv4 import SigV4Signer

    class Unsigned(SigV4Signer):
        def sign(self, method, url, body=b"", headers=None):
            return dict(headers or {})

    api = ControlClient(deployed.control_client(Namespace(stack="ModelfnStack", url=None)).base_url,
                        signer=Unsigned())
    with pytest.raises(ControlError) as exc:
        api.versions("clf")
    assert exc.value.status == 403 and "execute-api:Invoke" in str(exc.value)
    code, _, err = cli("versions", "clf", "--deployed", "--stack", "NoSuchStack", capsys=capsys)
    assert code == 2 and "'NoSuchStack' could not be read" in err and "--url" in err


def test_train_deployed_starts_a_run_over_https_and_follows_it(aws, capsys):
    # when the CLI starts a run of the deployed model with a hyperparameter over the catalog's
    code, out, err = cli("train", "clf", "--deployed", "--hyperparameters", "epochs=5", "--wait", capsys=capsys)
    assert code == 0, err
    run = json.loads(out)
    # then the state machine ran it with that hyperparameter, and the run ended with its outcome
    assert run["hyperparameters"] == {"epochs": "5"} and run["status"] == "succeeded"
    assert (run["version"], run["promoted"]) == ("cccc55556666", True)
    assert Gateway.seen[0]["method"] == "POST" and all(s["signed"] for s in Gateway.seen)
    # a hyperparameter the deployed job does not declare is refused with what it takes
    code, _, err = cli("train", "clf", "--deployed", "--hyperparameters", "optimizer=Adam", capsys=capsys)
    assert code == 2 and "400: unknown hyperparameter(s) ['optimizer']" in err and "['epochs']" in err


def test_a_model_without_training_has_no_runs_and_says_so(aws, monkeypatch):
    monkeypatch.setattr(control._backend, "state_machine_arn", None)
    reply = control.handler({"version": "2.0", "rawPath": "/v2/models/clf/train",
                             "requestContext": {"http": {"method": "POST", "path": "/v2/models/clf/train"}},
                             "headers": {}, "body": "", "isBase64Encoded": False}, None)
    assert reply["statusCode"] == 400 and "no training: entry" in reply["body"]


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


def test_a_stack_without_control_routes_is_told_to_redeploy():
    from infra.client.control import _message

    # API Gateway's own 404 (no such route): the model's stack predates its control routes
    text = _message(404, b'{"message":"Not Found"}', "GET", "https://x/v2/models/clf/versions")
    assert "answered 404: Not Found" in text and "modelfn deploy NAME" in text
    # the control function's own 404 names what is missing, nothing added
    text = _message(404, b'{"error":"no deployed version \'cccc\'"}', "POST", "https://x/…")
    assert text.endswith("no deployed version 'cccc'")

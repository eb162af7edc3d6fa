"""IAM proven by enforcement: each function's real code path runs in moto with IAM enforcement
on, under credentials holding exactly the policy the CDK app synthesizes for its role.

Everything the function does succeeds; reading another model's prefix, writing outside its own
``out/`` and ``errors/``, or touching another model's queue is denied (tests/infra/iam_harness.py).
The app is test_stack.py's (synthesized once per session): ``clf-lambda`` and ``open-model``
(lambda target), ``heavy-sm`` (SageMaker endpoint + proxy).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from layers import names
from tests.infra.conftest import app_template, shared_synth
from tests.infra.iam_harness import (
    Bindings,
    SynthesizedApp,
    assume,
    enforcing,
    function_environment,
    is_denied,
    provision,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("moto-iam")]


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> tuple[SynthesizedApp, Path]:
    from tests.infra.test_stack import _synthesize

    workdir, _info = shared_synth(tmp_path_factory, "stack", _synthesize)
    return SynthesizedApp(app_template(workdir / "cdk.out")), workdir / "build"


@pytest.fixture
def moto_aws(monkeypatch):
    from moto import mock_aws

    from layers.batch import clients

    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "admin")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "admin")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        clients.reset_clients()
        yield
    clients.reset_clients()


def _logical(app: SynthesizedApp, type_: str, prefix: str) -> str:
    found = [k for k in app.of_type(type_) if k.startswith(prefix)]
    assert len(found) == 1, (type_, prefix, found)
    return found[0]


def _as_function(monkeypatch, app: SynthesizedApp, bindings: Bindings, fn: str, creds) -> dict[str, str]:
    """The function's own environment and its role's credentials, as Lambda sets them."""
    from layers.batch import clients

    env = function_environment(monkeypatch, app, bindings, fn, creds)
    clients.reset_clients()
    return env


def _denied(call) -> bool:
    try:
        call()
    except Exception as exc:
        if is_denied(exc):
            return True
        raise
    return False


def _npy(rows: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).standard_normal((rows, 4)).astype(np.float32))
    return buf.getvalue()


def test_batch_function_does_its_job_under_its_policy_and_nothing_else(
        synthesized, moto_aws, monkeypatch, lambda_context):
    import boto3

    from infra.local.s3 import to_lambda_record
    from layers.batch import retry
    from layers.batch.service import BatchService
    from layers.model import load_model

    app, build = synthesized
    bindings = provision(app)
    fn, _ = app.function("modelfn clf-lambda ", "S3 batch inference")
    creds = assume(app, app.function_role("modelfn clf-lambda ", "S3 batch inference"), bindings)
    bucket = bindings.get(_logical(app, "AWS::S3::Bucket", "BatchStorageBatch"))
    own_queue = _logical(app, "AWS::SQS::Queue", "ClfLambdaBatchPipelineQueueEvents")
    other_queue = _logical(app, "AWS::SQS::Queue", "OpenModelBatchPipelineQueueEvents")
    admin_s3, admin_sqs = boto3.client("s3", region_name="us-east-1"), boto3.client("sqs", region_name="us-east-1")
    # given an upload under clf-lambda/in/, announced on its queue as S3 would
    put = admin_s3.put_object(Bucket=bucket, Key="clf-lambda/in/rows.npy", Body=_npy(3))
    admin_s3.put_object(Bucket=bucket, Key="open-model/in/secret.npy", Body=_npy(1))
    record = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": "us-east-1",
              "s3": {"bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                     "object": {"key": "clf-lambda/in/rows.npy", "size": 1, "eTag": put["ETag"].strip('"'),
                                "versionId": put["VersionId"]}}}
    admin_sqs.send_message(QueueUrl=bindings.get(own_queue), MessageBody=json.dumps({"Records": [record]}))
    msg = admin_sqs.receive_message(QueueUrl=bindings.get(own_queue), AttributeNames=["All"])["Messages"][0]
    event = {"Records": [to_lambda_record(msg, bindings.get(own_queue, "Arn"))]}
    model = load_model(build / "models" / "clf-lambda")
    env = _as_function(monkeypatch, app, bindings, fn, creds)
    assert env[names.ENV_IDEMPOTENCY_TABLE] == bindings.get(_logical(app, "AWS::DynamoDB::Table", "BatchStorage"))
    with enforcing():
        # when the function's own code path runs under its role
        response = BatchService(model).handle(event, lambda_context)
        s3, sqs, ddb = creds.client("s3"), creds.client("sqs"), creds.client("dynamodb")
        # then everything it does succeeds: read in/, write out/, idempotency, retry delay
        assert response == {"batchItemFailures": []}
        lines = s3.get_object(Bucket=bucket, Key="clf-lambda/out/rows.npy.jsonl")["Body"].read().splitlines()
        assert len(lines) == 3
        assert retry.delay_retry(sqs, queue_arn=bindings.get(own_queue, "Arn"), receipt_handle=msg["ReceiptHandle"],
                                 receive_count=1) == names.DEFAULT_BATCH_RETRY_DELAY_S
        assert not _denied(lambda: s3.put_object(Bucket=bucket, Key="clf-lambda/errors/x.json", Body=b"{}"))
        # and nothing else is allowed
        assert _denied(lambda: s3.get_object(Bucket=bucket, Key="open-model/in/secret.npy"))
        assert _denied(lambda: s3.put_object(Bucket=bucket, Key="open-model/out/x.jsonl", Body=b"x"))
        assert _denied(lambda: s3.put_object(Bucket=bucket, Key="clf-lambda/in/planted.npy", Body=b"x"))
        assert _denied(lambda: s3.put_object(Bucket=bucket, Key="clf-lambda/elsewhere.txt", Body=b"x"))
        assert _denied(lambda: s3.delete_object(Bucket=bucket, Key="clf-lambda/in/rows.npy"))
        assert _denied(lambda: sqs.receive_message(QueueUrl=bindings.get(other_queue)))
        assert _denied(lambda: sqs.send_message(QueueUrl=bindings.get(other_queue), MessageBody="x"))
        assert _denied(lambda: retry.delay_retry(sqs, queue_arn=bindings.get(other_queue, "Arn"),
                                                 receipt_handle="r", receive_count=1))
        assert _denied(lambda: sqs.send_message(QueueUrl=bindings.get(own_queue), MessageBody="x"))
        assert _denied(lambda: ddb.scan(TableName=env[names.ENV_IDEMPOTENCY_TABLE]))
        assert _denied(lambda: ddb.delete_table(TableName=env[names.ENV_IDEMPOTENCY_TABLE]))


def test_api_function_serves_under_its_policy_and_reaches_no_data(synthesized, moto_aws, monkeypatch, lambda_context):
    from layers.http.resolver import build_app
    from layers.model import load_model
    from tests.conftest import load_event

    app, build = synthesized
    bindings = provision(app)
    fn, _ = app.function("modelfn clf-lambda ", "V2 HTTP API")
    creds = assume(app, app.function_role("modelfn clf-lambda ", "V2 HTTP API"), bindings)
    bucket = bindings.get(_logical(app, "AWS::S3::Bucket", "BatchStorageBatch"))
    _as_function(monkeypatch, app, bindings, fn, creds)
    resolver = build_app(load_model(build / "models" / "clf-lambda"))
    event = load_event("http_infer")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v2/models/clf-lambda/infer"
    event["pathParameters"] = {"name": "clf-lambda"}
    event["body"] = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
    event["isBase64Encoded"] = False
    with enforcing():
        response = resolver.resolve(event, lambda_context)
        assert response["statusCode"] == 200, response
        s3, sqs, ddb = creds.client("s3"), creds.client("sqs"), creds.client("dynamodb")
        queue = bindings.get(_logical(app, "AWS::SQS::Queue", "ClfLambdaBatchPipelineQueueEvents"))
        assert _denied(lambda: s3.get_object(Bucket=bucket, Key="clf-lambda/in/x.npy"))
        assert _denied(lambda: s3.put_object(Bucket=bucket, Key="clf-lambda/out/x", Body=b"x"))
        assert _denied(lambda: sqs.receive_message(QueueUrl=queue))
        assert _denied(lambda: ddb.get_item(TableName=bindings.get(_logical(app, "AWS::DynamoDB::Table", "BatchStorage")),
                                            Key={"id": {"S": "x"}}))


def test_proxy_invokes_its_own_endpoint_and_no_other(synthesized, moto_aws, monkeypatch, lambda_context):
    import functions.proxy.handler as proxy
    from layers import sagemaker_proxy
    from tests.conftest import load_event

    app, _ = synthesized
    bindings = provision(app)
    fn, _ = app.function("modelfn heavy-sm: HTTP API")
    creds = assume(app, app.function_role("modelfn heavy-sm: HTTP API"), bindings)
    env = _as_function(monkeypatch, app, bindings, fn, creds)
    monkeypatch.setattr(sagemaker_proxy, "_CLIENT", None)  # a client under this role's credentials
    event = load_event("http_infer")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v2/models/heavy-sm/infer"
    with enforcing():
        response = proxy.handler(event, lambda_context)
        assert response["statusCode"] == 200, response
        runtime = creds.client("sagemaker-runtime")
        assert not _denied(lambda: runtime.invoke_endpoint(EndpointName=env[names.ENV_SAGEMAKER_ENDPOINT], Body=b"{}"))
        assert _denied(lambda: runtime.invoke_endpoint(EndpointName="someone-elses-endpoint", Body=b"{}"))
        bucket = bindings.get(_logical(app, "AWS::S3::Bucket", "BatchStorageBatch"))
        assert _denied(lambda: creds.client("s3").get_object(Bucket=bucket, Key="clf-lambda/in/x.npy"))


def test_openai_router_reads_its_registry_and_nothing_else(synthesized, moto_aws):
    """The router's role: ``GetParametersByPath`` on the registry path only (invoking a model is
    each model's own resource-based grant on its alias, asserted in test_stack.py)."""
    import boto3

    from functions.openai_router.handler import Registry
    from layers.openai_router import Deployed

    app, _ = synthesized
    bindings = provision(app)
    creds = assume(app, app.function_role("modelfn: the shared /openai/v1 routes"), bindings)
    admin, path = boto3.client("ssm", region_name="us-east-1"), names.router_registry_path("ModelfnStack")
    admin.put_parameter(Name=f"{path}/clf-lambda", Type="String", Value=Deployed("clf-lambda", "arn:x", "iam").to_json())
    admin.put_parameter(Name="/elsewhere/secret", Type="String", Value="not the router's")
    ssm = creds.client("ssm")
    with enforcing():
        assert list(Registry(ssm, path).load()) == ["clf-lambda"]
        assert _denied(lambda: ssm.get_parameters_by_path(Path="/elsewhere"))
        assert _denied(lambda: ssm.get_parameter(Name="/elsewhere/secret"))

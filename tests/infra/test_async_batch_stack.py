"""The CDK wiring of a sagemaker-target model's batch path (heavy-sm in test_stack's catalog):
``<model>/in/`` → SQS → glue → an asynchronous endpoint that scales to zero."""

from __future__ import annotations

import json

import pytest

from layers import names
from tests.infra.cfn import resources_of_type
from tests.infra.conftest import app_template, shared_synth
from tests.infra.test_stack import _synthesize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    workdir, _info = shared_synth(tmp_path_factory, "stack", _synthesize)
    return app_template(workdir / "cdk.out")


def _one(template: dict, rtype: str, needle: str) -> tuple[str, dict]:
    [found] = [(k, r) for k, r in resources_of_type(template, rtype).items() if needle in k]
    return found


def test_the_heavy_model_gets_an_asynchronous_endpoint_writing_under_its_prefix(template) -> None:
    _, config = _one(template, "AWS::SageMaker::EndpointConfig", "HeavySmAsyncBatch")
    props = config["Properties"]
    async_config = props["AsyncInferenceConfig"]
    assert async_config["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 1}
    out = json.dumps(async_config["OutputConfig"])
    assert "heavy-sm/async/responses/" in out and "heavy-sm/async/failures/" in out
    assert "ErrorTopic" in async_config["OutputConfig"]["NotificationConfig"]
    assert props["ProductionVariants"][0]["InstanceType"] == "ml.g5.xlarge"
    _, model = _one(template, "AWS::SageMaker::Model", "HeavySmAsyncBatch")
    env = model["Properties"]["PrimaryContainer"]["Environment"]
    assert env[names.ENV_MODEL_DIR] == names.SAGEMAKER_MODEL_DIR and names.ENV_IDEMPOTENCY_TABLE in env


def test_it_scales_to_zero_and_back_on_backlog(template) -> None:
    _, target = _one(template, "AWS::ApplicationAutoScaling::ScalableTarget", "HeavySmAsyncBatch")
    assert target["Properties"]["MinCapacity"] == 0
    policies = [p["Properties"] for k, p in resources_of_type(
        template, "AWS::ApplicationAutoScaling::ScalingPolicy").items() if "HeavySmAsyncBatch" in k]
    kinds = {p["PolicyType"] for p in policies}
    assert kinds == {"TargetTrackingScaling", "StepScaling"}
    alarms = json.dumps([a for k, a in resources_of_type(template, "AWS::CloudWatch::Alarm").items()
                         if "HeavySmAsyncBatch" in k])
    assert "HasBacklogWithoutCapacity" in alarms  # leaves zero when work waits


def test_new_inputs_reach_the_glue_which_may_only_submit_to_its_endpoint(template) -> None:
    glue_id, glue = _one(template, "AWS::Lambda::Function", "HeavySmAsyncBatchGlue")
    props = glue["Properties"]
    assert props["Handler"] == "functions.async_batch.handler.handler"
    assert props["Environment"]["Variables"][names.ENV_BATCH_MODEL] == "heavy-sm"
    [mapping] = [m for m in resources_of_type(template, "AWS::Lambda::EventSourceMapping").values()
                 if m["Properties"]["FunctionName"] == {"Ref": glue_id}]
    # bounded: 10 objects a batch, at most 2 glue invocations at once, failed objects retried alone
    assert mapping["Properties"]["BatchSize"] == 10
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    role = props["Role"]["Fn::GetAtt"][0]
    statements = [s for p in resources_of_type(template, "AWS::IAM::Policy").values()
                  if {"Ref": role} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]
    [submit] = [s for s in statements if s.get("Sid") == "Submit"]
    endpoint, _ = _one(template, "AWS::SageMaker::Endpoint", "HeavySmAsyncBatch")
    assert submit["Action"] == "sagemaker:InvokeEndpointAsync" and submit["Resource"] == {"Ref": endpoint}
    [subscription] = resources_of_type(template, "AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Protocol"] == "lambda"

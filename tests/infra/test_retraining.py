"""Retraining on new data: the starter against moto's Step Functions, and its CDK wiring.

The starter gets SQS batches of EventBridge "Object Created" events (recorded event:
tests/events/sqs_eventbridge_s3_object_created.json). moto's Step Functions (without
``execute_state_machine``) keeps a started execution RUNNING, which is what a real training
run looks like for the hours it takes.
"""

from __future__ import annotations

import copy
import json

import boto3
import pytest
from moto import mock_aws

from layers import names
from tests.conftest import load_event
from tests.infra.cfn import REGION, resources_of_type
from tests.infra.conftest import app_template, shared_synth
from tests.infra.test_stack import _synthesize

MODELS = ("clf-lambda", "digits")


def _batch(keys: list[str]) -> dict:
    """One SQS batch with an Object Created event per key (the recorded event, re-keyed)."""
    [record] = load_event("sqs_eventbridge_s3_object_created")["Records"]
    records = []
    for i, key in enumerate(keys):
        r = copy.deepcopy(record)
        body = json.loads(r["body"])
        body["detail"]["object"]["key"] = key
        r["body"], r["messageId"] = json.dumps(body), f"msg-{key}-{i}"
        records.append(r)
    return {"Records": records}


@pytest.fixture
def machines(monkeypatch):
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arns = {m: sfn.create_state_machine(
            name=f"training-{m}", roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        )["stateMachineArn"] for m in MODELS}
        monkeypatch.setenv(names.ENV_RETRAIN_STATE_MACHINES, json.dumps(arns))
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        import functions.retrain.handler as starter
        from layers import retraining

        monkeypatch.setattr(retraining, "_CLIENT", None)
        yield sfn, arns, starter


def _executions(sfn, arn: str) -> list[dict]:
    return sfn.list_executions(stateMachineArn=arn)["executions"]


def test_a_hundred_files_start_one_run(machines, lambda_context) -> None:
    sfn, arns, starter = machines
    # given a burst of 100 new training files for one model, delivered as one batch
    event = _batch([f"clf-lambda/train/part-{i:04d}.npz" for i in range(100)])
    # when the starter runs
    outcome = starter.handler(event, lambda_context)
    # then exactly one execution started, and its input says what arrived
    [execution] = _executions(sfn, arns["clf-lambda"])
    assert outcome == {"started": {"clf-lambda": execution["executionArn"]}, "running": {}}
    payload = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert payload["objects"] == 100 and payload["model"] == "clf-lambda"
    assert payload["keys"][0] == "clf-lambda/train/part-0000.npz" and len(payload["keys"]) == 20
    assert _executions(sfn, arns["digits"]) == []


def test_more_data_while_a_run_is_in_progress_starts_nothing(machines, lambda_context) -> None:
    sfn, arns, starter = machines
    first = starter.handler(_batch(["clf-lambda/train/a.npz"]), lambda_context)
    # when more files land while that run is still RUNNING
    second = starter.handler(_batch(["clf-lambda/train/b.npz", "clf-lambda/train/c.npz"]), lambda_context)
    # then no second run: the starter reports the one in progress
    assert second == {"started": {}, "running": {"clf-lambda": first["started"]["clf-lambda"]}}
    assert len(_executions(sfn, arns["clf-lambda"])) == 1


def test_a_retried_batch_does_not_start_a_second_run(machines, lambda_context) -> None:
    sfn, arns, starter = machines
    event = _batch(["digits/train/x.csv"])
    first = starter.handler(event, lambda_context)
    again = starter.handler(event, lambda_context)  # SQS redelivers the same batch
    assert again["started"] == first["started"] or again["running"] == first["started"]
    assert len(_executions(sfn, arns["digits"])) == 1


def test_two_batches_racing_for_one_model_leave_exactly_one_run(machines, lambda_context, monkeypatch) -> None:
    """The starter reserves no concurrency (a reservation below the event source's maximum
    concurrency of 2 throttles batches into the DLQ), so two batches can both pass the
    "nothing running" check; the newer run stops itself."""
    sfn, arns, starter = machines
    first = starter.handler(_batch(["clf-lambda/train/a.npz"]), lambda_context)["started"]["clf-lambda"]
    # given a second batch whose "is a run in progress?" check ran before the first run started
    from layers import retraining

    real = retraining.client()
    calls = {"n": 0}

    class Racing:
        def __getattr__(self, name):
            return getattr(real, name)

        def list_executions(self, **kw):
            calls["n"] += 1
            return {"executions": []} if calls["n"] == 1 else real.list_executions(**kw)

    monkeypatch.setattr(retraining, "_CLIENT", Racing())
    second = starter.handler(_batch(["clf-lambda/train/b.npz"]), lambda_context)
    # then the second batch's run stopped itself and reports the first one as the run
    assert second == {"started": {}, "running": {"clf-lambda": first}}
    running = sfn.list_executions(stateMachineArn=arns["clf-lambda"], statusFilter="RUNNING")["executions"]
    assert [e["executionArn"] for e in running] == [first]
    stopped = sfn.list_executions(stateMachineArn=arns["clf-lambda"], statusFilter="ABORTED")["executions"]
    assert len(stopped) == 1


def test_each_model_in_a_batch_gets_its_own_run_and_other_keys_are_ignored(machines, lambda_context) -> None:
    sfn, _, starter = machines
    event = _batch(["clf-lambda/train/a.npz", "digits/train/b.npz", "clf-lambda/in/batch.npz",
                    "unknown/train/c.npz", "digits/train/", "clf-lambda/trainer.py"])
    event["Records"].append({**event["Records"][0], "messageId": "junk", "body": "not json"})
    outcome = starter.handler(event, lambda_context)
    assert sorted(outcome["started"]) == ["clf-lambda", "digits"]
    digits = json.loads(sfn.describe_execution(executionArn=outcome["started"]["digits"])["input"])
    assert digits["objects"] == 1  # the folder marker digits/train/ is not data


def test_missing_configuration_says_what_to_set(monkeypatch, lambda_context) -> None:
    import functions.retrain.handler as starter

    monkeypatch.delenv(names.ENV_RETRAIN_STATE_MACHINES, raising=False)
    with pytest.raises(RuntimeError, match=names.ENV_RETRAIN_STATE_MACHINES):
        starter.handler(_batch(["clf-lambda/train/a.npz"]), lambda_context)


# --- CDK wiring (the shared stack synth: clf-lambda has training:) ---------------------------

@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    workdir, _info = shared_synth(tmp_path_factory, "stack", _synthesize)
    return app_template(workdir / "cdk.out")


@pytest.mark.slow
def test_new_objects_under_train_reach_the_starter_batched(template) -> None:
    [rule] = resources_of_type(template, "AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"] == {"key": [{"prefix": "clf-lambda/train/"}]}
    [batch_bucket] = [k for k in resources_of_type(template, "AWS::S3::Bucket") if k.startswith("BatchStorageBatch")]
    assert pattern["detail"]["bucket"] == {"name": [{"Ref": batch_bucket}]}
    # the trained model's stack turns EventBridge on for the shared bucket (merged, not owned)
    bridged = [n for n in resources_of_type(template, "Custom::S3BucketNotifications").values()
               if "EventBridgeConfiguration" in n["Properties"]["NotificationConfiguration"]]
    assert len(bridged) == 1 and bridged[0]["Properties"]["Managed"] is False
    assert bridged[0]["Properties"]["NotificationConfiguration"]["EventBridgeConfiguration"] == {}
    [target] = rule["Properties"]["Targets"]
    queue = target["Arn"]["Fn::GetAtt"][0]
    [mapping] = [m for m in resources_of_type(template, "AWS::Lambda::EventSourceMapping").values()
                 if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}]
    assert mapping["Properties"]["BatchSize"] == 10_000
    assert mapping["Properties"]["MaximumBatchingWindowInSeconds"] == 300
    starter = template["Resources"][mapping["Properties"]["FunctionName"]["Ref"]]["Properties"]
    assert starter["Handler"] == "functions.retrain.handler.handler"
    # no reservation below the event source's concurrency: nothing is throttled by design
    # (throttled batches count toward maxReceiveCount); racing batches settle in the starter
    assert "ReservedConcurrentExecutions" not in starter
    assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": 2}
    machines = json.dumps(starter["Environment"]["Variables"][names.ENV_RETRAIN_STATE_MACHINES])
    assert "clf-lambda" in machines and "TrainingStateMachine" in machines


@pytest.mark.slow
def test_the_starter_may_start_and_list_only_the_training_state_machines(template) -> None:
    role = next(r for r in resources_of_type(template, "AWS::IAM::Role")
                if r.startswith("ClfLambdaRetrainingRole"))
    statements = [s for p in resources_of_type(template, "AWS::IAM::Policy").values()
                  if {"Ref": role} in p["Properties"]["Roles"]
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    states = [s for s in statements if any(a.startswith("states:") for a in
                                           ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))]
    machine = next(iter(resources_of_type(template, "AWS::StepFunctions::StateMachine")))
    assert {json.dumps(s["Action"]) for s in states} == {
        '"states:StartExecution"', '"states:ListExecutions"', '"states:StopExecution"'}
    assert all(s["Resource"] == {"Ref": machine} for s in states if s["Action"] != "states:StopExecution")
    # StopExecution: only this machine's executions (the newer of two racing runs stops itself)
    [stop] = [s for s in states if s["Action"] == "states:StopExecution"]
    assert machine in json.dumps(stop["Resource"]) and ":execution:" in json.dumps(stop["Resource"])

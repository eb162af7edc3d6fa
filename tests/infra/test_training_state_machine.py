"""The synthesized training state machine, executed by moto's Step Functions.

moto 5.2 runs the definition (``execute_state_machine``) and forwards the SageMaker and
CodeBuild tasks to its own services: the training job it creates is the one a deployed
stack would create, with the catalog's image, instance type and hyperparameters, and the
build step starts the model's CodeBuild project on the job's artifact. moto's training jobs
complete at once and its builds succeed on the first BatchGetBuilds, so one execution walks
the happy path end to end (the Wait states are never reached).

What moto does not do, filled in here with moto's own converter: it forwards CodeBuild calls
without Step Functions' PascalCase ↔ CodeBuild's camelCase translation (``ProjectName`` →
``projectName``, ``id`` → ``Id``), which AWS does for every integration.

Where moto cannot fail a task, the failing answer is stubbed in its backend (:func:`build_ends`,
:func:`training_ends`): a build that exports the gate's outcome (``MODELFN_OUTCOME``, what
``modelfn train --deployed`` writes), a failed build, a failed training job. Each branch of
the definition then runs: deployed, kept live with the reason, build failed, training failed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from layers import names
from tests.infra.cfn import REGION, Resolver, definition, resources_of_type
from tests.infra.conftest import app_template, shared_synth
from tests.infra.test_stack import MODELS, _synthesize

pytestmark = pytest.mark.slow

TRAINED = next(m for m in MODELS if "training" in m)


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> tuple[Path, dict]:
    workdir, _info = shared_synth(tmp_path_factory, "stack", _synthesize)
    outdir = workdir / "cdk.out"
    return outdir, app_template(outdir)


@pytest.fixture
def codebuild_casing(monkeypatch):
    """Translate Step Functions' PascalCase to CodeBuild's camelCase and back, as AWS does."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )

    def operation(task, service_name):
        client = boto3.client(service_name, region_name=REGION)
        action = task._get_boto_service_action()
        return client.meta.service_model.operation_model(client.meta.method_to_api_mapping[action])

    original_params, original_response = StateTaskService._normalise_parameters, StateTaskService._normalise_response

    def params(self, parameters, boto_service_name=None, service_action_name=None):
        service = self._get_boto_service_name(boto_service_name)
        if service != "codebuild":
            return original_params(self, parameters, boto_service_name, service_action_name)
        self._to_boto_request(parameters, operation(self, service).input_shape)

    def response(self, value, boto_service_name=None, service_action_name=None):
        service = self._get_boto_service_name(boto_service_name)
        if service != "codebuild":
            return original_response(self, value, boto_service_name, service_action_name)
        self._from_boto_response(value, operation(self, service).output_shape)

    monkeypatch.setattr(StateTaskService, "_normalise_parameters", params)
    monkeypatch.setattr(StateTaskService, "_normalise_response", response)


OUTCOME_WON = {"model": "clf-lambda", "live_version": "aaaa11112222", "version": "bbbb33334444",
               "promoted": True, "reason": "accuracy 0.97 vs live 0.95", "deployments": {"api": "d-1", "batch": "d-2"}}
OUTCOME_LOST = {**OUTCOME_WON, "promoted": False, "deployments": {},
                "reason": "accuracy 0.61 is 0.340 below the live version's 0.95 (max_accuracy_drop 0.01)"}


@pytest.fixture
def build_ends(monkeypatch):
    """Make moto's builds end ``status``, exporting ``outcome`` as the buildspec does."""
    from moto.codebuild.models import CodeBuildBackend

    def set_(status: str = "SUCCEEDED", outcome: dict | None = None) -> None:
        original = CodeBuildBackend.batch_get_builds

        def batch_get_builds(self, ids):
            builds = original(self, ids)
            for b in builds:
                b["buildStatus"] = status
                if outcome is not None:
                    b["exportedEnvironmentVariables"] = [
                        {"name": "MODELFN_OUTCOME", "value": json.dumps(outcome, separators=(",", ":"))}]
            return builds

        monkeypatch.setattr(CodeBuildBackend, "batch_get_builds", batch_get_builds)

    return set_


@pytest.fixture
def training_ends(monkeypatch):
    """Make moto's training jobs end Failed with ``reason`` (moto completes every job)."""
    from moto.sagemaker.models import SageMakerModelBackend

    def set_(reason: str) -> None:
        original = SageMakerModelBackend.describe_training_job

        def describe(self, name):
            return {**original(self, name), "TrainingJobStatus": "Failed", "FailureReason": reason}

        monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe)

    return set_


def _only(found: dict[str, dict], what: str) -> tuple[str, dict]:
    assert len(found) == 1, f"expected one {what}, found {sorted(found)}"
    return next(iter(found.items()))


def _image_asset(outdir: Path, template: dict, image_uri: str) -> dict:
    """The docker image asset whose pushed tag is ``image_uri``'s tag."""
    tag = image_uri.rsplit(":", 1)[1]
    for path in outdir.glob("*.assets.json"):
        for digest, asset in json.loads(path.read_text()).get("dockerImages", {}).items():
            if digest == tag:
                return asset
    raise AssertionError(f"no docker image asset tagged {tag}")


def _run(template: dict) -> tuple[dict, list[dict], Resolver]:
    """Create what the definition points at in moto, start one execution, wait for its end."""
    arn, resolve = create_state_machine(template)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"trigger": "test"}))["executionArn"]
    status = wait_for(execution)
    history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    return status, history, resolve


def wait_for(execution: str, timeout_s: float = 60) -> dict:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    deadline = time.monotonic() + timeout_s
    while (status := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"the execution did not finish in {timeout_s} s"
        time.sleep(0.1)
    return status


def create_state_machine(template: dict) -> tuple[str, Resolver]:
    """The synthesized training state machine in moto, with what it points at; its ARN."""
    machine, _ = _only(resources_of_type(template, "AWS::StepFunctions::StateMachine"), "state machine")
    project, project_res = _only(resources_of_type(template, "AWS::CodeBuild::Project"), "project")
    resolve = Resolver(template)
    codebuild = boto3.client("codebuild", region_name=REGION)
    created = codebuild.create_project(
        name=resolve.name(project), source={"type": "S3", "location": "assets/source.zip"},
        artifacts={"type": "NO_ARTIFACTS"}, serviceRole=resolve(project_res["Properties"]["ServiceRole"]),
        environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                     "computeType": "BUILD_GENERAL1_MEDIUM"},
    )["project"]
    resolve.known[f"{project}.Arn"] = created["arn"]
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in resources_of_type(template, "AWS::S3::Bucket"):
        s3.create_bucket(Bucket=resolve.name(bucket))
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(
        name=resolve.name(machine), definition=json.dumps(definition(template, machine, resolve)),
        roleArn=resolve(template["Resources"][machine]["Properties"]["RoleArn"]),
    )["stateMachineArn"]
    return arn, resolve


def _scheduled(history: list[dict], resource: str) -> list[dict]:
    return [json.loads(e["taskScheduledEventDetails"]["parameters"]) for e in history
            if e["type"] == "TaskScheduled" and e["taskScheduledEventDetails"]["resource"] == resource]


@mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
def test_the_synthesized_definition_trains_with_the_catalog_parameters_then_builds(
    synthesized, codebuild_casing, build_ends
) -> None:
    outdir, template = synthesized
    build_ends("SUCCEEDED", OUTCOME_WON)
    # when the synthesized definition runs
    status, history, resolve = _run(template)
    # then it succeeds through every step, in order
    assert status["status"] == "SUCCEEDED", (status.get("error"), status.get("cause"))
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]
    assert entered == ["Hyperparameters?", "CatalogHyperparameters", "NameJob", "Train", "CheckTraining", "TrainingDone?", "KeepTrainingLogs",
                       "TrainingOutcome", "BuildTrained", "CheckBuild", "BuildDone?", "ReadOutcome",
                       "ParseOutcome", "Promoted?", "Summarize", "Deployed"]
    # and the training job it created carries the catalog's parameters
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    [summary] = sagemaker.list_training_jobs()["TrainingJobSummaries"]
    job = sagemaker.describe_training_job(TrainingJobName=summary["TrainingJobName"])
    assert job["TrainingJobName"].startswith(f"{TRAINED['name']}-")
    assert job["ResourceConfig"]["InstanceType"] == TRAINED["training"]["instance_type"]
    assert job["ResourceConfig"]["InstanceCount"] == TRAINED["training"]["instance_count"] == 2
    assert job["HyperParameters"] == {k: str(v) for k, v in TRAINED["training"]["hyperparameters"].items()}
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600  # the catalog default
    [channel] = job["InputDataConfig"]
    batch_bucket = resolve.name(next(k for k in resources_of_type(template, "AWS::S3::Bucket") if "Batch" in k
                                     and "AccessLogs" not in k))
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"].endswith(f"/{batch_bucket}/{TRAINED['name']}/train/")
    # the image is the model's own training image, built with CUDA torch for a GPU instance
    asset = _image_asset(outdir, template, job["AlgorithmSpecification"]["TrainingImage"])
    assert asset["source"]["platform"] == "linux/amd64"
    assert asset["source"]["dockerBuildArgs"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    assert (outdir / asset["source"]["directory"] / "functions" / "training" / "train.py").is_file()
    # the user's entry point runs in it, from the code the image carries
    [train] = _scheduled(history, "createTrainingJob")
    assert train["Environment"] == {names.ENV_TRAINING_ENTRY_POINT: TRAINED["training"]["entry_point"]}
    assert (outdir / asset["source"]["directory"] / "code" / "trainer.py").is_file()
    # and the build step started the model's project on the job's artifact
    [build] = _scheduled(history, "startBuild")
    assert build["ProjectName"] == resolve.name(_only(resources_of_type(template, "AWS::CodeBuild::Project"), "")[0])
    assert build["EnvironmentVariablesOverride"] == [{
        "Name": "MODEL_ARTIFACT", "Type": "PLAINTEXT", "Value": job["ModelArtifacts"]["S3ModelArtifacts"]}]
    [build_id] = boto3.client("codebuild", region_name=REGION).list_builds_for_project(
        projectName=build["ProjectName"])["ids"]
    assert _scheduled(history, "batchGetBuilds") == [{"Ids": [build_id]}]
    # and the execution's output says what it made and put live
    assert json.loads(status["output"]) == {
        "training_job": job["TrainingJobName"], "build": build_id,
        "artifact": job["ModelArtifacts"]["S3ModelArtifacts"], "version": "bbbb33334444",
        "live_version": "aaaa11112222", "promoted": True, "reason": OUTCOME_WON["reason"],
        "deployments": {"api": "d-1", "batch": "d-2"}}


def _ended(history: list[dict]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]


@mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
def test_a_candidate_that_loses_the_gate_ends_the_run_with_the_reason_and_deploys_nothing(
    synthesized, codebuild_casing, build_ends
) -> None:
    _, template = synthesized
    build_ends("SUCCEEDED", OUTCOME_LOST)
    status, history, _ = _run(template)
    assert status["status"] == "SUCCEEDED"
    assert _ended(history)[-3:] == ["Promoted?", "GateKeptLive", "NotPromoted"]
    output = json.loads(status["output"])
    assert output["promoted"] is False and output["reason"] == OUTCOME_LOST["reason"]
    assert output["live_version"] == "aaaa11112222" and "deployments" not in output


@mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
def test_a_failed_build_fails_the_run_naming_the_build_and_its_log(synthesized, codebuild_casing, build_ends) -> None:
    _, template = synthesized
    build_ends("FAILED")
    status, history, _ = _run(template)
    assert status["status"] == "FAILED" and status["error"] == "BuildFailed"
    assert "ended FAILED; its log is in CloudWatch" in status["cause"]
    assert _ended(history)[-1] == "BuildFailed"


@mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
def test_a_failed_training_job_fails_the_run_with_its_reason_and_builds_nothing(
    synthesized, codebuild_casing, training_ends
) -> None:
    _, template = synthesized
    training_ends("AlgorithmError: ValueError: no .npz in /opt/ml/input/data/train")
    status, history, _ = _run(template)
    assert status["status"] == "FAILED" and status["error"] == "TrainingFailed"
    assert status["cause"] == "AlgorithmError: ValueError: no .npz in /opt/ml/input/data/train"
    entered = _ended(history)
    assert "BuildTrained" not in entered and entered[-3:] == ["KeepTrainingLogs", "TrainingOutcome", "TrainingFailed"]

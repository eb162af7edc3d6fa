"""What only a real deploy would reject, asserted over every stack of the synthesized app.

Each test is named after the failure it prevents (issue 22). They iterate over every stack
of the cloud assembly, so they hold however the app is split into stacks.
"""

from __future__ import annotations

import pytest

from infra.cdk.sagemaker_instances import has_local_storage
from tests.infra.conftest import shared_synth, stack_templates
from tests.infra.test_stack import _synthesize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, dict]:
    workdir, _ = shared_synth(tmp_path_factory, "stack", _synthesize)
    return stack_templates(workdir / "cdk.out")


def _all(templates: dict[str, dict], type_: str) -> dict[str, dict]:
    """``{stack/logical id: resource}`` of one type across every stack."""
    return {f"{stack}/{logical}": res for stack, t in templates.items()
            for logical, res in t.get("Resources", {}).items() if res["Type"] == type_}


def _function_of(templates: dict[str, dict], mapping_key: str, mapping: dict) -> dict:
    """The function an event source mapping invokes (its own, its alias', or its version's)."""
    stack = mapping_key.split("/")[0]
    resources = templates[stack]["Resources"]
    logical = _first_ref(mapping["Properties"]["FunctionName"])
    while logical is not None and resources[logical]["Type"] in ("AWS::Lambda::Alias", "AWS::Lambda::Version"):
        logical = _first_ref(resources[logical]["Properties"]["FunctionName"])
    assert logical is not None, f"{mapping_key}: cannot tell which function it invokes"
    return resources[logical]


def _first_ref(value) -> str | None:
    """The resource a (possibly Join/Select-wrapped) reference points at."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        value = list(value.values())
    if isinstance(value, list):
        return next((r for v in value if (r := _first_ref(v)) is not None), None)
    return None


def test_every_sqs_event_source_is_bounded_so_a_burst_of_uploads_cannot_take_the_account(templates):
    mappings = _all(templates, "AWS::Lambda::EventSourceMapping")
    assert mappings, "the app has SQS event sources"
    for key, mapping in mappings.items():
        props = mapping["Properties"]
        assert props.get("BatchSize"), f"{key}: no batch size"
        assert (props.get("ScalingConfig") or {}).get("MaximumConcurrency"), f"{key}: unbounded concurrency"


def test_every_sqs_event_source_reports_item_failures_unless_it_debounces(templates):
    """A failed object is retried alone; the retraining starter (one run per batch) is the
    one source that fails whole batches on purpose."""
    for key, mapping in _all(templates, "AWS::Lambda::EventSourceMapping").items():
        props = mapping["Properties"]
        if props.get("MaximumBatchingWindowInSeconds", 0) >= 60:
            continue  # the retraining debounce: the batch is the unit of work
        assert props.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], key


def test_no_function_reserves_less_than_its_event_source_may_run_so_nothing_is_throttled_by_design(templates):
    for key, mapping in _all(templates, "AWS::Lambda::EventSourceMapping").items():
        fn = _function_of(templates, key, mapping)
        reserved = fn["Properties"].get("ReservedConcurrentExecutions")
        concurrency = mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"]
        assert reserved is None or reserved >= concurrency, (
            f"{key}: reserved concurrency {reserved} < event source maximum concurrency {concurrency}")


def test_published_versions_survive_a_deploy_so_rollback_has_something_to_go_back_to(templates):
    versions = _all(templates, "AWS::Lambda::Version")
    assert versions
    for key, version in versions.items():
        assert version.get("DeletionPolicy") == "Retain", f"{key}: deleted by the next deploy"
        assert version.get("UpdateReplacePolicy") == "Retain", key


def test_no_volume_kms_key_for_instance_types_with_local_storage_so_create_training_job_succeeds(templates):
    from tests.infra.cfn import Resolver, definition

    seen = 0
    for stack, template in templates.items():
        for logical, res in template.get("Resources", {}).items():
            if res["Type"] != "AWS::StepFunctions::StateMachine":
                continue
            states = definition(template, logical, Resolver(template))["States"]
            for state in states.values():
                if state.get("Resource", "").endswith(":sagemaker:createTrainingJob"):
                    config = state["Parameters"]["ResourceConfig"]
                    seen += 1
                    if has_local_storage(config["InstanceType"]):
                        assert "VolumeKmsKeyId" not in config, f"{stack}/{logical}: {config}"
                    else:
                        assert config.get("VolumeKmsKeyId"), f"{stack}/{logical}: unencrypted volume"
    assert seen, "the app trains a model"
    for key, config in _all(templates, "AWS::SageMaker::EndpointConfig").items():
        types = [v["InstanceType"] for v in config["Properties"]["ProductionVariants"]]
        if any(has_local_storage(t) for t in types):
            assert "KmsKeyId" not in config["Properties"], key


def test_endpoint_updates_keep_the_scaled_instance_count(templates):
    endpoints = _all(templates, "AWS::SageMaker::Endpoint")
    assert endpoints
    for key, endpoint in endpoints.items():
        assert endpoint["Properties"].get("RetainAllVariantProperties") is True, key


def test_every_log_group_has_a_retention_and_every_function_logs_to_one(templates):
    groups = _all(templates, "AWS::Logs::LogGroup")
    for key, group in groups.items():
        assert group["Properties"].get("RetentionInDays"), f"{key}: kept (and billed) forever"
    for key, fn in _all(templates, "AWS::Lambda::Function").items():
        stack = key.split("/")[0]
        ref = ((fn["Properties"].get("LoggingConfig") or {}).get("LogGroup") or {})
        logical = ref.get("Ref") if isinstance(ref, dict) else None
        assert logical in templates[stack]["Resources"], f"{key}: logs to a group Lambda creates without retention"
    for key, project in _all(templates, "AWS::CodeBuild::Project").items():
        stack = key.split("/")[0]
        cw = project["Properties"]["LogsConfig"]["CloudWatchLogs"]
        assert cw["Status"] == "ENABLED" and cw["GroupName"]["Ref"] in templates[stack]["Resources"], key
    for key, endpoint in _all(templates, "AWS::SageMaker::Endpoint").items():
        stack = key.split("/")[0]
        name = endpoint["Properties"]["EndpointName"]
        names = {g["Properties"].get("LogGroupName") for g in _all({stack: templates[stack]}, "AWS::Logs::LogGroup").values()}
        assert f"/aws/sagemaker/Endpoints/{name}" in names, f"{key}: SageMaker would create its group without retention"


def test_zip_functions_run_the_images_python_not_a_missing_ssm_parameter(templates):
    for key, fn in _all(templates, "AWS::Lambda::Function").items():
        runtime = fn["Properties"].get("Runtime")
        if runtime is None or "Handler" not in fn["Properties"] or key.split("/")[1].startswith("BucketNotificationsHandler"):
            continue
        assert runtime == "python3.13", f"{key}: {runtime}"
    for stack, template in templates.items():
        params = template.get("Parameters", {})
        assert not [p for p in params.values() if "powertools" in str(p.get("Default", ""))], stack


def _statements(templates: dict[str, dict]):
    for key, policy in _all(templates, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            yield key, policy, statement, actions


def test_a_training_job_cannot_list_other_models_keys(templates):
    for key, _, statement, actions in _statements(templates):
        if "TrainingRole" not in key:
            continue
        assert "s3:List*" not in actions, f"{key}: lists the whole bucket"
        if "s3:ListBucket" in actions:
            prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
            assert all(p.startswith(prefixes[0].split("/")[0] + "/") for p in prefixes), key


def test_a_missing_result_is_a_404_not_a_403_for_every_role_that_checks_for_one(templates):
    """HeadObject answers 404 only to callers with s3:ListBucket; a StringLike on s3:prefix
    (absent from a HEAD request) would not match and make it a 403 (infra/cdk/constructs/
    batch_pipeline.py:list_for_missing_keys has the sources)."""
    found = 0
    for key, _, statement, _actions in _statements(templates):
        if statement.get("Sid") == "ListOwnPrefix":
            found += 1
            assert list(statement["Condition"]) == ["StringLikeIfExists"], key
    assert found >= 3  # each Lambda model's batch role, the async container and glue roles


def _synthesize_unreserved(workdir) -> dict:
    """One Lambda model that reserves concurrency, synthesized with the account switch off."""
    from infra.cdk.app import build_app
    from tests.infra.conftest import app_context, write_built_model, write_catalog

    catalog = write_catalog(workdir / "catalog", [{"name": "clf", "source": "src/clf.onnx",
                                                   "reserved_concurrency": 3, "batch": {"max_concurrency": 4}}])
    build = workdir / "build"
    write_built_model(build, "clf", seed=1)
    app, _ = build_app(context=app_context(catalog, build, **{"modelfn:reserve_concurrency": "false"}),
                       outdir=str(workdir / "cdk.out"), checks=False)
    app.synth()
    return {}


def test_a_new_account_deploy_reserves_nothing_and_warns_for_each_skipped_reservation(tmp_path_factory):
    """``modelfn:reserve_concurrency=false`` (what doctor/deploy pass when the account's quota
    cannot afford the catalog's reservations) flows settings → constructs: no function
    reserves, and each skipped reservation is a synth warning, never silent."""
    from tests.infra.conftest import stack_warnings

    workdir, _ = shared_synth(tmp_path_factory, "stack-unreserved", _synthesize_unreserved)
    templates = stack_templates(workdir / "cdk.out")
    functions = _all(templates, "AWS::Lambda::Function")
    assert functions and not [k for k, f in functions.items() if "ReservedConcurrentExecutions" in f["Properties"]]
    warnings = [w for w in stack_warnings(workdir / "cdk.out") if "reserved concurrency" in w]
    assert any("clf api: reserved concurrency 3 skipped" in w for w in warnings), warnings
    assert any("clf batch: reserved concurrency 4 skipped" in w for w in warnings), warnings

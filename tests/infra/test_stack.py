"""The whole app for a catalog with a lambda model, a sagemaker model and a public model.

Synthesized once for the module (all checks on: cdk-nag fails the synth on any finding),
then asserted resource by resource: what exists, how it is sized, who may call what.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest
from aws_cdk.assertions import Capture, Match, Template

from infra.cdk.app import build_app
from layers import names
from layers.protocols import route_table
from tests.infra.conftest import (
    app_context,
    app_template,
    cfn_lint_errors,
    shared_synth,
    stack_warnings,
    write_built_model,
    write_catalog,
)

pytestmark = pytest.mark.slow
TABLE = route_table()

MODELS = [
    {"name": "clf-lambda", "source": "src/clf.onnx", "architecture": "arm64",
     "reserved_concurrency": 3, "provisioned_concurrency": 2,
     "validation": "src/clf_val.npz",
     "training": {"entry_point": "trainer:train", "instance_type": "ml.g5.xlarge",
                  "hyperparameters": {"epochs": 3}, "instance_count": 2}},
    {"name": "heavy-sm", "source": "src/heavy.onnx", "target": "sagemaker",
     "instance_type": "ml.g5.xlarge", "auth": "jwt"},
    {"name": "open-model", "source": "src/open.onnx", "auth": "none", "memory_mb": 1024,
     "timeout_s": 10,
     "batch": {"max_concurrency": 5, "batch_size": 50, "max_batching_window_s": 2, "max_receive_count": 4,
               "retry_delay_s": 30}},
]
ISSUER = "https://issuer.example.com/"


def _synthesize(workdir: Path) -> dict:
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    catalog = write_catalog(workdir / "catalog", MODELS)
    build = workdir / "build"
    write_built_model(build, "clf-lambda", seed=1)
    write_built_model(build, "heavy-sm", target="sagemaker", seed=2)
    write_built_model(build, "open-model", seed=3)
    app, stack = build_app(
        context=app_context(catalog, build, **{"modelfn:jwt_issuer": ISSUER,
                                               "modelfn:jwt_audience": "client-a,client-b"}),
        outdir=str(workdir / "cdk.out"),
    )
    app.synth()  # raises if cdk-nag reports any unacknowledged finding
    violations = [v.rule_name for pack in (AwsSolutionsChecks(app), ServerlessChecks(app))
                  for v in pack.validate_scope(app).violations]
    return {"stack_name": stack.stack_name, "nag_violations": violations,
            "cfn_lint_errors": cfn_lint_errors(workdir / "cdk.out")}


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory) -> tuple[Path, dict]:
    """(cloud assembly dir, info), synthesized once per session (all checks on)."""
    workdir, info = shared_synth(tmp_path_factory, "stack", _synthesize)
    return workdir / "cdk.out", info


@pytest.fixture(scope="module")
def template(synthesized) -> Template:
    outdir, _info = synthesized
    return Template.from_json(app_template(outdir))


def resources(template: Template, type_: str) -> dict[str, dict]:
    return template.find_resources(type_)


def function_by_description(template: Template, needle: str) -> tuple[str, dict]:
    found = [(k, r) for k, r in resources(template, "AWS::Lambda::Function").items()
             if needle in r["Properties"].get("Description", "")]
    assert len(found) == 1, f"expected one function described {needle!r}, found {len(found)}"
    return found[0]


def test_synthesizes_exactly_the_expected_resources(template: Template) -> None:
    # given a lambda model (+ training), a sagemaker model and a public lambda model
    counts = collections.Counter(r["Type"] for r in template.to_json()["Resources"].values())
    # then exactly these resources, no more, no fewer
    # (summed over the shared stack and the three model stacks)
    assert dict(counts) == {
        # 2 lambda models × (api + batch) + the proxy + the async-batch glue + the retraining
        # starter + CDK's S3-notification handler in each model stack (3) + each lambda model's
        # control function (training and versions over HTTPS) + the OpenAI router
        "AWS::Lambda::Function": 13, "AWS::Lambda::Version": 5, "AWS::Lambda::Alias": 5,
        # one per model for all its routes, SNS → the glue, control, the API → the OpenAI router,
        # and each model's alias → the router's role
        "AWS::Lambda::Permission": 3 + 1 + 2 + 1 + 3,
        "AWS::SSM::Parameter": 3,  # each model's entry in the OpenAI router's registry
        "AWS::Lambda::EventSourceMapping": 4,
        "AWS::IAM::Role": 24, "AWS::IAM::Policy": 18,
        # 9 functions + CDK's notification handler in each model stack (3), API access logs,
        # state machine, CodeBuild, the two endpoints' groups (made before SageMaker would make
        # them without retention)
        "AWS::Logs::LogGroup": 18,
        "AWS::Lambda::LayerVersion": 1,  # Powertools for the proxy, at the images' versions
        # one CodeDeploy application per lambda model, one deployment group per function
        "AWS::CodeDeploy::Application": 2, "AWS::CodeDeploy::DeploymentGroup": 4,
        # errors + p99 per model function, DLQs, the async endpoint's scale-from-zero step
        "AWS::CloudWatch::Alarm": 4 * 2 + 2 + 1 + 2,
        "AWS::CloudWatch::Dashboard": 3 + 1,  # one per model + the index
        "AWS::ApiGatewayV2::Api": 1, "AWS::ApiGatewayV2::Stage": 1,
        "AWS::ApiGatewayV2::Integration": 3 + 2 + 1,  # + each lambda model's control function, the router
        # per model, the server routes (one model), $default: the route table's
        "AWS::ApiGatewayV2::Route": 3 * len(TABLE.model_gateway_routes("m")) + len(TABLE.server_gateway_routes()) + 1
        + 2 * len(TABLE.control_gateway_routes("m"))  # each lambda model's control routes
        + len(TABLE.router_routes()),  # the shared /openai/v1 routes onto the OpenAI router
        "AWS::ApiGatewayV2::Authorizer": 1,  # JWT; IAM and none need no authorizer resource
        "AWS::S3::Bucket": 3, "AWS::S3::BucketPolicy": 3,  # batch, access logs, training
        "Custom::S3BucketNotifications": 3,  # each model stack's own, merged on the one bucket
        # every model's batch queue + the retraining queue, each with its DLQ
        "AWS::SQS::Queue": 4 * 2, "AWS::SQS::QueuePolicy": 4 * 2,
        "AWS::SNS::Topic": 1, "AWS::SNS::TopicPolicy": 1, "AWS::SNS::Subscription": 1,
        "AWS::Events::Rule": 1,  # new objects under <model>/train/ → retraining
        "AWS::DynamoDB::Table": 1,
        # the real-time endpoint and the asynchronous (batch) one
        "AWS::SageMaker::Model": 2, "AWS::SageMaker::EndpointConfig": 2,
        "AWS::SageMaker::Endpoint": 2,
        "AWS::ApplicationAutoScaling::ScalableTarget": 2,
        "AWS::ApplicationAutoScaling::ScalingPolicy": 1 + 2,
        "AWS::StepFunctions::StateMachine": 1, "AWS::CodeBuild::Project": 1,
        "AWS::KMS::Key": 1,
    }


def test_outputs_are_the_api_url_each_infer_url_and_the_bucket(template: Template) -> None:
    outputs = template.to_json()["Outputs"]
    expected = {names.OUTPUT_API_URL, names.OUTPUT_BATCH_BUCKET,
                *(names.output_infer_url(m["name"]) for m in MODELS),
                *(names.output_deployment(m["name"]) for m in MODELS if m.get("target") != "sagemaker")}
    assert set(outputs) == expected
    url = json.dumps(outputs[names.output_infer_url("heavy-sm")]["Value"])
    assert "v2/models/heavy-sm/infer" in url


def test_public_model_warns_at_synth(synthesized) -> None:
    warnings = stack_warnings(synthesized[0])
    assert [w for w in warnings if "model 'open-model' has auth: none" in w]
    assert not [w for w in warnings if "clf-lambda" in w or "heavy-sm" in w]


def test_model_functions_are_sized_from_catalog_then_fit(template: Template) -> None:
    fns = {r["Properties"]["Description"]: r["Properties"]
           for r in resources(template, "AWS::Lambda::Function").values()
           if "Description" in r["Properties"]}
    clf_api = next(v for k, v in fns.items() if k.startswith("modelfn clf-lambda") and "HTTP" in k)
    clf_batch = next(v for k, v in fns.items() if k.startswith("modelfn clf-lambda") and "batch" in k)
    open_api = next(v for k, v in fns.items() if k.startswith("modelfn open-model") and "HTTP" in k)
    assert clf_api["MemorySize"] == 1536  # from the manifest's fit report
    assert clf_api["Timeout"] == 20
    assert clf_api["Architectures"] == ["arm64"]
    assert clf_api["ReservedConcurrentExecutions"] == 3
    assert clf_api["PackageType"] == "Image"
    assert clf_api["ImageConfig"]["Command"] == [names.API_HANDLER]
    assert clf_api["TracingConfig"] == {"Mode": "Active"}
    assert clf_api["Environment"]["Variables"][names.ENV_MODEL_DIR] == "/var/task/model"
    assert clf_batch["ImageConfig"]["Command"] == [names.BATCH_HANDLER]
    assert clf_batch["Timeout"] == names.LAMBDA_MAX_TIMEOUT_S
    assert names.ENV_IDEMPOTENCY_TABLE in clf_batch["Environment"]["Variables"]
    assert open_api["MemorySize"] == 1024 and open_api["Timeout"] == 10  # catalog wins
    assert open_api["Architectures"] == ["x86_64"]


def test_live_alias_with_canary_rolls_back_on_alarms(template: Template) -> None:
    template.has_resource_properties("AWS::Lambda::Alias", {
        "Name": "live",
        "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2},
    })
    template.all_resources_properties("AWS::CodeDeploy::DeploymentGroup", {
        "DeploymentConfigName": "CodeDeployDefault.LambdaCanary10Percent5Minutes",
        "AlarmConfiguration": {"Alarms": Match.any_value(), "Enabled": True},
        "AutoRollbackConfiguration": {"Enabled": True, "Events": Match.array_with(
            ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"])},
    })
    judged = {k: r["Properties"]["AlarmConfiguration"]["Alarms"]
              for k, r in resources(template, "AWS::CodeDeploy::DeploymentGroup").items()}
    # the API canary rolls back on errors or p99; the batch canary on its errors alone
    assert {k: len(v) for k, v in judged.items()} == {
        k: (2 if "Api" in k else 1) for k in judged}, judged
    template.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "Duration", "ExtendedStatistic": "p99",
        "Dimensions": Match.array_with([Match.object_like({"Name": "Resource"})]),
    })


def test_routes_and_auth_follow_the_catalog(template: Template) -> None:
    routes = {r["Properties"]["RouteKey"]: r["Properties"].get("AuthorizationType")
              for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    for name, auth in (("clf-lambda", "AWS_IAM"), ("heavy-sm", "JWT"), ("open-model", "NONE")):
        base = f"/v2/models/{name}"
        # the model's three routes: its metadata and two catch-alls that carry every other path
        # (infer, ready, versions, generate, the pinned OpenAI form): the API's routes quota
        for key in (f"GET {base}", f"ANY {base}/{{proxy+}}", f"ANY /openai/{name}/{{proxy+}}"):
            assert routes[key] == auth, key
        assert f"POST {base}/infer" not in routes
    for key in ("GET /v2/health/live", "GET /v2/health/ready", "GET /openapi.json",
                "GET /docs", "$default"):
        assert routes[key] == "AWS_IAM"  # the first model's auth
    # one invoke permission per model, for every route prefix of its protocols (/v2/models/…,
    # /openai/<name>/…): the whole shared API, not one path
    api_permissions = {lid: p["Properties"] for lid, p in resources(template, "AWS::Lambda::Permission").items()
                       if p["Properties"]["Principal"] == "apigateway.amazonaws.com"}
    # each lambda model's control function has its own, scoped to that model's control paths
    control = {lid: p for lid, p in api_permissions.items() if "Control" in lid}
    assert len(control) == 2 and all("/v2/models/" in json.dumps(p["SourceArn"]) for p in control.values())
    router = {lid: p for lid, p in api_permissions.items() if "OpenAIRouter" in lid}
    assert len(router) == 1 and "/openai/v1/*" in json.dumps(next(iter(router.values()))["SourceArn"])
    api_permissions = [p for lid, p in api_permissions.items() if lid not in control and lid not in router]
    assert len(api_permissions) == 3
    for permission in api_permissions:
        arn = json.dumps(permission["SourceArn"])
        assert arn.endswith('"/*"]]}') and "HttpApi" in arn, arn
    template.has_resource_properties("AWS::ApiGatewayV2::Authorizer", {
        "AuthorizerType": "JWT",
        "JwtConfiguration": {"Issuer": ISSUER, "Audience": ["client-a", "client-b"]},
    })


def test_the_shared_openai_form_goes_to_the_router_which_may_invoke_each_registered_model(template) -> None:
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in resources(template, "AWS::ApiGatewayV2::Route").values()}
    for route in TABLE.router_routes():  # every body-routed and catalog route, the first model's auth
        props = routes[f"{route.method} {route.path}"]
        assert props["AuthorizationType"] == "AWS_IAM" and "OpenAIRouter" in json.dumps(props["Target"])
    assert "POST /openai/v1/embeddings" in routes and "GET /openai/v1/models" in routes
    (fn,) = [f for k, f in resources(template, "AWS::Lambda::Function").items() if "OpenAIRouter" in k]
    assert fn["Properties"]["Handler"] == names.OPENAI_ROUTER_HANDLER and fn["Properties"]["Runtime"] == "python3.13"
    settings = json.dumps(fn["Properties"]["Environment"]["Variables"][names.ENV_OPENAI_ROUTER])
    assert "/modelfn/" in settings and "POST /openai/v1/embeddings" in settings
    # the router's role reads the registry path and nothing else; invoking is each model's grant
    (policy,) = [p for k, p in resources(template, "AWS::IAM::Policy").items() if "OpenAIRouterRole" in k]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    ssm = [st for st in statements if st.get("Sid") == "ReadRegistry"]
    assert ssm and ssm[0]["Action"] == "ssm:GetParametersByPath" and "parameter/modelfn/" in json.dumps(ssm[0]["Resource"])
    assert not any("lambda:" in json.dumps(st["Action"]) for st in statements)
    parameters = [p["Properties"] for p in resources(template, "AWS::SSM::Parameter").values()]
    assert sorted(p["Name"].rsplit("/", 1)[-1] for p in parameters) == ["clf-lambda", "heavy-sm", "open-model"]
    grants = [p["Properties"] for p in resources(template, "AWS::Lambda::Permission").values()
              if "OpenAIRouterRole" in json.dumps(p["Properties"]["Principal"])]  # (the app's merged template)
    assert len(grants) == 3
    assert all("Live" in json.dumps(g["FunctionName"]) for g in grants)  # the front's alias, never $LATEST


def test_stage_is_throttled_logged_and_cors_is_off(template: Template) -> None:
    fmt = Capture()
    template.has_resource_properties("AWS::ApiGatewayV2::Stage", {
        "StageName": "$default", "AutoDeploy": True,
        "DefaultRouteSettings": {"ThrottlingRateLimit": 100, "ThrottlingBurstLimit": 200},
        "AccessLogSettings": {"DestinationArn": Match.any_value(), "Format": fmt},
    })
    assert json.loads(fmt.as_string())["status"] == "$context.status"
    api = next(iter(resources(template, "AWS::ApiGatewayV2::Api").values()))
    assert "CorsConfiguration" not in api["Properties"]


def test_batch_bucket_is_locked_down(template: Template) -> None:
    template.has_resource_properties("AWS::S3::Bucket", {
        "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": Match.object_like({}),
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "LoggingConfiguration": {"DestinationBucketName": Match.any_value(),
                                 "LogFilePrefix": "batch/"},
    })
    for policy in resources(template, "AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in statements)


def test_each_model_prefix_notifies_its_own_queue(template: Template) -> None:
    # each model stack merges its own notifications into the shared bucket's (Managed: false)
    notifs = resources(template, "Custom::S3BucketNotifications").values()
    assert all(n["Properties"]["Managed"] is False for n in notifs)
    configs = [c for n in notifs
               for c in n["Properties"]["NotificationConfiguration"].get("QueueConfigurations", [])]
    prefixes = sorted(c["Filter"]["Key"]["FilterRules"][0]["Value"] for c in configs)
    assert prefixes == ["clf-lambda/in/", "heavy-sm/in/", "open-model/in/"]  # heavy-sm: async
    assert all(c["Events"] == ["s3:ObjectCreated:*"] for c in configs)
    template.has_resource_properties("AWS::SQS::Queue", {
        "VisibilityTimeout": 6 * names.LAMBDA_MAX_TIMEOUT_S,
        "SqsManagedSseEnabled": True,
        "RedrivePolicy": {"deadLetterTargetArn": Match.any_value(), "maxReceiveCount": 3},
    })
    batch_mappings = [m["Properties"] for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
                      if "Retraining" not in json.dumps(m) and "AsyncBatch" not in json.dumps(m)]
    # the retraining and async-batch mappings: test_retraining.py, test_async_batch_stack.py
    assert len(batch_mappings) == 2
    for mapping in batch_mappings:
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        target = json.dumps(mapping["FunctionName"])
        assert "BatchLive" in target and ":live" in target  # the alias, never $LATEST


def test_idempotency_table_matches_powertools_defaults(template: Template) -> None:
    template.has_resource_properties("AWS::DynamoDB::Table", {
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        "BillingMode": "PAY_PER_REQUEST",
    })


def _statements(template: Template) -> list[tuple[str, dict]]:
    out = []
    for logical, policy in resources(template, "AWS::IAM::Policy").items():
        out += [(logical, s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    return out


def test_no_statement_grants_a_wildcard_action(template: Template) -> None:
    for logical, statement in _statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert action != "*" and not action.endswith(":*"), (logical, action)


def test_batch_function_reads_its_own_input_and_writes_its_own_results(template: Template) -> None:
    by_sid = {s.get("Sid"): (logical, s) for logical, s in _statements(template)
              if "ClfLambdaBatch" in logical}
    read, write = by_sid["ReadOwnInput"][1], by_sid["WriteOwnResults"][1]
    assert read["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert json.dumps(read["Resource"]).count("/clf-lambda/in/*") == 1
    assert sorted(write["Action"]) == ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
                                       "s3:ListMultipartUploadParts", "s3:PutObject"]
    listing = by_sid["ListOwnPrefix"][1]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Condition"] == {"StringLikeIfExists": {"s3:prefix": ["clf-lambda/*"]}}
    text = json.dumps(write["Resource"])
    assert "/clf-lambda/out/*" in text and "/clf-lambda/errors/*" in text
    assert "open-model" not in json.dumps([s for _, s in by_sid.values()])
    assert sorted(by_sid["Idempotency"][1]["Action"]) == [
        "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]


def test_batch_function_has_room_in_tmp_for_large_inputs(template: Template) -> None:
    # the batch job streams its input through /tmp; the API function keeps Lambda's default
    functions = resources(template, "AWS::Lambda::Function").values()
    storage = {f["Properties"]["Description"].split(": ")[-1]: f["Properties"]["EphemeralStorage"]
               for f in functions if "modelfn clf-lambda " in f["Properties"].get("Description", "")}
    assert storage == {"S3 batch inference": {"Size": 10_240}, "V2 HTTP API": {"Size": 512}}


def test_sagemaker_model_gets_an_autoscaled_endpoint_and_a_proxy(template: Template) -> None:
    template.has_resource_properties("AWS::SageMaker::EndpointConfig", {
        "ProductionVariants": [Match.object_like({"InstanceType": "ml.g5.xlarge",
                                                  "VariantName": "AllTraffic"})],
    })
    template.has_resource_properties("AWS::SageMaker::Model", {
        "PrimaryContainer": Match.object_like({
            "Environment": Match.object_like({names.ENV_MODEL_DIR: "/opt/ml/model"}),
            "ModelDataUrl": Match.any_value(),
        }),
    })
    template.has_resource_properties("AWS::ApplicationAutoScaling::ScalingPolicy", {
        "TargetTrackingScalingPolicyConfiguration": Match.object_like({
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        }),
    })
    _, proxy = function_by_description(template, "SageMaker endpoint proxy")
    props = proxy["Properties"]
    assert props["Runtime"] == "python3.13" and props["Handler"] == "functions.proxy.handler.handler"
    assert names.ENV_SAGEMAKER_ENDPOINT in props["Environment"]["Variables"]
    invoke = [s for _, s in _statements(template) if s.get("Sid") == "InvokeOwnEndpoint"]
    assert len(invoke) == 1 and invoke[0]["Action"] == "sagemaker:InvokeEndpoint"
    assert "Ref" in invoke[0]["Resource"]  # the one endpoint's ARN, not a wildcard


def test_training_state_machine_is_traced_and_logged(template: Template) -> None:
    # what it does when it runs: tests/infra/test_training_state_machine.py
    machine = next(iter(resources(template, "AWS::StepFunctions::StateMachine").values()))
    assert machine["Properties"]["TracingConfiguration"] == {"Enabled": True}
    assert machine["Properties"]["LoggingConfiguration"]["Level"] == "ALL"


def test_the_training_job_runs_on_the_catalogs_instance_count(template: Template) -> None:
    # given training.instance_count: 2 (data-parallel), the CreateTrainingJob task asks for two
    machine = next(iter(resources(template, "AWS::StepFunctions::StateMachine").values()))
    text = "".join(p if isinstance(p, str) else "" for p in machine["Properties"]["DefinitionString"]["Fn::Join"][1])
    config = re.search(r'"ResourceConfig":\{[^}]*\}', text)
    assert config, text[:500]
    assert '"InstanceCount":2' in config.group(0) and '"InstanceType":"ml.g5.xlarge"' in config.group(0)


def test_dashboard_graphs_cold_starts_per_model(template: Template) -> None:
    boards = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps([b["Properties"]["DashboardBody"] for b in boards])
    assert body.count("ColdStart") == 5  # 4 model functions + the proxy
    assert "p99" in body and "Throttles" in body and "Invocation5XXErrors" in body


def test_cdk_nag_reports_nothing_unacknowledged(synthesized) -> None:
    assert synthesized[1]["nag_violations"] == []


def test_cfn_lint_finds_no_errors(synthesized) -> None:
    assert synthesized[1]["cfn_lint_errors"] == []


def test_assets_are_small_staged_contexts_not_the_repository(synthesized) -> None:
    outdir = synthesized[0]
    for asset in outdir.glob("asset.*"):
        if asset.is_dir():
            top = {p.name for p in asset.iterdir()}
            assert not top & {".venv", "node_modules", "build", ".git", "tests"}, (asset, top)
    sizes = sum(p.stat().st_size for p in outdir.rglob("*") if p.is_file())
    assert sizes < 20 * 1024 * 1024


def test_snapstart_is_on_for_api_functions_only_without_provisioned_concurrency(template: Template) -> None:
    # given open-model (on demand) and clf-lambda (provisioned concurrency 2)
    fns = {r["Properties"]["Description"]: r["Properties"]
           for r in resources(template, "AWS::Lambda::Function").values()
           if r["Properties"].get("Description", "").startswith("modelfn ")}
    snap = {d: p.get("SnapStart") for d, p in fns.items()}
    # then only open-model's API function snapshots its published versions ...
    on = {d for d, s in snap.items() if s == {"ApplyOn": "PublishedVersions"}}
    assert on == {d for d in snap if d.startswith("modelfn open-model") and "HTTP" in d}
    # ... behind the live alias (a published version), and never with provisioned concurrency
    assert all(s is None for d, s in snap.items() if d not in on)
    open_api = next(k for k, r in resources(template, "AWS::Lambda::Function").items()
                    if r["Properties"].get("SnapStart"))
    aliases = [a["Properties"] for a in resources(template, "AWS::Lambda::Alias").values()
               if json.dumps(a["Properties"]["FunctionName"]).find(open_api) >= 0]
    assert aliases and all("ProvisionedConcurrencyConfig" not in a for a in aliases)
    assert all("Ref" in json.dumps(a["FunctionVersion"]) or "GetAtt" in json.dumps(a["FunctionVersion"])
               for a in aliases)


def _batch_function(template: Template, model: str) -> dict:
    return next(
        r["Properties"] for r in resources(template, "AWS::Lambda::Function").values()
        if r["Properties"].get("Description", "").startswith(f"modelfn {model} ")
        and r["Properties"]["Description"].endswith("S3 batch inference"))


def test_batch_is_bounded_batched_and_reports_item_failures(template: Template) -> None:
    # given clf-lambda with the catalog's batch defaults and open-model with its own settings
    mappings = [r["Properties"] for r in resources(template, "AWS::Lambda::EventSourceMapping").values()
                if "BatchLive" in json.dumps(r)]  # the lambda models' batch functions
    assert len(mappings) == 2
    # then every event source caps concurrency, batches > 1 and reports per-message failures
    for m in mappings:
        assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert m["BatchSize"] > 1
        assert m["ScalingConfig"]["MaximumConcurrency"] >= 2
    settings = sorted((m["BatchSize"], m["ScalingConfig"]["MaximumConcurrency"],
                       m.get("MaximumBatchingWindowInSeconds", 0)) for m in mappings)
    assert settings == [(10, 2, 0), (50, 5, 2)]
    # and each batch function reserves exactly the concurrency its event source may use
    assert _batch_function(template, "clf-lambda")["ReservedConcurrentExecutions"] == 2
    assert _batch_function(template, "open-model")["ReservedConcurrentExecutions"] == 5
    env = _batch_function(template, "open-model")["Environment"]["Variables"]
    assert env[names.ENV_BATCH_RETRY_DELAY_S] == "30"
    queues = [r["Properties"] for k, r in resources(template, "AWS::SQS::Queue").items()
              if "RedrivePolicy" in r["Properties"] and "BatchPipeline" in k]  # lambda models'
    assert sorted(q["RedrivePolicy"]["maxReceiveCount"] for q in queues) == [3, 4]


def test_batch_canary_ignores_one_transient_failure(template: Template) -> None:
    alarms = {r["Properties"]["AlarmDescription"]: r["Properties"]
              for r in resources(template, "AWS::CloudWatch::Alarm").values()}
    batch = next(v for k, v in alarms.items() if "clf-lambda" in k and "batch" in k and "errors" in k)
    api = next(v for k, v in alarms.items() if "clf-lambda" in k and "HTTP" in k and "errors" in k)
    assert (batch["EvaluationPeriods"], batch["DatapointsToAlarm"]) == (3, 2)
    assert (api["EvaluationPeriods"], api["DatapointsToAlarm"], api["Threshold"]) == (1, 1, 1)
    dlq = [v for k, v in alarms.items() if "batch events gave up" in k and "asynchronous" not in k]
    assert len(dlq) == 2 and all(a["MetricName"] == "ApproximateNumberOfMessagesVisible" for a in dlq)


def test_each_lambda_model_outputs_its_functions_and_codedeploy_groups_for_promotion(template: Template) -> None:
    # `modelfn promote/rollback --deployed` reads this output (infra/versions/deployed.py)
    outputs = template.to_json()["Outputs"]
    assert names.output_deployment("clf-lambda") in outputs and names.output_deployment("open-model") in outputs
    assert names.output_deployment("heavy-sm") not in outputs  # SageMaker-target: no aliases to move
    value = json.dumps(outputs[names.output_deployment("clf-lambda")]["Value"])
    for key in ("api", "batch", "function", "application", "group"):
        assert f'\\"{key}\\"' in value
    groups = resources(template, "AWS::CodeDeploy::DeploymentGroup")
    assert any(logical in value for logical in groups)


def test_images_build_single_platform_and_the_gpu_endpoint_gets_the_cuda_closure(synthesized) -> None:
    # given the synthesized asset manifest (what `cdk deploy` hands the container engine)
    outdir, _ = synthesized
    sources = [a["source"] for path in outdir.glob("*.assets.json")
               for a in json.loads(path.read_text()).get("dockerImages", {}).values()]
    # then every image names one platform and builds from its staged Dockerfile
    assert sources and all(s.get("platform") in ("linux/amd64", "linux/arm64") for s in sources)
    # the ml.g5 SageMaker model's image installs the GPU lock; the Lambda images the default
    gpu = [s for s in sources if (s.get("dockerBuildArgs") or {}).get("RUNTIME_LOCK")]
    assert [s["dockerBuildArgs"]["RUNTIME_LOCK"] for s in gpu] == ["layers/requirements-gpu.lock"]
    staged = (outdir / gpu[0]["directory"] / "Dockerfile").read_text()
    assert "FROM modelfn-runtime" in staged and "FROM ${BASE_IMAGE}" not in staged


def test_the_gpu_endpoints_containers_run_on_cuda(template: Template) -> None:
    # the ml.g5 model's real-time and asynchronous containers get the plan's provider (what a
    # generative model's runtime reads); a CPU instance type would get cpu
    models = resources(template, "AWS::SageMaker::Model").values()
    providers = [m["Properties"]["PrimaryContainer"]["Environment"].get(names.ENV_EXECUTION_PROVIDER)
                 for m in models]
    assert providers == ["cuda", "cuda"]


def test_proxy_gets_powertools_from_its_layer_and_its_own_timeout(template: Template) -> None:
    proxy = function_by_description(template, "modelfn heavy-sm: HTTP API")[1]["Properties"]
    env = proxy["Environment"]["Variables"]
    assert env[names.ENV_PROXY_TIMEOUT_S] == str(proxy["Timeout"]) == str(names.PROXY_TIMEOUT_S)
    assert env[names.ENV_PROXY_MODEL] == "heavy-sm" and env[names.ENV_PROXY_MODEL_VERSION]
    # the layer is the stack's own (bundled at the pinned versions), not a looked-up ARN
    (layer,) = proxy["Layers"]
    layers = resources(template, "AWS::Lambda::LayerVersion")
    assert layer["Ref"] in layers
    assert layers[layer["Ref"]]["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert not template.to_json().get("Parameters", {}).get(layer["Ref"])

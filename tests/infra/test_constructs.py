"""Each construct on its own stack: its resources, properties and nag-cleanliness.

One app with a stack per construct, synthesized once per session with both cdk-nag packs on
(a finding fails the synth), then one ``Template`` per stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from infra.cdk.constructs.batch_pipeline import ModelBatchPipeline
from infra.cdk.constructs.batch_storage import BatchStorage
from infra.cdk.constructs.dashboard import FunctionPanel, ModelDashboard, QueuePanel
from infra.cdk.constructs.http_api import ConfigurationError, ModelHttpApi, model_routes
from infra.cdk.constructs.model_function import ModelFunction
from infra.cdk.constructs.model_routes import ModelRoutes
from infra.cdk.nag import acknowledge, add_checks
from infra.targets import staging
from tests.infra.conftest import shared_synth, stack_templates, stack_warnings, write_built_model

# One worker synthesizes every CDK app in this directory: jsii's warm-up is paid once.
pytestmark = pytest.mark.slow


def model_function(scope, id: str, context: Path, *, timeout_s: int = 10, **kw) -> ModelFunction:
    return ModelFunction(
        scope, id, code=lambda_.DockerImageCode.from_image_asset(str(context)),
        description=f"test {id}", architecture="x86_64", memory_mb=1024, timeout_s=timeout_s,
        environment={"MODEL_DIR": "/var/task/model"}, **kw,
    )


@pytest.fixture(scope="module")
def stacks(tmp_path_factory) -> dict[str, Template]:
    workdir, _ = shared_synth(tmp_path_factory, "constructs", _synthesize)
    out = {name: Template.from_json(t) for name, t in stack_templates(workdir / "cdk.out").items()}
    out["_warnings"] = stack_warnings(workdir / "cdk.out")
    return out


def _synthesize(workdir: Path) -> dict:
    model_dir = write_built_model(workdir / "build", "m")
    context = staging.stage_model_image(dest=workdir / "ctx", model_dir=model_dir)
    app = cdk.App(outdir=str(workdir / "cdk.out"),
                  context={"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True})

    fn_stack = cdk.Stack(app, "FunctionStack")
    model_function(fn_stack, "Fn", context, timeout_s=10,
                   deployment_config=codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE)

    api_stack = cdk.Stack(app, "ApiStack")
    api = ModelHttpApi(api_stack, "Api", cors_origins=["https://app.example.com"],
                       throttle_rate_limit=5, throttle_burst_limit=10)
    target = model_function(api_stack, "Fn", context)
    ModelRoutes(api_stack, "Routes", api_id=api.api.api_id, model_name="open", target=target.alias,
                auth="none", server_routes=True)

    batch_stack = cdk.Stack(app, "BatchStack")
    storage = BatchStorage(batch_stack, "Storage")
    batch_fn = model_function(batch_stack, "Batch", context, timeout_s=100)
    pipe = ModelBatchPipeline(batch_stack, "Pipe", model_name="m", function=batch_fn,
                              timeout_s=100, storage=storage, max_receive_count=5)
    ModelDashboard(batch_stack, "Board",
                   functions=(FunctionPanel("m batch", batch_fn.alias, batch_fn.function_name, "modelfn-m"),),
                   queues=(QueuePanel("m", pipe.queue, pipe.dead_letter_queue),))
    acknowledge(batch_stack, "AwsSolutions-IAM5[Resource::*]",
                "CDK's S3 notification custom resource needs PutBucketNotification on any bucket")
    acknowledge(batch_stack, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                "CDK's S3 notification custom resource writes only its own logs")

    add_checks(app)
    app.synth()  # raises if cdk-nag reports any unacknowledged finding
    return {}


def test_model_function_publishes_live_with_the_chosen_rollout(stacks) -> None:
    t = stacks["FunctionStack"]
    t.resource_count_is("AWS::Lambda::Function", 1)
    t.resource_count_is("AWS::Lambda::Version", 1)
    t.has_resource_properties("AWS::Lambda::Alias", {"Name": "live"})
    t.has_resource_properties("AWS::CodeDeploy::DeploymentGroup", {
        "DeploymentConfigName": "CodeDeployDefault.LambdaLinear10PercentEvery1Minute"})
    t.has_resource_properties("AWS::CloudWatch::Alarm", {"ExtendedStatistic": "p99",
                                                          "Threshold": 8000})  # 80 % of 10 s
    t.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})
    policy = json.dumps(t.find_resources("AWS::IAM::Policy"))
    assert "logs:PutLogEvents" in policy and "AWSLambdaBasicExecutionRole" not in json.dumps(
        t.find_resources("AWS::IAM::Role"))


def test_http_api_with_cors_configured_and_a_public_model(stacks) -> None:
    t = stacks["ApiStack"]
    t.has_resource_properties("AWS::ApiGatewayV2::Api", {
        "CorsConfiguration": Match.object_like({"AllowOrigins": ["https://app.example.com"]})})
    t.has_resource_properties("AWS::ApiGatewayV2::Stage", {
        "DefaultRouteSettings": {"ThrottlingRateLimit": 5, "ThrottlingBurstLimit": 10}})
    from layers.protocols import route_table

    servers = len(route_table().server_gateway_routes()) + 1  # + $default
    t.resource_count_is("AWS::ApiGatewayV2::Route", len(model_routes("open")) + servers)
    # every route through one integration, and one permission for all of them
    t.resource_count_is("AWS::ApiGatewayV2::Integration", 1)
    t.resource_count_is("AWS::Lambda::Permission", 1)
    assert [w for w in stacks["_warnings"] if "model 'open' has auth: none" in w]


def test_jwt_auth_without_issuer_is_a_clear_synth_error() -> None:
    stack = cdk.Stack(cdk.App(), "S")
    api = ModelHttpApi(stack, "Api")
    assert api.jwt_authorizer is None
    fn = lambda_.Function(stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_11, handler="h.h",
                          code=lambda_.Code.from_inline("def h(e, c): pass"))
    with pytest.raises(ConfigurationError, match="modelfn:jwt_issuer"):
        ModelRoutes(stack, "Routes", api_id=api.api.api_id, model_name="m", target=fn, auth="jwt")


def test_public_attributes_are_read_only() -> None:
    api = ModelHttpApi(cdk.Stack(cdk.App(), "S"), "Api")
    with pytest.raises(AttributeError):
        api.api = None  # type: ignore[misc]


def test_batch_storage_and_pipeline(stacks) -> None:
    t = stacks["BatchStack"]
    t.resource_count_is("AWS::S3::Bucket", 2)
    t.resource_count_is("AWS::SQS::Queue", 2)
    t.has_resource_properties("AWS::SQS::Queue", {
        "VisibilityTimeout": 600, "RedrivePolicy": Match.object_like({"maxReceiveCount": 5})})
    t.has_resource_properties("AWS::DynamoDB::Table", {
        "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True}})
    t.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "ApproximateNumberOfMessagesVisible"})
    board = json.dumps(t.find_resources("AWS::CloudWatch::Dashboard"))
    assert "ColdStart" in board and "dead letters" in board


@pytest.mark.parametrize(("kw", "match"), [
    ({"provisioned_concurrency": 1}, "provisioned concurrency"),
    ({"ephemeral_storage_mb": 10_240}, "512 MB"),
])
def test_snapstart_refuses_what_lambda_would_refuse_at_deploy(tmp_path, kw, match) -> None:
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(ValueError, match=match):
        model_function(stack, "Fn", tmp_path, snapstart=True, **kw)


def test_the_http_apis_routes_are_the_route_tables(stacks) -> None:
    """The CDK API routes exactly what the runtime's one route table declares, per model."""
    from layers.protocols import route_table

    table = route_table()
    keys = {r["Properties"]["RouteKey"] for r in stacks["ApiStack"].find_resources("AWS::ApiGatewayV2::Route").values()}
    expected = {f"{method} {path}" for path, method in (*table.model_gateway_routes("open"),
                                                        *table.server_gateway_routes())}
    assert keys == expected | {"$default"}


@pytest.mark.parametrize(("auth", "authorizer"), [("jwt", True), ("none", False)])
def test_openai_router_routes_take_the_shared_auth(tmp_path, auth, authorizer) -> None:
    """One authorizer per route: the shared /openai/v1 routes take the auth the app passes
    (JWT with the API's authorizer; ``none`` public, acknowledged), and JWT without one is
    the same clear synth error as a model's."""
    from infra.cdk.constructs.openai_router import RUNTIME_FILES, OpenAIRouter
    from layers.protocols import route_table

    stack = cdk.Stack(cdk.App(), "S")
    api = ModelHttpApi(stack, "Api", jwt_issuer="https://issuer.example.com/" if authorizer else None,
                       jwt_audience=["a"] if authorizer else ())
    code = staging.stage_function_code(dest=tmp_path / "zip", package="openai_router", runtime=RUNTIME_FILES)
    if auth == "jwt":
        with pytest.raises(ConfigurationError, match="modelfn:jwt_issuer"):
            OpenAIRouter(cdk.Stack(cdk.App(), "T"), "R", api_id="x", registry_path="/modelfn/T/models",
                         code_dir=code, auth="jwt")
    router = OpenAIRouter(stack, "Router", api_id=api.api.api_id, registry_path="/modelfn/S/models", code_dir=code,
                          auth=auth, jwt_authorizer_id=api.jwt_authorizer.authorizer_id if authorizer else None)
    t = Template.from_stack(stack)
    t.resource_count_is("AWS::ApiGatewayV2::Route", len(route_table().router_routes()))
    t.all_resources_properties("AWS::ApiGatewayV2::Route", {
        "AuthorizationType": {"jwt": "JWT", "none": "NONE"}[auth]})
    assert set(router.routes) == {f"{r.method} {r.path}" for r in route_table().router_routes()}

"""One model's stack: everything of that model, rendered from its plan (infra/targets).

Functions, versions, alias and canary, its routes and integration on the shared API, its
batch queue (or asynchronous endpoint), alarms, dashboard, endpoints and training pipeline.
It reaches the shared stack only through :class:`~infra.cdk.stacks.shared_stack.SharedImports`,
so deploying, changing or rolling back this stack touches no other model.

Rendering is registered per target (:data:`RENDERERS`), like the plans themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra.catalog import Catalog
from infra.cdk.constructs.batch_pipeline import ModelBatchPipeline
from infra.cdk.constructs.control_api import RUNTIME_FILES as CONTROL_RUNTIME_FILES
from infra.cdk.constructs.control_api import ModelControlApi
from infra.cdk.constructs.dashboard import EndpointPanel, FunctionPanel, ModelDashboard, QueuePanel
from infra.cdk.constructs.http_api import ConfigurationError
from infra.cdk.constructs.model_function import ModelFunction, RollbackAlarms
from infra.cdk.constructs.model_routes import ModelRoutes
from infra.cdk.constructs.openai_registration import OpenAIRegistration
from infra.cdk.constructs.retraining_trigger import ModelRetrainingTrigger
from infra.cdk.constructs.sagemaker_async_batch import SageMakerAsyncBatch
from infra.cdk.constructs.sagemaker_endpoint import VARIANT_NAME, SageMakerModelEndpoint
from infra.cdk.constructs.sagemaker_proxy import SageMakerProxyFunction
from infra.cdk.constructs.streaming_url import StreamingUrl
from infra.cdk.constructs.training_pipeline import ModelTrainingPipeline
from infra.cdk.nag import acknowledge
from infra.cdk.stacks.settings import StackSettings
from infra.cdk.stacks.shared_stack import SharedImports
from infra.cdk.training_image import training_image
from infra.environment import function_environment
from infra.targets import staging
from infra.targets.plan import FunctionPlan, ModelPlan, service_name
from infra.train.local import sagemaker_hyperparameters
from layers import names
from layers.openai_wire import created_of

PLATFORMS = {"x86_64": ecr_assets.Platform.LINUX_AMD64, "arm64": ecr_assets.Platform.LINUX_ARM64}
NOTIFICATIONS_HANDLER = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


class ModelStack(cdk.Stack):
    """Public attributes: ``plan``, ``shared``, ``group`` (the model's construct),
    ``functions`` (kind → :class:`ModelFunction`), ``routes``, ``openai`` (its OpenAI router
    registration), ``batch_pipeline``, ``endpoint``, ``proxy``, ``async_batch``, ``training``,
    ``retraining``, ``dashboard``, ``streaming`` (a generative model's streaming function URL, or None)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        plan: ModelPlan,
        shared_stack: str,
        jwt: bool,
        training_shared: bool,
        catalog: Catalog,
        stage_dir: Path,
        server_routes: bool = False,
        settings: StackSettings = StackSettings(),
        **kwargs,
    ) -> None:
        """
        :param shared_stack: the shared stack's name (its exports).
        :param jwt: / :param training_shared: whether the shared stack exports a JWT
            authorizer / the training key and artifacts bucket.
        :param server_routes: this model also serves the server-wide routes.
        """
        super().__init__(scope, id, **kwargs)
        self.plan, self._settings, self._stage_dir = plan, settings, Path(stage_dir)
        self.shared = SharedImports(self, shared_stack=shared_stack, jwt=jwt,
                                    training=training_shared and plan.training is not None)
        self.group = Construct(self, plan.construct_id)
        self.functions: dict[str, ModelFunction] = {}
        self.batch_pipeline: ModelBatchPipeline | None = None
        self.endpoint: SageMakerModelEndpoint | None = None
        self.proxy: SageMakerProxyFunction | None = None
        self.async_batch: SageMakerAsyncBatch | None = None
        self.training: ModelTrainingPipeline | None = None
        self.retraining: ModelRetrainingTrigger | None = None
        self.control: ModelControlApi | None = None
        self._training_channel: str | None = None  # the training job's data (s3://…), shown in runs
        self.streaming: StreamingUrl | None = None
        front = RENDERERS[plan.target](self, plan)
        self.routes = ModelRoutes(
            self.group, "Routes", api_id=self.shared.api_id, model_name=plan.name, target=front,
            auth=plan.auth, jwt_authorizer_id=self.shared.jwt_authorizer_id,
            server_routes=server_routes,
        )
        self.openai = OpenAIRegistration(  # the shared /openai/v1 form reaches it through the router
            self.group, "OpenAI", registry_path=names.router_registry_path(shared_stack), model_name=plan.name,
            target=front, auth=plan.auth, router_role_arn=self.shared.openai_router_role_arn,
            created=created_of(plan.spec.manifest.built_at),
        )
        cdk.CfnOutput(self, names.output_infer_url(plan.name),
                      value=f"{self.shared.api_url}v2/models/{plan.name}/infer",
                      description=f"POST a V2 inference request for {plan.name} here")
        if plan.training is not None:
            self._add_training(catalog)
        if plan.training is not None or self.functions:
            self._add_control()
        self.dashboard = self._dashboard(f"{shared_stack}-{plan.name}")
        self._acknowledge_bucket_notifications()

    # --- targets -------------------------------------------------------------------------
    def render_lambda(self, plan: ModelPlan) -> lambda_.IFunction:
        spec = plan.spec
        context = staging.stage_model_image(
            dest=self._stage_dir / "images" / spec.name, model_dir=spec.model_dir,
            runtime_image=self._settings.base_image,
        )
        build_args = staging.image_build_args(python_base=self._settings.python_base) or None
        # one CodeDeploy application for the model's deployment groups
        application = codedeploy.LambdaApplication(self.group, "Deployments")
        for fn in plan.functions:
            # the streaming function runs our own runtime loop as the entry point (the managed
            # runtime cannot stream); the others are the image's handlers (CMD)
            start = ({"entrypoint": ["python3", "-m", fn.handler]} if fn.kind == "stream"
                     else {"cmd": [fn.handler]})
            self.functions[fn.kind] = self._image_function(
                fn, plan, application=application,
                code=lambda_.DockerImageCode.from_image_asset(
                    str(context), platform=PLATFORMS[spec.architecture], build_args=build_args, **start),
            )
        if "stream" in self.functions:
            self.streaming = StreamingUrl(self.group, "StreamingUrl", model_name=spec.name,
                                          target=self.functions["stream"].alias, auth=plan.auth)
        batch_fn = self.functions["batch"]
        cdk.CfnOutput(  # what `modelfn promote/rollback --deployed` deploys through (infra/versions)
            self, names.output_deployment(spec.name),
            value=self.to_json_string({
                kind: {"function": fn.function.function_name,
                       "application": fn.deployment_group.application.application_name,
                       "group": fn.deployment_group.deployment_group_name}
                for kind, fn in self.functions.items()}),
            description=f"{spec.name}: functions and CodeDeploy groups of its live aliases",
        )
        self.batch_pipeline = ModelBatchPipeline(
            self.group, "BatchPipeline", model_name=spec.name, function=batch_fn,
            timeout_s=plan.function("batch").timeout_s,
            storage=self.shared.storage,
            max_receive_count=plan.batch.max_receive_count, batch_size=plan.batch.batch_size,
            max_batching_window_s=plan.batch.max_batching_window_s,
            max_concurrency=plan.batch.max_concurrency,
        )
        return self.functions[plan.front].alias

    def _image_function(self, fn: FunctionPlan, plan: ModelPlan, *, code: lambda_.DockerImageCode,
                        application: codedeploy.ILambdaApplication) -> ModelFunction:
        rb = fn.rollback
        extra = {} if fn.kind == "api" else {
            "idempotency_table": self.shared.storage.table.table_name,
            "batch_retry_delay_s": plan.spec.batch.retry_delay_s}
        if fn.kind == "stream":  # its URL's auth; jwt: the function checks tokens (settings → env)
            if plan.auth == "jwt" and not (self._settings.jwt_issuer and self._settings.jwt_audience):
                raise ConfigurationError(
                    f"model {plan.name!r} has auth: jwt but the JWT issuer/audience are not configured; "
                    "pass them as context (-c modelfn:jwt_issuer=https://issuer.example.com/ "
                    "-c modelfn:jwt_audience=my-client-id) or set them in cdk.json")
            extra = {"auth": plan.auth, "jwt_issuer": self._settings.jwt_issuer,
                     "jwt_audience": self._settings.jwt_audience}
        reserved = fn.reserved_concurrency if self._settings.reserve_concurrency else None
        if fn.reserved_concurrency and reserved is None:  # skipped, never silently
            cdk.Annotations.of(self.group).add_warning_v2(
                "modelfn:reserved-concurrency-skipped",
                f"{plan.name} {fn.kind}: reserved concurrency {fn.reserved_concurrency} skipped "
                "(modelfn:reserve_concurrency=false): the account cannot afford it (modelfn doctor); "
                "request a Lambda concurrency quota increase and deploy again")
        return ModelFunction(
            self.group, fn.kind.capitalize(), code=code, description=fn.description,
            architecture=plan.image.architecture, memory_mb=fn.memory_mb, timeout_s=fn.timeout_s,
            environment=function_environment(model_name=plan.name, kind=fn.kind, **extra),
            reserved_concurrency=reserved,
            provisioned_concurrency=fn.provisioned_concurrency, snapstart=fn.snapstart,
            ephemeral_storage_mb=fn.ephemeral_storage_mb, log_retention=self._settings.log_retention,
            rollback_on=RollbackAlarms(error_threshold=rb.error_threshold, error_periods=rb.error_periods,
                                       error_datapoints=rb.error_datapoints, latency=rb.latency),
            application=application,
        )

    def render_sagemaker(self, plan: ModelPlan) -> lambda_.IFunction:
        spec, gpu = plan.spec, plan.image.gpu
        generative = spec.manifest.extra.get("task") == "generation"
        image = ecr_assets.DockerImageAsset(
            self.group, "SageMakerImage",
            directory=str(staging.stage_sagemaker_image(
                dest=self._stage_dir / ("sagemaker-image-generation" if generative else "sagemaker-image"),
                runtime_image=self._settings.base_image, generative=generative)),
            platform=ecr_assets.Platform.LINUX_AMD64,
            build_args=staging.image_build_args(python_base=self._settings.python_base, gpu=gpu,
                                                generative=generative) or None,
        )
        tarball = staging.write_model_tarball(
            model_dir=spec.model_dir, dest=self._stage_dir / "model-data" / spec.name / "model.tar.gz")
        model_data = s3_assets.Asset(self.group, "ModelData", path=str(tarball))
        self.endpoint = SageMakerModelEndpoint(
            self.group, "Endpoint", model_name=spec.name, image=image,
            model_data=model_data, instance_type=spec.instance_type,
            execution_provider=plan.image.execution_provider, log_retention=self._settings.log_retention,
        )
        proxy = plan.function("proxy")
        self.proxy = SageMakerProxyFunction(
            self.group, "Proxy", model_name=spec.name, model_version=spec.version,
            code_dir=staging.stage_proxy_code(dest=self._stage_dir / "proxy"),
            endpoint_name=self.endpoint.endpoint_name, endpoint_arn=self.endpoint.endpoint_arn,
            memory_mb=proxy.memory_mb, timeout_s=proxy.timeout_s,
            log_retention=self._settings.log_retention,
        )
        self.async_batch = SageMakerAsyncBatch(
            self.group, "AsyncBatch", model_name=spec.name, image=image,
            model_data=model_data, instance_type=spec.instance_type, storage=self.shared.storage,
            code_dir=staging.stage_function_code(dest=self._stage_dir / "async-batch",
                                                 package="async_batch", batch_layout=True),
            execution_provider=plan.image.execution_provider, log_retention=self._settings.log_retention,
        )
        return self.proxy.alias

    # --- training ------------------------------------------------------------------------
    def _add_training(self, catalog: Catalog) -> None:
        spec, training = self.plan.spec, self.plan.training
        model = catalog.get(spec.name)
        code = staging.training_code_files(catalog_root=catalog.root, entry_point=training.entry_point)
        data = [p for p in (model.source_path, model.example_input, model.calibration, model.validation)
                if p is not None]
        # the build of a returned torch module unpickles the user's classes: their code travels too
        data += list(code.values())
        source = s3_assets.Asset(self.group, "BuildSource", path=str(staging.stage_build_source(
            dest=self._stage_dir / "build-source" / spec.name, catalog_path=catalog.path,
            data_files=data, models=[spec.name])))
        context = staging.stage_training_image(dest=self._stage_dir / "training-image" / spec.name,
                                               code=code)
        data_bucket, data_prefix = self._training_data()
        self.training = ModelTrainingPipeline(
            self.group, "Training", model_name=spec.name,
            entry_point=staging.image_entry_point(training.entry_point, catalog.root),
            image=training_image(self.group, "TrainingImage", context_dir=context,
                                 instance_type=training.instance_type,
                                 framework_version=training.framework_version, image=training.image),
            instance_type=training.instance_type,
            hyperparameters=sagemaker_hyperparameters(training.hyperparameters),
            max_runtime_s=training.max_runtime_s, instance_count=training.instance_count,
            data_bucket=data_bucket, data_prefix=data_prefix,
            source=source, artifacts=self.shared.training_artifacts,
            encryption_key=self.shared.training_key,
            log_retention=self._settings.log_retention,
            # the retraining build deploys a winner to these (api, batch, a generative model's
            # stream: every function whose live alias promote/rollback move) and gates against this build
            deploy_to=tuple(self.functions.values()),
            deployed_build=s3_assets.Asset(self.group, "DeployedBuild", path=str(spec.model_dir),
                                           exclude=["versions", "versions/**"]),
        )
        self._training_channel = f"s3://{data_bucket.bucket_name}/{data_prefix}"
        if data_bucket is self.shared.storage.bucket:  # an s3:// training.data is the user's
            self.retraining = ModelRetrainingTrigger(
                self.group, "Retraining", bucket=data_bucket,
                state_machines={spec.name: self.training.state_machine},
                code_dir=staging.stage_function_code(dest=self._stage_dir / "retrain", package="retrain"),
                log_retention=self._settings.log_retention,
            )

    def _add_control(self) -> None:
        """Training and versions over HTTPS, IAM-authorized whatever the model's auth: a trained
        model's runs, a Lambda model's versions (its api, batch and stream functions' live aliases)."""
        spec, training = self.plan.spec, self.plan.training
        self.control = ModelControlApi(
            self.group, "Control", model_name=spec.name, api_id=self.shared.api_id,
            state_machine=self.training.state_machine if self.training else None,
            hyperparameters=sagemaker_hyperparameters(training.hyperparameters) if training else None,
            data=self._training_channel,
            deploy_to=dict(self.functions) or None,  # api, batch (+ a generative model's stream)
            code_dir=staging.stage_function_code(dest=self._stage_dir / "control" / spec.name, package="control",
                                                 runtime=CONTROL_RUNTIME_FILES),
            log_retention=self._settings.log_retention,
        )

    def _training_data(self) -> tuple[s3.IBucket, str]:
        """The job's ``train`` channel: ``training.data`` when it is an ``s3://`` prefix, else
        (a local folder, or none) the batch bucket's ``<model>/train/``, which also retrains."""
        data, name = self.plan.training.data, self.plan.name
        if data and data.startswith("s3://"):
            bucket, _, prefix = data.removeprefix("s3://").partition("/")
            prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"
            return s3.Bucket.from_bucket_name(self.group, "TrainingData", bucket), prefix
        return self.shared.storage.bucket, f"{name}/{names.TRAIN_PREFIX}/"

    # --- observability -------------------------------------------------------------------
    def _dashboard(self, dashboard_name: str) -> ModelDashboard:
        plan, panels, endpoints, queues = self.plan, [], [], []
        for row in plan.dashboard:
            if row in self.functions:
                fn = self.functions[row]
                panels.append(FunctionPanel(f"{plan.name} {row}", fn.alias, fn.function.function_name,
                                            service_name(plan.name)))
            elif row == "proxy" and self.proxy is not None:
                panels.append(FunctionPanel(f"{plan.name} proxy", self.proxy.alias,
                                            self.proxy.function.function_name, service_name(plan.name)))
            elif row == "endpoint" and self.endpoint is not None:
                endpoints.append(EndpointPanel(plan.name, self.endpoint.endpoint_name, VARIANT_NAME))
            elif row == "queue" and self.batch_pipeline is not None:
                queues.append(QueuePanel(plan.name, self.batch_pipeline.queue,
                                         self.batch_pipeline.dead_letter_queue))
        return ModelDashboard(self.group, "Dashboard", functions=tuple(panels),
                              endpoints=tuple(endpoints), queues=tuple(queues),
                              dashboard_name=dashboard_name)

    def _acknowledge_bucket_notifications(self) -> None:
        """The model's S3 notifications on the shared bucket go through CDK's handler for
        imported buckets (it merges this stack's notifications with the others')."""
        handler = self.node.try_find_child(NOTIFICATIONS_HANDLER)
        if handler is None:
            return
        for rule, why in (
            ("AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
             "CDK's built-in S3 notification custom resource; its role only writes its own logs"),
            ("AwsSolutions-IAM5[Resource::*]",
             "CDK's built-in S3 notification custom resource needs s3:PutBucketNotification; "
             "CDK generates the policy and it runs only at deploy time"),
        ):
            acknowledge(handler, rule, why)


#: target → how a model stack renders it; returns what the model's routes reach.
RENDERERS: dict[str, Callable[[ModelStack, ModelPlan], lambda_.IFunction]] = {
    "lambda": ModelStack.render_lambda,
    "sagemaker": ModelStack.render_sagemaker,
}

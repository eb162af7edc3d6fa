"""The modelfn stack: composes the constructs for every model of the catalog.

Lambda-target model → one image (staged context) → an API function and a batch function,
both behind ``live`` aliases with canaries; its V2 routes on the HTTP API; its S3 prefix →
SQS → batch function. SageMaker-target model → endpoint + proxy function on the same routes, and
its ``<model>/in/`` prefix → SageMaker Asynchronous Inference (sagemaker_async_batch.py).
Models with ``training:`` also get a Step Functions training pipeline, and new objects under
their ``<model>/train/`` prefix start it (one retraining trigger for all of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import aws_cdk as cdk
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra.catalog import Catalog
from infra.cdk import staging
from infra.cdk.constructs.batch_pipeline import ModelBatchPipeline
from infra.cdk.constructs.batch_storage import BatchStorage
from infra.cdk.constructs.dashboard import EndpointPanel, FunctionPanel, ModelDashboard, QueuePanel
from infra.cdk.constructs.http_api import ModelHttpApi
from infra.cdk.constructs.model_function import ModelFunction, RollbackAlarms
from infra.cdk.constructs.retraining_trigger import ModelRetrainingTrigger
from infra.cdk.constructs.sagemaker_async_batch import SageMakerAsyncBatch
from infra.cdk.constructs.sagemaker_endpoint import VARIANT_NAME, SageMakerModelEndpoint
from infra.cdk.constructs.sagemaker_proxy import SageMakerProxyFunction
from infra.cdk.constructs.training_pipeline import ModelTrainingPipeline
from infra.cdk.deploy_spec import DeploySpec
from infra.cdk.nag import acknowledge
from infra.cdk.training_image import training_image
from infra.environment import function_environment
from infra.train.local import sagemaker_hyperparameters
from layers import names

PLATFORMS = {"x86_64": ecr_assets.Platform.LINUX_AMD64, "arm64": ecr_assets.Platform.LINUX_ARM64}
#: /tmp of each batch function: big enough for multi-GB inputs; Lambda bills it per GB-s.
BATCH_EPHEMERAL_STORAGE_MB = 10_240
#: The batch canary rolls back on invocation errors in 2 of 3 minutes (a failed object is a
#: reported item failure, not an invocation error), and not on duration, which follows the
#: size of the objects users drop.
BATCH_ROLLBACK = RollbackAlarms(error_threshold=1, error_periods=3, error_datapoints=2, latency=False)


@dataclass(frozen=True)
class StackSettings:
    """Deployment choices that come from CDK context (infra/cdk/app.py documents the keys)."""

    jwt_issuer: str | None = None
    jwt_audience: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    base_image: str | None = None
    """A pushed runtime base image to build FROM; default: the inline first stage."""
    python_base: str | None = None
    """Replaces the AWS Lambda Python base (``PYTHON_BASE``): a mirror, or the offline
    stand-in the image lane and ``sam build`` use; default: public.ecr.aws/lambda/python:3.13."""
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    throttle_rate_limit: float = 100
    throttle_burst_limit: int = 200


def construct_id(model_name: str) -> str:
    """``digits-mlp`` → ``DigitsMlp`` (the same casing as the output keys)."""
    return names.output_infer_url(model_name).removeprefix("InferUrl")


class ModelfnStack(cdk.Stack):
    """Public attributes: ``api``, ``storage``, ``functions`` (name → (api, batch)),
    ``endpoints`` (name → endpoint), ``proxies``, ``batch_pipelines``, ``training``,
    ``retraining``, ``dashboard``."""

    @property
    def api(self) -> ModelHttpApi:
        return self._api

    @property
    def storage(self) -> BatchStorage:
        return self._storage

    @property
    def functions(self) -> Mapping[str, tuple[ModelFunction, ModelFunction]]:
        return MappingProxyType(self._functions)

    @property
    def endpoints(self) -> Mapping[str, SageMakerModelEndpoint]:
        return MappingProxyType(self._endpoints)

    @property
    def proxies(self) -> Mapping[str, SageMakerProxyFunction]:
        return MappingProxyType(self._proxies)

    @property
    def async_batches(self) -> Mapping[str, SageMakerAsyncBatch]:
        """Sagemaker-target models' S3 batch path (asynchronous inference)."""
        return MappingProxyType(self._async_batches)

    @property
    def batch_pipelines(self) -> Mapping[str, ModelBatchPipeline]:
        return MappingProxyType(self._batch_pipelines)

    @property
    def training(self) -> Mapping[str, ModelTrainingPipeline]:
        return MappingProxyType(self._training)

    @property
    def retraining(self) -> ModelRetrainingTrigger | None:
        """New data under ``<model>/train/`` → the model's state machine (None: no training)."""
        return self._retraining

    @property
    def dashboard(self) -> ModelDashboard:
        return self._dashboard

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        specs: Sequence[DeploySpec],
        catalog: Catalog,
        stage_dir: Path,
        settings: StackSettings = StackSettings(),
        **kwargs,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self._settings, self._stage_dir = settings, Path(stage_dir)
        self._sagemaker_images: dict[bool, ecr_assets.DockerImageAsset] = {}
        self._storage = BatchStorage(self, "BatchStorage")
        self._api = ModelHttpApi(
            self, "HttpApi",
            jwt_issuer=settings.jwt_issuer, jwt_audience=settings.jwt_audience,
            cors_origins=settings.cors_origins, log_retention=settings.log_retention,
            throttle_rate_limit=settings.throttle_rate_limit,
            throttle_burst_limit=settings.throttle_burst_limit,
        )
        self._functions: dict[str, tuple[ModelFunction, ModelFunction]] = {}
        self._endpoints: dict[str, SageMakerModelEndpoint] = {}
        self._proxies: dict[str, SageMakerProxyFunction] = {}
        self._async_batches: dict[str, SageMakerAsyncBatch] = {}
        self._batch_pipelines: dict[str, ModelBatchPipeline] = {}
        self._training: dict[str, ModelTrainingPipeline] = {}
        self._retraining: ModelRetrainingTrigger | None = None
        panels: list[FunctionPanel] = []
        endpoint_panels: list[EndpointPanel] = []
        queue_panels: list[QueuePanel] = []
        for spec in specs:
            group = Construct(self, construct_id(spec.name))
            if spec.target == "lambda":
                api_fn, batch_fn = self._lambda_model(group, spec)
                panels += [self._panel(spec, "api", api_fn), self._panel(spec, "batch", batch_fn)]
                pipe = self._batch_pipelines[spec.name]
                queue_panels.append(QueuePanel(spec.name, pipe.queue, pipe.dead_letter_queue))
            else:
                proxy = self._sagemaker_model(group, spec)
                panels.append(FunctionPanel(f"{spec.name} proxy", proxy.alias,
                                            proxy.function.function_name,
                                            f"{names.SERVICE_NAME}-{spec.name}"))
                endpoint_panels.append(EndpointPanel(
                    spec.name, self._endpoints[spec.name].endpoint_name, VARIANT_NAME))
            cdk.CfnOutput(
                self, names.output_infer_url(spec.name),
                value=f"{self._api.url}v2/models/{spec.name}/infer",
                description=f"POST a V2 inference request for {spec.name} here",
            )
        trained = [s for s in specs if s.training is not None]
        if trained:
            self._add_training(trained, catalog)
        self._dashboard = ModelDashboard(
            self, "Dashboard", functions=tuple(panels), endpoints=tuple(endpoint_panels),
            queues=tuple(queue_panels),
        )
        cdk.CfnOutput(self, names.OUTPUT_API_URL, value=self._api.url,
                      description="base URL of the V2 (Open Inference Protocol) API")
        cdk.CfnOutput(self, names.OUTPUT_BATCH_BUCKET, value=self._storage.bucket.bucket_name,
                      description="drop files under <model>/in/ to run batch inference")
        # The S3 notification handler is a CDK-provided singleton function in this stack.
        self._acknowledge_bucket_notifications()

    def _panel(self, spec: DeploySpec, kind: str, fn: ModelFunction) -> FunctionPanel:
        return FunctionPanel(f"{spec.name} {kind}", fn.alias, fn.function.function_name,
                             f"{names.SERVICE_NAME}-{spec.name}")

    def _lambda_model(self, group: Construct, spec: DeploySpec) -> tuple[ModelFunction, ModelFunction]:
        context = staging.stage_model_image(
            dest=self._stage_dir / "images" / spec.name, model_dir=spec.model_dir,
            runtime_image=self._settings.base_image,
        )
        build_args = staging.image_build_args(python_base=self._settings.python_base) or None

        def code(cmd: str) -> lambda_.DockerImageCode:
            return lambda_.DockerImageCode.from_image_asset(
                str(context), platform=PLATFORMS[spec.architecture], build_args=build_args,
                cmd=[cmd],
            )

        common = dict(
            architecture=spec.architecture, memory_mb=spec.memory_mb,
            log_retention=self._settings.log_retention,
        )
        api_fn = ModelFunction(
            group, "Api", code=code(names.API_HANDLER),
            description=f"modelfn {spec.name} {spec.version}: V2 HTTP API",
            timeout_s=spec.api_timeout_s,
            environment=function_environment(model_name=spec.name, kind="api"),
            reserved_concurrency=spec.reserved_concurrency,
            provisioned_concurrency=spec.provisioned_concurrency,
            snapstart=spec.snapstart,
            **common,
        )
        batch_fn = ModelFunction(
            group, "Batch", code=code(names.BATCH_HANDLER),
            description=f"modelfn {spec.name} {spec.version}: S3 batch inference",
            timeout_s=spec.batch_timeout_s,
            environment=function_environment(
                model_name=spec.name, kind="batch",
                idempotency_table=self._storage.table.table_name,
                batch_retry_delay_s=spec.batch.retry_delay_s,
            ),
            # as much as the event source may use: a burst of uploads neither takes the
            # account's concurrency from the API functions nor gets throttled itself
            reserved_concurrency=spec.batch.max_concurrency,
            # a failed object is a reported item failure, retried later: the canary judges
            # sustained invocation errors (crashes, timeouts), never one transient retry
            rollback_on=BATCH_ROLLBACK,
            # The batch job streams its input through /tmp (layers/batch/job.py); a file larger
            # than this gets an error record saying so.
            ephemeral_storage_mb=BATCH_EPHEMERAL_STORAGE_MB,
            **common,
        )
        self._functions[spec.name] = (api_fn, batch_fn)
        cdk.CfnOutput(  # what `modelfn promote/rollback --deployed` deploys through (infra/versions)
            self, names.output_deployment(spec.name),
            value=cdk.Stack.of(self).to_json_string({
                kind: {"function": fn.function.function_name,
                       "application": fn.deployment_group.application.application_name,
                       "group": fn.deployment_group.deployment_group_name}
                for kind, fn in (("api", api_fn), ("batch", batch_fn))}),
            description=f"{spec.name}: functions and CodeDeploy groups of its live aliases",
        )
        self._api.add_model(name=spec.name, target=api_fn.alias, auth=spec.auth)
        self._batch_pipelines[spec.name] = ModelBatchPipeline(
            group, "BatchPipeline", model_name=spec.name, function=batch_fn,
            timeout_s=spec.batch_timeout_s, storage=self._storage,
            max_receive_count=spec.batch.max_receive_count, batch_size=spec.batch.batch_size,
            max_batching_window_s=spec.batch.max_batching_window_s,
            max_concurrency=spec.batch.max_concurrency,
        )
        return api_fn, batch_fn

    def _sagemaker_model(self, group: Construct, spec: DeploySpec) -> SageMakerProxyFunction:
        gpu = staging.is_cuda_instance(spec.instance_type)
        if gpu not in self._sagemaker_images:  # one CPU and one GPU image, shared by models
            self._sagemaker_images[gpu] = ecr_assets.DockerImageAsset(
                self, "SageMakerGpuImage" if gpu else "SageMakerImage",
                directory=str(staging.stage_sagemaker_image(
                    dest=self._stage_dir / "sagemaker-image",
                    runtime_image=self._settings.base_image)),
                platform=ecr_assets.Platform.LINUX_AMD64,
                build_args=staging.image_build_args(python_base=self._settings.python_base,
                                                    gpu=gpu) or None,
            )
        tarball = staging.write_model_tarball(
            model_dir=spec.model_dir, dest=self._stage_dir / "model-data" / spec.name / "model.tar.gz"
        )
        model_data = s3_assets.Asset(group, "ModelData", path=str(tarball))
        endpoint = SageMakerModelEndpoint(
            group, "Endpoint", model_name=spec.name, image=self._sagemaker_images[gpu],
            model_data=model_data, instance_type=spec.instance_type,
        )
        proxy = SageMakerProxyFunction(
            group, "Proxy", model_name=spec.name, model_version=spec.version,
            code_dir=staging.stage_proxy_code(dest=self._stage_dir / "proxy"),
            endpoint_name=endpoint.endpoint_name, endpoint_arn=endpoint.endpoint_arn,
            log_retention=self._settings.log_retention,
        )
        self._endpoints[spec.name], self._proxies[spec.name] = endpoint, proxy
        self._async_batches[spec.name] = SageMakerAsyncBatch(
            group, "AsyncBatch", model_name=spec.name, image=self._sagemaker_images[gpu],
            model_data=model_data, instance_type=spec.instance_type, storage=self._storage,
            code_dir=staging.stage_function_code(dest=self._stage_dir / "async-batch",
                                                 package="async_batch", batch_layout=True),
            log_retention=self._settings.log_retention,
        )
        self._api.add_model(name=spec.name, target=proxy.alias, auth=spec.auth)
        return proxy

    def _add_training(self, specs: Sequence[DeploySpec], catalog: Catalog) -> None:
        key = kms.Key(self, "TrainingKey", enable_key_rotation=True,
                      description="modelfn: training volumes, outputs and build artifacts")
        artifacts = s3.Bucket(
            self, "TrainingArtifacts",
            encryption=s3.BucketEncryption.KMS, encryption_key=key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self._storage.logs_bucket,
            server_access_logs_prefix="training/", removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        code = {spec.name: staging.training_code_files(catalog_root=catalog.root,
                                                      entry_point=spec.training.entry_point)
                for spec in specs}
        data = [p for m in catalog.models for p in (m.source_path, m.example_input,
                                                   m.calibration, m.validation) if p is not None]
        # the build of a returned torch module unpickles the user's classes: their code travels too
        data += [path for files in code.values() for path in files.values()]
        source = s3_assets.Asset(self, "BuildSource", path=str(staging.stage_build_source(
            dest=self._stage_dir / "build-source", catalog_path=catalog.path, data_files=data)))
        for spec in specs:
            training, group = spec.training, self.node.find_child(construct_id(spec.name))
            context = staging.stage_training_image(dest=self._stage_dir / "training-image" / spec.name,
                                                   code=code[spec.name])
            data_bucket, data_prefix = self._training_data(group, spec)
            self._training[spec.name] = ModelTrainingPipeline(
                group, "Training", model_name=spec.name,
                entry_point=staging.image_entry_point(training.entry_point, catalog.root),
                image=training_image(group, "TrainingImage", context_dir=context,
                                     instance_type=training.instance_type,
                                     framework_version=training.framework_version, image=training.image),
                instance_type=training.instance_type,
                hyperparameters=sagemaker_hyperparameters(training.hyperparameters),
                max_runtime_s=training.max_runtime_s, instance_count=training.instance_count,
                data_bucket=data_bucket, data_prefix=data_prefix,
                source=source, artifacts=artifacts, encryption_key=key,
                log_retention=self._settings.log_retention,
                # the retraining build deploys a winner to these and gates against this build
                deploy_to=self._functions.get(spec.name, ()),
                deployed_build=s3_assets.Asset(group, "DeployedBuild", path=str(spec.model_dir),
                                               exclude=["versions", "versions/**"]),
            )
        retrained = {name: p.state_machine for name, p in self._training.items()
                     if p.data_bucket is self._storage.bucket}  # an s3:// training.data is the user's
        if retrained:
            self._retraining = ModelRetrainingTrigger(
                self, "Retraining", bucket=self._storage.bucket, state_machines=retrained,
                code_dir=staging.stage_function_code(dest=self._stage_dir / "retrain", package="retrain"),
                log_retention=self._settings.log_retention,
            )

    def _training_data(self, scope: Construct, spec: DeploySpec) -> tuple[s3.IBucket, str]:
        """The job's ``train`` channel: ``training.data`` when it is an ``s3://`` prefix, else
        (a local folder, or none) the batch bucket's ``<model>/train/``, which also retrains."""
        data = spec.training.data
        if data and data.startswith("s3://"):
            bucket, _, prefix = data.removeprefix("s3://").partition("/")
            prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"
            return s3.Bucket.from_bucket_name(scope, "TrainingData", bucket), prefix
        return self._storage.bucket, f"{spec.name}/{names.TRAIN_PREFIX}/"

    def _acknowledge_bucket_notifications(self) -> None:
        handler = self.node.try_find_child("BucketNotificationsHandler050a0587b7544547bf325f094a3db834")
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

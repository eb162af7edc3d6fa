"""Batch for a heavy model: ``<model>/in/`` → SageMaker Asynchronous Inference, scaled to zero.

Why Asynchronous Inference and not Batch Transform: the batch contract is per object (a file
lands, its result appears), and a transform job provisions fresh instances for every job
(minutes each) — per object that is minutes of overhead for seconds of work. An
asynchronous endpoint keeps a queue in front of instances that scale to zero when the queue
is empty (``HasBacklogWithoutCapacity`` brings the first one back), takes inputs up to 1 GB
and runs each for up to an hour.

S3 notification (``<model>/in/``) → SQS (+ DLQ) → the glue function
(functions/async_batch/handler.py), which submits each object; the model's container runs the
same batch job as the Lambda batch function (functions/sagemaker/serve.py ``route=POST
/batch``) and writes ``out/<key>.jsonl`` or ``errors/<key>.json`` itself. Failures of the
invocation (crash, timeout) go to an SNS topic that the glue maps to ``errors/<key>.json``.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.cdk.constructs.batch_pipeline import list_for_missing_keys
from infra.cdk.constructs.batch_storage import BatchStorage
from infra.cdk.constructs.event_queue import EventQueue
from infra.cdk.constructs.sagemaker_endpoint import (
    endpoint_id,
    endpoint_log_group,
    endpoint_name,
    storage_encryption_reason,
)
from infra.cdk.nag import acknowledge, bucket_arn_finding
from infra.cdk.runtimes import ZIP_RUNTIME, ZIP_RUNTIME_REASON
from infra.cdk.sagemaker_iam import grant_sagemaker_logs_and_metrics
from infra.environment import SAGEMAKER_MODEL_DIR, function_environment
from layers import names

GLUE_HANDLER = "functions.async_batch.handler.handler"
VARIANT_NAME = "AllTraffic"


class SageMakerAsyncBatch(Construct):
    """Public attributes: ``endpoint_name``, ``endpoint_arn``, ``queue``, ``errors_topic``,
    ``function``, ``role`` (the container's), ``scalable_target``."""

    @property
    def endpoint_name(self) -> str:
        return self._endpoint.attr_endpoint_name

    @property
    def endpoint_arn(self) -> str:
        return self._endpoint.ref

    @property
    def queue(self) -> sqs.Queue:
        return self._queue

    @property
    def errors_topic(self) -> sns.Topic:
        return self._topic

    @property
    def function(self) -> lambda_.Function:
        return self._function

    @property
    def role(self) -> iam.Role:
        return self._role

    @property
    def scalable_target(self) -> appscaling.ScalableTarget:
        return self._scalable_target

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model_name: str,
        image: ecr_assets.DockerImageAsset,
        model_data: s3_assets.Asset,
        instance_type: str,
        storage: BatchStorage,
        code_dir: Path,
        max_instances: int = 2,
        backlog_per_instance: int = 5,
        scale_in_cooldown_s: int = 600,
        glue_batch_size: int = 10,
        glue_concurrency: int = 2,
        execution_provider: str = "cpu",
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        """
        :param image: / :param model_data: the model's SageMaker serving image and
            ``model.tar.gz`` (the same as its real-time endpoint's).
        :param instance_type: the catalog's ``instance_type``.
        :param execution_provider: ``cpu`` (default) or ``cuda`` (a GPU instance type), set as
            ``MODELFN_EXECUTION_PROVIDER`` on the container.
        :param code_dir: the staged glue source (staging.stage_function_code).
        :param max_instances: default 2; the minimum is 0 (idle costs nothing).
        :param backlog_per_instance: queued objects per instance to scale on (default 5).
        :param scale_in_cooldown_s: idle seconds before scaling in, to zero at last (600).
        :param glue_batch_size: S3 events per glue invocation (default 10).
        :param glue_concurrency: glue invocations at once (default 2, the SQS event source's
            minimum maximum concurrency).
        """
        super().__init__(scope, id)
        bucket = storage.bucket
        self._prefixes = {k: f"{model_name}/{k}/" for k in (
            names.BATCH_IN, names.BATCH_OUT, names.BATCH_ERRORS, "async")}
        self._topic = sns.Topic(self, "Errors", display_name=f"modelfn {model_name} async errors",
                                enforce_ssl=True)
        self._role = self._container_role(model_name, image, model_data, storage)
        model = sagemaker.CfnModel(
            self, "Model", execution_role_arn=self._role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.image_uri, model_data_url=model_data.s3_object_url,
                environment={**function_environment(model_name=model_name, kind="batch",
                                                    model_dir=SAGEMAKER_MODEL_DIR,
                                                    idempotency_table=storage.table.table_name,
                                                    execution_provider=execution_provider),
                             "AWS_DEFAULT_REGION": cdk.Aws.REGION},
            ),
        )
        model.node.add_dependency(self._role)
        config = sagemaker.CfnEndpointConfig(
            self, "Config",
            production_variants=[sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME, model_name=model.attr_model_name,
                initial_instance_count=1, instance_type=instance_type, initial_variant_weight=1.0,
            )],
            async_inference_config=sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
                client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                    max_concurrent_invocations_per_instance=1),  # one object at a time per instance
                output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                    s3_output_path=f"s3://{bucket.bucket_name}/{self._prefixes['async']}responses/",
                    s3_failure_path=f"s3://{bucket.bucket_name}/{self._prefixes['async']}failures/",
                    notification_config=sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                        error_topic=self._topic.topic_arn),
                ),
            ),
        )
        # RetainAllVariantProperties: an update keeps the scaled count (often 0) instead of
        # starting a billed instance again; a new instance type is a new endpoint (see
        # sagemaker_endpoint.py) since its variant is autoscaled.
        name = endpoint_name(self, model_name, instance_type)
        self._endpoint = sagemaker.CfnEndpoint(self, endpoint_id(instance_type), endpoint_name=name,
                                               endpoint_config_name=config.attr_endpoint_config_name,
                                               retain_all_variant_properties=True)
        self._endpoint.node.add_dependency(
            endpoint_log_group(self, "EndpointLogs", name=name, retention=log_retention))
        self._scale_to_zero(max_instances, backlog_per_instance, scale_in_cooldown_s)
        self._glue(model_name, storage, code_dir, log_retention, glue_batch_size, glue_concurrency)
        self._acknowledge(model, config, bucket, instance_type)

    def _container_role(self, model_name: str, image: ecr_assets.DockerImageAsset,
                        model_data: s3_assets.Asset, storage: BatchStorage) -> iam.Role:
        """What the batch job in the container does, on this model's prefixes only."""
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description=f"modelfn {model_name}: asynchronous batch endpoint role")
        image.repository.grant_pull(role)
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadModelData", actions=["s3:GetObject"],
            resources=[model_data.bucket.arn_for_objects(model_data.s3_object_key)]))
        grant_sagemaker_logs_and_metrics(role, kind="Endpoints", sid_prefix="AsyncEndpoint")
        bucket, p = storage.bucket, self._prefixes
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadInputAndRequests", actions=["s3:GetObject", "s3:GetObjectVersion"],
            resources=[bucket.arn_for_objects(f"{p[names.BATCH_IN]}*"),
                       bucket.arn_for_objects(f"{p['async']}requests/*")]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="WriteResults",
            actions=["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                     "s3:ListMultipartUploadParts"],
            resources=[bucket.arn_for_objects(f"{p[names.BATCH_OUT]}*"),
                       bucket.arn_for_objects(f"{p[names.BATCH_ERRORS]}*"),
                       bucket.arn_for_objects(f"{p['async']}responses/*"),
                       bucket.arn_for_objects(f"{p['async']}failures/*")]))
        role.add_to_principal_policy(list_for_missing_keys(bucket, model_name))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="Idempotency", resources=[storage.table.table_arn],
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]))
        self._topic.grant_publish(role)
        return role

    def _scale_to_zero(self, max_instances: int, backlog_per_instance: int, cooldown_s: int) -> None:
        dims = {"EndpointName": self.endpoint_name}
        self._scalable_target = appscaling.ScalableTarget(
            self, "Scaling", service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self.endpoint_name}/variant/{VARIANT_NAME}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=0, max_capacity=max_instances,
        )
        self._scalable_target.node.add_dependency(self._endpoint)
        self._scalable_target.scale_to_track_metric(
            "Backlog", target_value=backlog_per_instance,
            custom_metric=cw.Metric(namespace="AWS/SageMaker", metric_name="ApproximateBacklogSizePerInstance",
                                    dimensions_map=dims, statistic="Average", period=cdk.Duration.minutes(1)),
            scale_in_cooldown=cdk.Duration.seconds(cooldown_s), scale_out_cooldown=cdk.Duration.minutes(1),
        )
        # Target tracking cannot leave zero (no instance, no per-instance metric): a queued
        # request without capacity adds the first instance.
        self._scalable_target.scale_on_metric(
            "FromZero",
            metric=cw.Metric(namespace="AWS/SageMaker", metric_name="HasBacklogWithoutCapacity",
                             dimensions_map=dims, statistic="Average", period=cdk.Duration.minutes(1)),
            scaling_steps=[appscaling.ScalingInterval(upper=0.5, change=0),
                           appscaling.ScalingInterval(lower=0.5, change=1)],
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=cdk.Duration.minutes(2),
        )

    def _glue(self, model_name: str, storage: BatchStorage, code_dir: Path,
              log_retention: logs.RetentionDays, glue_batch_size: int, glue_concurrency: int) -> None:
        bucket, p = storage.bucket, self._prefixes
        events = EventQueue(self, "Queue", visibility_timeout_s=6 * 60,
                            alarm_description=f"{model_name}: asynchronous batch events gave up; see the DLQ")
        self._queue, dlq = events.queue, events.dead_letter_queue
        bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.SqsDestination(self._queue),
                                      s3.NotificationKeyFilter(prefix=p[names.BATCH_IN]))
        log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY)
        role = iam.Role(self, "GlueRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"modelfn {model_name}: asynchronous batch glue role")
        log_group.grant_write(role)
        self._function = lambda_.Function(
            self, "Glue", description=f"modelfn {model_name}: S3 batch → SageMaker asynchronous inference",
            runtime=ZIP_RUNTIME, architecture=lambda_.Architecture.ARM_64,
            handler=GLUE_HANDLER, code=lambda_.Code.from_asset(str(code_dir)), memory_size=256,
            timeout=cdk.Duration.seconds(60), role=role, log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE, logging_format=lambda_.LoggingFormat.JSON,
            environment={names.ENV_BATCH_MODEL: model_name, names.ENV_SAGEMAKER_ENDPOINT: self.endpoint_name},
        )
        # Bounded: a drop of 2,000 objects is 200 batches handled by at most `glue_concurrency`
        # invocations at once (each only submits, the endpoint's queue does the work), and a
        # failed object is retried alone (ReportBatchItemFailures), not its whole batch.
        self._function.add_event_source(sources.SqsEventSource(
            self._queue, batch_size=glue_batch_size, max_concurrency=glue_concurrency,
            report_batch_item_failures=True))
        self._topic.add_subscription(subscriptions.LambdaSubscription(self._function, dead_letter_queue=dlq))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="Submit", actions=["sagemaker:InvokeEndpointAsync"], resources=[self.endpoint_arn]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="WriteAndReadRequests", actions=["s3:PutObject", "s3:GetObject"],
            resources=[bucket.arn_for_objects(f"{p['async']}requests/*")]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="RecordFailures", actions=["s3:PutObject", "s3:GetObject"],
            resources=[bucket.arn_for_objects(f"{p[names.BATCH_ERRORS]}*"),
                       bucket.arn_for_objects(f"{p[names.BATCH_OUT]}*")]))
        role.add_to_principal_policy(list_for_missing_keys(bucket, model_name))
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions")

    def _acknowledge(self, model: sagemaker.CfnModel, config: sagemaker.CfnEndpointConfig,
                     bucket: s3.IBucket, instance_type: str) -> None:
        arn = bucket_arn_finding(bucket)
        for prefix, why in (
            (f"{self._prefixes[names.BATCH_IN]}*", "inputs under the model's own in/ prefix"),
            (f"{self._prefixes[names.BATCH_OUT]}*", "results under the model's own out/ prefix"),
            (f"{self._prefixes[names.BATCH_ERRORS]}*", "error records under the model's own errors/ prefix"),
            (f"{self._prefixes['async']}requests/*", "request payloads under the model's own async/ prefix"),
            (f"{self._prefixes['async']}responses/*", "inference outputs under the model's own async/ prefix"),
            (f"{self._prefixes['async']}failures/*", "inference failures under the model's own async/ prefix"),
        ):
            acknowledge(self, f"AwsSolutions-IAM5[Resource::{arn}/{prefix}]", why)
        acknowledge(self._topic, "AwsSolutions-SNS2",
                    "the topic carries only SageMaker's failure notices (inference id, S3 locations, "
                    "reason), never input or output data; SSL is enforced")
        acknowledge(self._role, "AwsSolutions-IAM5[Resource::*]",
                    "ecr:GetAuthorizationToken has no resource-level permissions; PutMetricData is "
                    "limited to the SageMaker endpoint namespace by condition")
        acknowledge(self._role,
                    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/*]",
                    "SageMaker names the endpoint's log group after the generated endpoint name")
        for rule, why in (
            ("AwsSolutions-SM1", "the container reaches only S3 and DynamoDB through their public "
                                 "endpoints with its role; no VPC resources"),
            ("AwsSolutions-SM2", storage_encryption_reason(instance_type)),
        ):
            acknowledge(model, rule, why)
            acknowledge(config, rule, why)
        for rule, why in (
            *((rule, ZIP_RUNTIME_REASON) for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion")),
            ("Serverless-LambdaDLQ", "invoked by its SQS event source (redrive DLQ) and by SNS (its "
                                     "subscription's DLQ)"),
            ("Serverless-LambdaEventSourceMappingDestination",
             "SQS event source mappings support no on-failure destination; the redrive DLQ keeps them"),
        ):
            acknowledge(self._function, rule, why)

"""A SageMaker real-time endpoint for one heavy model, autoscaled on invocations per instance.

The image is the shared SageMaker serving image (the same runtime as the Lambda images,
functions/sagemaker/Dockerfile); the model arrives as ``model.tar.gz`` from S3 and SageMaker
unpacks it into ``/opt/ml/model``. Clients never see the endpoint: the HTTP API reaches it
through the proxy function (sagemaker_proxy.py).

Updates keep what autoscaling decided: ``RetainAllVariantProperties`` makes UpdateEndpoint
keep the variant's current instance count and weight instead of resetting it to the new
config's ``InitialInstanceCount`` (without it every model update drops a scaled-out endpoint
to one instance). An ``instance_type`` change is not an update at all: SageMaker refuses
UpdateEndpoint when it changes the instance type of a variant registered with Application
Auto Scaling ("deregister the variant as a scalable target … before you update the
endpoint", SageMaker developer guide, *Update endpoints that use auto scaling*), and
CloudFormation cannot deregister in the middle of an update. So the endpoint's logical id
carries the instance type (:func:`endpoint_id`): a new type creates a new endpoint with its
own scalable target, the proxy switches to it, and CloudFormation deletes the old endpoint
(deleting an endpoint deregisters its scalable targets) in the cleanup phase.
"""

from __future__ import annotations

import hashlib
import re

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.cdk.nag import acknowledge
from infra.cdk.sagemaker_iam import grant_sagemaker_logs_and_metrics
from infra.cdk.sagemaker_instances import has_local_storage
from infra.environment import SAGEMAKER_MODEL_DIR, function_environment

VARIANT_NAME = "AllTraffic"


def endpoint_id(instance_type: str) -> str:
    """The endpoint's construct id: ``ml.g5.xlarge`` → ``EndpointMlG5Xlarge``. A new instance
    type is a new endpoint (replacement), never an UpdateEndpoint of an autoscaled variant."""
    return "Endpoint" + "".join(p.capitalize() for p in re.split(r"[^a-zA-Z0-9]+", instance_type) if p)


def endpoint_name(scope: Construct, model_name: str, instance_type: str) -> str:
    """A fixed endpoint name, so its log group (``/aws/sagemaker/Endpoints/<name>``) can be
    created with a retention before SageMaker creates it without one: the model's name (40
    characters) + a hash of the construct path, the account/region-unique stack name and the
    instance type (a new instance type is a new name, as a replacement needs). 63 at most."""
    stack = cdk.Stack.of(scope)
    digest = hashlib.sha256(f"{stack.stack_name}/{scope.node.path}/{instance_type}".encode()).hexdigest()[:10]
    return f"{model_name[:40]}-{digest}"


def endpoint_log_group(scope: Construct, id: str, *, name: str,
                       retention: logs.RetentionDays) -> logs.LogGroup:
    """The log group SageMaker writes the endpoint's container logs to, made first with a
    retention (SageMaker would create it never-expiring)."""
    return logs.LogGroup(scope, id, log_group_name=f"/aws/sagemaker/Endpoints/{name}",
                         retention=retention, removal_policy=cdk.RemovalPolicy.DESTROY)


def storage_encryption_reason(instance_type: str) -> str:
    """Why the endpoint config carries no KMS key (cdk-nag AwsSolutions-SM2), by the one rule
    of :mod:`infra.cdk.sagemaker_instances`."""
    if has_local_storage(instance_type):
        return (f"{instance_type} has local NVMe storage, which SageMaker encrypts in hardware and "
                "for which CreateEndpointConfig rejects a KmsKeyId")
    return (f"{instance_type}'s ML storage volume holds only the model artifact (already in the "
            "asset bucket) and is encrypted by SageMaker with its AWS managed key")


class SageMakerModelEndpoint(Construct):
    """``CfnModel`` + ``CfnEndpointConfig`` + ``CfnEndpoint`` + target-tracking autoscaling.

    Public attributes: ``role``, ``model``, ``endpoint_config``, ``endpoint``,
    ``endpoint_name``, ``endpoint_arn``, ``scalable_target``.
    """

    @property
    def role(self) -> iam.Role:
        return self._role

    @property
    def model(self) -> sagemaker.CfnModel:
        return self._model

    @property
    def endpoint_config(self) -> sagemaker.CfnEndpointConfig:
        return self._endpoint_config

    @property
    def endpoint(self) -> sagemaker.CfnEndpoint:
        return self._endpoint

    @property
    def endpoint_name(self) -> str:
        return self._endpoint_name

    @property
    def endpoint_arn(self) -> str:
        return self._endpoint_arn

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
        min_instances: int = 1,
        max_instances: int = 4,
        invocations_per_instance: int = 200,
        execution_provider: str = "cpu",
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        """
        :param image: the shared SageMaker serving image.
        :param model_data: the ``model.tar.gz`` asset (staging.write_model_tarball).
        :param instance_type: e.g. ``ml.g5.xlarge`` (catalog ``instance_type``).
        :param min_instances: default 1 (real-time endpoints cannot scale to zero).
        :param max_instances: default 4.
        :param invocations_per_instance: target per instance per minute (default 200).
        :param execution_provider: ``cpu`` (default) or ``cuda`` (a GPU instance type: the
            plan's ``image.execution_provider``), set as ``MODELFN_EXECUTION_PROVIDER``.
        :param log_retention: of the endpoint's log group (default one month).
        """
        super().__init__(scope, id)
        self._role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"modelfn {model_name}: SageMaker endpoint execution role",
        )
        image.repository.grant_pull(self._role)
        self._role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadModelData",
            actions=["s3:GetObject"],
            resources=[model_data.bucket.arn_for_objects(model_data.s3_object_key)],
        ))
        grant_sagemaker_logs_and_metrics(self._role, kind="Endpoints", sid_prefix="Endpoint")
        self._model = sagemaker.CfnModel(
            self, "Model",
            execution_role_arn=self._role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image.image_uri,
                model_data_url=model_data.s3_object_url,
                environment=function_environment(
                    model_name=model_name, kind="sagemaker", model_dir=SAGEMAKER_MODEL_DIR,
                    execution_provider=execution_provider,
                ),
            ),
        )
        self._model.node.add_dependency(self._role)
        self._endpoint_config = sagemaker.CfnEndpointConfig(
            self, "Config",
            production_variants=[sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                variant_name=VARIANT_NAME,
                model_name=self._model.attr_model_name,
                initial_instance_count=min_instances,
                instance_type=instance_type,
                initial_variant_weight=1.0,
            )],
        )
        name = endpoint_name(self, model_name, instance_type)
        log_group = endpoint_log_group(self, "Logs", name=name, retention=log_retention)
        self._endpoint = sagemaker.CfnEndpoint(
            self, endpoint_id(instance_type), endpoint_name=name,
            endpoint_config_name=self._endpoint_config.attr_endpoint_config_name,
            retain_all_variant_properties=True,
        )
        self._endpoint.node.add_dependency(log_group)
        self._endpoint_name = self._endpoint.attr_endpoint_name
        self._endpoint_arn = self._endpoint.ref
        self._scalable_target = appscaling.ScalableTarget(
            self, "Scaling",
            service_namespace=appscaling.ServiceNamespace.SAGEMAKER,
            resource_id=f"endpoint/{self._endpoint_name}/variant/{VARIANT_NAME}",
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=min_instances,
            max_capacity=max_instances,
        )
        self._scalable_target.node.add_dependency(self._endpoint)
        self._scalable_target.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=invocations_per_instance,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=cdk.Duration.minutes(5),
            scale_out_cooldown=cdk.Duration.minutes(1),
        )
        acknowledge(
            self._role, "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; PutMetricData is "
            "limited to the SageMaker endpoint namespace by condition",
        )
        acknowledge(
            self._role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/Endpoints/*]",
            "SageMaker names the endpoint's log group after the generated endpoint name; "
            "scoped to SageMaker endpoint log groups",
        )
        for rule, why in (
            ("AwsSolutions-SM1", "the model container needs no VPC resources: it reads only its "
                                 "model artifact from S3 and is reached only via InvokeEndpoint"),
            ("AwsSolutions-SM2", storage_encryption_reason(instance_type)),
        ):
            acknowledge(self._model, rule, why)
            acknowledge(self._endpoint_config, rule, why)

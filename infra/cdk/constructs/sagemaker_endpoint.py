"""A SageMaker real-time endpoint for one heavy model, autoscaled on invocations per instance.

The image is the shared SageMaker serving image (the same runtime as the Lambda images,
functions/sagemaker/Dockerfile); the model arrives as ``model.tar.gz`` from S3 and SageMaker
unpacks it into ``/opt/ml/model``. Clients never see the endpoint: the HTTP API reaches it
through the proxy function (sagemaker_proxy.py).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.cdk.nag import acknowledge
from infra.cdk.sagemaker_iam import grant_sagemaker_logs_and_metrics
from infra.environment import SAGEMAKER_MODEL_DIR, function_environment

VARIANT_NAME = "AllTraffic"


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
    ) -> None:
        """
        :param image: the shared SageMaker serving image.
        :param model_data: the ``model.tar.gz`` asset (staging.write_model_tarball).
        :param instance_type: e.g. ``ml.g5.xlarge`` (catalog ``instance_type``).
        :param min_instances: default 1 (real-time endpoints cannot scale to zero).
        :param max_instances: default 4.
        :param invocations_per_instance: target per instance per minute (default 200).
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
                    model_name=model_name, kind="sagemaker", model_dir=SAGEMAKER_MODEL_DIR
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
        self._endpoint = sagemaker.CfnEndpoint(
            self, "Endpoint", endpoint_config_name=self._endpoint_config.attr_endpoint_config_name
        )
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
            ("AwsSolutions-SM2", "GPU instance types with local NVMe storage reject a KMS key for "
                                 "the ML storage volume; the volume holds only the model artifact"),
        ):
            acknowledge(self._model, rule, why)
            acknowledge(self._endpoint_config, rule, why)

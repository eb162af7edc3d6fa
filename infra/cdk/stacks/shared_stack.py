"""The shared stack: what every model's stack stands on, and nothing of any one model.

The HTTP API and its stage (and JWT authorizer), the OpenAI router (the shared ``/openai/v1``
routes and the function dispatching them by the body's model), the batch bucket with its access-log bucket,
the idempotency table, the training KMS key and artifacts bucket (when a model trains) and
the dashboard index. Its size does not depend on the catalog. Model stacks reach these
through a fixed set of exports (:data:`EXPORTS`, read back by :class:`SharedImports`): fixed
so no model can add or drop an import, which would lock or break the shared stack
(README "Stack layout" weighs exports against SSM parameters).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.cdk.constructs.batch_storage import BatchStorage
from infra.cdk.constructs.dashboard_index import DashboardIndex
from infra.cdk.constructs.http_api import ModelHttpApi
from infra.cdk.constructs.openai_router import OpenAIRouter
from infra.cdk.stacks.settings import StackSettings
from layers import names

#: What the shared stack exports; each model stack imports what its target needs.
EXPORTS = ("ApiId", "BatchBucketName", "BatchBucketArn", "IdempotencyTableArn", "OpenAIRouterRoleArn")
TRAINING_EXPORTS = ("TrainingKeyArn", "TrainingArtifactsName", "TrainingArtifactsArn")
JWT_EXPORTS = ("JwtAuthorizerId",)


def export_name(shared_stack: str, key: str) -> str:
    return f"{shared_stack}:{key}"


class SharedStack(cdk.Stack):
    """Public attributes: ``api``, ``storage``, ``openai_router``, ``training_key``,
    ``training_artifacts``, ``index``, ``has_training``, ``has_jwt``."""

    def __init__(self, scope: Construct, id: str, *, router_code: Path, settings: StackSettings = StackSettings(),
                 training: bool = False, openai_auth: str = "iam", **kwargs) -> None:
        """:param router_code: the OpenAI router's staged source (staging.stage_function_code).
        :param training: also the training key and artifacts bucket (a model trains).
        :param openai_auth: the shared ``/openai/v1`` routes' authorization (default ``iam``;
            the app passes the catalog's first model's, as for the server routes)."""
        super().__init__(scope, id, **kwargs)
        self.storage = BatchStorage(self, "BatchStorage")
        self.api = ModelHttpApi(
            self, "HttpApi",
            jwt_issuer=settings.jwt_issuer, jwt_audience=settings.jwt_audience,
            cors_origins=settings.cors_origins, log_retention=settings.log_retention,
            throttle_rate_limit=settings.throttle_rate_limit,
            throttle_burst_limit=settings.throttle_burst_limit,
        )
        self.openai_router = OpenAIRouter(
            self, "OpenAIRouter", api_id=self.api.api.api_id, registry_path=names.router_registry_path(id),
            code_dir=router_code, auth=openai_auth,
            jwt_authorizer_id=self.api.jwt_authorizer.authorizer_id if self.api.jwt_authorizer else None,
            log_retention=settings.log_retention,
        )
        values = {
            "ApiId": self.api.api.api_id,
            "OpenAIRouterRoleArn": self.openai_router.role.role_arn,
            "BatchBucketName": self.storage.bucket.bucket_name,
            "BatchBucketArn": self.storage.bucket.bucket_arn,
            "IdempotencyTableArn": self.storage.table.table_arn,
        }
        self.training_key: kms.Key | None = None
        self.training_artifacts: s3.Bucket | None = None
        if training:
            self.training_key = kms.Key(self, "TrainingKey", enable_key_rotation=True,
                                        description="modelfn: training volumes, outputs and build artifacts")
            self.training_artifacts = s3.Bucket(
                self, "TrainingArtifacts",
                encryption=s3.BucketEncryption.KMS, encryption_key=self.training_key,
                bucket_key_enabled=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True, versioned=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                server_access_logs_bucket=self.storage.logs_bucket,
                server_access_logs_prefix="training/", removal_policy=cdk.RemovalPolicy.RETAIN,
                # versioned: overwritten builds and job outputs would otherwise bill forever
                lifecycle_rules=[s3.LifecycleRule(
                    noncurrent_version_expiration=cdk.Duration.days(30),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(1))],
            )
            values.update(TrainingKeyArn=self.training_key.key_arn,
                          TrainingArtifactsName=self.training_artifacts.bucket_name,
                          TrainingArtifactsArn=self.training_artifacts.bucket_arn)
        if self.api.jwt_authorizer is not None:
            values["JwtAuthorizerId"] = self.api.jwt_authorizer.authorizer_id
        self.has_training, self.has_jwt = training, self.api.jwt_authorizer is not None
        for key, value in values.items():
            cdk.CfnOutput(self, f"Export{key}", value=value, export_name=export_name(id, key))
        self.index = DashboardIndex(self, "DashboardIndex", api_id=self.api.api.api_id,
                                    model_dashboard_prefix=f"{id}-")
        cdk.CfnOutput(self, names.OUTPUT_API_URL, value=self.api.url,
                      description="base URL of the V2 (Open Inference Protocol) API")
        cdk.CfnOutput(self, names.OUTPUT_BATCH_BUCKET, value=self.storage.bucket.bucket_name,
                      description="drop files under <model>/in/ to run batch inference")


class SharedImports:
    """The shared stack's exports as constructs of a model's stack (imported, not owned).

    Public attributes: ``api_id``, ``api_url``, ``storage`` (``bucket``, ``table``),
    ``jwt_authorizer_id``, ``openai_router_role_arn``, ``training_key``, ``training_artifacts``.
    """

    def __init__(self, scope: Construct, *, shared_stack: str, jwt: bool, training: bool) -> None:
        def imported(key: str) -> str:
            return cdk.Fn.import_value(export_name(shared_stack, key))

        self.api_id = imported("ApiId")
        self.api_url = f"https://{self.api_id}.execute-api.{cdk.Aws.REGION}.{cdk.Aws.URL_SUFFIX}/"
        bucket = s3.Bucket.from_bucket_attributes(
            scope, "BatchBucket", bucket_name=imported("BatchBucketName"),
            bucket_arn=imported("BatchBucketArn"))
        # by ARN (the name is its last part): grants need the ARN, the environment the name
        table = dynamodb.Table.from_table_arn(scope, "IdempotencyTable", imported("IdempotencyTableArn"))
        self.storage = SimpleNamespace(bucket=bucket, table=table)
        self.jwt_authorizer_id = imported("JwtAuthorizerId") if jwt else None
        self.openai_router_role_arn = imported("OpenAIRouterRoleArn")
        self.training_key: kms.IKey | None = None
        self.training_artifacts: s3.IBucket | None = None
        if training:
            self.training_key = kms.Key.from_key_arn(scope, "TrainingKey", imported("TrainingKeyArn"))
            self.training_artifacts = s3.Bucket.from_bucket_attributes(
                scope, "TrainingArtifacts", bucket_name=imported("TrainingArtifactsName"),
                bucket_arn=imported("TrainingArtifactsArn"), encryption_key=self.training_key)

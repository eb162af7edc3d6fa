"""The stack's batch storage: the batch bucket, its access-log bucket, the idempotency table.

One bucket for every model (``s3://<bucket>/<model>/{in,out,errors}/…``, design.md); each
model's batch function is granted only its own prefixes (batch_pipeline.py).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.cdk.nag import acknowledge

#: Powertools idempotency defaults (design.md): partition key ``id``, TTL ``expiration``.
IDEMPOTENCY_KEY = "id"
IDEMPOTENCY_TTL_ATTRIBUTE = "expiration"


class BatchStorage(Construct):
    """Public attributes: ``bucket``, ``logs_bucket``, ``table``."""

    @property
    def bucket(self) -> s3.Bucket:
        return self._bucket

    @property
    def logs_bucket(self) -> s3.Bucket:
        return self._logs_bucket

    @property
    def table(self) -> dynamodb.Table:
        return self._table

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        noncurrent_version_days: int = 30,
        access_log_days: int = 90,
    ) -> None:
        """
        :param removal_policy: of both buckets; default RETAIN (they hold users' data).
        :param noncurrent_version_days: overwritten/deleted object versions kept (default 30).
        :param access_log_days: server access logs kept (default 90).
        """
        super().__init__(scope, id)
        self._logs_bucket = s3.Bucket(
            self, "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(
                expiration=cdk.Duration.days(access_log_days),
                noncurrent_version_expiration=cdk.Duration.days(1),
            )],
            removal_policy=removal_policy,
        )
        acknowledge(
            self._logs_bucket, "AwsSolutions-S1",
            "this bucket is the server-access-log target of the batch bucket; logging it to "
            "itself would log its own log deliveries without end",
        )
        self._bucket = s3.Bucket(
            self, "Batch",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self._logs_bucket,
            server_access_logs_prefix="batch/",
            lifecycle_rules=[s3.LifecycleRule(
                noncurrent_version_expiration=cdk.Duration.days(noncurrent_version_days),
                abort_incomplete_multipart_upload_after=cdk.Duration.days(1),
            )],
            removal_policy=removal_policy,
        )
        self._table = dynamodb.Table(
            self, "Idempotency",
            partition_key=dynamodb.Attribute(name=IDEMPOTENCY_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=IDEMPOTENCY_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # Records expire by TTL and only deduplicate events; nothing to keep on delete.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )

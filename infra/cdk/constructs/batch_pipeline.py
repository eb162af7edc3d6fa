"""One model's batch path: S3 ``<model>/in/`` → SQS (+ DLQ) → the model's batch function.

Why SQS between S3 and Lambda (design.md, agreed with the batch handler): retries with
backoff, per-record failure reporting (``ReportBatchItemFailures``) and a dead-letter queue
that keeps what failed ``max_receive_count`` times, instead of S3's fire-and-forget
asynchronous invoke.

Bounded: the event source's maximum concurrency caps how many batch invocations run at once
(the stack also reserves that much concurrency for the batch function, so a burst of uploads
neither starves the API functions nor gets throttled itself). Retries with growing delay: SQS
has no per-attempt backoff, so the function sets each failed message's visibility timeout
from its ``ApproximateReceiveCount`` (``layers/batch/retry.py``: ``retry_delay_s`` × 4ⁿ⁻¹);
the redrive policy only bounds the attempts and keeps what still fails in the DLQ. The
queue's own visibility timeout (6 × the function timeout, Lambda's guidance) protects a
message while an invocation holds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.cdk.constructs.batch_storage import BatchStorage
from infra.cdk.constructs.event_queue import EventQueue
from infra.cdk.constructs.model_function import ModelFunction
from infra.cdk.nag import acknowledge, bucket_arn_finding
from layers import names

#: Lambda's guidance: queue visibility timeout at least six times the function timeout.
VISIBILITY_FACTOR = 6


class ModelBatchPipeline(Construct):
    """Public attributes: ``queue``, ``dead_letter_queue``, ``dlq_alarm``, ``prefixes``."""

    @property
    def queue(self) -> sqs.Queue:
        return self._queue

    @property
    def dead_letter_queue(self) -> sqs.Queue:
        return self._dead_letter_queue

    @property
    def dlq_alarm(self) -> cw.Alarm:
        return self._dlq_alarm

    @property
    def prefixes(self) -> Mapping[str, str]:
        return MappingProxyType(self._prefixes)

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model_name: str,
        function: ModelFunction,
        timeout_s: int,
        storage: BatchStorage,
        max_receive_count: int = 3,
        batch_size: int = 10,
        max_batching_window_s: int = 0,
        max_concurrency: int = 2,
    ) -> None:
        """
        :param function: the model's batch function (its ``live`` alias gets the events).
        :param timeout_s: the batch function's timeout (sets the visibility timeout).
        :param max_receive_count: deliveries before a message moves to the DLQ (default 3).
        :param batch_size: S3 objects per invocation (default 10); each failed object is
            reported alone (``ReportBatchItemFailures``).
        :param max_batching_window_s: wait to fill a batch (default 0: deliver what is there).
        :param max_concurrency: batch invocations at once (default 2, AWS's minimum).
        """
        super().__init__(scope, id)
        self._prefixes = {
            kind: f"{model_name}/{kind}/"
            for kind in (names.BATCH_IN, names.BATCH_OUT, names.BATCH_ERRORS)
        }
        events = EventQueue(
            self, "Queue", visibility_timeout_s=VISIBILITY_FACTOR * timeout_s,
            max_receive_count=max_receive_count,
            alarm_description=f"{model_name}: batch events gave up after {max_receive_count} tries",
        )
        self._queue, self._dead_letter_queue = events.queue, events.dead_letter_queue
        self._dlq_alarm = events.alarm
        storage.bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.SqsDestination(self._queue),
            s3.NotificationKeyFilter(prefix=self._prefixes[names.BATCH_IN]),
        )
        function.alias.add_event_source(sources.SqsEventSource(
            self._queue, batch_size=batch_size, report_batch_item_failures=True,
            max_batching_window=cdk.Duration.seconds(max_batching_window_s) if max_batching_window_s else None,
            max_concurrency=max_concurrency,
        ))
        self._grant(function.role, storage)
        acknowledge(
            function.alias, "Serverless-LambdaEventSourceMappingDestination",
            "SQS event source mappings do not support on-failure destinations; failed "
            "messages go to the queue's redrive DLQ instead",
        )

    def _grant(self, role: iam.IRole, storage: BatchStorage) -> None:
        """Read ``<model>/in/*``; write ``<model>/out/*`` and ``<model>/errors/*``; the table."""
        bucket = storage.bucket
        inp, out, err = (self._prefixes[k] for k in (names.BATCH_IN, names.BATCH_OUT, names.BATCH_ERRORS))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="ReadOwnInput",
            actions=["s3:GetObject", "s3:GetObjectVersion"],
            resources=[bucket.arn_for_objects(f"{inp}*")],
        ))
        # The job reads its own result metadata (HEAD: is this version done already?) and
        # deletes the other outcome's stale object when a new version of the input lands.
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="WriteOwnResults",
            actions=["s3:PutObject", "s3:GetObject", "s3:DeleteObject",
                     "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            resources=[bucket.arn_for_objects(f"{out}*"), bucket.arn_for_objects(f"{err}*")],
        ))
        role.add_to_principal_policy(list_for_missing_keys(bucket, self._prefixes[names.BATCH_IN].split("/")[0]))
        role.add_to_principal_policy(iam.PolicyStatement(
            sid="Idempotency",
            actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                     "dynamodb:DeleteItem"],
            resources=[storage.table.table_arn],
        ))
        acknowledge(
            role, f"AwsSolutions-IAM5[Resource::{bucket_arn_finding(bucket)}/{inp}*]",
            "objects under the model's own input prefix only (keys are chosen by users)",
        )
        for prefix in (out, err):
            acknowledge(
                role, f"AwsSolutions-IAM5[Resource::{bucket_arn_finding(bucket)}/{prefix}*]",
                "results are written under the model's own out/ and errors/ prefixes only",
            )


def list_for_missing_keys(bucket: s3.IBucket, model_name: str) -> iam.PolicyStatement:
    """``s3:ListBucket`` so that a HEAD/GET of a missing key is a 404, not a 403.

    S3's HeadObject reference: "If you have the s3:ListBucket permission on the bucket, Amazon
    S3 returns an HTTP status code 404 Not Found error. If you don't have the s3:ListBucket
    permission, Amazon S3 returns an HTTP status code 403 Forbidden error." The ``s3:prefix``
    condition key is documented only for ListObjects requests (Service Authorization
    Reference, Amazon S3: ``s3:prefix`` "filters access by key name prefix" on ListBucket);
    a HeadObject request carries no prefix, and a ``StringLike`` on a key absent from the
    request context does not match (IAM condition operators), so the old prefix-only grant
    made every missing-result check a 403 (retried, then dead-lettered). ``StringLikeIfExists``
    keeps listings that name a prefix on the model's own, and applies to the HEAD check. What
    it allows besides: a listing with no prefix at all sees key names (never contents) of
    the bucket."""
    return iam.PolicyStatement(
        sid="ListOwnPrefix", actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
        conditions={"StringLikeIfExists": {"s3:prefix": [f"{model_name}/*"]}},
    )

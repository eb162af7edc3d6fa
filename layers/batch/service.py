"""The batch function's logic over Powertools: events in, one :class:`BatchJob` per object.

* **SQS** (the deployed path: S3 → per-model queue with a DLQ → this function with
  ``ReportBatchItemFailures``, up to ``batch.batch_size`` messages per invocation):
  :class:`BatchProcessor` + :func:`process_partial_response`, so only failed messages are
  retried, each after its own growing delay (:mod:`layers.batch.retry`). A batch in which
  every message failed is reported the same way, message by message, never as an
  invocation error: an invocation error would retry the whole batch at once, without the
  delay, and count against the canary's rollback alarm. A message's body is the S3
  notification; S3's ``s3:TestEvent`` (sent when a notification is configured) is
  acknowledged and ignored.
  Why a queue: a direct S3 → Lambda invocation is retried twice and then dropped, while
  the queue keeps each failed event (then its DLQ) and lets the function report failures
  per message.
* **Direct S3 invocation** (also accepted): every record is tried; if any failed the invocation raises
  after the others are done, so Lambda's async retry redoes only the failed ones (the
  idempotency record skips the rest).

Idempotency (Powertools, DynamoDB table ``MODELFN_IDEMPOTENCY_TABLE``, default
``modelfn-idempotency``) is keyed on bucket/key/version-id-or-ETag. Its in-progress record
expires when the invocation that took it would time out (``register_lambda_context``); if an
invocation dies mid-object (OOM, crash), the message reappears after the SQS visibility
timeout (set it ≥ the function timeout) and the next attempt takes over the expired record.
The multipart upload it left is never completed, so no partial result appears (the bucket's
``AbortIncompleteMultipartUpload`` lifecycle rule deletes its parts). Completed
records live 14 days (SQS's longest retention); after that the result's own
``modelfn-source`` metadata still makes a redelivery a no-op.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes import S3Event, SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from layers import names
from layers.batch import clients, retry
from layers.batch.deadline import Deadline
from layers.batch.job import BatchJob, JobResult
from layers.batch.layout import (
    ObjectRef,
    is_test_event,
    object_from_s3_record,
    parse_sqs_body,
    route,
)
from layers.dataplane import DataPlane
from layers.model import Model
from layers.observability import setup

IDEMPOTENCY_TTL_S = 14 * 24 * 3600

# the process's one observability setup, shared with every entry point (no auto-patching)
observability = setup()
logger, metrics = observability.logger, observability.metrics


class UnsupportedEvent(ValueError):
    """An invocation that is neither an S3 notification nor SQS messages carrying them."""


class BatchService:
    """Routes events to :class:`BatchJob` runs, once per object version."""

    def __init__(self, model: Model, *, s3: Any = None, persistence: Any = None, job: BatchJob | None = None,
                 sqs: Any = None):
        self.model = model
        self._s3, self._persistence, self._job, self._sqs = s3, persistence, job, sqs
        self.config = IdempotencyConfig(expires_after_seconds=IDEMPOTENCY_TTL_S)
        self._run_once = None

    # lazily built: boto3 clients need a region/endpoint only when an event arrives
    @property
    def job(self) -> BatchJob:
        if self._job is None:
            self._job = BatchJob(DataPlane(self.model), self._s3 or clients.s3_client())
        return self._job

    def _idempotent(self):
        if self._run_once is None:
            persistence = self._persistence or DynamoDBPersistenceLayer(
                table_name=os.environ.get(names.ENV_IDEMPOTENCY_TABLE, names.DEFAULT_IDEMPOTENCY_TABLE),
                boto3_client=clients.dynamodb_client(),
            )
            self._run_once = idempotent_function(
                self._run_object, data_keyword_argument="obj", persistence_store=persistence, config=self.config,
            )
        return self._run_once

    # --- entry point ----------------------------------------------------------------------------

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        records = event.get("Records") if isinstance(event, dict) else None
        if not isinstance(records, list):
            raise UnsupportedEvent(
                "expected an S3 event notification or SQS messages carrying them (a \"Records\" list); "
                "point an S3 ObjectCreated notification or the model's batch queue at this function."
            )
        self.config.register_lambda_context(context)
        self._deadline = Deadline(getattr(context, "get_remaining_time_in_millis", None))
        self._request_id = getattr(context, "aws_request_id", "")
        if records and records[0].get("eventSource") == "aws:sqs":
            processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
            return process_partial_response(event=event, record_handler=self._sqs_record,
                                            processor=processor, context=context)
        failures, results = [], []
        for record in S3Event(event).records:
            try:
                results.append(self._s3_record(record))
            except Exception as exc:
                logger.exception("object failed; it will be retried", extra={"key": record.s3.get_object.key})
                metrics.add_metric(name="ObjectsRetried", unit=MetricUnit.Count, value=1)
                failures.append(f"{record.s3.get_object.key}: {type(exc).__name__}")
        if failures:
            raise RuntimeError(f"{len(failures)} of {len(records)} objects failed and will be retried: {failures}")
        return {"results": results}

    def _sqs_record(self, record: SQSRecord) -> list[dict[str, Any]]:
        try:
            return self._sqs_body(record)
        except Exception:
            attempt = int(record.attributes.approximate_receive_count or 1)
            delay = self._delay_retry(record, attempt)
            logger.exception("message failed; SQS will redeliver it", extra={
                "message_id": record.message_id, "attempt": attempt, "retry_in_s": delay})
            metrics.add_metric(name="ObjectsRetried", unit=MetricUnit.Count, value=1)
            raise

    def _delay_retry(self, record: SQSRecord, attempt: int) -> int | None:
        """Set the failed message's next attempt (layers/batch/retry.py); None if that failed
        (the queue's visibility timeout then applies: later, never lost)."""
        try:
            return retry.delay_retry(self._sqs or clients.sqs_client(), queue_arn=record.event_source_arn,
                                     receipt_handle=record.receipt_handle, receive_count=attempt)
        except Exception as exc:
            logger.warning("could not set the retry delay; the queue's visibility timeout applies",
                           extra={"message_id": record.message_id, "error": f"{type(exc).__name__}: {exc}"})
            return None

    def _sqs_body(self, record: SQSRecord) -> list[dict[str, Any]]:
        body = parse_sqs_body(record.body)
        if is_test_event(body):
            logger.info("ignoring s3:TestEvent", extra={"bucket": body.get("Bucket")})
            return []
        if not isinstance(body.get("Records"), list):
            raise UnsupportedEvent("SQS message does not carry an S3 event notification (no \"Records\")")
        return [self._s3_record(r) for r in S3Event(body).records]

    def _s3_record(self, record) -> dict[str, Any]:
        if record.get("eventSource") != "aws:s3" or not record.event_name.startswith("ObjectCreated:"):
            return self._skip("not an S3 ObjectCreated record", record.get("eventName"))
        ref = object_from_s3_record(record)
        paths = route(ref.key, self.model.name)
        if paths is None:
            return self._skip(f"not under {self.model.name}/{names.BATCH_IN}/", ref.uri)
        return self._idempotent()(obj=ref.idempotency_payload(), ref=ref)

    def _skip(self, why: str, what: Any) -> dict[str, Any]:
        logger.warning("skipped: %s", why, extra={"object": what})
        metrics.add_metric(name="ObjectsSkipped", unit=MetricUnit.Count, value=1)
        return {"status": "skipped", "reason": why}

    def _run_object(self, *, obj: dict[str, str], ref: ObjectRef) -> dict[str, Any]:
        paths = route(ref.key, self.model.name)
        assert paths is not None  # routed before
        logger.append_keys(object=ref.uri, version=ref.identity)
        try:
            result: JobResult = self.job.run(ref, paths, request_id=self._request_id, deadline=self._deadline)
            self._record_metrics(result)
            logger.info("object processed", extra=result.to_dict())
        finally:
            logger.remove_keys(["object", "version"])
        return {"object": ref.uri, **result.to_dict()}

    @staticmethod
    def _record_metrics(result: JobResult) -> None:
        name = {"out": "ObjectsSucceeded", "error": "ObjectsFailed"}.get(result.status, "ObjectsSkipped")
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        if result.status == "out":
            metrics.add_metric(name="RowsProcessed", unit=MetricUnit.Count, value=result.rows)
            if result.seconds > 0:
                metrics.add_metric(name="RowsPerSecond", unit=MetricUnit.CountPerSecond,
                                   value=result.rows / result.seconds)

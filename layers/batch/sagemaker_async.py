"""The async-batch glue's logic (``functions/async_batch/handler.py`` wires it). Batch for heavy models: ``<model>/in/<key>`` → SageMaker Asynchronous Inference → the same
``<model>/out/<key>.jsonl`` / ``<model>/errors/<key>.json`` as the Lambda batch path.

Two event kinds reach this thin glue function:

- SQS messages carrying the S3 notifications of ``<model>/in/`` (as for a Lambda model). For
  each new object it writes the notification record as the request payload
  (``<model>/async/requests/<id>.json``) and calls ``InvokeEndpointAsync`` with the custom
  attribute ``route=POST /batch``: the model's container (functions/sagemaker/serve.py) runs
  the very batch job the Lambda batch function runs (layers/batch) on that object, so the
  output layout, formats, atomic writes and idempotency are the same code. The inference id
  is derived from the object version, so a redelivered message asks for the same inference.
- SNS notifications from the endpoint's error topic: the container crashed, timed out or
  answered an error. The glue reads the request payload back and writes
  ``<model>/errors/<key>.json`` with SageMaker's failure reason (marked retryable: a new
  upload of the object runs it again), unless a result for that version already exists.

Runtime code: boto3 and the stdlib-only parts of layers/batch (layout, upload).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import ClientError

from layers import names, sagemaker_wire
from layers.batch import upload
from layers.batch.layout import BatchPaths, ObjectRef, is_test_event, parse_sqs_body, route

LOG = logging.getLogger("modelfn.async_batch")
LOG.setLevel(logging.INFO)
#: The container's batch route (layers/http/sagemaker.py).
BATCH_ATTRIBUTE = sagemaker_wire.BATCH_ATTRIBUTE
INVOCATION_TIMEOUT_S = names.SAGEMAKER_ASYNC_TIMEOUT_S
REQUESTS = "async/requests"

_CLIENTS: dict[str, Any] = {}


def client(service: str):
    if service not in _CLIENTS:
        _CLIENTS[service] = boto3.client(service)
    return _CLIENTS[service]


def settings() -> tuple[str, str]:
    """(model name, async endpoint name) from the environment the CDK app sets."""
    model, endpoint = os.environ.get(names.ENV_BATCH_MODEL), os.environ.get(names.ENV_SAGEMAKER_ENDPOINT)
    if not model or not endpoint:
        raise RuntimeError(f"set {names.ENV_BATCH_MODEL} (the model) and {names.ENV_SAGEMAKER_ENDPOINT} "
                           "(its asynchronous endpoint); the CDK app sets both")
    return model, endpoint


def inference_id(ref: ObjectRef) -> str:
    """64 hex characters (SageMaker's limit), one per object version."""
    return hashlib.sha256(f"{ref.bucket}/{ref.key}@{ref.identity}".encode()).hexdigest()


def object_ref(record: dict[str, Any]) -> ObjectRef:
    s3 = record["s3"]
    obj = s3["object"]
    return ObjectRef(bucket=s3["bucket"]["name"], key=unquote_plus(obj["key"]),
                     version_id=obj.get("versionId") or None, etag=str(obj.get("eTag", "")).strip('"'),
                     size=int(obj.get("size") or 0))


def submit(record: dict[str, Any], model: str, endpoint: str) -> dict[str, str] | None:
    """One S3 notification record → one asynchronous inference (None: not this model's input)."""
    if record.get("eventSource") != "aws:s3" or not str(record.get("eventName", "")).startswith("ObjectCreated:"):
        return None
    ref = object_ref(record)
    if route(ref.key, model) is None:
        LOG.warning("skipped: not under %s/%s/", model, names.BATCH_IN, extra={"object": ref.uri})
        return None
    ident = inference_id(ref)
    key = f"{model}/{REQUESTS}/{ident}.json"
    client("s3").put_object(Bucket=ref.bucket, Key=key, ContentType="application/json",
                            Body=json.dumps({"Records": [record]}).encode())
    answer = client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=f"s3://{ref.bucket}/{key}", ContentType="application/json",
        CustomAttributes=BATCH_ATTRIBUTE, InferenceId=ident, InvocationTimeoutSeconds=INVOCATION_TIMEOUT_S,
    )
    LOG.info("submitted", extra={"object": ref.uri, "inference_id": ident,
                                 "output": answer.get("OutputLocation")})
    return {"object": ref.uri, "inference_id": ident, "output": answer.get("OutputLocation", "")}


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _version_done(bucket: str, key: str, identity: str) -> bool:
    try:
        meta = client("s3").head_object(Bucket=bucket, Key=key).get("Metadata", {})
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return meta.get(upload.META_SOURCE) == identity


def record_failure(notification: dict[str, Any], model: str) -> dict[str, str] | None:
    """An error-topic notification → ``<model>/errors/<key>.json`` (None: nothing to write)."""
    location = (notification.get("requestParameters") or {}).get("inputLocation", "")
    bucket, key = _split(location)
    payload = json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    [record] = payload["Records"]
    ref = object_ref(record)
    paths: BatchPaths | None = route(ref.key, model)
    if paths is None:
        return None
    if _version_done(ref.bucket, paths.out_key, ref.identity):
        return None  # the container wrote the result before it failed to answer
    reason = notification.get("failureReason") or "the asynchronous inference failed without a reason"
    error = {
        "reason": f"SageMaker asynchronous inference failed: {reason}. Upload the object again to "
                  "retry; the endpoint's CloudWatch logs have the details.",
        "model": model, "input": ref.uri, "input_version": ref.identity,
        "request_id": notification.get("inferenceId", ""), "retryable": True,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    upload.put_error_record(client("s3"), ref.bucket, paths.error_key, error,
                            {upload.META_SOURCE: ref.identity, upload.META_FINAL: "false"})
    LOG.warning("inference failed", extra={"object": ref.uri, "reason": reason})
    return {"object": ref.uri, "error": paths.error_key}


def handle_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """SQS messages or SNS notifications → what was submitted and recorded. SQS batches report each message that failed on its own (``ReportBatchItemFailures``):
    the others are deleted, the failed ones retried and, after ``maxReceiveCount``, kept in
    the DLQ; SNS notifications (asynchronous invokes) raise and are retried by Lambda."""
    model, endpoint = settings()
    submitted, failed, item_failures = [], [], []
    for message in records:
        if message.get("EventSource") == "aws:sns" or "Sns" in message:
            done = record_failure(json.loads(message["Sns"]["Message"]), model)
            failed += [done] if done else []
            continue
        try:
            body = parse_sqs_body(message["body"])
            if is_test_event(body):
                continue
            for record in body.get("Records") or []:
                done = submit(record, model, endpoint)
                submitted += [done] if done else []
        except Exception:
            LOG.exception("submitting failed; the message will be retried",
                          extra={"message_id": message.get("messageId")})
            item_failures.append({"itemIdentifier": message.get("messageId", "")})
    return {"submitted": submitted, "failed": failed, "batchItemFailures": item_failures}

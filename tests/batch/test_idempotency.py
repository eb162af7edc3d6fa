"""Exactly one result per object version: redelivery, expiry of the idempotency record, retries."""

from __future__ import annotations

import boto3
import pytest

from layers import names
from tests.batch import files
from tests.batch.conftest import BUCKET, get_json, keys, s3_event, s3_record, sqs_event, upload


def versions(s3, key: str) -> list[dict]:
    return [v for v in s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", []) if v["Key"] == key]


def test_redelivered_event_writes_nothing_twice(service, aws, lambda_context):
    # given one processed object
    event = s3_event(upload(aws, "tiny/in/once.npy", files.npy(files.rows(8))))
    first = service.handle(event, lambda_context)["results"][0]
    before = versions(aws, "tiny/out/once.npy.jsonl")
    # when the same event arrives again, through SQS this time
    response = service.handle(sqs_event(event), lambda_context)
    # then: the stored result is replayed, the object is untouched
    assert response == {"batchItemFailures": []}
    after = versions(aws, "tiny/out/once.npy.jsonl")
    assert len(after) == 1 and after == before
    assert first["status"] == "out"


def test_redelivery_after_the_idempotency_record_expired_is_still_a_no_op(service, aws, lambda_context):
    event = s3_event(upload(aws, "tiny/in/old.csv", files.csv(files.rows(3).tolist())))
    service.handle(event, lambda_context)
    before = versions(aws, "tiny/out/old.csv.jsonl")
    # when the DynamoDB record is gone (TTL) and the event comes back
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    for item in ddb.scan(TableName=names.DEFAULT_IDEMPOTENCY_TABLE)["Items"]:
        ddb.delete_item(TableName=names.DEFAULT_IDEMPOTENCY_TABLE, Key={"id": item["id"]})
    result = service.handle(event, lambda_context)["results"][0]
    # then the result's own metadata says it is done
    assert result["status"] == "already-done"
    assert versions(aws, "tiny/out/old.csv.jsonl") == before


def test_redelivered_error_is_not_rewritten(service, aws, lambda_context):
    event = s3_event(upload(aws, "tiny/in/bad.npy", b"garbage"))
    service.handle(event, lambda_context)
    service.handle(event, lambda_context)
    assert len(versions(aws, "tiny/errors/bad.npy.json")) == 1


def test_a_fixed_upload_replaces_the_error_record(service, aws, lambda_context):
    # given a bad upload that produced an error record
    service.handle(s3_event(upload(aws, "tiny/in/fix.npy", b"garbage")), lambda_context)
    # when a good version of the same key is uploaded
    service.handle(s3_event(upload(aws, "tiny/in/fix.npy", files.npy(files.rows(2)))), lambda_context)
    # then exactly one outcome remains: the result
    assert keys(aws, "tiny/out/") == ["tiny/out/fix.npy.jsonl"]
    assert keys(aws, "tiny/errors/") == []


def test_event_for_an_overwritten_object_is_skipped_in_an_unversioned_bucket(service, aws, lambda_context):
    aws.create_bucket(Bucket="plain")
    old = upload(aws, "tiny/in/x.npy", files.npy(files.rows(2)), bucket="plain")
    upload(aws, "tiny/in/x.npy", files.npy(files.rows(3)), bucket="plain")
    result = service.handle(s3_event(old), lambda_context)["results"][0]
    assert result["status"] == "superseded"
    assert keys(aws, "tiny/", bucket="plain") == ["tiny/in/x.npy"]


def test_deleted_object_is_skipped(service, aws, lambda_context):
    record = upload(aws, "tiny/in/gone.npy", files.npy(files.rows(2)))
    aws.delete_object(Bucket=BUCKET, Key="tiny/in/gone.npy", VersionId=record["s3"]["object"]["versionId"])
    assert service.handle(s3_event(record), lambda_context)["results"][0]["status"] == "deleted"
    assert keys(aws, "tiny/out/") == keys(aws, "tiny/errors/") == []


def test_a_crash_mid_object_is_retried_and_then_succeeds(service, aws, lambda_context):
    # given a batch of two messages where the first object's attempt dies with an internal error
    crashing = s3_event(upload(aws, "tiny/in/retry.npy", files.npy(files.rows(4))))
    fine = s3_event(upload(aws, "tiny/in/fine.jsonl", files.jsonl([files.v2_request(files.rows(1))])))
    event = sqs_event(crashing, fine)

    class CrashesOnNpy:
        def __getattr__(self, name):
            return getattr(service.model, name)

        def infer(self, inputs, output_names=None, **kw):
            if len(inputs["x"]) == 4:
                raise MemoryError("simulated")
            return service.model.infer(inputs, output_names, **kw)

    service.job.model = CrashesOnNpy()
    first = service.handle(event, lambda_context)
    # then only that message is reported failed, with a provisional error record
    assert first["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    record = get_json(aws, "tiny/errors/retry.npy.json")
    assert record["retryable"] is True and "retried automatically" in record["reason"]
    assert keys(aws, "tiny/out/") == ["tiny/out/fine.jsonl.jsonl"]
    # when SQS redelivers it and the model works again
    service.job.model = service.model
    second = service.handle(sqs_event(crashing), lambda_context)
    # then the result replaces the provisional record
    assert second == {"batchItemFailures": []}
    assert keys(aws, "tiny/out/") == ["tiny/out/fine.jsonl.jsonl", "tiny/out/retry.npy.jsonl"]
    assert keys(aws, "tiny/errors/") == []


def test_an_object_already_in_progress_elsewhere_is_retried_later(service, aws, lambda_context):
    from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from layers.batch.clients import dynamodb_client
    from layers.batch.layout import object_from_s3_record

    record = upload(aws, "tiny/in/busy.npy", files.npy(files.rows(2)))
    other = upload(aws, "tiny/in/other.npy", files.npy(files.rows(2)))
    # given another invocation holds the in-progress record for this object version
    store = DynamoDBPersistenceLayer(table_name=names.DEFAULT_IDEMPOTENCY_TABLE, boto3_client=dynamodb_client())
    method = service._run_object
    store.configure(service.config, function_name=f"{method.__module__}.{method.__qualname__}")
    store.save_inprogress(data=object_from_s3_record(S3EventRecord(record)).idempotency_payload(),
                          remaining_time_in_millis=60_000)
    # when the same object arrives again (with another one)
    event = sqs_event(s3_event(record), s3_event(other))
    response = service.handle(event, lambda_context)
    # then it is not processed a second time concurrently: that message is retried later
    assert response["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert keys(aws, "tiny/out/") == ["tiny/out/other.npy.jsonl"]
    with pytest.raises(RuntimeError, match="1 of 1 objects failed"):
        service.handle(s3_event(record), lambda_context)


def test_record_for_a_versioned_key_uses_the_version_id(service, aws, lambda_context):
    record = s3_record("tiny/in/a.npy", version_id="v1", etag="e", size=1)
    from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord

    from layers.batch.layout import object_from_s3_record

    ref = object_from_s3_record(S3EventRecord(record))
    assert ref.idempotency_payload() == {"bucket": BUCKET, "key": "tiny/in/a.npy", "version": "v1"}


def test_a_broken_new_version_replaces_the_earlier_result(service, aws, lambda_context):
    service.handle(s3_event(upload(aws, "tiny/in/v.npy", files.npy(files.rows(2)))), lambda_context)
    service.handle(s3_event(upload(aws, "tiny/in/v.npy", b"garbage")), lambda_context)
    assert keys(aws, "tiny/out/") == []
    assert keys(aws, "tiny/errors/") == ["tiny/errors/v.npy.json"]
